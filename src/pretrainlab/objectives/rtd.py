"""Replaced-token detection (ELECTRA): collator + generator + discriminator head + loss.

    collator:      mask `rate` of the real tokens as MLM does; draw one uniform number per masked
                   position (so sampling is a pure function of the batch's seed: exact resume)
    generator:     a small MLM (its own backbone, hidden size `fraction` of the discriminator's,
                   reading the discriminator's token embedding through a projection, as ELECTRA
                   shares embeddings) predicts the masked tokens -> generator MLM loss
    corrupt:       at the masked positions, a token sampled from the generator's softmax (no
                   gradient flows through the sample); every other token stays the original
    discriminator: the main backbone on the corrupted input + a per-token binary head, trained to
                   spot replaced tokens; label = (corrupted != original) at real tokens, so a
                   sample that hits the original token counts as original
    loss = generator MLM loss + weight * discriminator loss (ELECTRA: weight 50)

The discriminator is the backbone that fine-tunes and exports. Combined with objective mlm, the
discriminator would also learn MLM on [MASK]ed input, which ELECTRA does not do: the factory
rejects that combination.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import global_count, world_size
from ..errors import ConfigError
from .mlm import MaskRate, mask_tokens, row_rand, salted, schedule


def generator_size(d_model: int, n_heads: int | None, d_ff: int, fraction: float) -> tuple[int, int, int]:
    """(hidden, heads, feed-forward) of a generator `fraction` the discriminator's size.

    With attention: whole heads of the discriminator's head size (ELECTRA-small: 256 -> 64, one
    head); without (n_heads None): an even hidden size.
    """
    if n_heads:
        head_dim = d_model // n_heads
        heads = max(1, round(d_model * fraction / head_dim))
        d = heads * head_dim
    else:
        heads, d = 1, max(2, 2 * round(d_model * fraction / 2))
    return d, heads, max(1, d_ff * d // d_model)


class ProjectedEmbedding(nn.Module):
    """The discriminator's token embedding (V, D) read through a projection to the generator's size d.

    ELECTRA's `embeddings_project`: the generator shares the token embedding table and learns
    only the projection.
    """

    def __init__(self, embedding: nn.Embedding, d: int):
        super().__init__()
        self.embedding = embedding
        self.project = nn.Linear(embedding.embedding_dim, d, bias=False)
        nn.init.normal_(self.project.weight, std=embedding.embedding_dim ** -0.5)  # keeps the embedding's scale

    def forward(self, ids: Tensor) -> Tensor:
        return self.project(self.embedding(ids))


def share_token_embedding(generator: nn.Module, embedding: nn.Embedding) -> None:
    """Replace the generator backbone's own token embedding by the shared one (projected if sizes differ)."""
    own = generator.get_input_embeddings()
    name = next(n for n, m in generator.named_children() if m is own)
    shared = embedding if generator.d_model == embedding.embedding_dim else ProjectedEmbedding(embedding, generator.d_model)
    setattr(generator, name, shared)


class GeneratorHead(nn.Module):
    """ELECTRA's generator head: dense (d -> D) -> GELU -> LayerNorm -> decoder tied to the shared embedding."""

    def __init__(self, d_generator: int, embedding: nn.Embedding, vocab_size: int, eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(d_generator, embedding.embedding_dim)
        self.norm = nn.LayerNorm(embedding.embedding_dim, eps=eps)
        self.embedding = embedding
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: Tensor) -> Tensor:
        return F.linear(self.norm(F.gelu(self.dense(h))), self.embedding.weight, self.bias)


class DiscriminatorHead(nn.Module):
    """ELECTRA's discriminator_predictions: dense -> GELU -> dense_prediction (one logit per token)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.dense_prediction = nn.Linear(d_model, 1)

    def forward(self, h: Tensor) -> Tensor:
        return self.dense_prediction(F.gelu(self.dense(h))).squeeze(-1)


def sample_tokens(logits: Tensor, uniform: Tensor, banned: tuple[int, ...]) -> Tensor:
    """One token per row of logits (N, V) from its softmax, by inverse CDF at `uniform` (N,).

    `banned` tokens (the special ones) are never sampled, so a corruption keeps the layout.
    """
    logits = logits.detach().float().clone()
    logits[:, list(banned)] = float("-inf")
    cdf = logits.softmax(-1).cumsum(-1)
    picked = torch.searchsorted(cdf, (uniform.to(cdf.dtype) * cdf[:, -1])[:, None]).squeeze(1)
    return picked.clamp_max(logits.shape[-1] - 1)


def replaced_labels(corrupted: Tensor, original: Tensor, mask: Tensor) -> Tensor:
    """(B, T) float: 1 where a real token was replaced by a different one, else 0."""
    return ((corrupted != original) & (mask != 0)).float()


class RTD(nn.Module):
    """The RTD objective; `generator` is a backbone of the generator's size, built by the factory."""

    name = "rtd"
    uses_shared_forward = False
    reads = "rows"
    word_start_table: Tensor | None = None  # unused: only mlm masks whole words

    def __init__(self, d_model: int, vocab_size: int, embedding: nn.Embedding, generator: nn.Module,
                 special_ids: tuple[int, ...], mask_id: int, rate: float | MaskRate = 0.15, weight: float = 50.0):
        super().__init__()
        share_token_embedding(generator, embedding)
        self.generator = generator
        self.generator_head = GeneratorHead(generator.d_model, embedding, vocab_size)
        self.discriminator_head = DiscriminatorHead(d_model)
        self.special_ids, self.mask_id, self.vocab_size = tuple(special_ids), mask_id, vocab_size
        self.rate = rate if isinstance(rate, MaskRate) else MaskRate(rate, rate)
        self.weight = weight

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator, progress: float = 1.0) -> dict[str, Tensor]:
        ids = batch.get("original_ids", batch["input_ids"])
        rows = batch.get("row_seed")  # per-row draws: a row is corrupted the same on any rank
        masked, positions, labels = mask_tokens(ids, batch["mask"], self.special_ids, self.mask_id, self.vocab_size,
                                                self.rate.at(progress), gen,
                                                row_seeds=None if rows is None else salted(rows, 1))
        uniform = (torch.rand(len(positions), generator=gen) if rows is None
                   else row_rand(salted(rows, 3), ids.shape[1]).reshape(-1)[positions])
        real = (batch["mask"] != 0).reshape(-1).nonzero().squeeze(1)  # (n_real,) flat, found on the CPU
        return {**batch, "rtd_input": masked, "rtd_positions": positions, "rtd_labels": labels,
                "rtd_uniform": uniform, "rtd_real": real}

    def corrupt(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Generator pass -> (generator logits (N, V) at the masked positions, corrupted ids (B, T), labels (B, T))."""
        original, mask, positions = batch.get("original_ids", batch["input_ids"]), batch["mask"], batch["rtd_positions"]
        hidden = self.generator(batch["rtd_input"], mask, batch.get("segment_ids")).hidden
        h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)  # (N, d)
        logits = self.generator_head(h).float()
        with torch.no_grad():
            sampled = sample_tokens(logits, batch["rtd_uniform"], self.special_ids)
        corrupted = original.reshape(-1).index_copy(0, positions, sampled).reshape(original.shape)
        return logits, corrupted, replaced_labels(corrupted, original, mask)

    def loss(self, model: nn.Module, out, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        gen_logits, corrupted, labels = self.corrupt(batch)
        # both means over the GLOBAL batch (all ranks), as MLM's: masked tokens, then real tokens
        scale = world_size() / global_count(len(gen_logits), gen_logits.device)
        gen_loss = F.cross_entropy(gen_logits, batch["rtd_labels"], reduction="sum") * scale
        mask = batch["mask"]
        hidden = model.backbone(corrupted, mask, batch.get("segment_ids")).hidden
        real = batch["rtd_real"]  # the real tokens, flat indices into (B * T)
        disc_logits = self.discriminator_head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, real)).float()
        labels = labels.reshape(-1).index_select(0, real)  # (n_real,)
        scale = world_size() / global_count(len(disc_logits), disc_logits.device)
        disc_loss = F.binary_cross_entropy_with_logits(disc_logits, labels, reduction="sum") * scale
        loss = gen_loss + self.weight * disc_loss
        return loss, {
            "rtd_gen_loss": gen_loss.detach(),
            "rtd_gen_acc": (gen_logits.argmax(-1) == batch["rtd_labels"]).float().mean().detach(),
            "rtd_disc_loss": disc_loss.detach(),
            "rtd_disc_acc": ((disc_logits > 0).float() == labels).float().mean().detach(),
            "rtd_replaced": labels.mean().detach(),
        }


def build(ctx) -> dict[str, nn.Module]:
    """rtd from objective.rtd_generator_fraction, rtd_weight and mask_rate (-> mask_rate_end); the generator is
    ctx.make_backbone's."""
    s, bb = ctx.settings, ctx.backbone
    fraction = s["rtd_generator_fraction"]
    if not 0 < fraction <= 1:
        raise ConfigError(f"objective.rtd_generator_fraction={fraction} must be in (0, 1]: the generator's hidden size "
                          "as a share of the discriminator's (ELECTRA: 0.25 to 0.5)")
    if ctx.make_backbone is None:
        raise ValueError("objective rtd needs make_backbone(d_model=..., n_heads=..., d_ff=...) to build its generator")
    d_gen, heads, d_ff = generator_size(bb.d_model, getattr(bb, "n_heads", None), getattr(bb, "d_ff", 4 * bb.d_model),
                                        fraction)
    generator = ctx.make_backbone(d_model=d_gen, n_heads=heads, d_ff=d_ff)
    return {"rtd": RTD(bb.d_model, ctx.vocab_size, bb.get_input_embeddings(), generator, ctx.special.all,
                       ctx.special.mask, schedule(s), s["rtd_weight"])}
