"""Masked language modelling: collator (what to predict) + loss; the head is the model's (heads.MLMHead).

The collator picks `rate` of the real tokens (never special tokens or padding), replaces
80% of them with [MASK], 10% with a random token and leaves 10%. Whole-word masking picks
words and masks all their pieces. Span masking (LTG-BERT, Samuel et al. 2023; SpanBERT) picks
runs of tokens of geometric length (objective.mask_span: their mean) and makes the 80/10/10
choice once per span. The vocabulary projection and the loss run ONLY at the picked
positions: with a 30k vocabulary the projection would otherwise dominate a small model's cost
(../shared/PERF.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..distributed import global_count, world_size
from .losses import SummedCrossEntropy, top_one
from .spec import SPAN_CAP


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
    span: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """-> (masked input ids, flat positions (N,), original ids at those positions (N,)).

    split: (share of the picked tokens replaced by [MASK], share replaced by a random token); the rest are kept.
    BERT's (0.8, 0.1); ELECTRA's generator input (0.85, 0.0) (MASKINGS).
    ids, mask: (B, T). word_starts: (B, T) bool, True where a token begins a word (for
    whole-word masking); None masks single tokens. span: the mean length of masked spans (`span_mask`);
    0 masks single tokens. row_seeds: (B,) int64, one seed per row, so
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
    return mask_from_draws(ids, candidate, select, roll, random_ids, mask_id, rate, word_starts,
                           always=row_seeds is None, split=split, span=span)


def mask_from_draws(
    ids: Tensor,
    candidate: Tensor,
    select: Tensor,
    roll: Tensor,
    random_ids: Tensor,
    mask_id: int,
    rate: float,
    word_starts: Tensor | None = None,
    always: bool = True,
    split: tuple[float, float] = (0.8, 0.1),
    span: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """mask_tokens' choices from its draws (all (B, T)): `select` picks (below the rate), `roll` chooses [MASK],
    a random token (`random_ids`) or the token kept; `candidate` marks the tokens that may be picked.
    always: a batch with nothing picked gets its candidate of lowest draw picked (one token, also with spans)."""
    B, T = ids.shape
    if word_starts is not None and span:
        raise ValueError("whole-word masking and span masking are two ways to pick tokens; use one")
    if span:
        picked, roll = span_mask(select, roll, candidate, rate, span)
    elif word_starts is None:
        picked = (select < rate) & candidate
    else:
        # a word is picked by the draw at its first token; all its pieces follow
        starts = (word_starts | ~candidate).reshape(-1)
        starts[0] = True
        word_id = starts.cumsum(0) - 1  # (B*T,)
        pick_word = torch.zeros(int(word_id[-1]) + 1, dtype=torch.bool)
        pick_word[word_id[starts]] = select.reshape(-1)[starts] < rate
        picked = pick_word[word_id].reshape(B, T) & candidate
    if always and not picked.any():  # always predict something, so every batch has a loss
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


def span_mask(select: Tensor, roll: Tensor, candidate: Tensor, rate: float, mean: float) -> tuple[Tensor, Tensor]:
    """LTG-BERT's span masking from mask_tokens' draws -> (picked (B, T) bool, each position's span's roll (B, T)).

    A candidate starts a span where its draw is below `span_start_rate`; given a start, u = select / start rate is
    uniform on [0, 1), and the span's length is geometric on {1, 2, ...} with mean `mean` (LTG-BERT: 3, SpanBERT: 5)
    drawn from u, at most SPAN_CAP. A span covers its row's next `length` positions from its start (never the next
    row's), masking the candidates among them (a special token or padding inside is skipped, not masked). All of a
    span's tokens take the 80/10/10 choice of the roll at its start; where spans overlap, the nearest start at or
    before a position decides. The start rate makes the expected covered share `rate` away from a row's start and
    its special tokens (fewer tokens there: a row of 126 real tokens with mean 3 covers 0.148 at rate 0.15).
    """
    B, T = select.shape
    p = 1.0 / mean  # geometric on {1, 2, ...}: P(length > k) = (1 - p)^k
    start_rate = span_start_rate(rate, mean)
    starts = (select < start_rate) & candidate
    u = torch.where(starts, select / start_rate, 0.0)  # uniform on [0, 1) at a start
    if p < 1.0:
        length = (1 + torch.floor(torch.log1p(-u) / math.log1p(-p))).clamp(max=SPAN_CAP).long()
    else:
        length = torch.ones(B, T, dtype=torch.long)
    length = torch.where(starts, length, 0)
    owner = torch.full((B, T), -1, dtype=torch.long)  # the column of the nearest span start covering each position
    cols = torch.arange(T)
    for j in range(min(SPAN_CAP, T)):  # a start j positions back covers here when its span is longer than j
        reach = torch.zeros(B, T, dtype=torch.bool)
        reach[:, j:] = length[:, : T - j] > j
        owner = torch.where(reach & (owner < 0), cols - j, owner)
    picked = (owner >= 0) & candidate
    return picked, roll.gather(1, owner.clamp(min=0))


def span_start_rate(rate: float, mean: float) -> float:
    """The share of tokens that start a span so that spans of mean length `mean` (capped at SPAN_CAP) cover `rate`
    of a long row: a position is left uncovered when no start j back has a span longer than j, so
    1 - prod_j (1 - s P(length > j)) = rate, solved for s by bisection (rate itself for mean 1)."""
    if mean == 1:
        return rate
    p = 1.0 / mean
    longer = [(1.0 - p) ** j for j in range(SPAN_CAP)]  # P(length > j)

    def covered(s: float) -> float:
        return 1.0 - math.prod(1.0 - s * q for q in longer)

    lo, hi = 0.0, rate
    for _ in range(60):  # covered(s) rises with s; covered(rate) >= rate
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if covered(mid) < rate else (lo, mid)
    return hi


def word_starts(ids: Tensor, whole_word: bool, table: Tensor | None, objective: str) -> Tensor | None:
    """mask_tokens' word_starts for objective.whole_word: (B, T) bool, True where a token of `ids` begins a word, from
    the (vocab,) table the pre-training recipe sets on every objective (tokenizer.word_start_table); None without
    whole words (single tokens). mlm, rtd and hybrid pick their tokens through it."""
    if not whole_word:
        return None
    if table is None:
        raise ValueError(f"whole-word masking needs {objective}'s word_start_table (tokenizer.word_start_table); the "
                         "pre-training recipe sets it when objective.whole_word is true")
    return table[ids]


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
                 whole_word: bool = False, span: float = 0.0):
        super().__init__()
        self.special_ids, self.mask_id, self.vocab_size = tuple(special_ids), mask_id, vocab_size
        self.rate = rate if isinstance(rate, MaskRate) else MaskRate(rate, rate)
        self.whole_word = whole_word
        self.span = span
        """The mean length of the masked spans (LTG-BERT: 3); 0: single tokens."""

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator, progress: float = 1.0) -> dict[str, Tensor]:
        masked, positions, labels = mask_tokens(
            batch["input_ids"], batch["mask"], self.special_ids, self.mask_id, self.vocab_size,
            self.rate.at(progress), gen, word_starts(batch["input_ids"], self.whole_word, self.word_start_table, "mlm"),
            batch.get("row_seed"), span=self.span,
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
    """mlm from objective.mask_rate (-> mask_rate_end), objective.whole_word and objective.mask_span; it scores with
    the model's MLM head."""
    ctx.model_lm_head()
    return {"mlm": MLM(ctx.vocab_size, ctx.special.all, ctx.special.mask, schedule(ctx.settings),
                       ctx.settings["whole_word"], ctx.settings["mask_span"])}
