"""Causal Transformer decoder in two styles, readable top to bottom (nanoGPT's CausalSelfAttention + Block).

    llama: pre-norm RMSNorm, rotary positions, SwiGLU feed-forward, no biases: computes exactly what
           `transformers.LlamaModel` computes (with as many key/value heads as query heads).
    gpt2:  pre-norm LayerNorm, learned absolute positions, GELU (tanh) feed-forward, biases: exactly
           `transformers.GPT2Model`.

Story of a forward pass:
    ids, mask -> token embedding [+ position embedding, dropout (gpt2)]
              -> n_layers x block(x, visible, cache)     # built once: causal AND same document, (B, 1, T, T) bool
              -> final norm                               -> DecoderOutput(hidden (B, T, D))

`mask` (B, T) is the packed-document mask of every backbone (0 = padding, k >= 1 = k-th document
of the row, see backbones/__init__.py). A token attends to the tokens of its own document at or
before it, never to another document; positions restart at each document. The causal mask is the
one line marked "THE causal mask" in `causal_document_visibility`.

KV cache: `forward(..., cache=KVCache())` stores each layer's keys and values (and the document ids
of the tokens seen), so the next call feeds only the new tokens (see generate.py). The cache is
filled in place and also returned on the output.

Pieces imported from the encoder (transformer.py): `SelfAttention` (its fused q/k/v projection with the
rotary step, `project`, output projection and `attend`), `LayerNorm`, `Dropout`, `rotary_cos_sin`,
`visibility`. New here, because the encoder has no counterpart: `CausalSelfAttention` (the
encoder's attention reads keys from its input only; a decoder also reads the cached ones), `RMSNorm`
(the encoder has LayerNorm only) and the SwiGLU feed-forward (the encoder's is GeGLU). The LM head
lives with its objective (objectives/clm.py), as the MLM head does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import EncoderOutput, positions_from_mask
from .transformer import (Dropout, LayerNorm, SelfAttention, Visibility, apply_rotary, check_heads, rotary_cos_sin,
                          sdpa_by_default, visibility)

STYLES = ("llama", "gpt2")
ATTN_IMPLS = ("auto", "sdpa", "explicit")
LLAMA_RMS_EPS = 1e-6  # LlamaConfig.rms_norm_eps
GPT2_LN_EPS = 1e-5  # GPT2Config.layer_norm_epsilon


# --------------------------------------------------------------------------- cache, mask, output


@dataclass
class KVCache:
    """Keys and values of every layer for the tokens seen so far, and those tokens' document ids.

    keys[i], values[i]: (B, H, T_past, Dh) for layer i (llama keys already rotated); mask: (B, T_past).
    Start with `KVCache()`; DecoderBackbone.forward appends to it in place.
    """

    keys: list[Tensor] = field(default_factory=list)
    values: list[Tensor] = field(default_factory=list)
    mask: Tensor | None = None

    def __len__(self) -> int:
        """T_past: how many tokens the cache holds."""
        return 0 if self.mask is None else self.mask.shape[1]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append this call's k, v (B, H, T, Dh) to `layer`'s; -> that layer's keys, values so far."""
        if layer == len(self.keys):  # the first call: nothing cached for this layer yet
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[layer] = torch.cat((self.keys[layer], k), dim=2)
            self.values[layer] = torch.cat((self.values[layer], v), dim=2)
        return self.keys[layer], self.values[layer]


def causal_document_visibility(mask: Tensor, mask_all: Tensor) -> Visibility:
    """Which of the T_all tokens seen each of the T new ones (the last T) may attend to, (B, 1, T, T_all).

    mask: (B, T) document ids of the new tokens; mask_all: (B, T_all) of every token so far (the
    cached ones first). Visible: the key is in the query's document and not after it.
    Every query sees at least itself (padding sees earlier padding), so no softmax row is empty.
    """
    T, T_all = mask.shape[1], mask_all.shape[1]
    q_idx = torch.arange(T_all - T, T_all, device=mask.device)  # absolute index of each new token
    k_idx = torch.arange(T_all, device=mask.device)
    causal = k_idx[None, :] <= q_idx[:, None]  # (T, T_all) THE causal mask: a token sees itself and earlier ones
    same_doc = mask[:, :, None] == mask_all[:, None, :]  # (B, T, T_all)
    return visibility(same_doc & causal)


@dataclass
class DecoderOutput(EncoderOutput):
    cache: KVCache | None = None
    """The cache passed in, now holding this call's tokens too (None when none was passed)."""


# --------------------------------------------------------------------------- pieces


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, normalised in fp32 and cast back before the weight (LlamaRMSNorm)."""

    def __init__(self, d_model: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class CausalSelfAttention(SelfAttention):
    """The encoder's attention (same fused [q; k; v] projection and `attend`), plus a KV cache.

    The causality itself is in the mask (`causal_document_visibility`); this adds the cached keys and
    values of earlier calls to the ones computed from x.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, bias: bool, layer: int) -> None:
        super().__init__(d_model, n_heads, dropout, bias)
        self.layer = layer  # which slot of the KV cache is this layer's

    def project(self, x: Tensor, rope: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, D) -> q, k, v, each (B, H, T, Dh), q and k rotated when `rope` is given (llama).

        With rotary positions: one matmul per third of the fused weight and the rotation on q and k each, as
        LlamaAttention does; the encoder's one matmul, rotation of a strided (B, T, 2, H, Dh) view and copies
        made the projection's fwd + bwd 11% slower (tiny, fp32, one thread). Without (gpt2): the encoder's.
        """
        if rope is None:
            return super().project(x, rope)
        B, T, _ = x.shape
        cos, sin = (t.squeeze(3).transpose(1, 2) for t in rope)  # (B, T, 1, 1, Dh) -> (B, 1, T, Dh)
        biases = self.qkv.bias.chunk(3) if self.qkv.bias is not None else (None, None, None)
        q, k, v = (F.linear(x, w, b).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
                   for w, b in zip(self.qkv.weight.chunk(3), biases))
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def forward(
        self,
        x: Tensor,
        attn_bias: Visibility,
        rope: tuple[Tensor, Tensor] | None = None,
        cache: KVCache | None = None,
        use_sdpa: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        B, T, D = x.shape
        q, k, v = self.project(x, rope)  # each (B, H, T, Dh); q and k rotated (llama)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, H, T_past + T, Dh)
        ctx, weights = self.attend(q, k, v, attn_bias, use_sdpa, need_weights)
        return self.out(ctx.transpose(1, 2).reshape(B, T, D)), weights


# --------------------------------------------------------------------------- blocks


class LlamaBlock(nn.Module):
    """x = x + attn(RMS(x)); x = x + W_down(silu(g) * u), [g; u] = W_in RMS(x)   (LlamaDecoderLayer).

    Dropout only on the attention weights, as Llama's attention_dropout (it has no residual dropout).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, layer: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(d_model, LLAMA_RMS_EPS)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout, bias=False, layer=layer)
        self.ff_norm = RMSNorm(d_model, LLAMA_RMS_EPS)
        self.ff_in = nn.Linear(d_model, 2 * d_ff, bias=False)  # rows: [gate; up]
        self.ff_out = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x, attn_bias, rope=None, cache=None, use_sdpa=False, need_weights=False):
        a, weights = self.attn(self.attn_norm(x), attn_bias, rope, cache, use_sdpa, need_weights)
        x = x + a
        h = self.ff_norm(x)
        # two matmuls on W_in's halves, as LlamaMLP's gate_proj and up_proj: contiguous outputs, where one
        # matmul and a chunk made strided halves (fwd + bwd 8% slower at tiny, fp32, one thread)
        w_gate, w_up = self.ff_in.weight.chunk(2)
        x = x + self.ff_out(F.silu(F.linear(h, w_gate)) * F.linear(h, w_up))
        return x, weights


class GPT2Block(nn.Module):
    """x = x + drop(attn(LN(x))); x = x + drop(W2 gelu(W1 LN(x)))   (GPT2Block, gelu_new = tanh GELU)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, layer: int) -> None:
        super().__init__()
        self.attn_norm = LayerNorm(d_model, eps=GPT2_LN_EPS)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout, bias=True, layer=layer)
        self.ff_norm = LayerNorm(d_model, eps=GPT2_LN_EPS)
        self.ff_in = nn.Linear(d_model, d_ff)
        self.ff_out = nn.Linear(d_ff, d_model)
        self.drop = Dropout(dropout)

    def forward(self, x, attn_bias, rope=None, cache=None, use_sdpa=False, need_weights=False):
        a, weights = self.attn(self.attn_norm(x), attn_bias, None, cache, use_sdpa, need_weights)
        x = x + self.drop(a)
        x = x + self.drop(self.ff_out(F.gelu(self.ff_in(self.ff_norm(x)), approximate="tanh")))
        return x, weights


# --------------------------------------------------------------------------- backbone


class DecoderBackbone(nn.Module):
    """Decoder: (ids, mask) -> DecoderOutput(hidden (B, T, d_model), attentions, hidden_states, cache).

    style "llama" or "gpt2" (see the module docstring). In the llama style d_ff is the SwiGLU inner
    size (W_in has 2 * d_ff outputs). max_len: the context, in tokens (cached ones included); the
    gpt2 style's position table has that many rows, the llama style's rotary positions need none.
    rope_theta: rotary base (llama). dropout: attention weights (llama); embeddings, attention
    weights and residual branches (gpt2). attn_impl: "auto", "sdpa" or "explicit" (as the encoder's).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        n_heads: int = 4,
        d_ff: int = 1024,
        max_len: int = 512,
        dropout: float = 0.0,
        style: str = "llama",
        pad_id: int = 0,
        rope_theta: float = 10_000.0,
        attn_impl: str = "auto",
    ) -> None:
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"unknown decoder style {style!r}; choose llama or gpt2")
        check_heads(d_model, n_heads, rotary=style == "llama")
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl={attn_impl!r} is not one of {', '.join(ATTN_IMPLS)}")
        self.vocab_size, self.d_model, self.n_layers, self.n_heads = vocab_size, d_model, n_layers, n_heads
        self.d_ff, self.max_len, self.dropout, self.style = d_ff, max_len, dropout, style
        self.pad_id, self.rope_theta, self.attn_impl = pad_id, rope_theta, attn_impl

        self.tok_emb = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        if style == "llama":
            self.pos_emb = None
            self.emb_drop = nn.Identity()
            self.layers = nn.ModuleList(LlamaBlock(d_model, n_heads, d_ff, dropout, i) for i in range(n_layers))
            self.norm = RMSNorm(d_model, LLAMA_RMS_EPS)
            head_dim = d_model // n_heads
            inv_freq = 1.0 / rope_theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim)
            self.register_buffer("inv_freq", inv_freq, persistent=False)
        else:
            self.pos_emb = nn.Embedding(max_len, d_model)
            self.emb_drop = Dropout(dropout)
            self.layers = nn.ModuleList(GPT2Block(d_model, n_heads, d_ff, dropout, i) for i in range(n_layers))
            self.norm = LayerNorm(d_model, eps=GPT2_LN_EPS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Projections and embeddings N(0, 0.02), biases 0, the padding row 0 (as Llama and GPT-2
        initialise); norms keep the weight 1 (and bias 0) they are built with."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.tok_emb.weight[self.pad_id].zero_()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tok_emb

    def forward(
        self,
        ids: Tensor,
        mask: Tensor,
        segment_ids: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        cache: KVCache | None = None,
    ) -> DecoderOutput:
        """ids, mask: (B, T) new tokens (all of them, or those after the cached ones).

        segment_ids: accepted for the backbones' shared call and unused: Llama and GPT-2 have no
        token type embeddings (a sentence pair reads as one text, split by its separator token).
        """
        B, T = ids.shape
        past = len(cache) if cache is not None else 0
        if past + T > self.max_len:
            raise ValueError(
                f"{past + T} tokens ({past} cached + {T} new) exceed the decoder's context max_len={self.max_len}; "
                "shorten the input or build the model with a larger max_len"
            )
        mask_all = mask if cache is None or cache.mask is None else torch.cat((cache.mask, mask), dim=1)
        positions = positions_from_mask(mask_all)[:, past:]  # (B, T), restarting at each document
        if cache is not None:
            cache.mask = mask_all

        # embeddings: token [+ absolute position] -> [dropout]
        x = self.tok_emb(ids)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        x = self.emb_drop(x)

        # what attention computes in: the autocast dtype if autocast is on, else the weights' dtype
        dev = x.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        rope = rotary_cos_sin(positions, self.inv_freq, dtype) if self.style == "llama" else None
        attn_bias = causal_document_visibility(mask, mask_all)  # once, shared by all layers
        use_sdpa = self._use_sdpa(dev, dtype)

        attentions: list[Tensor] | None = [] if output_attentions else None
        hidden_states: list[Tensor] | None = [x] if output_hidden_states else None
        for layer in self.layers:
            x, weights = layer(x, attn_bias, rope, cache, use_sdpa, output_attentions)
            if attentions is not None:
                attentions.append(weights)
            if hidden_states is not None:
                hidden_states.append(x)
        x = self.norm(x)
        return DecoderOutput(hidden=x, attentions=attentions, hidden_states=hidden_states, cache=cache)

    def _use_sdpa(self, device_type: str, dtype: torch.dtype) -> bool:
        """As the encoder decides (`sdpa_by_default`)."""
        if self.attn_impl != "auto":
            return self.attn_impl == "sdpa"
        return sdpa_by_default(device_type, dtype, self.training, self.dropout)
