"""data.vocab_size=0 (the default): prepare proposes the size from the corpus's word count (8,192 at 2.5M words,
growing as ELC-BERT's choices do), prints it and records it; an explicit data.vocab_size wins."""

import json

import pytest

from pretrainlab.config import ConfigError, load_config
from pretrainlab.data.prepare import prepare_corpus
from pretrainlab.data.vocab import propose_vocab_size, proposed_size

SETTINGS = ["data.min_chars=5", "data.val_fraction=0", "data.seq_len=8"]


def test_the_rule_gives_the_measured_size_grows_as_elc_bert_and_keeps_its_bounds():
    # the race measured 8,192 against 3,072 on 2.6M words; the demo's corpus (SOTU + MR) has 2.2M
    assert proposed_size(2_646_613) == 8192 and proposed_size(2_178_752) == 8192
    # ELC-BERT's growth: 10x the words, 16,384 / 6,144 = 2.67x the vocabulary
    assert proposed_size(1_000_000) == 5120  # 8,192 x 0.4^0.426 = 5,543 -> the nearest multiple of 1,024
    assert proposed_size(10_000_000) == 14336  # 8,192 x 4^0.426 = 14,794
    assert proposed_size(3_000) == 1024 and proposed_size(100_000_000) == 32768 and proposed_size(10**10) == 32768


def test_words_are_whitespace_separated():
    p = propose_vocab_size(iter(["a b  c", "d\ne", ""]))
    assert (p.words, p.size) == (5, 1024)


def test_prepare_proposes_prints_and_records(tmp_path, capsys):
    docs = ["The cat sat on the mat.", "A dog ran far away, very far.", "Seven words are in this one."]
    (tmp_path / "c.txt").write_text("\n\n".join(docs), encoding="utf-8")
    report = prepare_corpus([tmp_path / "c.txt"], tmp_path / "p", load_config(None, SETTINGS).data)
    words = sum(len(d.split()) for d in docs)  # 6 + 7 + 6
    assert f"vocabulary: 1,024 tokens proposed for {words:,} words" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["tokenizer"]["proposal"]["size"] == 1024 and manifest["tokenizer"]["proposal"]["words"] == words
    assert manifest["settings"]["vocab_size"] == 0 and manifest["tokenizer"]["vocab_size"] <= 1024
    assert f"vocabulary 1,024 tokens proposed for {words:,} words" in report.summary()
    # an explicit size wins: no proposal, and the proposal's file of the earlier run is gone
    report = prepare_corpus([tmp_path / "c.txt"], tmp_path / "p", load_config(None, SETTINGS + ["data.vocab_size=60"]).data)
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["tokenizer"]["proposal"] is None and "proposed" not in report.summary()


def test_a_vocabulary_below_16_is_refused_but_0_proposes():
    assert load_config(None, []).data.vocab_size == 0
    with pytest.raises(ConfigError, match=r"data.vocab_size must be at least 16 \(or 0: proposed from the corpus\)"):
        load_config(None, ["data.vocab_size=8"])
