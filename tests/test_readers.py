"""Readers: every format (plain and compressed), input resolution, and a clear error for each bad input."""

import bz2
import gzip
import json
import lzma

import pytest

from pretrainlab.data import readers
from pretrainlab.data.readers import ReadStats, read_documents, resolve_inputs
from pretrainlab.errors import CorpusError

DOCS = ["First document, line one.\nLine two.", "Second document.", 'Third, with "quotes", commas\tand a tab.']
OPENERS = {"": open, ".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _write(path, data: bytes):
    suffix = path.suffix if path.suffix in OPENERS else ""
    with OPENERS[suffix](path, "wb") as f:
        f.write(data)
    return path


def _content(fmt: str) -> bytes:
    if fmt == "txt":
        return ("\n\n\n".join(DOCS) + "\n").encode()
    if fmt == "jsonl":
        return "".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(DOCS)).encode()
    if fmt == "csv":
        return ("id,text\n" + "".join(f'{i},"{d.replace(chr(34), chr(34) * 2)}"\n' for i, d in enumerate(DOCS))).encode()
    rows = [d.replace("\n", " ").replace("\t", " ") for d in DOCS]  # TSV: no quoting, so no tab/newline inside
    return ("text\tid\n" + "".join(f"{d}\t{i}\n" for i, d in enumerate(rows))).encode()


@pytest.mark.parametrize("compression", ["", ".gz", ".bz2", ".xz"])
@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv", "tsv"])
def test_each_format_plain_and_compressed(tmp_path, fmt, compression):
    path = _write(tmp_path / f"corpus.{fmt}{compression}", _content(fmt))
    docs = list(read_documents(resolve_inputs([path])))
    expected = [d.replace("\n", " ").replace("\t", " ") for d in DOCS] if fmt == "tsv" else DOCS
    assert docs == expected


def test_txt_one_document_per_line_crlf_and_bom(tmp_path):
    path = _write(tmp_path / "a.txt", "\ufeffone\r\ntwo\r\n\r\nthree\r\n".encode())
    assert list(read_documents([path], one_doc_per_line=True)) == ["one", "two", "three"]
    assert list(read_documents([path])) == ["one\ntwo", "three"]


def test_directories_recursive_sorted_globs_and_duplicates(tmp_path):
    for name in ("b/2.txt", "a/1.jsonl", "a/z/3.txt.gz", "c.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "b/2.txt").write_text("two\n")
    (tmp_path / "a/1.jsonl").write_text('{"text": "one"}\n')
    _write(tmp_path / "a/z/3.txt.gz", b"three\n")
    (tmp_path / "c.txt").write_text("four\n")
    (tmp_path / "a/notes.pdf").write_bytes(b"%PDF")  # unsupported: skipped inside directories
    (tmp_path / "a/.hidden.txt").write_text("hidden\n")
    paths = resolve_inputs([tmp_path / "a", tmp_path / "b", str(tmp_path / "*.txt"), tmp_path / "b/2.txt"])
    assert [p.name for p in paths] == ["1.jsonl", "3.txt.gz", "2.txt", "c.txt"]
    assert list(read_documents(paths)) == ["one", "three", "two", "four"]


def test_not_utf8_is_an_error_naming_line_byte_and_column(tmp_path):
    path = _write(tmp_path / "notes.txt", b"fine line\nbad \xe9t\xff here\n")
    with pytest.raises(CorpusError, match=r"notes\.txt: line 2 is not utf-8 \(byte 0xe9 at column 5\).*data\.errors=replace"):
        list(read_documents([path]))


def test_errors_replace_goes_on_and_counts_bytes(tmp_path):
    path = _write(tmp_path / "notes.txt", b"ok\n\nbad \xe9t\xff\xfe here\n")
    stats = ReadStats()
    assert list(read_documents([path], errors="replace", stats=stats)) == ["ok", "bad \ufffdt\ufffd\ufffd here"]
    assert stats.replaced_bytes == 3 and stats.documents == 2


def test_binary_file(tmp_path):
    path = _write(tmp_path / "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(CorpusError, match=r"image\.txt: NUL bytes in its first 8 KB: this is a binary file"):
        list(read_documents([path]))
    late = _write(tmp_path / "late.txt", b"text\n" * 3000 + b"then \x00 binary\n")
    with pytest.raises(CorpusError, match=r"late\.txt: line 3001 holds a NUL byte: this is a binary file"):
        list(read_documents([late]))


def test_empty_file(tmp_path):
    path = _write(tmp_path / "empty.txt", b"\n  \n")
    with pytest.raises(CorpusError, match=r"empty\.txt: the file is empty"):
        list(read_documents([path]))


def test_empty_directory(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(CorpusError, match=r"raw: the directory holds no \.txt"):
        resolve_inputs([tmp_path / "raw"])


def test_glob_that_matches_nothing_and_missing_path(tmp_path):
    with pytest.raises(CorpusError, match=r"\*\.jsonl: the pattern matches no"):
        resolve_inputs([str(tmp_path / "*.jsonl")])
    with pytest.raises(CorpusError, match="no such file or directory"):
        resolve_inputs([tmp_path / "nope.txt"])


def test_unknown_file_type(tmp_path):
    path = _write(tmp_path / "book.pdf", b"%PDF")
    with pytest.raises(CorpusError, match=r"book\.pdf: unknown file type"):
        resolve_inputs([path])


def test_line_just_over_the_cap(tmp_path, monkeypatch):
    cap = readers.MAX_LINE_BYTES
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:
        f.write(b"short line\n" + b"x" * cap + b"\n" + b"y" * (cap + 1) + b"\n")
    docs = read_documents([path], one_doc_per_line=True)
    assert next(docs) == "short line"
    assert len(next(docs)) == cap  # exactly the cap is allowed
    with pytest.raises(CorpusError, match=r"huge\.txt: line 3 is longer than 10 MB"):
        next(docs)


def test_missing_jsonl_field(tmp_path):
    path = _write(tmp_path / "a.jsonl", b'{"text": "ok"}\n{"body": "no text", "id": 2}\n')
    with pytest.raises(CorpusError, match=r"a\.jsonl: line 2 has no field 'text' \(it has 'body', 'id'\).*data\.text_field"):
        list(read_documents([path]))


def test_invalid_jsonl_line(tmp_path):
    path = _write(tmp_path / "a.jsonl", b'{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(CorpusError, match=r"a\.jsonl: line 2 is not valid JSON .* column 10"):
        list(read_documents([path]))


def test_missing_csv_column(tmp_path):
    path = _write(tmp_path / "a.csv", b"body,label\nhello,1\n")
    with pytest.raises(CorpusError, match=r"a\.csv: no column 'text' in the header \(columns: 'body', 'label'\)"):
        list(read_documents([path]))
    assert list(read_documents([path], text_field="body")) == ["hello"]


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "a.txt.gz"
    path.write_bytes(gzip.compress(b"hello world\n" * 100)[:-30])
    with pytest.raises(CorpusError, match=r"a\.txt\.gz: not a valid \.gz file"):
        list(read_documents([path]))


def test_encodings(tmp_path):
    path = _write(tmp_path / "a.txt", "caf\xe9\n".encode("latin-1"))
    assert list(read_documents([path], encoding="latin-1")) == ["caf\xe9"]
    with pytest.raises(CorpusError, match="unknown encoding 'klingon'"):
        list(read_documents([path], encoding="klingon"))
    with pytest.raises(CorpusError, match="not ASCII-compatible.*iconv"):
        list(read_documents([path], encoding="utf-16"))


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32", "utf-32-be"])
def test_utf16_and_utf32_with_a_byte_order_mark_are_read(tmp_path, codec):
    """Finding 5: a BOM says the encoding; the text is read, not called a binary file."""
    text = "héllo wörld\n今天天气很好。\n\nsecond doc\n"
    bom = {"utf-16": b"", "utf-32": b"", "utf-16-be": b"\xfe\xff", "utf-32-be": b"\x00\x00\xfe\xff"}[codec]
    data = bom + text.encode(codec)  # python's utf-16 / utf-32 write a BOM themselves
    for name in ("a.txt", "a.txt.gz"):
        path = _write(tmp_path / name, data)
        assert list(read_documents([path])) == ["héllo wörld\n今天天气很好。", "second doc"]
    jsonl = _write(tmp_path / "b.jsonl", bom + '{"text": "ünï"}\n{"text": "two"}\n'.encode(codec))
    assert list(read_documents([jsonl])) == ["ünï", "two"]


def test_broken_utf16_names_the_encoding(tmp_path):
    path = _write(tmp_path / "bad.txt", "ok line\nmore\n".encode("utf-16") + b"\x00\xd8\x41")  # a lone surrogate
    with pytest.raises(CorpusError, match=r"bad\.txt: UTF-16 text .* does not decode after line 2"):
        list(read_documents([path]))
    stats = ReadStats()
    assert list(read_documents([path], errors="replace", stats=stats))[0].startswith("ok line\nmore")
    assert stats.replaced_bytes > 0
