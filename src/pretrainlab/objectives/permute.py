"""BART sentence permutation, objective name `permute`: collator + loss for an encoder-decoder.

    collator: a document's sentences are put in a uniformly random order (as BART does, the
              identity order included); optionally the shuffled document is then infilled
              (`Permute(..., infill=Infill(...))`, BART's own recipe: permute, then infill).
              source = [CLS] shuffled [and infilled] [SEP], target = [CLS] original [SEP]
    head:     the model's output projection (tied to the token embedding)
    loss:     cross-entropy over every target token (objectives/denoise.py): the decoder restores
              the original order

Sentence boundaries come from `prepare`, which stores them per corpus split (`sent_offsets`, a
superset of `doc_offsets`); `document_sentences` cuts one document's out of those arrays.
A one-sentence document has nothing to shuffle: in a batch it is only copied (or infilled); a
batch made of nothing else is refused. `one_sentence_documents` counts them for a corpus check
(pre-training refuses a corpus made of nothing else before it starts, saying how many there are).
In pre-training the packed loader marks the tokens that begin a sentence (`sent_start`); a long
document's chunk has the sentences inside it, its first token counting as a start.

With `infill`, the objective is BART's combination, named `infill+permute`.
"""

from __future__ import annotations

import logging

import numpy as np
from torch import Tensor

from ..errors import ConfigError, CorpusError
from .denoise import Denoiser, pad_pairs, seq2seq_ids, with_ends
from .infill import Infill, from_settings

log = logging.getLogger(__name__)


def document_sentences(doc_offsets: np.ndarray, sent_offsets: np.ndarray, d: int) -> np.ndarray:
    """(n_sents + 1,) sentence boundaries of document d, relative to its first token (0 ... length)."""
    lo, hi = int(doc_offsets[d]), int(doc_offsets[d + 1])
    sent_offsets = np.asarray(sent_offsets, dtype=np.int64)
    first, last = np.searchsorted(sent_offsets, [lo, hi])  # every document boundary is a sentence boundary
    return sent_offsets[first : last + 1] - lo


def one_sentence_documents(doc_offsets: np.ndarray, sent_offsets: np.ndarray) -> int:
    """How many documents of a split hold fewer than two sentences (nothing to permute)."""
    firsts = np.searchsorted(np.asarray(sent_offsets, dtype=np.int64), np.asarray(doc_offsets, dtype=np.int64))
    return int((np.diff(firsts) < 2).sum())


def permute_sentences(tokens: np.ndarray, offsets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """-> (tokens with their sentences in a random order, that order).

    offsets (n_sents + 1,): sentence boundaries, 0 first and len(tokens) last. order[i] is the
    original index of the i-th sentence of the output, so sentence order[i] moved to place i.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    if len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(tokens) or (np.diff(offsets) < 0).any():
        raise ValueError(f"sentence offsets {offsets.tolist()} must rise from 0 to the document's length {len(tokens)}")
    order = rng.permutation(len(offsets) - 1)
    return np.concatenate([tokens[offsets[j] : offsets[j + 1]] for j in order]), order


class Permute(Denoiser):
    """Sentence permutation [+ infilling]: `collate` builds the batch, `loss` scores the decoder's logits;
    as an Objective, `prepare` permutes each document of packed rows (objectives/denoise.py)."""

    name = "permute"
    reads = "sentences"  # packed rows with the tokens that begin a sentence marked (sent_start)

    def __init__(self, *, bos_id: int, eos_id: int, pad_id: int, decoder_start_id: int,
                 infill: Infill | None = None) -> None:
        super().__init__()
        if infill is not None:
            self.name = "infill+permute"
        self.bos_id, self.eos_id, self.pad_id, self.decoder_start_id = bos_id, eos_id, pad_id, decoder_start_id
        self.infill = infill
        """Infill the shuffled document as well (BART's permute + infill), or None for permutation alone."""

    def collate(self, docs: list[np.ndarray], sentence_offsets: list[np.ndarray],
                rng: np.random.Generator) -> dict[str, Tensor]:
        """Documents (token arrays without special tokens) and their sentence offsets -> a batch."""
        n_single = sum(len(o) < 3 for o in sentence_offsets)
        if n_single == len(docs):
            raise CorpusError(
                f"permute got a batch of {len(docs)} documents that all have one sentence, so there is nothing to "
                "reorder; use a corpus whose documents have several sentences, or infill / span for this one"
            )
        sources = []
        for tokens, offsets in zip(docs, sentence_offsets):
            shuffled, _ = permute_sentences(np.asarray(tokens, dtype=np.int64), offsets, rng)
            if self.infill is not None:
                shuffled = self.infill.noise(shuffled, rng)
            sources.append(with_ends(shuffled, self.bos_id, self.eos_id))
        targets = [with_ends(d, self.bos_id, self.eos_id) for d in docs]
        return pad_pairs(sources, targets, pad_id=self.pad_id, decoder_start_id=self.decoder_start_id)

    def pair(self, tokens: np.ndarray, offsets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One packed document -> ([CLS] shuffled [and infilled] [SEP], [CLS] tokens [SEP])."""
        shuffled, _ = permute_sentences(tokens, offsets, rng)
        if self.infill is not None:
            shuffled = self.infill.noise(shuffled, rng, no_longer=True)
        return with_ends(shuffled, self.bos_id, self.eos_id), with_ends(tokens, self.bos_id, self.eos_id)

    def prepare(self, batch: dict[str, Tensor], gen, progress: float = 1.0) -> dict[str, Tensor]:
        if "sent_start" not in batch:
            raise ValueError("permute needs the packed loader's sentence starts: PackedLoader(..., sentences=True)")
        return super().prepare(batch, gen, progress)


def build(ctx) -> dict[str, Permute]:
    """permute, or infill+permute (BART's two corruptions as one objective, weight 1) when infill is on too."""
    ctx.model_lm_head()
    objective = Permute(**seq2seq_ids(ctx.special, ctx.backbone), infill=from_settings(ctx) if "infill" in ctx.on else None)
    return {objective.name: objective}


def check_corpus(split, *, seq_len: int, settings, on, say: bool = True) -> None:
    """Refuse, before any work, a corpus whose training documents all have one sentence (nothing to reorder);
    say how many have one."""
    single = one_sentence_documents(split.doc_offsets, split.sent_offsets)
    if single == split.n_docs:
        raise ConfigError(
            f"objective permute shuffles a document's sentences, but all {single:,} training documents of the "
            "corpus have one sentence (nothing to reorder); use objective.weights={infill: 1.0} (or span) for "
            "this corpus, or prepare one whose documents hold several sentences"
        )
    if single and say:
        log.info(f"note: {single:,} of {split.n_docs:,} training documents have one sentence; permute copies them "
                 "unshuffled" + (" (still infilled)" if "infill" in on else ""))
