"""Causal language modelling (GPT, Llama) for the decoder: collator + loss; the head is the model's.

    collator: labels[b, t] = ids[b, t + 1] when t and t + 1 are in the same packed document, else
              -100 (across a document boundary, at the last token of a row, at padding)
    head:     the model's (heads.LMHead): one projection to the vocabulary, no bias (Llama's and
              GPT-2's lm_head); tied to the token embedding, or a matrix of its own
    loss:     cross-entropy over the positions with a label, the mean over the global batch

Labels are already shifted: position t predicts labels[t] (Hugging Face's `labels=` are the ids
themselves, shifted inside the model). The vocabulary projection runs only at positions that have
a label, as in mlm.py. Each packed chunk is `[CLS] text [SEP]`: the [CLS] is the start token
(never predicted), and the model learns to end a text with [SEP], which `generate` can stop at.

This is the decoder's `clm`; the RNN's forward + backward LM (ELMo) is `bilm`, objectives/elmo.py (`clm`
on an rnn is read as `bilm`, its old name there: spec.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..distributed import global_count, world_size
from .losses import SummedCrossEntropy, top_one

IGNORE = -100  # the label of a position that predicts nothing (F.cross_entropy's ignore_index)


def next_token_labels(ids: Tensor, mask: Tensor) -> Tensor:
    """(B, T) next token of each position within its own document, IGNORE where there is none.

    ids, mask: (B, T); mask 0 = padding, k >= 1 = k-th document of the row.
    """
    labels = torch.full_like(ids, IGNORE)
    same_doc = (mask[:, 1:] == mask[:, :-1]) & (mask[:, 1:] != 0)  # (B, T-1): t and t+1 in one document
    labels[:, :-1] = torch.where(same_doc, ids[:, 1:], IGNORE)
    return labels


class CLM(nn.Module):
    """Next-token prediction: `prepare` picks the positions with a next token, `loss` scores them with the model's
    LM head."""

    name = "clm"
    uses_shared_forward = True
    reads = "rows"
    word_start_table: Tensor | None = None  # unused: it masks no tokens (objective.whole_word)

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator, progress: float = 1.0) -> dict[str, Tensor]:
        ids = batch.get("original_ids", batch["input_ids"])  # with a corrupting objective on, the real tokens
        labels = next_token_labels(ids, batch["mask"]).reshape(-1)
        positions = (labels != IGNORE).nonzero().squeeze(1)  # flat indices into (B * T)
        return {**batch, "clm_positions": positions, "clm_labels": labels[positions]}

    def loss(self, model: nn.Module, out, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        hidden = out.hidden
        h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch["clm_positions"])  # (N, D)
        logits = model.lm_head(h).float()  # (N, V): only where there is a next token
        labels = batch["clm_labels"]
        # mean over the targets of the GLOBAL batch (all ranks), so data parallelism over N
        # processes trains exactly like one process with an N times larger batch
        n_all = global_count(len(labels), logits.device)
        loss = SummedCrossEntropy.apply(logits, labels) * (world_size() / n_all)
        acc = top_one(logits, labels).float().mean() if len(labels) else logits.new_zeros(())
        return loss, {"clm_loss": loss.detach(), "clm_acc": acc.detach()}


def build(ctx) -> dict[str, nn.Module]:
    """clm (no settings of its own); it scores with the model's LM head."""
    ctx.model_lm_head()
    return {"clm": CLM()}
