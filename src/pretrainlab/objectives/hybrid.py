"""GPT-BERT's masked-causal hybrid (Charpentier & Samuel 2024, the BabyLM 2024 winner; ltgoslo/gpt-bert): one
encoder trained by masked next-token prediction (MNTP) on most rows of a batch and by causal language modelling on
the others, both scored by the model's one LM head.

    collator: the last round(B x objective.causal_share) rows of each batch are causal rows (at most B - 1: one
              row is always masked; the loader's rows come shuffled); the others are masked as mlm masks them
              (80% [MASK], 10% a random token, 10% kept) at the scheduled rate (objective.mask_rate ->
              mask_rate_end; GPT-BERT 0.3 -> 0.15), single tokens or whole words (objective.whole_word: a picked
              word's pieces all masked, each predicted from the state before it, as any masked token)
    MNTP:     a masked token at position t is predicted from the output at t - 1 (GPT-BERT shifts its targets by
              one), so both tasks share one prediction rule: the state at t - 1 predicts token t. The first
              token of a document is never masked (nothing of its document comes before it)
    causal:   a causal row attends to its own earlier tokens only (within its document), and each token whose
              successor is in its document predicts it (objectives/clm.py's labels)
    loss = (1 - causal_share) x MNTP loss + causal_share x causal loss, each the mean over its own targets: GPT-BERT
           trains 15 of every 16 GPUs on masked batches and one on causal batches and averages their gradients,
           which weighs the two means 15 : 1

One forward serves both kinds of rows (the encoder's per-row causal flags: TransformerBackbone.forward's
causal_rows). The encoder fine-tunes and is explained as any bidirectional one; its LM head predicts the NEXT
token, so export to *ForMaskedLM and pseudo-perplexity (which read an MLM head) refuse such a run. A run saved with
objective.whole_word=true masked single tokens (hybrid did not read it then); resumed or continued, it masks whole
words.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..distributed import global_count, world_size
from ..errors import ConfigError
from .clm import IGNORE, next_token_labels
from .losses import SummedCrossEntropy, top_one
from .mlm import MaskRate, mask_tokens, schedule, word_starts


def causal_rows(batch_size: int, share: float) -> Tensor:
    """(B,) bool: the last round(B x share) rows, leaving at least one masked row."""
    rows = torch.zeros(batch_size, dtype=torch.bool)
    n = min(round(batch_size * share), batch_size - 1)
    if n > 0:
        rows[batch_size - n:] = True
    return rows


def after_first(mask: Tensor) -> Tensor:
    """(B, T) int, `mask` where the token before is in the same document, else 0: the tokens MNTP may mask."""
    out = torch.zeros_like(mask)
    out[:, 1:] = torch.where(mask[:, 1:] == mask[:, :-1], mask[:, 1:], 0)
    return out


class Hybrid(nn.Module):
    """`prepare` splits a batch into masked and causal rows and picks what each predicts; `loss` runs the encoder
    once (causal rows causally) and scores both with the model's LM head."""

    name = "hybrid"
    uses_shared_forward = False
    reads = "rows"
    word_start_table: Tensor | None = None
    """(vocab,) bool from tokenizer.word_start_table; needed for whole-word masking."""

    def __init__(self, vocab_size: int, special_ids: tuple[int, ...], mask_id: int, rate: float | MaskRate = 0.15,
                 causal_share: float = 1 / 16, whole_word: bool = False):
        super().__init__()
        self.special_ids, self.mask_id, self.vocab_size = tuple(special_ids), mask_id, vocab_size
        self.rate = rate if isinstance(rate, MaskRate) else MaskRate(rate, rate)
        self.causal_share = causal_share
        self.whole_word = whole_word

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator, progress: float = 1.0) -> dict[str, Tensor]:
        ids, mask = batch.get("original_ids", batch["input_ids"]), batch["mask"]
        causal = causal_rows(ids.shape[0], self.causal_share)
        maskable = after_first(mask)
        maskable[causal] = 0
        masked, positions, labels = mask_tokens(ids, maskable, self.special_ids, self.mask_id, self.vocab_size,
                                                self.rate.at(progress), gen,
                                                word_starts(ids, self.whole_word, self.word_start_table, "hybrid"),
                                                row_seeds=batch.get("row_seed"))
        next_ids = next_token_labels(ids, mask)
        next_ids[~causal] = IGNORE
        flat = next_ids.reshape(-1)
        clm_positions = (flat != IGNORE).nonzero().squeeze(1)
        return {**batch, "hybrid_input": masked, "hybrid_causal": causal,
                "mntp_positions": positions - 1, "mntp_labels": labels,  # the state before each masked token
                "hybrid_clm_positions": clm_positions, "hybrid_clm_labels": flat[clm_positions]}

    def loss(self, model: nn.Module, out, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        hidden = model.backbone(batch["hybrid_input"], batch["mask"], batch.get("segment_ids"),
                                causal_rows=batch["hybrid_causal"]).hidden
        flat = hidden.reshape(-1, hidden.shape[-1])
        mntp, mntp_acc = _scored(model.lm_head, flat, batch["mntp_positions"], batch["mntp_labels"])
        clm, clm_acc = _scored(model.lm_head, flat, batch["hybrid_clm_positions"], batch["hybrid_clm_labels"])
        s = self.causal_share
        return (1 - s) * mntp + s * clm, {"hybrid_mntp_loss": mntp.detach(), "hybrid_mntp_acc": mntp_acc,
                                          "hybrid_clm_loss": clm.detach(), "hybrid_clm_acc": clm_acc}


def _scored(head: nn.Module, flat: Tensor, positions: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(the mean cross-entropy over the GLOBAL batch's targets (0 without any), accuracy) of the LM head at these
    positions: data parallelism over N processes trains as one process with an N times larger batch."""
    logits = head(flat.index_select(0, positions)).float()  # (N, V): only where there is a target
    loss = SummedCrossEntropy.apply(logits, labels) * (world_size() / global_count(len(labels), logits.device))
    acc = top_one(logits, labels).float().mean() if len(labels) else logits.new_zeros(())
    return loss, acc.detach()


def build(ctx) -> dict[str, nn.Module]:
    """hybrid from objective.mask_rate (-> mask_rate_end), objective.whole_word and objective.causal_share; it scores
    with the model's LM head."""
    s = ctx.settings
    if not 0 <= s["causal_share"] < 1:
        raise ConfigError(f"objective.causal_share={s['causal_share']} must be in [0, 1): the share of a batch's rows "
                          "trained as causal LM (GPT-BERT: 1/16 = 0.0625)")
    ctx.model_lm_head()
    return {"hybrid": Hybrid(ctx.vocab_size, ctx.special.all, ctx.special.mask, schedule(s), s["causal_share"],
                             s["whole_word"])}
