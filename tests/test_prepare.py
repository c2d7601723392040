"""prepare_corpus -> shards -> open_corpus: exact ids and boundaries, filtering, resumption, caching, errors."""

import json
import os
import random

import numpy as np
import pytest
from tokenizers import models

from pretrainlab.cli import main
from pretrainlab.config import DataConfig
from pretrainlab.data import prepare as prep
from pretrainlab.data.corpus import open_corpus
from pretrainlab.data.prepare import prepare_corpus, split_sentences
from pretrainlab.data.text import normalize
from pretrainlab.errors import CorpusError, PretrainlabError
from pretrainlab.tokenizer import SPECIAL_TOKENS, build_tokenizer, load_tokenizer, save_tokenizer

WORDS = ("alpha beta gamma delta river stone cloud light north winter garden paper market silver "
         "morning table window engine letter summer").split()


def _documents(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).capitalize() + rng.choice(".!?")
                     for _ in range(rng.randint(1, 4))]
        docs.append(" ".join(sentences))
    return docs


def _write_corpus(path, docs: list[str]):
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def _hand_tokenizer(path, words, specials=SPECIAL_TOKENS, first_id=None):
    """A WordPiece tokenizer with a fixed vocabulary: one id per whole word, so counts are known by hand."""
    tok, _ = build_tokenizer("wordpiece", lowercase=True)
    vocab = {t: i for i, t in enumerate(specials)}
    first_id = len(specials) if first_id is None else first_id
    vocab.update({w: first_id + i for i, w in enumerate(words)})
    tok.model = models.WordPiece(vocab=vocab, unk_token="[UNK]")
    return save_tokenizer(tok, path)


def _all_docs(corpus, split):
    s = corpus.split(split)
    return [tuple(s.doc(i).tolist()) for i in range(s.n_docs)]


def _cfg(**kw):
    return DataConfig(**{"vocab_size": 300, "min_chars": 5, "seq_len": 8, "val_fraction": 0.1, **kw})


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_shard_ids_equal_tokenizing_each_document(tmp_path, kind):
    docs = _documents(60)
    src = _write_corpus(tmp_path / "a.txt", docs)
    report = prepare_corpus([src], tmp_path / "out", _cfg(tokenizer_kind=kind, shard_tokens=200))
    corpus = open_corpus(tmp_path / "out")
    tok = load_tokenizer(corpus.tokenizer_path)
    expected = {d: tuple(tok.encode(normalize(d), add_special_tokens=False).ids) for d in docs}
    train, val = _all_docs(corpus, "train"), _all_docs(corpus, "val")
    assert sorted(train + val) == sorted(expected.values())
    in_val = set(val)
    assert train == [expected[d] for d in docs if expected[d] not in in_val]  # input order kept
    assert report.splits["train"]["shards"] > 2 and corpus.manifest["tokenizer"]["trained"]
    ids = corpus.split("train").read(0, corpus.split("train").n_tokens)
    assert not np.isin(ids, [2, 3]).any()  # no [CLS]/[SEP] in shards
    assert ids.dtype == np.int64 and corpus.manifest["dtype"] == "uint16"


def test_doc_bounds_read_from_the_index_files_equal_the_whole_offsets(tmp_path):
    """The packed loader plans from doc_bounds (read from disk, nothing kept): the same plan as from the
    whole offsets array, across shard boundaries too."""
    from pretrainlab.data.packing import EpochPlan

    src = _write_corpus(tmp_path / "a.txt", _documents(300, seed=4))
    prepare_corpus([src], tmp_path / "out", _cfg(val_fraction=0.0, shard_tokens=300))
    train = open_corpus(tmp_path / "out").split("train")
    assert len(train._doc_files) > 5 and train._doc_offsets is None
    bounds = train.doc_bounds(0, train.n_docs)
    assert bounds[0] == 0 and bounds[-1] == train.n_tokens and (np.diff(bounds) > 0).all()
    rng = np.random.default_rng(0)
    for lo, hi in [(0, 0), (train.n_docs, train.n_docs), (0, 1), *np.sort(rng.integers(0, train.n_docs + 1, (40, 2)))]:
        assert train.doc_bounds(lo, hi).tolist() == bounds[lo : hi + 1].tolist()
    assert train._doc_offsets is None  # nothing kept so far
    from_disk = EpochPlan(train, 8, seed=3, epoch=1, window=64, block=8)
    in_memory = EpochPlan(bounds, 8, seed=3, epoch=1, window=64, block=8)
    assert from_disk.n_rows == in_memory.n_rows > 100
    for r in range(from_disk.n_rows):
        assert [a.tolist() for a in from_disk.row(r)] == [a.tolist() for a in in_memory.row(r)]
    assert train._doc_offsets is None
    assert train.doc_offsets.tolist() == bounds.tolist()
    with pytest.raises(IndexError, match="outside the train split"):
        train.doc_bounds(2, train.n_docs + 1)


def test_sentences_concatenate_back_to_the_text():
    text = 'He said "Stop." Then he left! Did he? yes. e.g. this stays. Wait... (Really?) 東京。 End'
    pieces = split_sentences(text)
    assert "".join(pieces) == text
    assert pieces == ['He said "Stop."', " Then he left!", " Did he? yes. e.g. this stays.", " Wait...", " (Really?)",
                      " 東京。", " End"]


def test_document_and_sentence_boundaries_by_hand(tmp_path):
    tok = _hand_tokenizer(tmp_path / "tok.json", "hello world this is fine one more doc yes no . ! ?".split())
    src = _write_corpus(tmp_path / "a.txt", ["Hello world.  This is\nfine.", "One more doc! Yes? No."])
    prepare_corpus([src], tmp_path / "out", _cfg(min_chars=1, val_fraction=0.0, shard_tokens=5), tokenizer_path=tok)
    corpus = open_corpus(tmp_path / "out")
    train = corpus.split("train")
    # hello world . | this is fine .   ||   one more doc ! | yes ? | no .
    assert train.doc_offsets.tolist() == [0, 7, 15]
    assert train.sent_offsets.tolist() == [0, 3, 7, 11, 13, 15]
    v = load_tokenizer(tok).get_vocab()
    assert train.read(0, 15).tolist() == [v[w] for w in "hello world . this is fine . one more doc ! yes ? no .".split()]
    # shard_tokens=5: each document closes its shard; the index of each shard is local
    assert [s["file"] for s in corpus.manifest["splits"]["train"]["shards"]] == ["train-00000.bin", "train-00001.bin"]
    assert np.load(tmp_path / "out/train-00001.sents.npy").tolist() == [0, 4, 6, 8]
    assert train.read(5, 9).tolist() == train.read(0, 15)[5:9].tolist()  # across the two shards
    with pytest.raises(CorpusError, match="no 'val' split; it has train"):
        corpus.split("val")


def test_duplicates_short_documents_and_validation_split(tmp_path):
    docs = _documents(40, seed=1)
    noisy = [d.replace(" ", "   ", 1) for d in docs[:5]]  # equal after normalisation
    short = ["Tiny.", "No", "Ok ok", "Yes!"]
    src = _write_corpus(tmp_path / "a.txt", docs[:20] + noisy + short + docs[20:] + docs[5:7])
    report = prepare_corpus([src], tmp_path / "out", _cfg(val_fraction=0.25, min_chars=6))
    counts = json.loads((tmp_path / "out/manifest.json").read_text())["counts"]
    assert (counts["docs_read"], counts["duplicates_dropped"], counts["short_dropped"], counts["docs"]) == (51, 7, 4, 40)
    assert report.duplicates_dropped == 7 and "dropped 7 exact duplicates, 0 near duplicates and 4 too short" in report.summary()
    corpus = open_corpus(tmp_path / "out")
    train, val = _all_docs(corpus, "train"), _all_docs(corpus, "val")
    assert len(train) + len(val) == 40 and 3 <= len(val) <= 20 and not set(train) & set(val)
    # held out by document content: another order of the same documents holds out the same ones
    _write_corpus(tmp_path / "b.txt", docs[::-1])
    prepare_corpus([tmp_path / "b.txt"], tmp_path / "out2", _cfg(val_fraction=0.25, min_chars=6),
                   tokenizer_path=tmp_path / "out/tokenizer.json")
    assert sorted(_all_docs(open_corpus(tmp_path / "out2"), "val")) == sorted(val)


def test_two_documents_give_one_validation_document(tmp_path):
    src = _write_corpus(tmp_path / "a.txt", _documents(2, seed=3))
    prepare_corpus([src], tmp_path / "out", _cfg(val_fraction=0.01))
    corpus = open_corpus(tmp_path / "out")
    assert (corpus.split("train").n_docs, corpus.split("val").n_docs) == (1, 1)


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    docs = _documents(80, seed=2)
    for i in (5, 30, 31, 60):  # documents the tokenizer turns into nothing (control characters): counted, not stored
        docs.insert(i, "\x01\x02\x03\x04\x05\x06\x07" * (i + 1))
    src = _write_corpus(tmp_path / "a.txt", docs)
    cfg = _cfg(shard_tokens=60, val_fraction=0.2)
    tok = _hand_tokenizer(tmp_path / "tok.json", WORDS + [".", "!", "?"])
    prepare_corpus([src], tmp_path / "full", cfg, tokenizer_path=tok)

    closed = []
    real_close = prep._ShardWriter._close

    def close_then_crash(self):
        if len(closed) == 3:
            raise KeyboardInterrupt("simulated crash")
        real_close(self)
        closed.append(self.split)

    monkeypatch.setattr(prep._ShardWriter, "_close", close_then_crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus([src], tmp_path / "part", cfg, tokenizer_path=tok)
    monkeypatch.setattr(prep._ShardWriter, "_close", real_close)
    part = tmp_path / "part"
    assert len(list(part.glob("*.bin"))) == 3 and list(part.glob("*.bin.tmp"))  # the fourth was half-written
    with pytest.raises(CorpusError, match="interrupted"):
        open_corpus(part)

    tokenized = []
    real_add = prep._Batch.add
    monkeypatch.setattr(prep._Batch, "add", lambda self, text, split: tokenized.append(text) or real_add(self, text, split))
    report = prepare_corpus([src], part, cfg, tokenizer_path=tok)
    assert report.status == "resumed"
    assert len(tokenized) < 80 - 3  # the documents of the three complete shards were not tokenized again
    full_files = sorted(p.name for p in (tmp_path / "full").iterdir())
    assert sorted(p.name for p in part.iterdir()) == full_files
    for name in full_files:
        if name != "manifest.json":
            assert (part / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (tmp_path / "full", part))
    assert a["counts"] == b["counts"] and a["splits"] == b["splits"]
    assert (b["counts"]["docs"], b["counts"]["short_dropped"]) == (80, 4)
    assert b["counts"]["tokens"] == sum(s["tokens"] for sp in b["splits"].values() for s in sp["shards"])


def test_second_run_does_nothing_until_an_input_or_setting_changes(tmp_path):
    src = _write_corpus(tmp_path / "a.txt", _documents(30, seed=4))
    out = tmp_path / "out"
    assert prepare_corpus([src], out, _cfg()).status == "prepared"
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = prepare_corpus([src], out, _cfg())
    assert again.status == "up to date" and "nothing redone" in again.summary()
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    os.utime(src, ns=(1, 1))  # touched, same content: still up to date
    assert prepare_corpus([src], out, _cfg()).status == "up to date"
    assert prepare_corpus([src], out, _cfg(min_chars=6)).status == "prepared"
    with open(src, "a", encoding="utf-8") as f:
        f.write("\nA brand new document about the silver river.\n")
    report = prepare_corpus([src], out, _cfg(min_chars=6))
    assert report.status == "prepared" and report.n_docs == 31


def test_vocabulary_over_65536_uses_uint32(tmp_path):
    words = ["river", "stone", "."]
    tok = _hand_tokenizer(tmp_path / "tok.json", words, first_id=70_000)
    src = _write_corpus(tmp_path / "a.txt", ["River stone river.", "Stone stone stone."])
    prepare_corpus([src], tmp_path / "out", _cfg(min_chars=1, seq_len=8, val_fraction=0.0), tokenizer_path=tok)
    corpus = open_corpus(tmp_path / "out")
    assert corpus.manifest["dtype"] == "uint32"
    assert corpus.split("train").read(0, 8).tolist() == [70_000, 70_001, 70_000, 70_002, 70_001, 70_001, 70_001, 70_002]


def test_tokenizer_without_mask_token(tmp_path):
    tok = _hand_tokenizer(tmp_path / "tok.json", WORDS, specials=("[PAD]", "[UNK]", "[CLS]", "[SEP]"))
    src = _write_corpus(tmp_path / "a.txt", _documents(5))
    with pytest.raises(PretrainlabError, match=r"special token \[MASK\] is missing.*pretrainlab tokenizer train"):
        prepare_corpus([src], tmp_path / "out", _cfg(), tokenizer_path=tok)


def test_nothing_left_after_filtering(tmp_path):
    src = _write_corpus(tmp_path / "a.txt", ["Short.", "Tiny", "Short."])
    with pytest.raises(CorpusError, match=r"no documents left after filtering: read 3, dropped 0 exact duplicates, 0 near "
                                          r"duplicates and 3 shorter than data.min_chars=20"):
        prepare_corpus([src], tmp_path / "out", _cfg(min_chars=20))


def test_corpus_smaller_than_one_sequence(tmp_path):
    tok = _hand_tokenizer(tmp_path / "tok.json", WORDS + ["."])
    src = _write_corpus(tmp_path / "a.txt", ["Alpha beta gamma.", "River stone cloud."])
    with pytest.raises(CorpusError, match=r"smaller than one training sequence: 4 training tokens .* data.seq_len=64"):
        prepare_corpus([src], tmp_path / "out", _cfg(seq_len=64, min_chars=1), tokenizer_path=tok)


def test_open_corpus_errors(tmp_path):
    with pytest.raises(CorpusError, match="no such corpus directory"):
        open_corpus(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match=r"not a prepared corpus \(no manifest.json\)"):
        open_corpus(tmp_path / "empty")
    src = _write_corpus(tmp_path / "a.txt", _documents(30))
    prepare_corpus([src], tmp_path / "out", _cfg())
    shard = tmp_path / "out/train-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(CorpusError, match=r"corrupt prepared corpus: train-00000.bin has \d+ bytes, expected"):
        open_corpus(tmp_path / "out")
    split = prepare_corpus([src], tmp_path / "out2", _cfg())
    corpus = open_corpus(split.out_dir).split("train")
    with pytest.raises(IndexError):
        corpus.read(0, corpus.n_tokens + 1)


def test_cli_prepare_and_tokenizer_train(tmp_path, capsys):
    src = _write_corpus(tmp_path / "a.txt", _documents(30, seed=5))
    sets = ["--set", "data.vocab_size=200", "--set", "data.min_chars=5", "--set", "data.seq_len=8"]
    assert main(["tokenizer", "train", str(src), "--out", str(tmp_path / "tok"), *sets]) == 0
    assert main(["prepare", str(src), "--out", str(tmp_path / "out"), "--tokenizer", str(tmp_path / "tok"), *sets]) == 0
    assert main(["prepare", str(src), "--out", str(tmp_path / "out"), "--tokenizer", str(tmp_path / "tok"), *sets]) == 0
    out = capsys.readouterr().out
    assert "tokenizer written to" in out and "prepared" in out and "up to date" in out
    assert main(["prepare", str(tmp_path / "nothing*.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("partition_records", [1 << 20, 3])
def test_repeats_found_on_disk_are_exactly_the_later_copies(tmp_path, monkeypatch, partition_records):
    """The first pass codes every document whose normalised text came before as an exact repeat of the
    first copy: a set's answers, with one partition or with many (a tiny partition size forces 256)."""
    from pretrainlab.data import dedup, partitions

    monkeypatch.setattr(partitions, "PARTITION_RECORDS", partition_records)
    monkeypatch.setattr(partitions, "BUFFER", 5)  # many appends to each partition file
    monkeypatch.setattr(dedup, "BUFFER", 3)
    rng = random.Random(7)
    base = _documents(40, seed=6)
    docs = [rng.choice(base) if rng.random() < 0.4 else d for d in _documents(200, seed=8)]
    docs[10] = docs[3].replace(" ", "   ")  # the same text after normalisation
    docs[11] = "ab"  # too short: dropped, never a repeat
    src = _write_corpus(tmp_path / "a.txt", docs)
    flags = dedup.find_duplicates([src], _cfg(dedup="exact"), tmp_path / "work")
    first, expected, originals = {}, [], []
    for i, d in enumerate(docs):
        text = normalize(d)
        expected.append(dedup.SHORT if len(text) < 5 else dedup.EXACT if text in first else dedup.KEEP)
        if expected[-1] == dedup.EXACT:
            originals.append(first[text])
        elif len(text) >= 5:
            first[text] = i
    assert list(dedup.read_flags(flags, chunk=7)) == expected and expected.count(dedup.EXACT) > 30
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [  # partitions removed
        "flags.u8", "original.i64", "similarity.f32", "where.bin"]
    counts = dedup.write_dropped(flags, [src], tmp_path / "dropped.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "dropped.jsonl").read_text().splitlines()]
    assert counts == {"exact duplicate": expected.count(dedup.EXACT), "near duplicate": 0, "too short": 1}
    starts = [1 + sum(d.count("\n") + 2 for d in docs[:i]) for i in range(len(docs))]  # each document's first line
    assert [x["of"]["line"] for x in lines if x["reason"] == "exact duplicate"] == [starts[i] for i in originals]
    assert lines[[x["reason"] for x in lines].index("too short")]["line"] == starts[11]


def test_inputs_changed_between_the_two_passes_is_a_clear_error(tmp_path):
    from pretrainlab.data import dedup
    from pretrainlab.data.readers import ReadStats

    src = _write_corpus(tmp_path / "a.txt", _documents(20, seed=1))
    flags = dedup.find_duplicates([src], _cfg(), tmp_path / "work")
    _write_corpus(src, _documents(25, seed=1))  # five more documents after the first pass
    counts = {"short_dropped": 0, "duplicates_dropped": 0}
    with pytest.raises(CorpusError, match="changed while they were being prepared"):
        list(prep._documents([src], _cfg(), ReadStats(), counts, flags))
    _write_corpus(src, _documents(15, seed=1))  # and five fewer
    with pytest.raises(CorpusError, match="changed while they were being prepared"):
        list(prep._documents([src], _cfg(), ReadStats(), counts, flags))


def test_chinese_and_japanese_split_into_sentences():
    """Finding 2: 。！？ and full-width kin end a sentence with or without a space; closers stay with it."""
    zh = "今天天气很好。我们去公园散步！你呢？他说：「你好。」然后走了．真的？！好。"
    assert split_sentences(zh) == ["今天天气很好。", "我们去公园散步！", "你呢？", "他说：「你好。」", "然后走了．",
                                   "真的？！", "好。"]
    ja = "東京に行きました。とても楽しかった！（本当に。）また行きたい？ はい、もちろん。"
    assert split_sentences(ja) == ["東京に行きました。", "とても楽しかった！", "（本当に。）", "また行きたい？",
                                   " はい、もちろん。"]
    for text in (zh, ja):
        assert "".join(split_sentences(text)) == text


def test_min_chars_counts_a_cjk_character_as_a_word(tmp_path):
    """Finding 3: data.min_chars=20 keeps a 6-character Chinese sentence (about 6 words), drops 'short one'."""
    from pretrainlab.data.readers import ReadStats
    from pretrainlab.data.text import normalized_documents, text_length

    assert text_length("今天天气很好") == 30 and text_length("abc") == 3 and text_length("ab今天") == 12
    src = _write_corpus(tmp_path / "zh.txt", ["今天天气很好。", "short one", "これは本です。", "한국어 문장"])
    kept = list(normalized_documents([src], _cfg(min_chars=20), ReadStats()))
    assert kept == ["今天天气很好。", None, "これは本です。", None]


# --------------------------------------------------------------------------- near duplicates

MANY_WORDS = [f"w{i}" for i in range(2000)]
"""Random texts of these share next to no 5-gram: their Jaccard similarity is about 0."""


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(MANY_WORDS) for _ in range(n))


def _near_corpus(tmp_path):
    """a.txt and b.jsonl: 30 distinct texts; in a.txt (line 21) a 100-word paragraph; in b.jsonl the paragraph
    with one word inserted (line 6), a text sharing its first 12 words (line 7), the paragraph again (line 8),
    a too-short text (line 9); a 150-character Chinese text (a.txt line 43) and a copy with one character
    changed (b.jsonl line 10)."""
    rng = random.Random(3)
    words = _text(rng, 100).split()
    paragraph = " ".join(words)
    inserted = " ".join(words[:50] + ["inserted"] + words[50:])  # Jaccard (96-4)/(96+5) = 0.91
    phrase = " ".join(words[:12]) + " " + _text(rng, 88)  # shares 8 of ~180 shingles: 0.04
    han = "".join(chr(0x4E00 + rng.randrange(3000)) for _ in range(150))
    han_changed = han[:70] + ("一" if han[70] != "一" else "二") + han[71:]  # (146-5)/(146+5) = 0.93
    others = [_text(rng, rng.randint(30, 80)) for _ in range(30)]
    a = _write_corpus(tmp_path / "a.txt", others[:10] + [paragraph] + others[10:20] + [han])
    b = tmp_path / "b.jsonl"
    rows = others[20:25] + [inserted, phrase, paragraph, "tiny", han_changed] + others[25:]
    b.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in rows), encoding="utf-8")
    return a, b


def _dropped(out):
    return [json.loads(x) for x in (out / "dropped.jsonl").read_text(encoding="utf-8").splitlines()]


def test_near_duplicates_are_dropped_and_named_in_dropped_jsonl(tmp_path):
    """A paragraph repeated with one word more is dropped as a near duplicate of the first (issue #17
    finding 6), so is a Chinese text with one character changed; texts sharing a phrase are kept. Every
    dropped document is in dropped.jsonl: where, why, of what."""
    a, b = _near_corpus(tmp_path)
    report = prepare_corpus([a, b], tmp_path / "out", _cfg())
    dropped = _dropped(tmp_path / "out")
    similarity = [d.pop("similarity", None) for d in dropped]
    assert dropped == [
        {"source": str(b), "line": 6, "reason": "near duplicate", "of": {"source": str(a), "line": 21}},
        {"source": str(b), "line": 8, "reason": "exact duplicate", "of": {"source": str(a), "line": 21}},
        {"source": str(b), "line": 9, "reason": "too short"},
        {"source": str(b), "line": 10, "reason": "near duplicate", "of": {"source": str(a), "line": 43}},
    ]
    assert 0.85 <= similarity[0] < 1 and similarity[1] == 1.0 and similarity[2] is None and 0.85 <= similarity[3] < 1
    assert (report.near_duplicates_dropped, report.duplicates_dropped, report.short_dropped, report.n_docs) == (2, 1, 1, 33)
    assert "dropped 1 exact duplicates, 2 near duplicates and 1 too short (listed in dropped.jsonl)" in report.summary()


def test_dedup_settings_and_the_number_of_workers(tmp_path):
    """data.dedup=exact (or near_dup_threshold=0) keeps near duplicates, off keeps exact ones too; the kept
    set and dropped.jsonl do not depend on data.workers."""
    a, b = _near_corpus(tmp_path)
    tok = _hand_tokenizer(tmp_path / "tok.json", MANY_WORDS + ["inserted"])

    def prepare(name, **kw):
        prepare_corpus([a, b], tmp_path / name, _cfg(**kw), tokenizer_path=tok)
        corpus = open_corpus(tmp_path / name)
        return [d["reason"] for d in _dropped(tmp_path / name)], _all_docs(corpus, "train") + _all_docs(corpus, "val")

    one, two = prepare("one", workers=1), prepare("two", workers=2)
    assert one == two and (tmp_path / "one/dropped.jsonl").read_text() == (tmp_path / "two/dropped.jsonl").read_text()
    assert one[0] == ["near duplicate", "exact duplicate", "too short", "near duplicate"]
    exact = prepare("exact", dedup="exact")
    assert exact[0] == ["exact duplicate", "too short"] and len(exact[1]) == len(one[1]) + 2
    assert prepare("zero", near_dup_threshold=0.0) == exact
    assert prepare("off", dedup="off")[0] == ["too short"]
    with pytest.raises(PretrainlabError, match=r"data.dedup='nearly' is not one of near, exact, off"):
        _cfg(dedup="nearly")


def test_shingles_are_lowercased_word_5_grams_with_cjk_characters_as_words():
    from pretrainlab.data.neardup import lsh_bands, shingles

    assert shingles("A b c d e F") == [b"a b c d e", b"b c d e f"]
    assert shingles("one two") == [b"one two"]
    assert shingles("今天天气很好") == ["今 天 天 气 很".encode(), "天 天 气 很 好".encode()]
    assert lsh_bands(0.8) == (17, 7)  # a pair at 0.8 shares a band with probability 0.98


@pytest.mark.parametrize("partition_records", [1 << 20, 2])
def test_near_pass_finds_what_comparing_every_pair_finds(tmp_path, monkeypatch, partition_records):
    """LSH over bands sorted on disk (one partition, or 256) marks exactly the documents that comparing
    every pair of signatures marks: each in turn, near a duplicate of its first earlier kept document at
    >= 0.8, and names that document."""
    from pretrainlab.data import dedup, neardup, partitions

    monkeypatch.setattr(partitions, "PARTITION_RECORDS", partition_records)
    monkeypatch.setattr(partitions, "BUFFER", 5)
    monkeypatch.setattr(neardup, "CHUNK", 7)
    rng = random.Random(5)
    docs, originals = [], []
    for k in range(120):
        if originals and rng.random() < 0.3:  # an earlier text with one word changed (about 0.9)
            words = rng.choice(originals).split()
            words[rng.randrange(len(words))] = f"x{k}"
            docs.append(" ".join(words))
        else:
            docs.append(_text(rng, rng.randint(100, 150)))
            originals.append(docs[-1])
    src = _write_corpus(tmp_path / "a.txt", docs)
    flags = dedup.find_duplicates([src], _cfg(), tmp_path / "work")
    signer = neardup.Signer()
    sigs = [signer.sign(normalize(d)) for d in docs]
    expected, of = [], []
    for j in range(len(docs)):
        near = next((i for i in range(j) if expected[i] == dedup.KEEP and (sigs[i] == sigs[j]).mean() >= 0.8), None)
        expected.append(dedup.KEEP if near is None else dedup.NEAR)
        of += [] if near is None else [2 * near + 1]  # one line a document, blank lines between
    assert list(dedup.read_flags(flags)) == expected and expected.count(dedup.NEAR) > 20
    dedup.write_dropped(flags, [src], tmp_path / "dropped.jsonl")
    assert [d["of"]["line"] for d in _dropped(tmp_path)] == of
