"""Documents as both passes of `prepare` see them: read, normalised, the too-short ones marked.

    for text in normalized_documents(paths, cfg, ReadStats()):   # one entry per document read
        if text is not None:                                     # None: shorter than data.min_chars
            key, score = text_key(text)                          # duplicate key, validation-split score

The first pass (data/dedup.py) hashes these texts to find the repeats; the second (data/prepare.py)
reads them again and drops the repeats the first one flagged. Both read through
`normalized_documents`, so document i of one pass is document i of the other and the two cannot
disagree on normalisation or on which documents are too short.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from ..config import DataConfig
from .readers import ReadStats, read_documents


def normalize(text: str) -> str:
    """Unicode NFC, every run of whitespace -> one space, no space at either end."""
    text = " ".join(text.split())
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def text_key(text: str) -> tuple[int, float]:
    """(64-bit duplicate key, hash score in [0, 1)) of a normalised text; the score picks its split."""
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little") / 2**64


def normalized_documents(paths: list[Path], cfg: DataConfig, stats: ReadStats) -> Iterator[str | None]:
    """The normalised text of every document read from `paths` (with cfg's reader settings), in order;
    None for a document shorter than cfg.min_chars (at least 1) after normalisation: it is dropped."""
    min_chars = max(cfg.min_chars, 1)
    for raw in read_documents(paths, cfg.text_field, cfg.one_doc_per_line, cfg.errors, cfg.encoding, stats):
        text = normalize(raw)
        yield text if len(text) >= min_chars else None
