"""Bidirectional language modelling (ELMo), objective name `bilm`: a forward and a backward LM.

(`clm` on an rnn is read as `bilm`, its name there before the decoder's next-token `clm` had its own.)

    collator: every pair of neighbouring tokens (t, t+1) inside one document is a target twice:
              the forward state at t predicts token t+1, the backward state at t+1 predicts token t
    head:     per direction a projection (D/2 -> D: dense -> GELU -> LayerNorm), then one decoder
              tied to the input embeddings (the softmax is shared by both directions, as in ELMo)
    loss:     cross-entropy, averaged over the targets of both directions

It needs a backbone whose output splits into directions, with the forward half at t having seen
only tokens <= t and the backward half only tokens >= t: the RNN (`RNNBackbone.directional_states`).
A Transformer or CNN state at t has already read token t+1, so the factory rejects them.

Documents: a pair only counts when both tokens belong to the same document (equal, non-zero mask
values), so no direction is asked to predict across a document boundary or into padding. Each
packed chunk is `[CLS] text [SEP]`: the forward LM also learns to predict the [SEP] that ends a
chunk and the backward LM the [CLS] that starts it (ELMo's </S> and <S>). The projection and the
vocabulary softmax run only at positions that have a target.

Combined with mlm the shared forward pass reads the masked input; the targets are the original
tokens (`original_ids`) and neither direction ever sees the token it predicts, masked or not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import global_count, world_size
from .losses import SummedCrossEntropy, top_one


def neighbour_targets(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """-> (forward positions, forward labels, backward positions, backward labels), each (N,).

    ids, mask: (B, T). Positions are flat indices into (B * T); N = the number of neighbouring
    pairs (t, t+1) inside one document. Forward: state t predicts token t+1; backward: state
    t+1 predicts token t.
    """
    B, T = ids.shape
    same_doc = (mask[:, 1:] == mask[:, :-1]) & (mask[:, 1:] != 0)  # (B, T-1): t and t+1 in one document
    rows, cols = same_doc.nonzero(as_tuple=True)
    first = rows * T + cols  # flat position of t
    flat = ids.reshape(-1)
    return first, flat[first + 1], first + 1, flat[first]


class DirectionProjection(nn.Module):
    """One direction's state (D/2) -> the embedding width (D): dense -> GELU -> LayerNorm."""

    def __init__(self, d_in: int, d_model: int, eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(d_in, d_model)
        self.norm = nn.LayerNorm(d_model, eps=eps)

    def forward(self, h: Tensor) -> Tensor:
        return self.norm(F.gelu(self.dense(h)))


class ELMo(nn.Module):
    """Forward + backward LM on the two halves of a directional backbone's output (`bilm`)."""

    name = "bilm"
    uses_shared_forward = True
    reads = "rows"
    word_start_table: Tensor | None = None  # unused: it masks no tokens (objective.whole_word)

    def __init__(self, d_model: int, vocab_size: int, embedding: nn.Embedding):
        super().__init__()
        if d_model % 2:
            raise ValueError(f"bilm splits the hidden state into two directions; d_model={d_model} is odd")
        self.proj_fwd = DirectionProjection(d_model // 2, d_model)
        self.proj_bwd = DirectionProjection(d_model // 2, d_model)
        self.embedding = embedding  # tied: the softmax shares the token embedding's weight
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator, progress: float = 1.0) -> dict[str, Tensor]:
        ids = batch.get("original_ids", batch["input_ids"])  # with mlm on, predict the real tokens
        fwd_pos, fwd_labels, bwd_pos, bwd_labels = neighbour_targets(ids, batch["mask"])
        return {**batch, "bilm_fwd_positions": fwd_pos, "bilm_fwd_labels": fwd_labels,
                "bilm_bwd_positions": bwd_pos, "bilm_bwd_labels": bwd_labels}

    def logits(self, h: Tensor, projection: DirectionProjection) -> Tensor:
        """(N, D/2) states of one direction -> (N, V) float logits."""
        return F.linear(projection(h), self.embedding.weight, self.bias).float()

    def next_token_logits(self, hidden: Tensor) -> Tensor:
        """(N, D) states -> (N, V) float logits of the token after each, from the forward half (it has read the
        tokens up to and including t only): a true left-to-right LM (intrinsic.causal_perplexity)."""
        return self.logits(hidden[:, : hidden.shape[-1] // 2], self.proj_fwd)

    def loss(self, model: nn.Module, out, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        D = out.hidden.shape[-1]
        # the halves `RNNBackbone.directional_states` returns, taken from the shared forward pass
        fwd, bwd = out.hidden.reshape(-1, D).split(D // 2, dim=-1)  # (B*T, D/2) each
        fwd_logits = self.logits(fwd.index_select(0, batch["bilm_fwd_positions"]), self.proj_fwd)  # (N, V)
        bwd_logits = self.logits(bwd.index_select(0, batch["bilm_bwd_positions"]), self.proj_bwd)  # (N, V)
        fwd_labels, bwd_labels = batch["bilm_fwd_labels"], batch["bilm_bwd_labels"]
        fwd_sum = SummedCrossEntropy.apply(fwd_logits, fwd_labels)
        bwd_sum = SummedCrossEntropy.apply(bwd_logits, bwd_labels)
        # mean over the targets of the GLOBAL batch (all ranks), both directions together, so data
        # parallelism over N processes trains like one process with an N times larger batch
        n_local = len(fwd_labels) + len(bwd_labels)
        n_all = global_count(n_local, fwd_logits.device)
        loss = (fwd_sum + bwd_sum) * (world_size() / n_all)
        n = max(len(fwd_labels), 1)
        correct = top_one(fwd_logits, fwd_labels).sum() + top_one(bwd_logits, bwd_labels).sum()
        return loss, {"bilm_loss": loss.detach(), "bilm_fwd_loss": fwd_sum.detach() / n,
                      "bilm_bwd_loss": bwd_sum.detach() / n, "bilm_acc": correct.float() / max(n_local, 1)}


def build(ctx) -> dict[str, nn.Module]:
    """bilm (no settings of its own); its softmax projection is ctx.embedding."""
    return {"bilm": ELMo(ctx.backbone.d_model, ctx.vocab_size, ctx.embedding)}
