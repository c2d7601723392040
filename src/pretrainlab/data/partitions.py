"""Records spread over partition files on disk, read back one partition at a time: flat memory.

    parts = Partitions(work_dir, "keys", RECORD, n_parts_for(expected_records))
    parts.add(records)                     # buffered; each record goes to the file its key picks
    parts.close()
    for records in parts:                  # partition 0, 1, ...: each file read whole, then deleted
        ...

By default a record's partition is its uint64 `key`'s top bits (a hash: partitions of about equal
size); `part_of` can give another order, e.g. ranges of a document index, read back in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

BUFFER = 1 << 16
"""Records gathered before they are appended to the partition files."""
PARTITION_RECORDS = 1 << 20
"""Records a partition is sized for (16 MiB of 16-byte records)."""
MAX_BITS = 8
"""At most 2^8 = 256 partition files open at once."""


def n_parts_for(expected_records: float) -> int:
    """Partitions (a power of two, at most 2^MAX_BITS) for about PARTITION_RECORDS records each."""
    return 1 << min(MAX_BITS, max(0, math.ceil(math.log2(max(expected_records / PARTITION_RECORDS, 1)))))


class Partitions:
    def __init__(self, work_dir: Path, name: str, dtype: np.dtype, n_parts: int,
                 part_of: Callable[[np.ndarray], np.ndarray] | None = None):
        self.dtype, self.n_parts = np.dtype(dtype), n_parts
        self.part_of = part_of or self._top_bits
        self.paths = [work_dir / f"{name}-{p:03d}" for p in range(n_parts)]
        self.files = [open(p, "wb") for p in self.paths]
        self.pending: list[np.ndarray] = []
        self.n_pending = 0

    def _top_bits(self, records: np.ndarray) -> np.ndarray:
        bits = self.n_parts.bit_length() - 1
        if bits == 0:
            return np.zeros(len(records), np.int64)
        return (records["key"] >> np.uint64(64 - bits)).astype(np.int64)

    def add(self, records: np.ndarray) -> None:
        self.pending.append(records)
        self.n_pending += len(records)
        if self.n_pending >= BUFFER:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        rec = np.concatenate(self.pending)
        self.pending, self.n_pending = [], 0
        part = self.part_of(rec)
        order = np.argsort(part, kind="stable")
        rec, part = rec[order], part[order]
        bounds = np.searchsorted(part, np.arange(self.n_parts + 1))
        for p, f in enumerate(self.files):
            if bounds[p] < bounds[p + 1]:
                rec[bounds[p] : bounds[p + 1]].tofile(f)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            for f in self.files:
                f.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        for path in self.paths:
            records = np.fromfile(path, dtype=self.dtype)
            path.unlink()
            yield records
