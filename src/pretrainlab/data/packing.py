"""Sequence packing: documents back to back, no padding waste, boundaries kept.

A long document is cut into chunks of at most seq_len - 2 tokens; each chunk becomes
`[CLS] chunk [SEP]`, and chunks are packed next-fit into rows of seq_len tokens in a
shuffled order. The row's `mask` numbers the chunks 1, 2, ... so that attention never
crosses them (0 marks the padding left at a row's end).

The plan is a pure function of (split, seq_len, seed, epoch), so the data position is just
(epoch, row) and a resumed run continues exactly where it stopped without replaying data.

Memory stays flat in the corpus size: an epoch is planned a window of chunks at a time
(`EpochPlan`), reading document boundaries from the split's index files a block at a time, so the
loader holds one window's plan (2^18 chunks, ~4 MiB) and 16 bytes per block of 2^12 chunks, nothing
per document; a corpus of at most one window is shuffled as a whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import CorpusError


@dataclass(frozen=True)
class PackPlan:
    chunk_starts: np.ndarray
    """(n_chunks,) global token offset of each chunk, in packing order."""
    chunk_lens: np.ndarray
    """(n_chunks,) tokens in each chunk (without [CLS]/[SEP])."""
    row_offsets: np.ndarray
    """(n_rows + 1,) index into the chunk arrays where each row starts."""

    @property
    def n_rows(self) -> int:
        return len(self.row_offsets) - 1

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """(chunk starts, chunk lengths) of row r."""
        lo, hi = self.row_offsets[r], self.row_offsets[r + 1]
        return self.chunk_starts[lo:hi], self.chunk_lens[lo:hi]


WINDOW_CHUNKS = 1 << 18
"""Chunks planned at once; an epoch of more chunks is planned window by window."""
BLOCK_CHUNKS = 1 << 12
"""Chunks read together; a window is WINDOW_CHUNKS / BLOCK_CHUNKS blocks drawn from all over the corpus."""
SCAN_DOCS = 1 << 16
"""Document boundaries read at once when an epoch plan counts the chunks."""


def _room(seq_len: int) -> int:
    room = seq_len - 2  # [CLS] and [SEP] around every chunk
    if room < 1:
        raise CorpusError(f"seq_len={seq_len} leaves no room for text between [CLS] and [SEP]")
    return room


def _next_fit(chunk_lens: np.ndarray, seq_len: int) -> np.ndarray:
    """Row offsets of packing chunks (each + [CLS] + [SEP]) next-fit, in order, into rows of seq_len."""
    row_offsets = np.empty(len(chunk_lens) + 1, dtype=np.int64)
    n_rows, used = 0, 0
    row_offsets[0] = 0
    for i, s in enumerate((chunk_lens + 2).tolist()):
        if used + s > seq_len:
            n_rows += 1
            row_offsets[n_rows] = i
            used = 0
        used += s
    n_rows += 1
    row_offsets[n_rows] = len(chunk_lens)
    return row_offsets[: n_rows + 1].copy() if len(chunk_lens) else np.zeros(1, dtype=np.int64)


def plan_rows(doc_offsets: np.ndarray, seq_len: int, seed: int, epoch: int, shuffle: bool = True) -> PackPlan:
    """Cut documents into chunks, shuffle them, and pack them next-fit into rows (the whole split at once)."""
    room = _room(seq_len)
    doc_offsets = np.asarray(doc_offsets, dtype=np.int64)
    lens = np.diff(doc_offsets)
    keep = lens > 0
    starts_doc, lens = doc_offsets[:-1][keep], lens[keep]
    n_pieces = (lens + room - 1) // room
    # chunk k of a document starts at doc_start + k * room
    doc_idx = np.repeat(np.arange(len(lens)), n_pieces)
    piece = np.arange(n_pieces.sum()) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces)
    chunk_starts = starts_doc[doc_idx] + piece * room
    chunk_lens = np.minimum(room, starts_doc[doc_idx] + lens[doc_idx] - chunk_starts)
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(len(chunk_starts))
        chunk_starts, chunk_lens = chunk_starts[order], chunk_lens[order]
    return PackPlan(chunk_starts, chunk_lens, _next_fit(chunk_lens, seq_len))


class _ArrayDocs:
    """Document offsets held in memory, seen through the interface of a corpus split."""

    def __init__(self, doc_offsets: np.ndarray):
        self.doc_offsets = np.asarray(doc_offsets, dtype=np.int64)
        self.n_docs = len(self.doc_offsets) - 1

    def doc_bounds(self, lo: int, hi: int) -> np.ndarray:
        return self.doc_offsets[lo : hi + 1]


class EpochPlan:
    """One epoch's packing plan, built a window of chunks at a time: memory flat in the corpus size.

    `docs` is a corpus split (anything with n_docs and doc_bounds(lo, hi)) or an array of document
    offsets. Chunks are numbered in corpus order and grouped in blocks of `block` consecutive chunks.
    Up to `window` chunks: exactly `plan_rows` (every chunk shuffled with every other). More: the
    blocks are shuffled and dealt out to windows of window / block blocks each, so that a window's
    chunks come from all over the corpus; each window's chunks are shuffled and packed next-fit.
    Rows are numbered across windows in order; `row(r)` plans (and caches) only the window that holds
    row r. Per block, the plan keeps its first document and that document's first chunk id: 16
    bytes per 2^12 chunks; document boundaries are read back from `docs` when a window is planned.
    """

    def __init__(self, docs, seq_len: int, seed: int, epoch: int, shuffle: bool = True,
                 window: int = WINDOW_CHUNKS, block: int = BLOCK_CHUNKS):
        self.seq_len, self.seed, self.epoch, self.shuffle = seq_len, seed, epoch, shuffle
        self.room = _room(seq_len)
        self._docs = docs = docs if hasattr(docs, "doc_bounds") else _ArrayDocs(getattr(docs, "doc_offsets", docs))
        self.block = min(block, window)
        self._block_doc, self._block_doc_chunk, self.n_chunks = self._count_chunks()
        self._cache: tuple[int, PackPlan] | None = None
        if self.n_chunks <= window:  # one window, planned now and kept: row(r) never replans it
            self._cache = (0, plan_rows(docs.doc_bounds(0, docs.n_docs), seq_len, seed, epoch, shuffle))
            self.rows_before = np.array([0, self._cache[1].n_rows], dtype=np.int64)
            return
        n_blocks = len(self._block_doc) - 1
        self._per_window = max(window // self.block, 1)
        rng = np.random.default_rng([seed, epoch])
        self._block_order = rng.permutation(n_blocks) if shuffle else np.arange(n_blocks)
        n_windows = math.ceil(n_blocks / self._per_window)
        rows = [self._plan_window(k).n_rows for k in range(n_windows)]  # one pass to number the rows
        self.rows_before = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)

    def _count_chunks(self) -> tuple[np.ndarray, np.ndarray, int]:
        """One pass over the document boundaries, SCAN_DOCS at a time: for every block, the document
        holding its first chunk and that document's first chunk id (then n_docs, n_chunks); n_chunks."""
        block_doc, block_doc_chunk = [], []
        done = 0  # chunks in the documents before lo
        n_docs = self._docs.n_docs
        for lo in range(0, n_docs, SCAN_DOCS):
            hi = min(lo + SCAN_DOCS, n_docs)
            ends = done + np.cumsum(self._pieces(self._docs.doc_bounds(lo, hi)))  # chunks up to each doc's end
            first_block = -(-done // self.block)  # blocks whose first chunk lies in documents lo..hi-1
            starts = np.arange(first_block * self.block, int(ends[-1]), self.block, dtype=np.int64)
            doc = np.searchsorted(ends, starts, side="right")  # the document holding each block's first chunk
            block_doc.append(lo + doc)
            block_doc_chunk.append(np.where(doc > 0, ends[np.maximum(doc - 1, 0)], done))
            done = int(ends[-1])
        block_doc.append(np.array([n_docs], dtype=np.int64))
        block_doc_chunk.append(np.array([done], dtype=np.int64))
        return np.concatenate(block_doc), np.concatenate(block_doc_chunk), done

    def _pieces(self, bounds: np.ndarray) -> np.ndarray:
        return (np.diff(bounds) + self.room - 1) // self.room  # chunks of each document (0 for an empty one)

    @property
    def n_rows(self) -> int:
        return int(self.rows_before[-1])

    def _block_chunks(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(starts, lengths) of the chunks of block b, in corpus order."""
        first_doc, last_doc = int(self._block_doc[b]), int(self._block_doc[b + 1])
        bounds = self._docs.doc_bounds(first_doc, min(last_doc + 1, self._docs.n_docs))
        first_chunk = int(self._block_doc_chunk[b]) + np.concatenate([[0], np.cumsum(self._pieces(bounds))])
        ids = np.arange(b * self.block, min((b + 1) * self.block, self.n_chunks), dtype=np.int64)
        doc = np.searchsorted(first_chunk, ids, side="right") - 1
        starts = bounds[doc] + (ids - first_chunk[doc]) * self.room
        return starts, np.minimum(self.room, bounds[doc + 1] - starts)

    def _plan_window(self, k: int) -> PackPlan:
        blocks = self._block_order[k * self._per_window : (k + 1) * self._per_window]
        pieces = [self._block_chunks(int(b)) for b in blocks]
        starts = np.concatenate([p[0] for p in pieces])
        lens = np.concatenate([p[1] for p in pieces])
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 1, k]).permutation(len(starts))
            starts, lens = starts[order], lens[order]
        return PackPlan(starts, lens, _next_fit(lens, self.seq_len))

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """(chunk starts, chunk lengths) of row r of the epoch."""
        if not 0 <= r < self.n_rows:
            raise IndexError(f"row {r} is outside the epoch's {self.n_rows} rows")
        k = int(np.searchsorted(self.rows_before, r, side="right")) - 1
        if self._cache is None or self._cache[0] != k:
            self._cache = (k, self._plan_window(k))
        return self._cache[1].row(r - int(self.rows_before[k]))


def row_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of global row (or example) `index` of an epoch: its random choices (masking, PLM order,
    RTD samples) depend on the row alone, not on the rank or batch it lands in."""
    return ((seed * 1_000_003 + epoch) * 1_000_000_007 + index) % (1 << 62)


def build_row(read, chunk_starts: np.ndarray, chunk_lens: np.ndarray, seq_len: int, cls_id: int, sep_id: int,
              pad_id: int):
    """One packed row of the given chunks: (ids, mask) as int64 numpy arrays of length seq_len."""
    ids = np.full(seq_len, pad_id, dtype=np.int64)
    mask = np.zeros(seq_len, dtype=np.int64)
    pos = 0
    for k, (start, n) in enumerate(zip(chunk_starts.tolist(), chunk_lens.tolist()), start=1):
        ids[pos] = cls_id
        ids[pos + 1 : pos + 1 + n] = read(start, start + n)
        ids[pos + 1 + n] = sep_id
        mask[pos : pos + n + 2] = k
        pos += n + 2
    return ids, mask


def sentence_starts(sent_offsets: np.ndarray, chunk_starts: np.ndarray, chunk_lens: np.ndarray,
                    seq_len: int) -> np.ndarray:
    """(seq_len,) bool for the row `build_row` makes of these chunks: True at each token that begins a
    sentence (global offsets in sent_offsets), and at each chunk's first token."""
    starts = np.zeros(seq_len, dtype=bool)
    pos = 0
    for start, n in zip(chunk_starts.tolist(), chunk_lens.tolist()):
        lo, hi = np.searchsorted(sent_offsets, [start, start + n])  # sentence starts inside [start, start + n)
        starts[pos + 1 + (sent_offsets[lo:hi] - start)] = True
        starts[pos + 1] = True
        pos += n + 2
    return starts


class PackedLoader:
    """Endless, resumable stream of packed batches from one corpus split.

    `rank`/`world` give each process its own rows (row r::world) for data parallelism.
    sentences=True adds `sent_start` (B, T) bool, the tokens that begin a sentence (sentence
    permutation needs it); it reads the split's sentence offsets whole (8 bytes a sentence).
    """

    def __init__(self, split, seq_len: int, batch_size: int, special, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world: int = 1, sentences: bool = False):
        self.sentences = sentences
        self.split, self.seq_len, self.batch_size = split, seq_len, batch_size
        self.special, self.seed, self.shuffle = special, seed, shuffle
        self.rank, self.world = rank, world
        self.epoch, self.row = 0, 0
        self._plan = None
        self._plan_epoch = -1
        n_rows = self.plan.n_rows
        if n_rows < world:
            raise CorpusError(f"the corpus packs into {n_rows} rows of {seq_len} tokens, fewer than {world} processes")
        if n_rows // world < 1:
            raise CorpusError("the corpus is too small for one batch")

    @property
    def plan(self) -> EpochPlan:
        if self._plan_epoch != self.epoch:
            self._plan = None  # the old epoch's window goes before the new one is planned
            self._plan = EpochPlan(self.split, self.seq_len, self.seed, self.epoch, self.shuffle)
            self._plan_epoch = self.epoch
        return self._plan

    @property
    def rows_per_epoch(self) -> int:
        return self.plan.n_rows // self.world

    def next_batch(self) -> dict[str, torch.Tensor]:
        ids = np.empty((self.batch_size, self.seq_len), dtype=np.int64)
        mask = np.empty_like(ids)
        seeds = np.empty(self.batch_size, dtype=np.int64)
        starts = np.zeros((self.batch_size, self.seq_len), dtype=bool) if self.sentences else None
        s = self.special
        for b in range(self.batch_size):
            if self.row >= self.rows_per_epoch:
                self.epoch, self.row = self.epoch + 1, 0
            r = self.row * self.world + self.rank
            chunks = self.plan.row(r)
            ids[b], mask[b] = build_row(self.split.read, *chunks, self.seq_len, s.cls, s.sep, s.pad)
            if starts is not None:
                starts[b] = sentence_starts(self.split.sent_offsets, *chunks, self.seq_len)
            seeds[b] = row_seed(self.seed, self.epoch, r)
            self.row += 1
        batch = {"input_ids": torch.from_numpy(ids), "mask": torch.from_numpy(mask),
                 "row_seed": torch.from_numpy(seeds)}
        if starts is not None:
            batch["sent_start"] = torch.from_numpy(starts)
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "row": self.row, "seed": self.seed, "seq_len": self.seq_len,
                "batch_size": self.batch_size, "world": self.world}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seq_len", self.seq_len) != self.seq_len:
            raise CorpusError(f"checkpoint data position is for seq_len={state['seq_len']}, not {self.seq_len}")
        # a different world size (resume under another torchrun) keeps the global position
        global_row = state["row"] * state.get("world", 1)
        self.epoch, self.row = state["epoch"], global_row // self.world
