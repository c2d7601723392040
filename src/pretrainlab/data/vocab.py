"""data.vocab_size=0 (the default): `prepare` proposes the vocabulary size from the corpus's word count.

    proposal = propose_vocab_size(texts())   # the corpus's documents, one pass
    proposal.size, proposal.line()           # 3072, "vocabulary: 3,072 tokens proposed for 2.3M words (...)"

ELC-BERT (Charpentier & Samuel 2023, the BabyLM 2023 winner) chose the vocabulary by F95, the corpus frequency of
the subword at the 95th percentile of the vocabulary sorted by frequency, which should stay around 100 so that
nearly every subword is seen often enough to learn (ltgoslo/elc-bert, tokenizers/README.md): 6,144 tokens on the
10M-word corpus (F95 104; 68 at 8,192) and 16,384 on the 100M-word one. Measured literally with our WordPiece
trainer, F95 is dominated by the intermediate merges a trained vocabulary keeps (`contro`, `##ially`, `rehabil`:
pieces of longer tokens, rarely used on their own) and by the trainer's settings: on the SOTU speeches (2.3M words)
it is 57 at 1,024 tokens and 8 at 6,144, so the rule taken literally would give every corpus here the smallest size.
What carries over is the outcome: the vocabulary grows as a power of the corpus, through ELC-BERT's two choices,

    size = 6,144 x (words / 10M) ^ 0.426          (0.426 = log(16,384 / 6,144) / log 10)

rounded to a multiple of 1,024 (aligned embedding matmuls) within [1,024, 32,768]: 3,072 for 2.3M words, 4,096 for
the demo's ~3.3M, 6,144 for 10M, 16,384 for 100M. Words are whitespace-separated, as BabyLM counts them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

ANCHOR_WORDS, ANCHOR_SIZE = 10_000_000, 6144
"""ELC-BERT's strict-small choice: 6,144 tokens for 10M words."""
EXPONENT = math.log(16384 / 6144) / math.log(10)
"""Through its strict choice too: 16,384 tokens for 100M words (10x the words, 2.67x the vocabulary)."""
ROUND_TO, SMALLEST, LARGEST = 1024, 1024, 32768


@dataclass(frozen=True)
class VocabProposal:
    size: int
    words: int
    """Whitespace-separated words in the corpus's documents (after deduplication)."""

    def line(self) -> str:
        return (f"vocabulary: {self.size:,} tokens proposed for {_millions(self.words)} words (ELC-BERT's choices "
                f"scaled: 6,144 at 10M words, 16,384 at 100M; data/vocab.py); set data.vocab_size to choose another")

    def to_dict(self) -> dict:
        return {"size": self.size, "words": self.words, "rule": "6144 * (words / 1e7) ** 0.426, to a multiple of 1024"}


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,}"


def proposed_size(words: int) -> int:
    raw = ANCHOR_SIZE * (max(words, 1) / ANCHOR_WORDS) ** EXPONENT
    return int(min(LARGEST, max(SMALLEST, ROUND_TO * round(raw / ROUND_TO))))


def propose_vocab_size(texts: Iterable[str]) -> VocabProposal:
    words = sum(len(t.split()) for t in texts)
    return VocabProposal(proposed_size(words), words)
