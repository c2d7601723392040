"""The on-disk format of a prepared corpus: what data/prepare.py writes and data/corpus.py reads.

    out_dir/
      tokenizer.json            the tokenizer the ids belong to
      train-00000.bin           token ids back to back, raw uint16 (vocabulary <= 65536) or uint32
      train-00000.docs.npy      int64 document boundaries inside the shard: [0, end of doc 1, ..., n_tokens]
      train-00000.sents.npy     int64 sentence boundaries inside the shard (every document end is one too)
      val-00000.*               the same for the validation split
      progress.json             while a preparation runs: its key and the shards complete so far
      manifest.json             written last: sources (size, sha256), counts, dtype, tokenizer hash, settings

A shard's index files are written before its ids: a shard whose .bin exists is complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FORMAT = 1
"""Version of the on-disk layout; part of prepare's cache key."""
SPLITS = ("train", "val")
MANIFEST, PROGRESS, TOKENIZER = "manifest.json", "progress.json", "tokenizer.json"
IDS, DOCS, SENTS = ".bin", ".docs.npy", ".sents.npy"
"""The suffixes of a shard's token ids and of its document and sentence boundaries."""


def shard_stem(split: str, index: int) -> str:
    """The name every file of shard `index` of `split` starts with: train-00000."""
    return f"{split}-{index:05d}"


def ids_dtype(vocab_size: int) -> np.dtype:
    """The dtype token ids are stored in: uint16 while every id fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def index_paths(directory: Path, ids_file: str) -> tuple[Path, Path]:
    """(document, sentence) boundary files of the shard whose ids are `ids_file` (train-00000.bin)."""
    stem = ids_file[: -len(IDS)]
    return directory / f"{stem}{DOCS}", directory / f"{stem}{SENTS}"


def read_shard(directory: Path, ids_file: str) -> tuple[int, np.ndarray, np.ndarray]:
    """-> (size of the ids file in bytes, document boundaries, sentence boundaries) of one shard;
    OSError or ValueError when a file is missing or unreadable."""
    docs_path, sents_path = index_paths(directory, ids_file)
    docs, sents = np.load(docs_path), np.load(sents_path)
    return (directory / ids_file).stat().st_size, docs, sents


def is_boundaries(offsets: np.ndarray, n: int) -> bool:
    """Whether `offsets` are valid boundaries of n tokens: int64, 0 first, n last, strictly increasing."""
    return (offsets.dtype == np.int64 and offsets.ndim == 1 and len(offsets) >= 2 and offsets[0] == 0
            and offsets[-1] == n and bool((np.diff(offsets) > 0).all()))
