"""Replaced-token detection (ELECTRA, Clark et al. 2020; google-research/electra): collator + generator +
discriminator head + loss.

    collator:      mask `rate` of the real tokens (objective.mask_rate, ELECTRA 0.15), or of the words
                   (objective.whole_word: all pieces of a picked word, as mlm picks them), replacing them as
                   objective.rtd_masking says (electra: 85% [MASK], 15% kept; bert: 80/10/10); draw one
                   uniform number per masked position (so sampling is a pure function of the batch's seed:
                   exact resume)
    generator:     a small MLM of the discriminator's depth and `fraction` of its width (ELECTRA-small: 1/4,
                   base 1/3) in heads of rtd_generator_head_size (ELECTRA: 64), reading the discriminator's
                   embedding tables (token, position, segment: rtd_shared_embeddings=all, as ELECTRA shares
                   its embeddings) through one projection, predicts the masked tokens -> generator MLM loss
    corrupt:       at the masked positions, a token sampled from the generator's softmax (ELECTRA draws it by
                   the Gumbel-max trick, this by the inverse CDF at the drawn uniform: the same distribution;
                   no gradient flows through the sample); every other token stays the original
    discriminator: the main backbone on the corrupted input + a per-token binary head, trained to
                   spot replaced tokens; label = (corrupted != original) at real tokens, so a
                   sample that hits the original token counts as original
    loss = generator MLM loss + weight * discriminator loss (ELECTRA: weight 50)

The discriminator is the backbone that fine-tunes and exports. Combined with objective mlm, the
discriminator would also learn MLM on [MASK]ed input, which ELECTRA does not do: the factory
rejects that combination. Runs saved before these settings existed (issue #28) load with what they trained
with (config.SAVED_BEFORE): whole discriminator heads, the token table alone, BERT's masking. A run saved with
objective.whole_word=true trained on single tokens (rtd did not read it then); resumed or continued, it masks
whole words.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import global_count, world_size
from ..errors import ConfigError
from .losses import SummedCrossEntropy, top_one
from .mlm import MASKINGS, MaskRate, mask_tokens, row_rand, salted, schedule, word_starts


def generator_size(d_model: int, n_heads: int | None, d_ff: int, fraction: float,
                   head_size: int = 64) -> tuple[int, int, int]:
    """(hidden, heads, feed-forward) of a generator `fraction` the discriminator's width (the feed-forward in the
    discriminator's proportion).

    ELECTRA's rule (head_size 64): an even width round(d_model x fraction), in max(1, width // 64) heads
    (ELECTRA-small: 256 -> 64, one head; base: 768 -> 256, four). head_size 0: whole heads of the
    discriminator's head size (pretrainlab before issue #28: a d 128, 2-head tiny got a 64-wide generator, half
    its width). Without attention (n_heads None): an even width.
    """
    if n_heads and not head_size:
        head_dim = d_model // n_heads
        heads = max(1, round(d_model * fraction / head_dim))
        d = heads * head_dim
        return d, heads, max(1, d_ff * d // d_model)
    d = max(2, 2 * round(d_model * fraction / 2))
    heads = max(1, d // head_size) if n_heads else 1
    while d % heads or (d // heads) % 2:  # whole, even heads (rotary positions need an even head size)
        heads -= 1
    return d, heads, max(1, d_ff * d // d_model)


class ProjectedEmbedding(nn.Module):
    """A discriminator's embedding table (N, D) read through a projection to the generator's width d (ELECTRA's
    `embeddings_project`): the generator shares the table and learns only the projection, one for all its tables."""

    def __init__(self, embedding: nn.Embedding, project: nn.Linear):
        super().__init__()
        self.embedding, self.project = embedding, project

    @property
    def weight(self) -> Tensor:
        """(N, d): the projected table (the bert style adds segment 0's row when no segment ids are given)."""
        return self.project(self.embedding.weight)

    def forward(self, ids: Tensor) -> Tensor:
        return self.project(self.embedding(ids))


def share_embeddings(generator: nn.Module, discriminator: nn.Module, which: str) -> None:
    """Replace the generator's own embedding tables by the discriminator's (projected when the widths differ):
    `all` of them (token, position, segment: ELECTRA's), or the `token` table alone (pretrainlab before #28)."""
    own = generator.get_input_embeddings()
    names = [n for n, m in generator.named_children()
             if isinstance(m, nn.Embedding) and (which == "all" or m is own)
             and isinstance(getattr(discriminator, n, None), nn.Embedding)]
    d, D = generator.d_model, discriminator.d_model
    project = nn.Linear(D, d, bias=False) if d != D else None
    if project is not None:
        nn.init.normal_(project.weight, std=D ** -0.5)  # keeps the tables' scale
    for name in names:
        table = getattr(discriminator, name)
        setattr(generator, name, table if project is None else ProjectedEmbedding(table, project))


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

    `banned` tokens (the special ones) are never sampled, so a corruption keeps the layout: the search takes the
    first token whose cumulative probability EXCEEDS the draw, so a draw of exactly 0 (torch.rand can return it)
    lands on the first allowed token, not on token 0 with its zero probability.
    """
    logits = logits.detach().float().clone()
    logits[:, list(banned)] = float("-inf")
    cdf = logits.softmax(-1).cumsum(-1)
    picked = torch.searchsorted(cdf, (uniform.to(cdf.dtype) * cdf[:, -1])[:, None], right=True).squeeze(1)
    return picked.clamp_max(logits.shape[-1] - 1)


def replaced_labels(corrupted: Tensor, original: Tensor, mask: Tensor) -> Tensor:
    """(B, T) float: 1 where a real token was replaced by a different one, else 0."""
    return ((corrupted != original) & (mask != 0)).float()


class RTD(nn.Module):
    """The RTD objective; `generator` is a backbone of the generator's size, built by the factory."""

    name = "rtd"
    uses_shared_forward = False
    reads = "rows"
    word_start_table: Tensor | None = None
    """(vocab,) bool from tokenizer.word_start_table; needed for whole-word masking."""

    def __init__(self, discriminator: nn.Module, vocab_size: int, generator: nn.Module, special_ids: tuple[int, ...],
                 mask_id: int, rate: float | MaskRate = 0.15, weight: float = 50.0, shared_embeddings: str = "all",
                 masking: str = "electra", whole_word: bool = False):
        super().__init__()
        share_embeddings(generator, discriminator, shared_embeddings)
        d_model, embedding = discriminator.d_model, discriminator.get_input_embeddings()
        self.generator = generator
        self.generator_head = GeneratorHead(generator.d_model, embedding, vocab_size)
        self.discriminator_head = DiscriminatorHead(d_model)
        self.special_ids, self.mask_id, self.vocab_size = tuple(special_ids), mask_id, vocab_size
        self.rate = rate if isinstance(rate, MaskRate) else MaskRate(rate, rate)
        self.weight, self.split = weight, MASKINGS[masking]
        self.whole_word = whole_word

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator, progress: float = 1.0) -> dict[str, Tensor]:
        ids = batch.get("original_ids", batch["input_ids"])
        rows = batch.get("row_seed")  # per-row draws: a row is corrupted the same on any rank
        masked, positions, labels = mask_tokens(ids, batch["mask"], self.special_ids, self.mask_id, self.vocab_size,
                                                self.rate.at(progress), gen,
                                                word_starts(ids, self.whole_word, self.word_start_table, "rtd"),
                                                row_seeds=None if rows is None else salted(rows, 1), split=self.split)
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
        gen_loss = SummedCrossEntropy.apply(gen_logits, batch["rtd_labels"]) * scale
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
            # 0, not NaN, when nothing was picked (with row seeds a batch may pick none: mlm.mask_tokens)
            "rtd_gen_acc": (top_one(gen_logits, batch["rtd_labels"]).float().sum() / max(len(gen_logits), 1)).detach(),
            "rtd_disc_loss": disc_loss.detach(),
            "rtd_disc_acc": ((disc_logits > 0).float() == labels).float().mean().detach(),
            "rtd_replaced": labels.mean().detach(),
        }


def build(ctx) -> dict[str, nn.Module]:
    """rtd from objective.rtd_generator_fraction, rtd_generator_head_size, rtd_shared_embeddings, rtd_masking,
    rtd_weight, mask_rate (-> mask_rate_end) and whole_word; the generator is ctx.make_backbone's, of the
    discriminator's depth."""
    s, bb = ctx.settings, ctx.backbone
    fraction = s["rtd_generator_fraction"]
    if not 0 < fraction <= 1:
        raise ConfigError(f"objective.rtd_generator_fraction={fraction} must be in (0, 1]: the generator's hidden size "
                          "as a share of the discriminator's (ELECTRA: 0.25 to 0.33)")
    if ctx.make_backbone is None:
        raise ValueError("objective rtd needs make_backbone(d_model=..., n_heads=..., d_ff=...) to build its generator")
    d_gen, heads, d_ff = generator_size(bb.d_model, getattr(bb, "n_heads", None), getattr(bb, "d_ff", 4 * bb.d_model),
                                        fraction, s["rtd_generator_head_size"])
    generator = ctx.make_backbone(d_model=d_gen, n_heads=heads, d_ff=d_ff)
    return {"rtd": RTD(bb, ctx.vocab_size, generator, ctx.special.all, ctx.special.mask, schedule(s), s["rtd_weight"],
                       s["rtd_shared_embeddings"], s["rtd_masking"], s["whole_word"])}
