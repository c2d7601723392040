"""Sequence packing: documents back to back, no padding waste, boundaries kept.

A long document is cut into chunks of at most seq_len - 2 tokens; each chunk becomes
`[CLS] chunk [SEP]`, and chunks are packed next-fit into rows of seq_len tokens in a
shuffled order. The row's `mask` numbers the chunks 1, 2, ... so that attention never
crosses them (0 marks the padding left at a row's end).

The plan is a pure function of (split, seq_len, seed, epoch), so the data position is just
(epoch, row) and a resumed run continues exactly where it stopped without replaying data.
"""

from __future__ import annotations

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


def plan_rows(doc_offsets: np.ndarray, seq_len: int, seed: int, epoch: int, shuffle: bool = True) -> PackPlan:
    """Cut documents into chunks, shuffle them, and pack them next-fit into rows."""
    room = seq_len - 2  # [CLS] and [SEP] around every chunk
    if room < 1:
        raise CorpusError(f"seq_len={seq_len} leaves no room for text between [CLS] and [SEP]")
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
    sizes = chunk_lens + 2
    row_offsets = [0]
    used = 0
    for i, s in enumerate(sizes.tolist()):
        if used + s > seq_len:
            row_offsets.append(i)
            used = 0
        used += s
    row_offsets.append(len(sizes))
    return PackPlan(chunk_starts, chunk_lens, np.asarray(row_offsets, dtype=np.int64))


def build_row(read, plan: PackPlan, row: int, seq_len: int, cls_id: int, sep_id: int, pad_id: int):
    """One packed row: (ids, mask) as int64 numpy arrays of length seq_len."""
    ids = np.full(seq_len, pad_id, dtype=np.int64)
    mask = np.zeros(seq_len, dtype=np.int64)
    pos = 0
    for k, c in enumerate(range(plan.row_offsets[row], plan.row_offsets[row + 1]), start=1):
        start, n = int(plan.chunk_starts[c]), int(plan.chunk_lens[c])
        ids[pos] = cls_id
        ids[pos + 1 : pos + 1 + n] = read(start, start + n)
        ids[pos + 1 + n] = sep_id
        mask[pos : pos + n + 2] = k
        pos += n + 2
    return ids, mask


class PackedLoader:
    """Endless, resumable stream of packed batches from one corpus split.

    `rank`/`world` give each process its own rows (row r::world) for data parallelism.
    """

    def __init__(self, split, seq_len: int, batch_size: int, special, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world: int = 1):
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
    def plan(self) -> PackPlan:
        if self._plan_epoch != self.epoch:
            self._plan = plan_rows(self.split.doc_offsets, self.seq_len, self.seed, self.epoch, self.shuffle)
            self._plan_epoch = self.epoch
        return self._plan

    @property
    def rows_per_epoch(self) -> int:
        return self.plan.n_rows // self.world

    def next_batch(self) -> dict[str, torch.Tensor]:
        ids = np.empty((self.batch_size, self.seq_len), dtype=np.int64)
        mask = np.empty_like(ids)
        row_seed = np.empty(self.batch_size, dtype=np.int64)
        s = self.special
        for b in range(self.batch_size):
            if self.row >= self.rows_per_epoch:
                self.epoch, self.row = self.epoch + 1, 0
            r = self.row * self.world + self.rank
            ids[b], mask[b] = build_row(self.split.read, self.plan, r, self.seq_len, s.cls, s.sep, s.pad)
            # a seed per (seed, epoch, global row): its random choices (masking) do not depend on the rank
            row_seed[b] = ((self.seed * 1_000_003 + self.epoch) * 1_000_000_007 + r) % (1 << 62)
            self.row += 1
        return {"input_ids": torch.from_numpy(ids), "mask": torch.from_numpy(mask),
                "row_seed": torch.from_numpy(row_seed)}

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "row": self.row, "seed": self.seed, "seq_len": self.seq_len,
                "batch_size": self.batch_size, "world": self.world}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seq_len", self.seq_len) != self.seq_len:
            raise CorpusError(f"checkpoint data position is for seq_len={state['seq_len']}, not {self.seq_len}")
        # a different world size (resume under another torchrun) keeps the global position
        global_row = state["row"] * state.get("world", 1)
        self.epoch, self.row = state["epoch"], global_row // self.world
