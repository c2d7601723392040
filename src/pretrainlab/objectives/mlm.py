"""Masked language modelling: collator (what to predict) + loss; the head is the model's (heads.MLMHead).

The collator picks `rate` of the real tokens (never special tokens or padding), replaces
80% of them with [MASK], 10% with a random token and leaves 10%. Whole-word masking picks
words and masks all their pieces. The vocabulary projection and the loss run ONLY at the
picked positions: with a 30k vocabulary the projection would otherwise dominate a small
model's cost (../shared/PERF.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..distributed import global_count, world_size
from .losses import SummedCrossEntropy, top_one


def mask_tokens(
    ids: Tensor,
    mask: Tensor,
    special_ids: tuple[int, ...],
    mask_id: int,
    vocab_size: int,
    rate: float,
    gen: torch.Generator,
    word_starts: Tensor | None = None,
    row_seeds: Tensor | None = None,
    split: tuple[float, float] = (0.8, 0.1),
) -> tuple[Tensor, Tensor, Tensor]:
    """-> (masked input ids, flat positions (N,), original ids at those positions (N,)).

    split: (share of the picked tokens replaced by [MASK], share replaced by a random token); the rest are kept.
    BERT's (0.8, 0.1); ELECTRA's generator input (0.85, 0.0) (MASKINGS).
    ids, mask: (B, T). word_starts: (B, T) bool, True where a token begins a word (for
    whole-word masking); None masks single tokens. row_seeds: (B,) int64, one seed per row, so
    that a row's mask depends on the row alone (not on which process or batch it lands in): a batch
    may then have nothing to predict (a process's share of a batch of short rows). Without them every
    draw comes from `gen`, and a batch with nothing picked gets one token picked (its lowest draw).
    """
    B, T = ids.shape
    n_special = max(special_ids) + 1
    if row_seeds is None:
        select = torch.rand(B, T, generator=gen)
        roll = torch.rand(B, T, generator=gen)
        random_ids = torch.randint(n_special, vocab_size, (B, T), generator=gen)
    else:
        draws = [_row_draws(int(s), T, n_special, vocab_size) for s in row_seeds.tolist()]
        select, roll, random_ids = (torch.stack(x) for x in zip(*draws))
    candidate = mask != 0
    for s in special_ids:
        candidate &= ids != s
    if word_starts is None:
        picked = (select < rate) & candidate
    else:
        # a word is picked by the draw at its first token; all its pieces follow
        starts = (word_starts | ~candidate).reshape(-1)
        starts[0] = True
        word_id = starts.cumsum(0) - 1  # (B*T,)
        pick_word = torch.zeros(int(word_id[-1]) + 1, dtype=torch.bool)
        pick_word[word_id[starts]] = select.reshape(-1)[starts] < rate
        picked = pick_word[word_id].reshape(B, T) & candidate
    if row_seeds is None and not picked.any():  # always predict something, so every batch has a loss
        flat_cand = candidate.reshape(-1).nonzero().squeeze(1)
        if len(flat_cand) == 0:
            raise ValueError("batch has no maskable tokens (only special tokens or padding)")
        picked = picked.reshape(-1).clone()
        picked[flat_cand[select.reshape(-1)[flat_cand].argmin()]] = True
        picked = picked.reshape(B, T)
    positions = picked.reshape(-1).nonzero().squeeze(1)
    labels = ids.reshape(-1)[positions]
    r = roll.reshape(-1)[positions]
    replaced = ids.reshape(-1).clone()
    to_mask, to_random = split
    replaced[positions[r < to_mask]] = mask_id
    rand_pos = positions[(r >= to_mask) & (r < to_mask + to_random)]
    replaced[rand_pos] = random_ids.reshape(-1)[rand_pos]
    return replaced.reshape(B, T), positions, labels


MASKINGS = {"bert": (0.8, 0.1), "electra": (0.85, 0.0)}
"""What replaces a picked token: (share [MASK], share a random token), the rest kept: BERT's 80/10/10, ELECTRA's
85% [MASK] and 15% kept (google-research/electra, pretrain_helpers.mask)."""


def _row_draws(seed: int, T: int, low: int, high: int) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, generator=g), torch.rand(T, generator=g), torch.randint(low, high, (T,), generator=g)


def salted(row_seeds: Tensor, salt: int) -> Tensor:
    """(B,) seeds for another random choice than the MLM mask of the same rows (PLM's order, RTD's
    mask and samples): a different stream per salt, still a function of the row alone."""
    return torch.tensor([(s * 0x9E3779B97F4A7C15 + salt) % (1 << 62) for s in row_seeds.tolist()], dtype=torch.int64)


def row_rand(row_seeds: Tensor, T: int) -> Tensor:
    """(B, T) uniform draws in [0, 1), row b from its own seed."""
    return torch.stack([torch.rand(T, generator=torch.Generator().manual_seed(s)) for s in row_seeds.tolist()])


@dataclass(frozen=True)
class MaskRate:
    """The share of tokens masked: `start` at the beginning of the budget, moving linearly to `end` at its end
    (objective.mask_rate -> objective.mask_rate_end; GPT-BERT: 0.3 -> 0.15). A function of the budget's progress,
    as the learning rate is: of the step for a step budget, so resumed runs mask exactly as uninterrupted ones."""

    start: float
    end: float

    def at(self, progress: float) -> float:
        return self.start + (self.end - self.start) * min(max(progress, 0.0), 1.0)


class MLM(nn.Module):
    """The MLM objective: `prepare` masks a batch, `loss` scores the picked positions with the model's MLM head."""

    name = "mlm"
    uses_shared_forward = True
    reads = "rows"
    word_start_table: Tensor | None = None
    """(vocab,) bool from tokenizer.word_start_table; needed for whole-word masking."""

    def __init__(self, vocab_size: int, special_ids: tuple[int, ...], mask_id: int, rate: float | MaskRate = 0.15,
                 whole_word: bool = False):
        super().__init__()
        self.special_ids, self.mask_id, self.vocab_size = tuple(special_ids), mask_id, vocab_size
        self.rate = rate if isinstance(rate, MaskRate) else MaskRate(rate, rate)
        self.whole_word = whole_word

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator, progress: float = 1.0) -> dict[str, Tensor]:
        word_starts = None
        if self.whole_word:
            if self.word_start_table is None:
                raise ValueError("whole-word masking needs MLM.word_start_table (tokenizer.word_start_table)")
            word_starts = self.word_start_table[batch["input_ids"]]
        masked, positions, labels = mask_tokens(
            batch["input_ids"], batch["mask"], self.special_ids, self.mask_id, self.vocab_size,
            self.rate.at(progress), gen, word_starts, batch.get("row_seed"),
        )
        return {**batch, "original_ids": batch["input_ids"], "input_ids": masked,
                "mlm_positions": positions, "mlm_labels": labels}

    def loss(self, model: nn.Module, out, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        hidden = out.hidden
        h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch["mlm_positions"])  # (N, D)
        logits = model.lm_head(h).float()  # (N, V)
        # mean over the masked tokens of the GLOBAL batch (all ranks), so data parallelism
        # over N processes trains exactly like one process with an N times larger batch
        # (a process may have no masked token of its own: its share is 0, not a NaN)
        n, n_all = len(batch["mlm_labels"]), global_count(len(batch["mlm_labels"]), logits.device)
        loss = SummedCrossEntropy.apply(logits, batch["mlm_labels"]) * (world_size() / max(n_all, 1))
        acc = top_one(logits, batch["mlm_labels"]).float().sum() / max(n, 1)
        return loss, {"mlm_loss": loss.detach(), "mlm_acc": acc.detach()}


def schedule(settings) -> MaskRate:
    """objective.mask_rate, moving to objective.mask_rate_end over the budget (0: it stays): mlm's and rtd's."""
    return MaskRate(settings["mask_rate"], settings["mask_rate_end"] or settings["mask_rate"])


def build(ctx) -> dict[str, nn.Module]:
    """mlm from objective.mask_rate (-> mask_rate_end) and objective.whole_word; it scores with the model's MLM head."""
    ctx.model_lm_head()
    return {"mlm": MLM(ctx.vocab_size, ctx.special.all, ctx.special.mask, schedule(ctx.settings),
                       ctx.settings["whole_word"])}
