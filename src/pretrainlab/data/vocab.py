"""data.vocab_size=0 (the default): `prepare` proposes the vocabulary size from the corpus's word count.

    proposal = propose_vocab_size(texts())   # the corpus's documents, one pass
    proposal.size, proposal.line()           # 8192, "vocabulary: 8,192 tokens proposed for 2.2M words (...)"

The rule is a power of the corpus, its level measured here and its growth taken from ELC-BERT:

    size = 8,192 x (words / 2.5M) ^ 0.426

rounded to a multiple of 1,024 (aligned embedding matmuls) within [1,024, 32,768]: 2,048 for 100k words, 5,120 for
1M, 8,192 for the demo's 2.2M and the race's 2.6M, 14,336 for 10M, 32,768 from ~65M. Words are whitespace-separated,
as BabyLM counts them.

**The level: measured.** In the recipe race (benchmarks/results/race.md, recipe `v3k`) the default at 5 minutes on
the race's corpus (SOTU + MR + tweets, 2.6M words) with 3,072 tokens, where ELC-BERT's choices scaled down put it,
lost to the same run with 8,192 by 1.9 and 3.1 points at 300 labels on MR's and tweets' validation splits and tied
at 1,000 (-0.1, +0.9), although the smaller vocabulary trains 19% more tokens/s and reads the corpus as 17% more
tokens. A tiny model's few-label transfer needs the rarer words as tokens of their own more than it needs each
token seen often.

**The growth: ELC-BERT's.** ELC-BERT (Charpentier & Samuel 2023, the BabyLM 2023 winner) chose 6,144 tokens for
its 10M-word corpus and 16,384 for the 100M one (ltgoslo/elc-bert, tokenizers/README.md): 10x the words, 2.67x
the vocabulary, an exponent of 0.426. Their level is lower than ours (6,144 at 10M words against our 14,336), for a
base-size model and GLUE; ours is only measured at 2.2-2.6M words, so above that it is an extrapolation. Their
criterion, F95 (the corpus frequency of the subword at the 95th percentile of the vocabulary sorted by frequency,
kept around 100), does not carry over literally: with our WordPiece trainer it is dominated by the intermediate
merges a trained vocabulary keeps (`contro`, `##ially`: pieces of longer tokens, rarely used on their own) and is
57 at 1,024 tokens and 8 at 6,144 on SOTU, so it would give every corpus here the smallest size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

ANCHOR_WORDS, ANCHOR_SIZE = 2_500_000, 8192
"""Measured: 8,192 tokens beat 3,072 at 300 labels on the race's 2.6M-word corpus (benchmarks/results/race.md)."""
EXPONENT = math.log(16384 / 6144) / math.log(10)
"""ELC-BERT's growth: 6,144 tokens for 10M words, 16,384 for 100M (10x the words, 2.67x the vocabulary)."""
ROUND_TO, SMALLEST, LARGEST = 1024, 1024, 32768


@dataclass(frozen=True)
class VocabProposal:
    size: int
    words: int
    """Whitespace-separated words in the corpus's documents (after deduplication)."""

    def line(self) -> str:
        return (f"vocabulary: {self.size:,} tokens proposed for {_millions(self.words)} words (8,192 at 2.5M words, "
                f"growing as ELC-BERT's choices do; data/vocab.py); set data.vocab_size to choose another")

    def to_dict(self) -> dict:
        return {"size": self.size, "words": self.words, "rule": "8192 * (words / 2.5e6) ** 0.426, to a multiple of 1024"}


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,}"


def proposed_size(words: int) -> int:
    raw = ANCHOR_SIZE * (max(words, 1) / ANCHOR_WORDS) ** EXPONENT
    return int(min(LARGEST, max(SMALLEST, ROUND_TO * round(raw / ROUND_TO))))


def propose_vocab_size(texts: Iterable[str]) -> VocabProposal:
    words = sum(len(t.split()) for t in texts)
    return VocabProposal(proposed_size(words), words)
