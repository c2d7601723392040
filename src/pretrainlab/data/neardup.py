"""Near duplicates: MinHash signatures of word 5-grams (datasketch), LSH bands sorted on disk.

    signer = Signer()
    row = signer.sign(text)                                   # (128,) uint32 MinHash values
    n = mark_near(signatures, codes, original, similarity, 0.8, work_dir)

A document's shingles are its lowercased windows of 5 words (each CJK character is a word of its
own; a shorter document is one shingle). Two documents' MinHash values agree in a share of the 128
places that estimates the Jaccard similarity of their shingle sets. LSH finds the pairs worth
comparing without comparing all: the values are cut into b bands of r, chosen so that a pair at the
threshold shares at least one whole band with probability >= RECALL (17 bands of 7 at 0.8).
Documents sharing a band are candidates; each candidate pair's similarity is estimated from the
whole signatures, and a document is a near duplicate when it is similar enough to an EARLIER
document that is kept (not one dropped itself): the first such, which dropped.jsonl names.

Memory stays flat, as in the exact pass (data/dedup.py): band keys go to partition files (16 bytes
per band per document), each partition is sorted on its own, and the candidate pairs it yields go
to files by document range, decided in document order. The signatures stay on disk (a memmap,
512 bytes per document).
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np

from .partitions import Partitions, n_parts_for
from .text import CJK_RANGES

NUM_PERM = 128
"""MinHash values per document: the estimate's standard error at a similarity of 0.8 is 0.035."""
SEED = 1
SHINGLE = 5
"""Words per shingle."""
RECALL = 0.95
"""Chance that a pair exactly at the threshold becomes a candidate (higher above it: 0.998 at 0.85 for 0.8)."""
FANOUT = 4
"""A document in a band bucket is compared with (up to) the first FANOUT documents of the bucket:
those are the earliest, the ones most likely kept; a bucket of g documents gives g x FANOUT pairs, not g^2."""
CHUNK = 1 << 14
"""Documents whose signatures are read at once."""

KEEP, NEAR = 0, 2
"""A document's code (data/dedup.py has the others): kept so far; a near duplicate."""
_WORDS = re.compile(f"[{CJK_RANGES}]|[^\\s{CJK_RANGES}]+")
_HAS_CJK = re.compile(f"[{CJK_RANGES}]")
BAND = np.dtype([("key", "<u8"), ("index", "<i8")])
PAIR = np.dtype([("j", "<i8"), ("i", "<i8")])
"""A candidate pair: document j, and i < j, an earlier one it may duplicate."""


def shingles(text: str) -> list[bytes]:
    """The lowercased windows of SHINGLE words of a normalised text (a CJK character is a word)."""
    text = text.lower()
    words = _WORDS.findall(text) if _HAS_CJK.search(text) else text.split()
    if len(words) <= SHINGLE:
        return [" ".join(words).encode()]
    return [" ".join(words[k : k + SHINGLE]).encode() for k in range(len(words) - SHINGLE + 1)]


class Signer:
    """datasketch's MinHash (its default affine32 permutations, seed SEED) over CRC-32 hashes of the shingles:
    the same text gives the same signature in every process and run."""

    def __init__(self):
        from datasketch import MinHash

        self.minhash = MinHash(num_perm=NUM_PERM, seed=SEED, hashfunc=zlib.crc32)

    def sign(self, text: str) -> np.ndarray:
        self.minhash.clear()
        self.minhash.update_batch(shingles(text))
        return self.minhash.hashvalues.astype(np.uint32)


def lsh_bands(threshold: float, num_perm: int = NUM_PERM, recall: float = RECALL) -> tuple[int, int]:
    """-> (b, r): the fewest bands b, of r = num_perm // b values, with which a pair of similarity
    `threshold` shares a band with probability >= recall (fewer bands: fewer records on disk)."""
    for b in range(1, num_perm + 1):
        r = num_perm // b
        if 1 - (1 - threshold**r) ** b >= recall:
            return b, r
    return num_perm, 1


def band_keys(signatures: np.ndarray, b: int, r: int) -> np.ndarray:
    """(n, NUM_PERM) uint32 -> (n, b) uint64: a hash (FNV-1a over the values, band number mixed in) of each band."""
    rows = signatures[:, : b * r].astype(np.uint64).reshape(len(signatures), b, r)
    key = np.broadcast_to(np.arange(b, dtype=np.uint64) + np.uint64(0xCBF29CE484222325), (len(rows), b)).copy()
    for c in range(r):
        key = (key ^ rows[:, :, c]) * np.uint64(0x100000001B3)  # wraps modulo 2^64
    return key


def mark_near(signatures: np.ndarray, codes: np.ndarray, original: np.ndarray, similarity: np.ndarray,
              threshold: float, work_dir: Path) -> int:
    """Set codes[j] to near (with original[j], similarity[j]) for every kept document j that is similar
    (>= threshold) to an earlier kept one; -> how many. signatures: (n, NUM_PERM), rows of the documents
    kept so far; codes, original, similarity: one entry per document (memmaps)."""
    n = len(codes)
    b, r = lsh_bands(threshold)
    n_keep = int(np.count_nonzero(codes == KEEP))
    bands = Partitions(work_dir, "bands", BAND, n_parts_for(n_keep * b))
    try:
        for lo in range(0, n, CHUNK):
            index = np.flatnonzero(codes[lo : lo + CHUNK] == KEEP) + lo
            records = np.empty(len(index) * b, dtype=BAND)
            records["key"] = band_keys(signatures[index], b, r).ravel()
            records["index"] = np.repeat(index, b)
            bands.add(records)
    finally:
        bands.close()
    n_pair_parts = n_parts_for(n_keep * b * FANOUT)  # sized for the worst case: every document in full buckets
    pairs = Partitions(work_dir, "pairs", PAIR, n_pair_parts,
                       part_of=lambda rec: rec["j"] * n_pair_parts // max(n, 1))  # document ranges, in order
    try:
        for records in bands:
            pairs.add(_candidates(records))
    finally:
        pairs.close()
    marked = 0
    for records in pairs:
        marked += _decide(np.unique(records), signatures, codes, original, similarity, threshold)
    return marked


def _candidates(records: np.ndarray) -> np.ndarray:
    """The pairs one partition of band records gives: each document of a bucket (documents with one band
    key) with the bucket's first FANOUT, earlier, documents."""
    order = np.lexsort((records["index"], records["key"]))
    key, index = records["key"][order], records["index"][order]
    position = np.arange(len(key))
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]
    start = np.maximum.accumulate(np.where(first, position, 0))  # where each one's bucket starts
    rank = position - start
    found = []
    for m in range(FANOUT):
        at = np.flatnonzero(rank > m)
        pair = np.empty(len(at), dtype=PAIR)
        pair["j"], pair["i"] = index[at], index[start[at] + m]
        found.append(pair[pair["i"] < pair["j"]])  # two bands of one document may share a key
    return np.concatenate(found)


def _decide(pairs: np.ndarray, signatures: np.ndarray, codes: np.ndarray, original: np.ndarray,
            similarity: np.ndarray, threshold: float) -> int:
    """Pairs sorted by (j, i), of documents j in one range (earlier ranges decided): mark each j near a
    duplicate of its first i that is kept and similar enough; -> how many were marked."""
    marked = 0
    for lo in range(0, len(pairs), CHUNK):
        chunk = pairs[lo : lo + CHUNK]
        sims = (signatures[chunk["j"]] == signatures[chunk["i"]]).mean(axis=1)
        close = sims >= threshold
        for j, i, s in zip(chunk["j"][close].tolist(), chunk["i"][close].tolist(), sims[close].tolist()):
            if codes[j] == KEEP and codes[i] == KEEP:  # i < j: decided already
                codes[j], original[j], similarity[j] = NEAR, i, s
                marked += 1
    return marked
