"""Exact deduplication in flat memory: which documents repeat an earlier one, found on disk.

    flags = find_duplicates(paths, cfg, work_dir)   # one byte per document read: 1 = a repeat
    for text, repeat in zip(normalized_documents(paths, cfg, stats), read_flags(flags)):
        ...                                         # keep the first copy of every text

A first pass reads, normalises and hashes every document (data/text.py: the same
normalized_documents the second pass reads, and text_key, a 64-bit half of a blake2b digest) and
appends (key, document index) to one of up to 256 partition files chosen by the key's top bits.
Each partition, a few MiB, is then sorted by key and index: every entry after the first of its key
is a repeat, and its byte in the flags file is set. Memory holds one write buffer and one
partition, whatever the corpus size; the disk holds 16 bytes a document while it runs and 1 byte a
document after.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..config import DataConfig
from .readers import ReadStats
from .text import normalized_documents, text_key

RECORD = np.dtype([("key", "<u8"), ("index", "<i8")])
BUFFER = 1 << 16
"""(key, index) records gathered before they are appended to the partition files."""
PARTITION_RECORDS = 1 << 20
"""Records a partition is sized for (16 MiB), assuming the shortest documents (64 bytes of text)."""
MAX_BITS = 8
"""At most 2^8 = 256 partition files open at once."""


def find_duplicates(paths: list[Path], cfg: DataConfig, work_dir: Path) -> Path:
    """Mark every document (of those normalized_documents yields from `paths`, in order) whose text
    repeats an earlier one; -> the flags file (one byte per document, 1 = repeat) in work_dir."""
    work_dir.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in paths)
    bits = min(MAX_BITS, max(0, math.ceil(math.log2(max(total / 64 / PARTITION_RECORDS, 1)))))
    parts = [work_dir / f"part-{p:03d}" for p in range(1 << bits)]
    files = [open(p, "wb") for p in parts]
    keys: list[int] = []
    indices: list[int] = []

    def flush() -> None:
        rec = np.empty(len(keys), dtype=RECORD)
        rec["key"], rec["index"] = keys, indices
        part = (rec["key"] >> np.uint64(64 - bits)).astype(np.int64) if bits else np.zeros(len(rec), np.int64)
        order = np.argsort(part, kind="stable")
        rec, part = rec[order], part[order]
        bounds = np.searchsorted(part, np.arange(len(files) + 1))
        for p, f in enumerate(files):
            if bounds[p] < bounds[p + 1]:
                rec[bounds[p] : bounds[p + 1]].tofile(f)
        keys.clear()
        indices.clear()

    n = 0
    try:
        for n, text in enumerate(normalized_documents(paths, cfg, ReadStats()), start=1):
            if text is not None:  # too short: dropped anyway, never counted as a repeat
                keys.append(text_key(text)[0])
                indices.append(n - 1)
                if len(keys) >= BUFFER:
                    flush()
        if keys:
            flush()
    finally:
        for f in files:
            f.close()

    flags = work_dir / "repeats.flags"
    with open(flags, "wb") as out:
        out.truncate(n)  # all zero: no repeat
        for part in parts:
            rec = np.fromfile(part, dtype=RECORD)
            order = np.lexsort((rec["index"], rec["key"]))  # by key, then first seen first
            key, index = rec["key"][order], rec["index"][order]
            for i in np.sort(index[1:][key[1:] == key[:-1]]).tolist():
                out.seek(i)
                out.write(b"\x01")
            del rec, order, key, index
            part.unlink()
    return flags


def read_flags(path: Path, chunk: int = 1 << 20) -> Iterator[bool]:
    """The flags of find_duplicates, one per document, read a chunk at a time."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            for b in block:
                yield b == 1
