"""BART text infilling, objective name `infill`: collator + loss for an encoder-decoder.

    collator: ceil(mask_ratio * n) of a document's n tokens (default 30%) fall in spans whose
              lengths are drawn from Poisson(poisson_lambda = 3); each span becomes ONE [MASK] in
              the encoder's input, so the model must also infer how many tokens are missing. A
              zero-length span inserts a [MASK] where nothing is missing (as BART does).
              source = [CLS] corrupted [SEP], target = [CLS] original [SEP]
    head:     the model's output projection (tied to the token embedding)
    loss:     cross-entropy over every target token (objectives/denoise.py)

Spans are drawn as BART's fairseq code draws them (lengths until the budget is reached, the last
one cut to fit it), then placed uniformly among the kept tokens with at least one kept token
between two spans, so that every span stays its own [MASK] (fairseq lets overlapping spans merge
into fewer masks). BART's released models also replace 10% of the masked spans by a random token
(`mask_random`); the issue asks for one mask token per span, so this one does not.

In pre-training (`Denoiser.prepare` on packed rows) a document's source is never longer than the
document itself: insertions (length-0 spans) beyond what the hidden tokens make room for are dropped
(`max_spans`; rare: it takes more zero-length draws than tokens hidden), so that a packed source row
always fits where its target row does (data.seq_len <= model.max_len).
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from .denoise import Denoiser, pad_pairs, seq2seq_ids, with_ends


def infill_spans(n: int, rng: np.random.Generator, mask_ratio: float = 0.3,
                 poisson_lambda: float = 3.0, max_spans: int | None = None) -> list[tuple[int, int]]:
    """(start, length) spans over n tokens, sorted, lengths summing to ceil(mask_ratio * n).

    Between two spans there is at least one kept token; a length-0 span at `start` means "insert a
    [MASK] before token start". max_spans: drop length-0 spans (the last drawn first) until at most
    that many spans are left (the hidden tokens' count keeps the infilled text no longer than n).
    """
    budget = math.ceil(mask_ratio * n)
    lengths: list[int] = []
    while sum(lengths) < budget:
        lengths.append(int(rng.poisson(poisson_lambda)))
    if lengths:
        lengths[-1] -= sum(lengths) - budget  # cut the last span to the budget (it may become 0)
    if max_spans is not None:
        while len(lengths) > max_spans and 0 in lengths:
            del lengths[len(lengths) - 1 - lengths[::-1].index(0)]  # the last insertion
    kept = n - budget
    while len(lengths) > kept + 1:  # more spans than gaps between kept tokens: merge the last two
        lengths[-2:] = [lengths[-2] + lengths[-1]]
    # a span sits in one of the kept + 1 gaps (before kept token g, or at the end), one span per gap
    gaps = np.sort(rng.choice(kept + 1, size=len(lengths), replace=False))
    spans, masked_before = [], 0
    for gap, length in zip(gaps.tolist(), lengths):
        spans.append((gap + masked_before, length))
        masked_before += length
    return spans


def apply_spans(tokens: np.ndarray, spans: list[tuple[int, int]], mask_id: int) -> np.ndarray:
    """Replace each (start, length) span of tokens (T,) by one mask_id (a length-0 span inserts one)."""
    pieces, prev = [], 0
    for start, length in spans:
        pieces += [tokens[prev:start], [mask_id]]
        prev = start + length
    pieces.append(tokens[prev:])
    return np.concatenate([np.asarray(p, dtype=np.int64) for p in pieces])


class Infill(Denoiser):
    """Text infilling: `collate` corrupts documents into a batch, `loss` scores the decoder's logits;
    as an Objective, `prepare` corrupts each document of packed rows (objectives/denoise.py)."""

    name = "infill"

    def __init__(self, *, mask_id: int, bos_id: int, eos_id: int, pad_id: int, decoder_start_id: int,
                 mask_ratio: float = 0.3, poisson_lambda: float = 3.0) -> None:
        super().__init__()
        if not 0 <= mask_ratio < 1:
            raise ValueError(f"infill mask_ratio={mask_ratio} must be in [0, 1): the share of tokens hidden in spans")
        if poisson_lambda <= 0:
            raise ValueError(f"infill poisson_lambda={poisson_lambda} must be positive: the mean span length")
        self.mask_id, self.bos_id, self.eos_id, self.pad_id = mask_id, bos_id, eos_id, pad_id
        self.decoder_start_id, self.mask_ratio, self.poisson_lambda = decoder_start_id, mask_ratio, poisson_lambda

    def noise(self, tokens: np.ndarray, rng: np.random.Generator, no_longer: bool = False) -> np.ndarray:
        """One document's tokens (no special tokens) -> its infilled version (no_longer: at most as long)."""
        max_spans = math.ceil(self.mask_ratio * len(tokens)) if no_longer else None
        spans = infill_spans(len(tokens), rng, self.mask_ratio, self.poisson_lambda, max_spans)
        return apply_spans(tokens, spans, self.mask_id)

    def pair(self, tokens: np.ndarray, offsets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One packed document -> ([CLS] infilled [SEP], [CLS] tokens [SEP])."""
        source = self.noise(tokens, rng, no_longer=True)
        return with_ends(source, self.bos_id, self.eos_id), with_ends(tokens, self.bos_id, self.eos_id)

    def collate(self, docs: list[np.ndarray], rng: np.random.Generator) -> dict[str, Tensor]:
        """Documents (token arrays without special tokens) -> a batch (see denoise.pad_pairs)."""
        sources = [with_ends(self.noise(np.asarray(d, dtype=np.int64), rng), self.bos_id, self.eos_id) for d in docs]
        targets = [with_ends(d, self.bos_id, self.eos_id) for d in docs]
        return pad_pairs(sources, targets, pad_id=self.pad_id, decoder_start_id=self.decoder_start_id)


def from_settings(ctx) -> Infill:
    """Infill from objective.infill_mask_ratio and infill_poisson_lambda (for permute too: BART's infill+permute)."""
    s = ctx.settings
    return Infill(mask_id=ctx.special.mask, mask_ratio=s["infill_mask_ratio"],
                  poisson_lambda=s["infill_poisson_lambda"], **seq2seq_ids(ctx.special, ctx.backbone))


def build(ctx) -> dict[str, Denoiser]:
    """infill; with permute on as well, permute builds the two as one (infill+permute, BART's recipe)."""
    if "permute" in ctx.on:
        return {}
    ctx.model_lm_head()
    return {"infill": from_settings(ctx)}
