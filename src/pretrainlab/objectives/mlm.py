"""Masked language modelling: collator (what to predict) + head + loss.

The collator picks `rate` of the real tokens (never special tokens or padding), replaces
80% of them with [MASK], 10% with a random token and leaves 10%. Whole-word masking picks
words and masks all their pieces. The vocabulary projection and the loss run ONLY at the
picked positions: with a 30k vocabulary the projection would otherwise dominate a small
model's cost (../shared/PERF.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mask_tokens(
    ids: Tensor,
    mask: Tensor,
    special_ids: tuple[int, ...],
    mask_id: int,
    vocab_size: int,
    rate: float,
    gen: torch.Generator,
    word_starts: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """-> (masked input ids, flat positions (N,), original ids at those positions (N,)).

    ids, mask: (B, T). word_starts: (B, T) bool, True where a token begins a word (for
    whole-word masking); None masks single tokens.
    """
    B, T = ids.shape
    candidate = mask != 0
    for s in special_ids:
        candidate &= ids != s
    if word_starts is None:
        picked = (torch.rand(B, T, generator=gen) < rate) & candidate
    else:
        # a word id per token: cumulative count of word starts (a new document also starts a word)
        starts = (word_starts | ~candidate).clone()
        word_id = starts.reshape(-1).cumsum(0).reshape(B, T)
        n_words = int(word_id.max()) + 1
        pick_word = torch.rand(n_words, generator=gen) < rate
        picked = pick_word[word_id] & candidate
    if not picked.any():  # always predict something, so every batch has a loss
        flat_cand = candidate.reshape(-1).nonzero().squeeze(1)
        if len(flat_cand) == 0:
            raise ValueError("batch has no maskable tokens (only special tokens or padding)")
        one = flat_cand[torch.randint(len(flat_cand), (1,), generator=gen)]
        picked = picked.reshape(-1).clone()
        picked[one] = True
        picked = picked.reshape(B, T)
    positions = picked.reshape(-1).nonzero().squeeze(1)
    labels = ids.reshape(-1)[positions]
    roll = torch.rand(len(positions), generator=gen)
    replaced = ids.reshape(-1).clone()
    replaced[positions[roll < 0.8]] = mask_id
    rand_pos = positions[(roll >= 0.8) & (roll < 0.9)]
    replaced[rand_pos] = torch.randint(len(special_ids), vocab_size, (len(rand_pos),), generator=gen)
    return replaced.reshape(B, T), positions, labels


class MLMHead(nn.Module):
    """BERT's prediction head: dense -> GELU -> LayerNorm -> decoder tied to the embeddings."""

    def __init__(self, d_model: int, vocab_size: int, embedding: nn.Embedding, eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.embedding = embedding  # tied: shares the token embedding's weight
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: Tensor) -> Tensor:
        h = self.norm(F.gelu(self.dense(h)))
        return F.linear(h, self.embedding.weight, self.bias)


class MLM(nn.Module):
    """The MLM objective: `prepare` masks a batch, `loss` scores the picked positions."""

    name = "mlm"
    uses_shared_forward = True

    def __init__(self, d_model: int, vocab_size: int, embedding: nn.Embedding, special_ids: tuple[int, ...],
                 mask_id: int, rate: float = 0.15, whole_word: bool = False):
        super().__init__()
        self.head = MLMHead(d_model, vocab_size, embedding)
        self.special_ids, self.mask_id, self.vocab_size = tuple(special_ids), mask_id, vocab_size
        self.rate, self.whole_word = rate, whole_word

    word_start_table: Tensor | None = None
    """(vocab,) bool from tokenizer.word_start_table; needed for whole-word masking."""

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator) -> dict[str, Tensor]:
        word_starts = None
        if self.whole_word:
            if self.word_start_table is None:
                raise ValueError("whole-word masking needs MLM.word_start_table (tokenizer.word_start_table)")
            word_starts = self.word_start_table[batch["input_ids"]]
        masked, positions, labels = mask_tokens(
            batch["input_ids"], batch["mask"], self.special_ids, self.mask_id, self.vocab_size, self.rate, gen,
            word_starts,
        )
        return {**batch, "original_ids": batch["input_ids"], "input_ids": masked,
                "mlm_positions": positions, "mlm_labels": labels}

    def loss(self, backbone: nn.Module, out, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        hidden = out.hidden
        h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch["mlm_positions"])  # (N, D)
        logits = self.head(h).float()  # (N, V)
        loss = F.cross_entropy(logits, batch["mlm_labels"])
        acc = (logits.argmax(-1) == batch["mlm_labels"]).float().mean()
        return loss, {"mlm_loss": loss.detach(), "mlm_acc": acc.detach()}
