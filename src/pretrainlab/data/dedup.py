"""Which documents prepare drops, found on disk in flat memory: too short, exact and near duplicates.

    flags = find_duplicates(paths, cfg, work_dir)   # one byte per document read: KEEP, EXACT, NEAR or SHORT
    for text, code in zip(normalized_documents(paths, cfg, stats), read_flags(flags)):
        ...                                         # keep the first copy of every text
    write_dropped(flags, paths, out / "dropped.jsonl")   # one line per dropped document: where, why, of what

A first pass reads, normalises and hashes every document (data/text.py: the same
normalized_documents the second pass reads, and text_key, a 64-bit half of a blake2b digest) and
appends (key, document index) to partition files chosen by the key's top bits (data/partitions.py);
it also notes where each document comes from (file, first line) and, with data.dedup=near, its
MinHash signature (data/neardup.py). Each partition, a few MiB, is then sorted by key and index:
every entry after the first of its key is an exact repeat of that first one. The near pass then
compares what is left (data/neardup.py). Memory holds one write buffer and one partition, whatever
the corpus size; the disk holds about 30 bytes a document (+ 512 with the near pass) while it runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..config import DataConfig
from .neardup import KEEP, NEAR, NUM_PERM, Signer, mark_near
from .partitions import Partitions, n_parts_for
from .readers import ReadStats
from .text import normalized_documents, text_key

EXACT, SHORT = 1, 3
REASONS = {EXACT: "exact duplicate", NEAR: "near duplicate", SHORT: "too short"}
FLAGS = "flags.u8"
"""One code per document; beside it where.bin, original.i64, similarity.f32 (what write_dropped reads)."""
RECORD = np.dtype([("key", "<u8"), ("index", "<i8")])
WHERE = np.dtype([("file", "<i4"), ("line", "<i8")])
BUFFER = 1 << 14
"""Documents gathered before the first pass appends their records to its files."""


def find_duplicates(paths: list[Path], cfg: DataConfig, work_dir: Path) -> Path:
    """Code every document (of those normalized_documents yields from `paths`, in order): SHORT (below
    min_chars), EXACT (its text came before), NEAR (similar to an earlier kept one) or KEEP, as cfg.dedup
    asks; -> the flags file (one byte per document) in work_dir."""
    work_dir.mkdir(parents=True, exist_ok=True)
    near = cfg.dedup == "near" and cfg.near_dup_threshold > 0
    total = sum(p.stat().st_size for p in paths)
    keys = Partitions(work_dir, "keys", RECORD, n_parts_for(total / 64))  # at least 64 bytes a document
    try:
        n = _first_pass(paths, cfg, work_dir, keys, near)
    finally:
        keys.close()
    codes = np.memmap(work_dir / FLAGS, np.uint8, "r+") if n else np.zeros(0, np.uint8)
    original = _new_memmap(work_dir / "original.i64", np.int64, n, -1)
    similarity = _new_memmap(work_dir / "similarity.f32", np.float32, n, 0)
    for rec in keys:  # one partition at a time
        order = np.lexsort((rec["index"], rec["key"]))  # by key, then first seen first
        key, index = rec["key"][order], rec["index"][order]
        first = np.ones(len(key), bool)
        first[1:] = key[1:] != key[:-1]
        start = np.maximum.accumulate(np.where(first, np.arange(len(key)), 0))
        repeat = np.flatnonzero(~first)
        if cfg.dedup != "off" and len(repeat):
            codes[index[repeat]] = EXACT
            original[index[repeat]] = index[start[repeat]]
            similarity[index[repeat]] = 1.0
        del rec, order, key, index, first, start, repeat
    signatures = work_dir / "signatures.u32"
    if near and n:
        mark_near(np.memmap(signatures, np.uint32, "r", shape=(n, NUM_PERM)), codes, original, similarity,
                  cfg.near_dup_threshold, work_dir)
    signatures.unlink(missing_ok=True)
    for array in (codes, original, similarity):
        if isinstance(array, np.memmap):
            array.flush()
    return work_dir / FLAGS


def _new_memmap(path: Path, dtype, n: int, fill) -> np.ndarray:
    if n == 0:
        path.write_bytes(b"")
        return np.zeros(0, dtype)
    array = np.memmap(path, dtype, "w+", shape=(n,))
    array[:] = fill
    return array


def _first_pass(paths: list[Path], cfg: DataConfig, work_dir: Path, keys: Partitions, near: bool) -> int:
    """Read every document once: its code (SHORT or KEEP so far), where it is, its exact key (into `keys`)
    and, when `near`, its MinHash signature; -> the number of documents."""
    signer = Signer() if near else None
    blank = np.zeros(NUM_PERM, np.uint32)
    file_number = {p: k for k, p in enumerate(paths)}
    stats = ReadStats()
    codes, where, found, signatures = [], [], [], []
    n = 0
    with (open(work_dir / FLAGS, "wb") as flags_file, open(work_dir / "where.bin", "wb") as where_file,
          open(work_dir / "signatures.u32", "wb") as sig_file):

        def flush() -> None:
            np.array(codes, np.uint8).tofile(flags_file)
            np.array(where, WHERE).tofile(where_file)
            if found:
                keys.add(np.array(found, RECORD))
            if signatures:
                np.stack(signatures).tofile(sig_file)
            for buffer in (codes, where, found, signatures):
                buffer.clear()

        for n, text in enumerate(normalized_documents(paths, cfg, stats), start=1):
            codes.append(SHORT if text is None else KEEP)
            where.append((file_number[stats.path], stats.line))
            if text is not None:  # too short: dropped anyway, never counted as a repeat
                found.append((text_key(text)[0], n - 1))
            if signer is not None:
                signatures.append(blank if text is None else signer.sign(text))
            if len(codes) >= BUFFER:
                flush()
        flush()
    return n


def read_flags(path: Path, chunk: int = 1 << 20) -> Iterator[int]:
    """The codes of find_duplicates, one per document, read a chunk at a time."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            yield from block


def write_dropped(flags: Path, paths: list[Path], out: Path) -> dict[str, int]:
    """dropped.jsonl: one line per dropped document, in order: its source and line, the reason and, for a
    duplicate, the kept document it repeats and their similarity (1 for an exact one; for a near one the
    MinHash estimate). Written whole, then renamed into place; -> the count per reason."""
    work_dir = flags.parent
    codes = np.fromfile(flags, np.uint8) if flags.stat().st_size else np.zeros(0, np.uint8)
    n = len(codes)
    where = np.memmap(work_dir / "where.bin", WHERE, "r") if n else np.zeros(0, WHERE)
    original = np.memmap(work_dir / "original.i64", np.int64, "r") if n else np.zeros(0, np.int64)
    similarity = np.memmap(work_dir / "similarity.f32", np.float32, "r") if n else np.zeros(0, np.float32)
    counts = dict.fromkeys(REASONS.values(), 0)
    tmp = out.with_name(out.name + ".tmp")

    def at(i: int) -> dict:
        return {"source": str(paths[int(where[i]["file"])]), "line": int(where[i]["line"])}

    with open(tmp, "w", encoding="utf-8") as f:
        for lo in range(0, n, BUFFER):
            for i in (np.flatnonzero(codes[lo : lo + BUFFER] != KEEP) + lo).tolist():
                reason = REASONS[int(codes[i])]
                counts[reason] += 1
                line = {**at(i), "reason": reason}
                if codes[i] != SHORT:
                    line.update({"of": at(int(original[i])), "similarity": round(float(similarity[i]), 3)})
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return counts
