"""Sentence-pair batches for next-sentence prediction (BERT) and sentence-order prediction (ALBERT).

Each example is `[CLS] A [SEP] B [SEP]` with segment ids 0 for `[CLS] A [SEP]`, 1 for `B [SEP]`.
A plan per epoch, like BERT's `create_instances_from_document`, walks every document's sentences
and groups consecutive ones into chunks of a target length (seq_len - 3 tokens; with probability
`short_seq_prob` a random shorter one). Example j of an epoch is made from chunk j:

    A | rest  = the chunk cut at a random sentence boundary inside it (a one-sentence chunk is
                cut inside its sentence, so that every chunk can give a true continuation)
    nsp: half the time B = rest (the true continuation, label 0); otherwise B = a span starting
         at a random sentence of ANOTHER document of the same split (label 1)
    sop: B = rest, and half the time A and B are swapped (label 1)

Labels follow Hugging Face's BertForPreTraining / AlbertForPreTraining: 0 = B continues A in
order, 1 = B is random (nsp) or the two are swapped (sop), so an exported head keeps its meaning.

The pair is cut to seq_len - 3 tokens longest-first: A loses tokens from its front and B from its
back, which keeps the A|B seam intact. Everything (the plan, each example's choices) is a pure
function of (seed, epoch, example), so the data position is (epoch, example) and a resumed run
continues exactly, as with `PackedLoader`. A split is only ever sampled from itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import CorpusError
from .packing import row_seed

KINDS = ("nsp", "sop")


@dataclass(frozen=True)
class PairPlan:
    chunk_starts: np.ndarray
    """(n_chunks,) index of each chunk's first sentence, in example order."""
    chunk_stops: np.ndarray
    """(n_chunks,) index one past each chunk's last sentence."""
    chunk_docs: np.ndarray
    """(n_chunks,) document of each chunk."""
    chunk_targets: np.ndarray
    """(n_chunks,) the sampled pair length (tokens without [CLS]/[SEP]) each chunk was cut for."""

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_starts)


def plan_pairs(doc_offsets: np.ndarray, sent_offsets: np.ndarray, seq_len: int, seed: int, epoch: int,
               shuffle: bool = True, short_seq_prob: float = 0.1) -> PairPlan:
    """Group each document's sentences into chunks of a sampled target length (>= 2 tokens each)."""
    max_tokens = seq_len - 3  # [CLS] A [SEP] B [SEP]
    if max_tokens < 2:
        raise CorpusError(f"seq_len={seq_len} leaves no room for a sentence pair; use seq_len >= 5")
    rng = np.random.default_rng([seed, epoch, 0])
    doc_offsets = np.asarray(doc_offsets, dtype=np.int64)
    sent_offsets = np.asarray(sent_offsets, dtype=np.int64)
    doc_first_sent = np.searchsorted(sent_offsets, doc_offsets)  # every document boundary is a sentence boundary
    so, first_sent = sent_offsets.tolist(), doc_first_sent.tolist()  # plain lists: fast scalar access
    starts, stops, docs, targets = [], [], [], []
    for d in range(len(doc_offsets) - 1):
        s, last = first_sent[d], first_sent[d + 1]
        while s < last:
            target = max_tokens if rng.random() >= short_seq_prob else int(rng.integers(2, max_tokens + 1))
            e = s + 1
            while e < last and so[e] - so[s] < target:
                e += 1
            if so[e] - so[s] >= 2:  # a lone one-token tail cannot be split in two
                starts.append(s), stops.append(e), docs.append(d), targets.append(target)
            s = e
    plan = PairPlan(*(np.asarray(a, dtype=np.int64) for a in (starts, stops, docs, targets)))
    if shuffle:
        order = np.random.default_rng([seed, epoch, 1]).permutation(plan.n_chunks)
        plan = PairPlan(*(a[order] for a in (plan.chunk_starts, plan.chunk_stops, plan.chunk_docs, plan.chunk_targets)))
    return plan


def truncate_pair(len_a: int, len_b: int, max_tokens: int) -> tuple[int, int]:
    """Longest-first: remove a token from the longer side (B on a tie) until the pair fits."""
    excess = len_a + len_b - max_tokens
    if excess <= 0:
        return len_a, len_b
    cut = min(excess, abs(len_a - len_b))
    if len_a > len_b:
        len_a -= cut
    else:
        len_b -= cut
    excess -= cut
    return len_a - excess // 2, len_b - (excess - excess // 2)


def make_pair(split, plan: PairPlan, j: int, kind: str, seed: int, epoch: int, max_tokens: int,
              doc_first_sent: np.ndarray, docs_with_text: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Example j of an epoch: (A tokens, B tokens, label), read from `split` only.

    doc_first_sent: (n_docs + 1,) index of each document's first sentence.
    docs_with_text: sorted ids of the documents that hold at least one token.
    """
    rng = np.random.default_rng([seed, epoch, 2, j])
    so = split.sent_offsets
    s0, s1, doc = int(plan.chunk_starts[j]), int(plan.chunk_stops[j]), int(plan.chunk_docs[j])
    t0, t1 = int(so[s0]), int(so[s1])
    inside = so[s0 + 1 : s1]
    inside = inside[(inside > t0) & (inside < t1)]  # sentence boundaries strictly inside the chunk
    if len(inside):
        a_end = int(inside[rng.integers(len(inside))])
    else:
        a_end = int(rng.integers(t0 + 1, t1))  # one long sentence: cut inside it
    b_start, b_end = a_end, t1
    label = int(rng.random() < 0.5)
    if kind == "nsp" and label == 1:
        # a span of another document, starting at one of its sentences
        k = int(rng.integers(len(docs_with_text) - 1))
        if k >= np.searchsorted(docs_with_text, doc):  # skip over this chunk's own document
            k += 1
        other = int(docs_with_text[k])
        b_start = int(so[rng.integers(doc_first_sent[other], doc_first_sent[other + 1])])
        want = max(1, int(plan.chunk_targets[j]) - (a_end - t0))
        b_end = min(int(split.doc_offsets[other + 1]), b_start + want)
    len_a, len_b = truncate_pair(a_end - t0, b_end - b_start, max_tokens)
    a = split.read(a_end - len_a, a_end)  # A loses tokens at its front, B at its back: the seam stays
    b = split.read(b_start, b_start + len_b)
    if kind == "sop" and label == 1:
        a, b = b, a
    return np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64), label


class PairLoader:
    """Endless, resumable stream of sentence-pair batches from one corpus split.

    next_batch() -> {input_ids, mask, segment_ids: (B, seq_len) int64; nsp_labels or sop_labels, row_seed: (B,)}.
    mask is 1 at real tokens and 0 at padding (one document per row). Same state_dict /
    load_state_dict as `PackedLoader`; `rank`/`world` give each process its own examples.
    """

    def __init__(self, split, seq_len: int, batch_size: int, special, kind: str = "nsp", seed: int = 0,
                 shuffle: bool = True, short_seq_prob: float = 0.1, rank: int = 0, world: int = 1):
        if kind not in KINDS:
            raise ValueError(f"unknown pair kind {kind!r}; choose nsp or sop")
        if not hasattr(split, "sent_offsets"):
            raise CorpusError(f"{kind} needs sentence boundaries (sent_offsets), which this corpus split lacks; "
                              "prepare the corpus again with this version of pretrainlab")
        self.split, self.seq_len, self.batch_size, self.special = split, seq_len, batch_size, special
        self.kind, self.seed, self.shuffle, self.short_seq_prob = kind, seed, shuffle, short_seq_prob
        self.rank, self.world = rank, world
        self.epoch, self.index = 0, 0
        self._plan: PairPlan | None = None
        self._plan_epoch = -1
        doc_offsets = np.asarray(split.doc_offsets, dtype=np.int64)
        self.doc_first_sent = np.searchsorted(np.asarray(split.sent_offsets, dtype=np.int64), doc_offsets)
        self.docs_with_text = np.flatnonzero(np.diff(doc_offsets) > 0)
        if kind == "nsp" and len(self.docs_with_text) < 2:
            raise CorpusError(f"nsp needs at least 2 documents in a split to draw random next sentences from; "
                              f"this split has {len(self.docs_with_text)}. Use sop, or give the split more documents "
                              "(for the validation split: raise data.val_fraction)")
        if self.examples_per_epoch < 1:
            raise CorpusError(f"the split gives {self.plan.n_chunks} sentence pairs, fewer than {world} processes"
                              if self.plan.n_chunks else "the split has no document of 2 or more tokens to make a pair from")

    @property
    def plan(self) -> PairPlan:
        if self._plan_epoch != self.epoch:
            self._plan = plan_pairs(self.split.doc_offsets, self.split.sent_offsets, self.seq_len, self.seed,
                                    self.epoch, self.shuffle, self.short_seq_prob)
            self._plan_epoch = self.epoch
        return self._plan

    @property
    def examples_per_epoch(self) -> int:
        return self.plan.n_chunks // self.world

    rows_per_epoch = examples_per_epoch  # the name PackedLoader uses

    def next_batch(self) -> dict[str, torch.Tensor]:
        B, T, s = self.batch_size, self.seq_len, self.special
        ids = np.full((B, T), s.pad, dtype=np.int64)
        mask = np.zeros((B, T), dtype=np.int64)
        seg = np.zeros((B, T), dtype=np.int64)
        labels = np.zeros(B, dtype=np.int64)
        seeds = np.empty(B, dtype=np.int64)
        for r in range(B):
            if self.index >= self.examples_per_epoch:
                self.epoch, self.index = self.epoch + 1, 0
            j = self.index * self.world + self.rank
            a, b, labels[r] = make_pair(self.split, self.plan, j, self.kind, self.seed, self.epoch, T - 3,
                                        self.doc_first_sent, self.docs_with_text)
            la, lb = len(a), len(b)
            ids[r, 0], ids[r, 1 : 1 + la], ids[r, 1 + la] = s.cls, a, s.sep
            ids[r, 2 + la : 2 + la + lb], ids[r, 2 + la + lb] = b, s.sep
            mask[r, : 3 + la + lb] = 1
            seg[r, 2 + la : 3 + la + lb] = 1
            seeds[r] = row_seed(self.seed, self.epoch, j)
            self.index += 1
        return {"input_ids": torch.from_numpy(ids), "mask": torch.from_numpy(mask),
                "segment_ids": torch.from_numpy(seg), f"{self.kind}_labels": torch.from_numpy(labels),
                "row_seed": torch.from_numpy(seeds)}

    def state_dict(self) -> dict[str, int | str]:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "seq_len": self.seq_len,
                "batch_size": self.batch_size, "world": self.world, "kind": self.kind}

    def load_state_dict(self, state: dict) -> None:
        if "index" not in state:
            raise CorpusError("the checkpoint's data position is for packed rows, not sentence pairs; "
                              "resume with the objectives the run was started with")
        if state.get("seq_len", self.seq_len) != self.seq_len or state.get("kind", self.kind) != self.kind:
            raise CorpusError(f"checkpoint data position is for {state.get('kind')} pairs of seq_len={state.get('seq_len')}, "
                              f"not {self.kind} pairs of seq_len={self.seq_len}")
        global_index = state["index"] * state.get("world", 1)  # another world size keeps the global position
        self.epoch, self.index = state["epoch"], global_index // self.world
