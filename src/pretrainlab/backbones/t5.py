"""The T5 style's pieces for the encoder-decoder (seq2seq.py builds its stacks from them).

    t5: pre-norm (RMSNorm without mean subtraction, no bias: T5LayerNorm), relative position buckets (one
        learned bias per head and bucket, bidirectional in the encoder, unidirectional in the decoder, computed
        once per stack and added in every layer: Hugging Face keeps it in the first layer and hands it on), no
        position embeddings, gated-GELU feed-forward (T5 v1.1: W_o (gelu_tanh(W_0 x) * W_1 x)), no biases
        anywhere, attention scores not scaled by 1/sqrt(d_k) (T5 folds it into the query's init), a final norm
        on each side, the decoder starting from the padding token. With the LM head (heads.Seq2SeqLMHead: the
        tied token embedding, the decoder's states times d_model**-0.5) it computes what
        `transformers.T5ForConditionalGeneration` computes (feed_forward_proj="gated-gelu"; name map:
        export/hf_t5.py).

A block takes the same arguments as the bart style's (seq2seq.py) so that one encoder loop and one decoder loop
serve both; where bart's take a `Visibility` (which keys a query sees), these take `ScoreBias`: the position bias
with the keys a query may not see set to the dtype's minimum, as Hugging Face's T5 masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .decoder import RMSNorm
from .transformer import Dropout, dropout

T5_NORM_EPS = 1e-6  # T5Config.layer_norm_epsilon
N_BUCKETS = 32  # T5Config.relative_attention_num_buckets
MAX_DISTANCE = 128  # T5Config.relative_attention_max_distance


# --------------------------------------------------------------------------- relative positions


def relative_bucket(relative: Tensor, bidirectional: bool, n_buckets: int = N_BUCKETS,
                    max_distance: int = MAX_DISTANCE) -> Tensor:
    """key position - query position -> bucket id (T5's _relative_position_bucket).

    Bidirectional (the encoder): half the buckets for keys after the query, half for those before. Within a
    half, distances below n/2 get a bucket each, longer ones share logarithmically wider buckets up to
    max_distance, beyond which all fall into the last. Unidirectional (the decoder): later keys (masked anyway)
    count as distance 0."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        n_buckets //= 2
        buckets = buckets + (relative > 0).long() * n_buckets
        distance = relative.abs()
    else:
        distance = -torch.clamp(relative, max=0)
    exact = n_buckets // 2
    log_bucket = exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact)
                          * (n_buckets - exact)).long()
    log_bucket = torch.clamp(log_bucket, max=n_buckets - 1)
    return buckets + torch.where(distance < exact, distance, log_bucket)


class RelativePositionBias(nn.Module):
    """(query positions, key positions) -> (1, H, Tq, Tk) a learned bias per head and distance bucket."""

    def __init__(self, n_heads: int, bidirectional: bool) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.weight = nn.Parameter(torch.zeros(N_BUCKETS, n_heads))  # T5's relative_attention_bias.weight

    def forward(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        buckets = relative_bucket(k_pos[None, :] - q_pos[:, None], self.bidirectional)  # (Tq, Tk)
        return F.embedding(buckets, self.weight).permute(2, 0, 1)[None]  # (1, H, Tq, Tk)


@dataclass
class ScoreBias:
    """What every T5 attention layer of one forward adds to its scores: (B, H, Tq, Tk) float, the position
    bias (0 for cross-attention) with the keys a query may not see at the dtype's minimum."""

    scores: Tensor

    @classmethod
    def of(cls, visible: Tensor, position_bias: Tensor | None, n_heads: int, dtype: torch.dtype) -> ScoreBias:
        """visible (B, Tq, Tk) bool "query may see key"; position_bias (1, H, Tq, Tk) or None (cross-attention)."""
        B, Tq, Tk = visible.shape
        base = torch.zeros(1, n_heads, Tq, Tk, dtype=dtype, device=visible.device) if position_bias is None \
            else position_bias.to(dtype)
        return cls(base.expand(B, n_heads, Tq, Tk).masked_fill(~visible[:, None], torch.finfo(dtype).min))


# --------------------------------------------------------------------------- attention and feed-forward


class T5Attention(nn.Module):
    """Multi-head attention as T5's: q, k, v, o projections without bias, scores q k^T (unscaled) + bias.

    Self-attention reads keys/values from x; cross-attention from `memory` (the encoder's states). With a cache
    (seq2seq.LayerCache) self-attention appends this step's keys/values, cross-attention computes them once."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, cross: bool = False) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.dropout, self.cross = n_heads, d_model // n_heads, dropout, cross
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.o = nn.Linear(d_model, d_model, bias=False)

    def heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

    def forward(self, x: Tensor, bias: ScoreBias, cache=None, use_sdpa: bool = False, need_weights: bool = False,
                memory: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        B, T, D = x.shape
        q = self.heads(self.q(x))
        if self.cross and cache is not None and cache.cross_k is not None:
            k, v = cache.cross_k, cache.cross_v  # the encoder does not change while decoding
        else:
            source = memory if self.cross else x
            k, v = self.heads(self.k(source)), self.heads(self.v(source))
            if cache is not None and self.cross:
                cache.cross_k, cache.cross_v = k, v
            elif cache is not None:
                k, v = cache.append_self(k, v)  # (B, H, past + T, Dh)
        p = self.dropout if self.training else 0.0
        if use_sdpa and not need_weights:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.scores.to(q.dtype), dropout_p=p, scale=1.0)
            weights = None
        else:
            weights = (q @ k.transpose(-1, -2) + bias.scores).softmax(dim=-1)  # (B, H, T, Tk), no 1/sqrt(d_k)
            ctx = dropout(weights, p, self.training) @ v
        return self.o(ctx.transpose(1, 2).reshape(B, T, D)), (weights if need_weights else None)


class GatedFeedForward(nn.Module):
    """T5 v1.1's gated-GELU: W_o (gelu_tanh(W_0 x) * W_1 x), no biases (T5DenseGatedActDense, 'gelu_new')."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.wi_0 = nn.Linear(d_model, d_ff, bias=False)
        self.wi_1 = nn.Linear(d_model, d_ff, bias=False)
        self.wo = nn.Linear(d_ff, d_model, bias=False)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.wo(self.drop(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x)))


# --------------------------------------------------------------------------- blocks


class T5EncoderBlock(nn.Module):
    """x = x + drop(attn(norm(x))); x = x + drop(ff(norm(x)))   (T5Block of the encoder)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(d_model, T5_NORM_EPS)
        self.attn = T5Attention(d_model, n_heads, dropout)
        self.ff_norm = RMSNorm(d_model, T5_NORM_EPS)
        self.ff = GatedFeedForward(d_model, d_ff, dropout)
        self.drop = Dropout(dropout)

    def forward(self, x, attn_bias: ScoreBias, rope=None, use_sdpa=False, need_weights=False):
        a, weights = self.attn(self.attn_norm(x), attn_bias, None, use_sdpa, need_weights)
        x = x + self.drop(a)
        return x + self.drop(self.ff(self.ff_norm(x))), weights


class T5DecoderBlock(nn.Module):
    """Pre-norm: self-attention (causal), cross-attention over the encoder's states, feed-forward, each
    x = x + drop(sublayer(norm(x)))   (T5Block of the decoder)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.self_attn_norm = RMSNorm(d_model, T5_NORM_EPS)
        self.self_attn = T5Attention(d_model, n_heads, dropout)
        self.cross_norm = RMSNorm(d_model, T5_NORM_EPS)
        self.cross_attn = T5Attention(d_model, n_heads, dropout, cross=True)
        self.ff_norm = RMSNorm(d_model, T5_NORM_EPS)
        self.ff = GatedFeedForward(d_model, d_ff, dropout)
        self.drop = Dropout(dropout)

    def forward(self, x, self_bias: ScoreBias, memory, cross_bias: ScoreBias, cache=None, use_sdpa=False,
                need_weights=False):
        """-> (x, self-attention weights, cross-attention weights); the weights are None unless need_weights."""
        a, self_w = self.self_attn(self.self_attn_norm(x), self_bias, cache, use_sdpa, need_weights)
        x = x + self.drop(a)
        a, cross_w = self.cross_attn(self.cross_norm(x), cross_bias, cache, use_sdpa, need_weights, memory=memory)
        x = x + self.drop(a)
        return x + self.drop(self.ff(self.ff_norm(x))), self_w, cross_w


def reset_t5_parameters(module: nn.Module, d_model: int, d_ff: int) -> None:
    """T5's initialisation (initializer_factor 1): the token embedding N(0, 1); q N(0, (d_model d_k)^-1/2) (the
    1/sqrt(d_k) the scores leave out); k, v, the feed-forward's inputs and the position biases N(0, d_model^-1/2);
    o N(0, d_model^-1/2) (H d_k = d_model); wo N(0, d_ff^-1/2); norms 1."""
    for m in module.modules():
        if isinstance(m, T5Attention):
            nn.init.normal_(m.q.weight, std=(d_model * m.head_dim) ** -0.5)
            for lin in (m.k, m.v, m.o):
                nn.init.normal_(lin.weight, std=d_model ** -0.5)
        elif isinstance(m, GatedFeedForward):
            nn.init.normal_(m.wi_0.weight, std=d_model ** -0.5)
            nn.init.normal_(m.wi_1.weight, std=d_model ** -0.5)
            nn.init.normal_(m.wo.weight, std=d_ff ** -0.5)
        elif isinstance(m, RelativePositionBias):
            nn.init.normal_(m.weight, std=d_model ** -0.5)
        elif isinstance(m, RMSNorm):
            nn.init.ones_(m.weight)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=1.0)
