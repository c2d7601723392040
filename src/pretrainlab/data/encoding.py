"""Task texts -> model inputs: `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]` (segments 0 / 1), cut
longest-first to max_len tokens, then padded batches.

    enc = encode(tokenizer, texts, pairs, max_len, labels)   # unpadded ids per example
    batch = collate(enc, [0, 5, 7], pad_id, segments=True)   # input_ids, mask, segment_ids, labels
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .tasks import TaskSplit


@dataclass
class Encoded:
    """A tokenized split: token ids and segment ids per example (unpadded), and label ids."""

    ids: list[list[int]]
    segments: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.ids)


def tokenize(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, max_len: int) -> list:
    """The `tokenizers.Encoding` of each text (or text pair), with [CLS]/[SEP], cut longest-first to max_len.

    The tokenizer's own truncation and padding are set for the call and put back after it (they must
    not leak into the caller's); a copy would cost more than encoding one short text (~2 ms at 8k tokens).
    """
    truncation, padding = tokenizer.truncation, tokenizer.padding
    try:
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_len, strategy="longest_first")
        return tokenizer.encode_batch(list(zip(texts, pairs)) if pairs is not None else list(texts))
    finally:
        if truncation is None:
            tokenizer.no_truncation()
        else:
            tokenizer.enable_truncation(**truncation)
        if padding is not None:
            tokenizer.enable_padding(**padding)


def encode(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, max_len: int,
           labels: Sequence[int] | None = None) -> Encoded:
    """`[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]` (segments 0 / 1), cut longest-first to max_len tokens."""
    encs = tokenize(tokenizer, texts, pairs, max_len)
    labels = list(labels) if labels is not None else [0] * len(encs)
    return Encoded([e.ids for e in encs], [e.type_ids for e in encs], labels)


def encode_split(tokenizer, split: TaskSplit, max_len: int) -> Encoded:
    return encode(tokenizer, split.texts, split.pairs, max_len, split.labels)


def collate(enc: Encoded, idx: Sequence[int], pad_id: int, segments: bool) -> dict[str, Tensor]:
    """Pad the picked examples to the longest of them: input_ids, mask (0/1), [segment_ids], labels.

    Each tensor is built from padded lists in one call (not row by row): cheaper at small batches.
    """
    lens = [len(enc.ids[i]) for i in idx]
    pads = [max(lens) - n for n in lens]
    ids = torch.tensor([[*enc.ids[i], *[pad_id] * k] for i, k in zip(idx, pads)], dtype=torch.long)
    mask = torch.tensor([[1] * n + [0] * k for n, k in zip(lens, pads)], dtype=torch.long)
    batch = {"input_ids": ids, "mask": mask, "labels": torch.tensor([enc.labels[i] for i in idx])}
    if segments:
        batch["segment_ids"] = torch.tensor([[*enc.segments[i], *[0] * k] for i, k in zip(idx, pads)], dtype=torch.long)
    return batch
