"""T5 span corruption, objective name `span`: collator + loss for an encoder-decoder.

    collator: round(noise_density * n) of a row's n tokens (default 15%) are noise, in
              round(noise / mean_span) spans (default mean length 3). Each noise span becomes
              one sentinel token in the input; the target lists the spans, each behind its sentinel:
                  tokens  a b c d e f g h       noise: c d, g
                  source  a b <s0> e f <s1> h [SEP]
                  target  <s0> c d <s1> g [SEP]
    head:     the model's output projection (tied to the token embedding)
    loss:     cross-entropy over every target token (objectives/denoise.py)

`span_noise_mask` is T5's `random_spans_noise_mask` (t5.data.preprocessors): span lengths are a
random composition of the noise count into the span count, likewise for the kept tokens, and kept
and noise spans alternate, starting with kept tokens. As in T5, the row therefore always ends in a
noise span. Sentinels are ids the caller reserves (T5's <extra_id_0>, <extra_id_1>, ...); a row
that needs more spans than there are sentinels is refused; pre-training checks the longest row
against the sentinel count before it starts (`check_sentinels`). In a packed row every document is
corrupted on its own, its sentinels counted from <extra_id_0>; a document of one token is copied (no
noise: the target is [SEP] alone).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from ..errors import ConfigError
from .denoise import Denoiser, pad_pairs


def span_counts(n: int, noise_density: float = 0.15, mean_span: float = 3.0) -> tuple[int, int]:
    """-> (noise tokens, noise spans) for a row of n >= 2 tokens, as T5 counts them."""
    n_noise = min(max(int(np.round(n * noise_density)), 1), n - 1)
    return n_noise, max(int(np.round(n_noise / mean_span)), 1)


def _random_segmentation(n_items: int, n_segments: int, rng: np.random.Generator) -> np.ndarray:
    """(n_segments,) positive lengths summing to n_items, uniformly among all such compositions."""
    first_in_segment = np.arange(n_items - 1) < n_segments - 1  # which of the n_items - 1 gaps start a segment
    rng.shuffle(first_in_segment)
    segment_id = np.cumsum(np.concatenate(([0], first_in_segment)))
    return np.bincount(segment_id, minlength=n_segments)


def span_noise_mask(n: int, rng: np.random.Generator, noise_density: float = 0.15,
                    mean_span: float = 3.0) -> np.ndarray:
    """(n,) bool, True = noise: T5's random_spans_noise_mask."""
    if n < 2:
        raise ValueError(f"span corruption needs rows of at least 2 tokens (one kept, one noise), got {n}")
    n_noise, n_spans = span_counts(n, noise_density, mean_span)
    noise_lengths = _random_segmentation(n_noise, n_spans, rng)
    kept_lengths = _random_segmentation(n - n_noise, n_spans, rng)
    interleaved = np.stack([kept_lengths, noise_lengths], axis=1).reshape(-1)  # kept, noise, kept, noise, ...
    starts = np.zeros(n, dtype=np.int64)
    starts[np.cumsum(interleaved)[:-1]] = 1
    return np.cumsum(starts) % 2 == 1  # odd-numbered runs are the noise spans


def corrupt_spans(tokens: np.ndarray, noise: np.ndarray, sentinels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """-> (source, target) without the closing [SEP]: span i is sentinels[i] in the source, and
    sentinels[i] followed by its tokens in the target."""
    tokens = np.asarray(tokens, dtype=np.int64)
    span_start = noise & ~np.concatenate(([False], noise[:-1]))  # (n,) first token of each noise span
    span_id = np.cumsum(span_start) - 1  # index of the span a noise token belongs to
    if span_start.sum() > len(sentinels):
        raise ConfigError(
            f"a row of {len(tokens)} tokens needs {int(span_start.sum())} noise spans but only {len(sentinels)} "
            "sentinel tokens are given; add sentinel tokens (T5 has 100), use shorter rows, or raise the mean "
            "span length / lower the noise density"
        )
    sentinel_at = np.asarray(sentinels, dtype=np.int64)[np.maximum(span_id, 0)]  # (n,) the sentinel of each span
    source = np.where(span_start, sentinel_at, tokens)[~noise | span_start]  # kept tokens + one sentinel per span
    target = np.stack([sentinel_at, tokens], axis=1)  # (n, 2): a span's first token gets its sentinel in front
    target = target.reshape(-1)[np.stack([span_start, noise], axis=1).reshape(-1)]
    return source, target


def check_sentinels(seq_len: int, n_sentinels: int, noise_density: float, mean_span: float) -> None:
    """Refuse, before training, rows of seq_len (their [CLS]/[SEP] aside) that need more spans than sentinels."""
    n = seq_len - 2
    need = span_counts(n, noise_density, mean_span)[1] if n >= 2 else 0
    if need > n_sentinels:
        raise ConfigError(
            f"objective span: a row of data.seq_len={seq_len} ({n} tokens of text) needs {need} noise spans at "
            f"span_noise_density={noise_density} and span_mean_length={mean_span}, but objective.span_sentinels="
            f"{n_sentinels}; raise objective.span_sentinels to at least {need}, lower data.seq_len, or raise "
            "objective.span_mean_length"
        )


class SpanCorruption(Denoiser):
    """T5 span corruption: `collate` corrupts rows into a batch, `loss` scores the decoder's logits;
    as an Objective, `prepare` corrupts each document of packed rows (objectives/denoise.py)."""

    name = "span"

    def __init__(self, *, sentinels: list[int], eos_id: int, pad_id: int, decoder_start_id: int,
                 noise_density: float = 0.15, mean_span: float = 3.0) -> None:
        super().__init__()
        if not 0 < noise_density < 1:
            raise ConfigError(f"span noise_density={noise_density} must be in (0, 1): the share of tokens corrupted")
        if mean_span < 1:
            raise ConfigError(f"span mean_span={mean_span} must be >= 1 (tokens per noise span)")
        if not sentinels:
            raise ConfigError("span corruption needs sentinel token ids (one per noise span in a row)")
        self.sentinels, self.eos_id, self.pad_id = list(sentinels), eos_id, pad_id
        self.decoder_start_id, self.noise_density, self.mean_span = decoder_start_id, noise_density, mean_span

    def max_spans(self, n: int) -> int:
        """Noise spans in a row of n tokens; compare with len(sentinels) before training."""
        return span_counts(n, self.noise_density, self.mean_span)[1]

    def corrupt(self, tokens: np.ndarray, rng: np.random.Generator, where: str = "a row") -> tuple[np.ndarray, np.ndarray]:
        """One row's tokens (no special tokens) -> (source, target), each ending with [SEP] (T5's </s>)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if len(tokens) < 2:  # nothing to keep beside a noise span: copied, nothing to write but the end
            return np.append(tokens, self.eos_id), np.array([self.eos_id], dtype=np.int64)
        need = self.max_spans(len(tokens))
        if need > len(self.sentinels):
            raise ConfigError(
                f"span: {where} has {len(tokens)} tokens, which at noise density {self.noise_density} and mean span "
                f"{self.mean_span} need {need} noise spans, but only {len(self.sentinels)} sentinel tokens are given; "
                "add sentinel tokens or use shorter rows"
            )
        noise = span_noise_mask(len(tokens), rng, self.noise_density, self.mean_span)
        source, target = corrupt_spans(tokens, noise, self.sentinels)
        return np.append(source, self.eos_id), np.append(target, self.eos_id)

    def collate(self, rows: list[np.ndarray], rng: np.random.Generator) -> dict[str, Tensor]:
        """Rows (token arrays without special tokens) -> a batch; each side ends with [SEP] (T5's </s>)."""
        pairs = [self.corrupt(tokens, rng, f"row {b}") for b, tokens in enumerate(rows)]
        return pad_pairs([s for s, _ in pairs], [t for _, t in pairs], pad_id=self.pad_id,
                         decoder_start_id=self.decoder_start_id)

    def pair(self, tokens: np.ndarray, offsets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One packed document -> (kept tokens and sentinels [SEP], sentinels and spans [SEP])."""
        return self.corrupt(tokens, rng, "a document")


def build(ctx) -> dict[str, SpanCorruption]:
    """span from objective.span_noise_density, span_mean_length and span_sentinels (the run's tokenizer has those
    sentinels: the last ids of its vocabulary, objectives.span_sentinel_ids)."""
    from . import span_sentinel_ids

    ctx.model_lm_head()
    s, sp = ctx.settings, ctx.special
    return {"span": SpanCorruption(sentinels=span_sentinel_ids(ctx.vocab_size, s["span_sentinels"]), eos_id=sp.sep,
                                   pad_id=sp.pad, decoder_start_id=ctx.backbone.decoder_start(sp.sep),
                                   noise_density=s["span_noise_density"],
                                   mean_span=s["span_mean_length"])}


def check_corpus(split, *, seq_len: int, settings, on, say: bool = True) -> None:
    """Refuse, before any work, rows that need more noise spans than there are sentinels."""
    check_sentinels(seq_len, settings["span_sentinels"], settings["span_noise_density"], settings["span_mean_length"])
