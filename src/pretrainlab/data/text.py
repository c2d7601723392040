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
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from ..config import DataConfig
from .readers import ReadStats, read_documents


def normalize(text: str) -> str:
    """Unicode NFC, every run of whitespace -> one space, no space at either end."""
    text = " ".join(text.split())
    return text if text.isascii() else unicodedata.normalize("NFC", text)


# Han (with extensions and compatibility ideographs), hiragana, katakana: scripts written without spaces,
# where one character carries about as much as a word. Hangul is written with spaces and is not counted here.
CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
_CJK = re.compile(f"[{CJK_RANGES}]")
CJK_CHAR_WEIGHT = 5
"""A CJK character counts as this many characters for data.min_chars: about one English word and its space."""


def text_length(text: str) -> int:
    """Length for the min_chars filter: characters, with each CJK character counted CJK_CHAR_WEIGHT times."""
    return len(text) + (CJK_CHAR_WEIGHT - 1) * len(_CJK.findall(text))


def text_key(text: str) -> tuple[int, float]:
    """(64-bit duplicate key, hash score in [0, 1)) of a normalised text; the score picks its split."""
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little") / 2**64


def normalized_documents(paths: list[Path], cfg: DataConfig, stats: ReadStats) -> Iterator[str | None]:
    """The normalised text of every document read from `paths` (with cfg's reader settings), in order;
    None for a document shorter than cfg.min_chars (at least 1) after normalisation, measured by
    text_length (a CJK character counts as a word): it is dropped."""
    min_chars = max(cfg.min_chars, 1)
    for raw in read_documents(paths, cfg.text_field, cfg.one_doc_per_line, cfg.errors, cfg.encoding, stats):
        text = normalize(raw)
        # text_length >= len: only a text shorter in characters needs its CJK characters counted
        yield text if len(text) >= min_chars or text_length(text) >= min_chars else None
