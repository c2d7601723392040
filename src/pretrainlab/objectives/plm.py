"""Permutation language modelling (XLNet): collator (a factorisation order) + head + loss.

The collator samples, per sequence, an order over its real non-special tokens and marks the
last 1/K of that order as targets (K = plm_k; at least one per sequence). As in XLNet's own
code, the tokens before the targets are one block (rank 0: they see each other, and
[CLS]/[SEP]/padding belong to it too); the targets follow in a random order with ranks 1..n.

Two-stream self-attention (`TransformerBackbone.forward_two_stream`, same weights for both):
    content stream at i: the ordinary encoder, seeing keys j of its document with rank(j) <= rank(i)
    query stream at a target i: starts from the [MASK] embedding at i's position (so it knows
        where, not what) and sees content keys j of its document with rank(j) < rank(i)
The query stream runs only at the targets, and the vocabulary projection (tied to the token
embedding) only there. Nothing crosses a packed document. The content stream is the plain
encoder, so a PLM-trained backbone fine-tunes and exports like any other.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..distributed import global_count, world_size
from ..heads import MLMHead
from .losses import SummedCrossEntropy, top_one
from .mlm import row_rand, salted


def sample_order(ids: Tensor, mask: Tensor, special_ids: tuple[int, ...], k: int,
                 gen: torch.Generator, row_seeds: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """-> rank (B, T): 0 for non-targets, 1..n for targets in factorisation order;
    targets (B, P): target positions (slot 0 = last in the order); valid (B, P): which slots are real.

    Each sequence gets n = max(1, candidates // k) targets; P is the largest n in the batch.
    row_seeds: (B,) one seed per row (the loaders' `row_seed`), so that a row's order does not depend
    on the process or batch it lands in; without them the draws come from `gen`.
    """
    B, T = ids.shape
    candidate = mask != 0
    for s in special_ids:
        candidate &= ids != s
    n_cand = candidate.sum(1)
    n_tgt = torch.where(n_cand > 0, (n_cand // k).clamp_min(1), torch.zeros_like(n_cand))  # (B,)
    if int(n_tgt.sum()) == 0:
        raise ValueError("batch has no tokens to predict (only special tokens or padding)")
    keys = torch.rand(B, T, generator=gen) if row_seeds is None else row_rand(salted(row_seeds, 2), T)
    keys = keys.masked_fill(~candidate, -1.0)  # candidates sort first
    order = keys.argsort(dim=1, descending=True)  # the largest key is the last in the order
    P = int(n_tgt.max())
    slots = torch.arange(P)
    targets = order[:, :P]
    valid = slots < n_tgt[:, None]
    rank = torch.zeros(B, T, dtype=torch.long)
    rank.scatter_(1, targets, torch.where(valid, n_tgt[:, None] - slots, 0))
    return rank, targets, valid


def two_stream_visibility(mask: Tensor, rank: Tensor, targets: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """-> content_visible (B, T, T), query_visible (B, P, T), scored (B, P).

    content: same document and rank(key) <= rank(query); query: same document and rank(key) <
    rank(target). A slot whose target would see nothing (a document without [CLS] or other
    context) is not scored; such rows, and unused slots, look at their own position only,
    which keeps the softmax finite and reaches no loss.
    """
    same_doc = mask[:, :, None] == mask[:, None, :]
    content_visible = same_doc & (rank[:, None, :] <= rank[:, :, None])
    t_doc, t_rank = mask.gather(1, targets), rank.gather(1, targets)  # (B, P)
    query_visible = (mask[:, None, :] == t_doc[:, :, None]) & (rank[:, None, :] < t_rank[:, :, None])
    scored = valid & query_visible.any(-1)
    own = torch.arange(mask.shape[1], device=mask.device) == targets[:, :, None]  # (B, P, T)
    query_visible = torch.where(scored[:, :, None], query_visible, own)
    return content_visible, query_visible, scored


class PLM(nn.Module):
    """The PLM objective: `prepare` samples the orders, `loss` runs the two streams and scores targets."""

    name = "plm"
    uses_shared_forward = False
    reads = "rows"
    word_start_table: Tensor | None = None  # unused: it masks no tokens (objective.whole_word)

    def __init__(self, d_model: int, vocab_size: int, embedding: nn.Embedding, special_ids: tuple[int, ...],
                 mask_id: int, k: int = 6):
        super().__init__()
        self.head = MLMHead(d_model, vocab_size, embedding)
        self.special_ids, self.mask_id, self.k = tuple(special_ids), mask_id, k

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator, progress: float = 1.0) -> dict[str, Tensor]:
        ids = batch.get("original_ids", batch["input_ids"])  # unmasked, if MLM ran first
        rank, targets, valid = sample_order(ids, batch["mask"], self.special_ids, self.k, gen, batch.get("row_seed"))
        scored = two_stream_visibility(batch["mask"], rank, targets, valid)[2]
        return {**batch, "plm_rank": rank, "plm_targets": targets, "plm_valid": valid,
                "plm_scored_at": scored.reshape(-1).nonzero().squeeze(1)}  # (N,) flat into (B * P), on the CPU

    def target_logits(self, backbone: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """-> logits (N, V) of the scored targets, scored (B, P)."""
        ids, mask, targets = batch.get("original_ids", batch["input_ids"]), batch["mask"], batch["plm_targets"]
        content_visible, query_visible, scored = two_stream_visibility(mask, batch["plm_rank"], targets,
                                                                       batch["plm_valid"])
        _, g = backbone.forward_two_stream(ids, mask, batch.get("segment_ids"), content_visible, targets,
                                           query_visible, self.mask_id)  # g: (B, P, D)
        g = g.reshape(-1, g.shape[-1]).index_select(0, batch["plm_scored_at"])  # the scored targets' (N, D)
        return self.head(g).float(), scored

    def loss(self, model: nn.Module, out, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        logits, _ = self.target_logits(model.backbone, batch)
        ids = batch.get("original_ids", batch["input_ids"])
        labels = ids.gather(1, batch["plm_targets"]).reshape(-1).index_select(0, batch["plm_scored_at"])
        # mean over the scored targets of the GLOBAL batch (all ranks), as MLM does
        n_all = global_count(len(labels), logits.device)
        loss = SummedCrossEntropy.apply(logits, labels) * (world_size() / n_all)
        acc = top_one(logits, labels).float().mean()
        return loss, {"plm_loss": loss.detach(), "plm_acc": acc.detach()}


def build(ctx) -> dict[str, nn.Module]:
    """plm from objective.plm_k, with a prediction head of its own for the query stream (projection: ctx.embedding)."""
    return {"plm": PLM(ctx.backbone.d_model, ctx.vocab_size, ctx.embedding, ctx.special.all, ctx.special.mask,
                       ctx.settings["plm_k"])}
