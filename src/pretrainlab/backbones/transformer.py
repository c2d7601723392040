"""Transformer encoder backbone in two styles, readable top to bottom.

    bert:   post-LN, learned absolute positions, GELU, biases everywhere: computes exactly what
            `transformers.BertModel` computes (its last_hidden_state), weights map 1:1.
    modern: pre-LN, rotary positions, GeGLU feed-forward, no biases: computes exactly what
            `transformers.ModernBertModel` computes with every layer global (no sliding window).

Story of a forward pass:
    ids, mask -> embeddings (token + segment [+ position]) -> norm -> dropout
              -> n_layers x block(x, visible)     # built once: block-diagonal per document, (B, 1, T, T) bool
              -> [final norm (modern)]            -> EncoderOutput

`mask` (B, T): 0 = padding, k >= 1 = k-th document packed into the row. A token attends only to
tokens of its own document; positions restart at each document. Padding query rows attend only
to padding (finite, ignored); real tokens never see padding.

Attention is `softmax(q k^T / sqrt(d_k)) v`, computed by torch's scaled_dot_product_attention (given the
boolean mask, broadcast over the heads: no (B, H, T, T) float bias) or by an explicit matmul-softmax-matmul
(which can also return the weights, and adds a per-head float bias in its batched matmul). `attn_impl` picks one:
"auto" takes the explicit path on CPU in bf16/fp16 (SDPA is ~4.5x slower there, see PERF.md) or
when training with dropout (SDPA's CPU dropout is slow), SDPA elsewhere (GPU, fp32 CPU inference).
Asking for attention weights always takes the explicit path. Set `backbone.attn_impl = "sdpa" |
"explicit"` to force one.

`forward_two_stream` runs XLNet's two-stream attention (content + query stream, same weights) for
permutation language modelling (objectives/plm.py); forward() is untouched by it.

Hugging Face weight names and configs for both styles live in export/hf_names.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import EncoderOutput, positions_from_mask

STYLES = ("bert", "modern")
ATTN_IMPLS = ("auto", "sdpa", "explicit")
BERT_LN_EPS = 1e-12  # BertConfig.layer_norm_eps
MODERN_LN_EPS = 1e-5  # ModernBertConfig.norm_eps


# --------------------------------------------------------------------------- masks and positions


@dataclass
class Visibility:
    """Which keys each query may see: `visible` (B, 1, Tq, Tk) bool, one mask for every head and layer.

    SDPA takes it as it is, broadcast over the heads (on a GPU the memory-efficient kernel reads it); no
    (B, H, Tq, Tk) float bias exists on that path. The explicit path (the fast one on a CPU in bf16,
    ../shared/PERF.md) adds a 0 / -inf bias per head to the scores inside its batched matmul: `bias`
    builds it on first use and every layer of the forward reuses it. Every query row must see at least
    one key, or its softmax is NaN.
    """

    visible: Tensor
    _biases: dict[tuple[int, torch.dtype], Tensor] = field(default_factory=dict, repr=False)

    def bias(self, n_heads: int, dtype: torch.dtype) -> Tensor:
        """(B, H, Tq, Tk) additive bias for the explicit path (built once per forward)."""
        if (n_heads, dtype) not in self._biases:
            self._biases[n_heads, dtype] = visibility_bias(self.visible[:, 0], n_heads, dtype)
        return self._biases[n_heads, dtype]


def visibility(visible: Tensor) -> Visibility:
    """(B, Tq, Tk) bool "query may see key" -> the mask every attention layer of a forward takes."""
    return Visibility(visible[:, None])


def document_visibility(mask: Tensor, causal_rows: Tensor | None = None) -> Visibility:
    """A token sees the tokens that share its document id (B, 1, T, T).

    Padding (id 0) forms its own block, so padding queries attend to padding keys only: every row
    keeps at least itself, no NaN, and real tokens never see padding or other documents.
    causal_rows: (B,) bool, rows whose tokens see only themselves and earlier tokens (GPT-BERT's causal rows).
    """
    visible = mask[:, :, None] == mask[:, None, :]
    if causal_rows is not None:
        T = mask.shape[1]
        earlier = torch.ones(T, T, dtype=torch.bool, device=mask.device).tril()  # a causal row's mask
        visible = visible & (earlier | ~causal_rows.to(mask.device)[:, None, None])
    return visibility(visible)


def visibility_bias(visible: Tensor, n_heads: int, dtype: torch.dtype) -> Tensor:
    """(B, Tq, Tk) bool "query may see key" -> (B, H, Tq, Tk) additive bias (0 / -inf), for the explicit
    path only: materialised per head (not broadcast) so that it fuses into one baddbmm.
    """
    B, Tq, Tk = visible.shape
    bias = torch.zeros(B, n_heads, Tq, Tk, dtype=dtype, device=visible.device)
    return bias.masked_fill_(~visible[:, None], float("-inf"))


def rotary_cos_sin(positions: Tensor, inv_freq: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos, sin of shape (B, T, 1, 1, head_dim) for per-token positions (B, T); computed in fp32."""
    freqs = positions[..., None].float() * inv_freq  # (B, T, head_dim / 2)
    emb = torch.cat((freqs, freqs), dim=-1)[:, :, None, None, :]  # same layout as ModernBERT/Llama
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (i, i + head_dim/2) of x (..., head_dim) by the angles in cos/sin."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


# --------------------------------------------------------------------------- dropout


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """F.dropout, but on CPU 4x16 random bits per 64-bit draw instead of torch's one draw per element.

    torch's CPU bernoulli made dropout over half of a bf16 training step of the mini preset; this is
    ~3-4x cheaper (fwd + bwd). The drop probability is rounded to a multiple of 2^-16 and the kept
    values are scaled by 1 / (1 - that), so the expectation is exact.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True)
    drop = round(p * 65536)
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)  # all 64 bits
    keep = bits.view(torch.int16)[:n].view(x.shape) >= drop - 32768  # P(keep) = 1 - drop / 2^16
    scaled = keep.view(torch.uint8).to(x.dtype).mul_(65536 / (65536 - drop))  # via uint8: 5x faster than bool
    return x * scaled


class Dropout(nn.Dropout):
    """nn.Dropout with the fast CPU mask above."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm that keeps low-precision activations low under autocast.

    Autocast runs layer_norm in fp32: every norm would cast its (B, T, D) input up and hand an
    fp32 residual stream to the next matmul, which casts it down again. The bf16 kernel already
    accumulates its statistics in fp32, so here the input and output stay in the autocast dtype
    (weights cast, D elements). Outside autocast it is plain nn.LayerNorm.
    """

    def forward(self, x: Tensor) -> Tensor:
        kind = x.device.type
        if not torch.is_autocast_enabled(kind):
            return super().forward(x)
        dtype = torch.get_autocast_dtype(kind)
        with torch.autocast(kind, enabled=False):
            w = self.weight.to(dtype) if self.weight is not None else None
            b = self.bias.to(dtype) if self.bias is not None else None
            return F.layer_norm(x.to(dtype), self.normalized_shape, w, b, self.eps)


# --------------------------------------------------------------------------- attention


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection.

    `forward(x, visible)` = project -> (rotary) -> `attend(q, k, v, visible)` -> output projection.
    `attend` is separate, and takes Tq != Tk, so that a second (query) stream, as in XLNet's
    two-stream attention, can reuse the content stream's keys/values with its own queries (the
    first d_model rows of `qkv`) and its own `Visibility`.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, bias: bool, out_norm: bool = False) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)  # rows: [q; k; v], heads contiguous
        # LTG-BERT's extra norm (model.extra_norms): the heads' output normalised before the output projection
        self.out_norm = LayerNorm(d_model, eps=MODERN_LN_EPS, elementwise_affine=False) if out_norm else nn.Identity()
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        x: Tensor,
        visible: Visibility,
        rope: tuple[Tensor, Tensor] | None = None,
        use_sdpa: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        B, T, D = x.shape
        q, k, v = self.project(x, rope)
        ctx, weights = self.attend(q, k, v, visible, use_sdpa, need_weights)
        ctx = ctx.transpose(1, 2).reshape(B, T, D)  # (B, T, H * Dh)
        return self.out(self.out_norm(ctx)), weights

    def project(self, x: Tensor, rope: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, D) -> q, k, v, each (B, H, T, Dh), q and k rotated when `rope` is given."""
        B, T, _ = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim)
        if rope is None:
            q, k, v = qkv.permute(2, 0, 3, 1, 4).contiguous().unbind(0)  # one copy
            return q, k, v
        qk = apply_rotary(qkv[:, :, :2], *rope)  # (B, T, 2, H, Dh): q and k in one op, v left where it is
        q, k = qk.permute(2, 0, 3, 1, 4).contiguous().unbind(0)
        return q, k, qkv[:, :, 2].transpose(1, 2).contiguous()

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, visible: Visibility, use_sdpa: bool, need_weights: bool
    ) -> tuple[Tensor, Tensor | None]:
        """softmax(q k^T / sqrt(d_k), over the visible keys) v for q, k, v (B, H, T, Dh); weights (B, H, T, T)
        if asked."""
        p = self.dropout if self.training else 0.0
        if use_sdpa and not need_weights:  # the boolean mask, broadcast over the heads
            return F.scaled_dot_product_attention(q, k, v, attn_mask=visible.visible, dropout_p=p), None
        B, H, Tq, Dh = q.shape
        Tk = k.shape[2]
        # scale and bias fused into the batched matmul: bias + (q k^T) / sqrt(d_k), (B*H, Tq, Tk)
        scores = torch.baddbmm(
            visible.bias(H, q.dtype).reshape(B * H, Tq, Tk), q.reshape(B * H, Tq, Dh),
            k.reshape(B * H, Tk, Dh).transpose(1, 2), alpha=1.0 / math.sqrt(Dh),
        )
        weights = scores.softmax(dim=-1)
        ctx = torch.bmm(dropout(weights, p, self.training), v.reshape(B * H, Tk, Dh)).view(B, H, Tq, Dh)
        return ctx, (weights.view(B, H, Tq, Tk) if need_weights else None)

    def two_stream(
        self, h: Tensor, g: Tensor, h_bias: Visibility, g_bias: Visibility,
        rope_h: tuple[Tensor, Tensor] | None = None, rope_g: tuple[Tensor, Tensor] | None = None,
        use_sdpa: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """XLNet's two-stream attention, same weights for both streams.

        The content stream h (B, T, D) attends as in forward() under h_bias (B, 1, T, T); the query
        stream g (B, P, D) brings only its queries and reads h's keys/values under g_bias (B, 1, P, T).
        """
        B, T, D = h.shape
        P = g.shape[1]
        qkv = self.qkv(h).view(B, T, 3, self.n_heads, self.head_dim)
        q_bias = self.qkv.bias[:D] if self.qkv.bias is not None else None
        qg = F.linear(g, self.qkv.weight[:D], q_bias).view(B, P, 1, self.n_heads, self.head_dim)  # queries only
        if rope_h is not None:
            qkv = torch.cat((apply_rotary(qkv[:, :, :2], *rope_h), qkv[:, :, 2:]), dim=2)
            qg = apply_rotary(qg, *rope_g)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).contiguous().unbind(0)  # each (B, H, T, Dh)
        qg = qg[:, :, 0].transpose(1, 2).contiguous()  # (B, H, P, Dh)
        ctx_h, _ = self.attend(q, k, v, h_bias, use_sdpa, False)
        ctx_g, _ = self.attend(qg, k, v, g_bias, use_sdpa, False)
        out_h, out_g = (self.out_norm(c.transpose(1, 2).reshape(B, -1, D)) for c in (ctx_h, ctx_g))
        return self.out(out_h), self.out(out_g)


def sdpa_by_default(device_type: str, dtype: torch.dtype, training: bool, dropout: float) -> bool:
    """attn_impl=auto, for every backbone: SDPA on a GPU (but in training under torch's deterministic
    algorithms, train.deterministic: the memory-efficient kernel's backward adds with atomics, in no fixed
    order) and in fp32 CPU inference; the explicit path on a CPU in bf16/fp16 (SDPA is ~4.5x slower there,
    ../shared/PERF.md) and when training with dropout on a CPU (SDPA's dropout uses torch's slow CPU bernoulli)."""
    if device_type != "cpu":
        return not (training and torch.are_deterministic_algorithms_enabled())
    low_precision = dtype in (torch.bfloat16, torch.float16)
    return not (low_precision or (training and dropout > 0))


# --------------------------------------------------------------------------- blocks


class BertBlock(nn.Module):
    """Post-LN: x = LN(x + drop(attn(x))); x = LN(x + drop(W2 gelu(W1 x)))  (BertLayer)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.attn = SelfAttention(d_model, n_heads, dropout, bias=True)
        self.attn_norm = LayerNorm(d_model, eps=BERT_LN_EPS)
        self.ff_in = nn.Linear(d_model, d_ff)
        self.ff_out = nn.Linear(d_ff, d_model)
        self.ff_norm = LayerNorm(d_model, eps=BERT_LN_EPS)
        self.drop = Dropout(dropout)

    def forward(self, x, attn_bias, rope=None, use_sdpa=False, need_weights=False):
        a, weights = self.attn(x, attn_bias, None, use_sdpa, need_weights)
        x = self.attn_norm(x + self.drop(a))
        x = self.ff_norm(x + self.drop(self.ff_out(F.gelu(self.ff_in(x)))))
        return x, weights

    def two_stream(self, h, g, h_bias, g_bias, rope_h=None, rope_g=None, use_sdpa=False):
        """This layer for XLNet's content stream h and query stream g (g's attention reads h)."""
        a_h, a_g = self.attn.two_stream(h, g, h_bias, g_bias, None, None, use_sdpa)
        h, g = self.attn_norm(h + self.drop(a_h)), self.attn_norm(g + self.drop(a_g))
        h, g = (self.ff_norm(x + self.drop(self.ff_out(F.gelu(self.ff_in(x))))) for x in (h, g))
        return h, g


class ModernBlock(nn.Module):
    """Pre-LN: x = x + drop(attn(LN(x))); x = x + W_o drop(gelu(a) * g), [a; g] = W_i LN(x)  (ModernBertEncoderLayer).

    Layer 0 has no attention norm: the embedding norm right before it plays that role. extra_norms (LTG-BERT,
    as NormFormer): two more parameter-free norms, on the attention heads' output before W_o and on gelu(a) * g
    before W_o; no Hugging Face class has them (export refuses such a model).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, first: bool,
                 extra_norms: bool = False) -> None:
        super().__init__()
        self.attn_norm = nn.Identity() if first else LayerNorm(d_model, eps=MODERN_LN_EPS, bias=False)
        self.attn = SelfAttention(d_model, n_heads, dropout, bias=False, out_norm=extra_norms)
        self.ff_norm = LayerNorm(d_model, eps=MODERN_LN_EPS, bias=False)
        self.ff_in = nn.Linear(d_model, 2 * d_ff, bias=False)  # rows: [input; gate]
        self.ff_mid_norm = (LayerNorm(d_ff, eps=MODERN_LN_EPS, elementwise_affine=False) if extra_norms
                            else nn.Identity())
        self.ff_out = nn.Linear(d_ff, d_model, bias=False)
        self.drop = Dropout(dropout)

    def feed_forward(self, x: Tensor) -> Tensor:
        h, gate = self.ff_in(self.ff_norm(x)).chunk(2, dim=-1)
        return self.ff_out(self.drop(self.ff_mid_norm(F.gelu(h) * gate)))

    def forward(self, x, attn_bias, rope=None, use_sdpa=False, need_weights=False):
        a, weights = self.attn(self.attn_norm(x), attn_bias, rope, use_sdpa, need_weights)
        x = x + self.drop(a)
        return x + self.feed_forward(x), weights

    def two_stream(self, h, g, h_bias, g_bias, rope_h=None, rope_g=None, use_sdpa=False):
        """This layer for XLNet's content stream h and query stream g (g's attention reads h)."""
        a_h, a_g = self.attn.two_stream(self.attn_norm(h), self.attn_norm(g), h_bias, g_bias, rope_h, rope_g, use_sdpa)
        out = []
        for x, a in ((h, a_h), (g, a_g)):
            x = x + self.drop(a)
            out.append(x + self.feed_forward(x))
        return out[0], out[1]


# --------------------------------------------------------------------------- backbone


def check_heads(d_model: int, n_heads: int, rotary: bool) -> None:
    """Heads must divide the width, and rotary positions need an even head size (encoder and decoder alike)."""
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}; pick n_heads dividing it")
    if rotary and (d_model // n_heads) % 2:
        raise ValueError(f"rotary positions need an even head size, got d_model/n_heads={d_model // n_heads}")


class TransformerBackbone(nn.Module):
    """Encoder: (ids, mask, segment_ids) -> EncoderOutput(hidden (B, T, d_model), attentions, hidden_states).

    style "bert" or "modern" (see the module docstring). In the modern style d_ff is the GeGLU
    inner size: W_i has 2 * d_ff outputs, so the feed-forward holds 1.5x the parameters of a bert
    one with the same d_ff (ModernBERT-base uses d_ff = 1.5 * d_model). rope_theta: rotary base
    (modern only). attn_impl: "auto", "sdpa" or "explicit"; an attribute, may be set at any time.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        n_heads: int = 4,
        d_ff: int = 1024,
        max_len: int = 512,
        dropout: float = 0.1,
        type_vocab_size: int = 2,
        style: str = "bert",
        pad_id: int = 0,
        rope_theta: float = 10_000.0,
        attn_impl: str = "auto",
        extra_norms: bool = False,
    ) -> None:
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"unknown transformer style {style!r}; choose bert or modern")
        if extra_norms and style != "modern":
            raise ValueError("extra_norms (LTG-BERT's) go with the modern style")
        self.extra_norms = extra_norms
        check_heads(d_model, n_heads, rotary=style == "modern")
        self.vocab_size, self.d_model, self.n_layers, self.n_heads = vocab_size, d_model, n_layers, n_heads
        self.d_ff, self.max_len, self.dropout, self.type_vocab_size = d_ff, max_len, dropout, type_vocab_size
        self.style, self.pad_id, self.rope_theta = style, pad_id, rope_theta
        self.norm_eps = BERT_LN_EPS if style == "bert" else MODERN_LN_EPS
        """The LayerNorms' eps; the MLM head on this backbone normalises with it too (as Bert/ModernBertForMaskedLM)."""
        self.attn_impl = attn_impl
        """auto | sdpa | explicit; may be changed after construction."""

        self.tok_emb = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.seg_emb = nn.Embedding(type_vocab_size, d_model) if type_vocab_size > 0 else None
        if style == "modern" and self.seg_emb is not None:
            # ModernBERT has no token types: the table stays zero and frozen (kept only so that the
            # state_dict of every style has the same keys). Frozen, it is no parameter that DDP/FSDP
            # see go unused in a packed batch (which carries no segment ids).
            self.seg_emb.weight.requires_grad_(False)
        self.emb_drop = Dropout(dropout)
        if style == "bert":
            self.pos_emb = nn.Embedding(max_len, d_model)
            self.emb_norm = LayerNorm(d_model, eps=BERT_LN_EPS)
            self.layers = nn.ModuleList(BertBlock(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
            self.final_norm = None
        else:
            self.pos_emb = None
            self.emb_norm = LayerNorm(d_model, eps=MODERN_LN_EPS, bias=False)
            self.layers = nn.ModuleList(
                ModernBlock(d_model, n_heads, d_ff, dropout, first=i == 0, extra_norms=extra_norms)
                for i in range(n_layers)
            )
            self.final_norm = LayerNorm(d_model, eps=MODERN_LN_EPS, bias=False)
            head_dim = d_model // n_heads
            inv_freq = 1.0 / rope_theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim)
            self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT initialisation: weights N(0, 0.02), biases 0, norms 1, the padding row 0.

        The modern style's segment embedding starts at 0: ModernBERT has none, so a model never
        given segment ids stays exactly exportable (and the first NSP/SOP step still trains it).
        """
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm) and m.weight is not None:  # extra_norms' have no parameters
                nn.init.ones_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.tok_emb.weight[self.pad_id].zero_()
            if self.style == "modern" and self.seg_emb is not None:
                self.seg_emb.weight.zero_()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tok_emb

    def forward(
        self,
        ids: Tensor,
        mask: Tensor,
        segment_ids: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        causal_rows: Tensor | None = None,
    ) -> EncoderOutput:
        """causal_rows: (B,) bool, rows that attend causally (objective hybrid's causal LM rows); None: none."""
        B, T = ids.shape
        positions = positions_from_mask(mask)  # (B, T), restarting at each document

        # embeddings: token + segment [+ absolute position] -> norm -> dropout
        x = self.tok_emb(ids)
        if self.seg_emb is not None:
            if segment_ids is not None:
                x = x + self.seg_emb(segment_ids)
            elif self.style == "bert":  # BertModel adds token type 0 when none is given
                x = x + self.seg_emb.weight[0]
        if self.style == "bert":
            if T > self.max_len:
                raise ValueError(
                    f"sequence length {T} exceeds max_len={self.max_len} (the position embeddings); "
                    "truncate inputs or build the model with a larger max_len"
                )
            x = x + self.pos_emb(positions)
        x = self.emb_drop(self.emb_norm(x))

        # what attention computes in: the autocast dtype if autocast is on, else the weights' dtype
        dev = x.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        rope = rotary_cos_sin(positions, self.inv_freq, dtype) if self.style == "modern" else None
        use_sdpa = self._use_sdpa(dev, dtype)
        attn_bias = document_visibility(mask, causal_rows)  # once per forward, shared by all layers

        attentions: list[Tensor] | None = [] if output_attentions else None
        hidden_states: list[Tensor] | None = [x] if output_hidden_states else None
        for layer in self.layers:
            x, weights = layer(x, attn_bias, rope, use_sdpa, output_attentions)
            if attentions is not None:
                attentions.append(weights)
            if hidden_states is not None:
                hidden_states.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return EncoderOutput(hidden=x, attentions=attentions, hidden_states=hidden_states)

    def forward_two_stream(
        self,
        ids: Tensor,
        mask: Tensor,
        segment_ids: Tensor | None,
        content_visible: Tensor,
        query_index: Tensor,
        query_visible: Tensor,
        query_id: int,
    ) -> tuple[Tensor, Tensor]:
        """XLNet's two-stream pass (permutation language modelling) with this encoder's weights.

        content_visible: (B, T, T) bool, key j visible to content position i (it replaces the document
            mask: the caller keeps documents apart); every row must see at least one key.
        query_index: (B, P) positions that get a query stream, whose input is the embedding of
            `query_id` ([MASK]) at that position: it knows where it is, not which token is there.
        query_visible: (B, P, T) bool, content keys each query may read; at least one per row.
        -> (content stream (B, T, D), query stream (B, P, D)). With every key visible, the content
        stream is exactly forward()'s hidden state, so the trained weights fine-tune as usual.
        """
        T = ids.shape[1]
        if self.style == "bert" and T > self.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len={self.max_len} (the position embeddings)")
        positions = positions_from_mask(mask)
        q_positions = positions.gather(1, query_index)
        q_segments = segment_ids.gather(1, query_index) if segment_ids is not None else None

        def embed(tokens: Tensor, segments: Tensor | None, pos: Tensor) -> Tensor:  # as forward() embeds
            x = self.tok_emb(tokens)
            if self.seg_emb is not None:
                if segments is not None:
                    x = x + self.seg_emb(segments)
                elif self.style == "bert":
                    x = x + self.seg_emb.weight[0]
            if self.style == "bert":
                x = x + self.pos_emb(pos)
            return self.emb_drop(self.emb_norm(x))

        h = embed(ids, segment_ids, positions)  # (B, T, D)
        g = embed(torch.full_like(query_index, query_id), q_segments, q_positions)  # (B, P, D)
        dev = h.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else h.dtype
        rope_h = rope_g = None
        if self.style == "modern":
            rope_h = rotary_cos_sin(positions, self.inv_freq, dtype)
            rope_g = rotary_cos_sin(q_positions, self.inv_freq, dtype)
        use_sdpa = self._use_sdpa(dev, dtype)
        h_bias = visibility(content_visible)  # (B, 1, T, T)
        g_bias = visibility(query_visible)  # (B, 1, P, T)
        for layer in self.layers:
            h, g = layer.two_stream(h, g, h_bias, g_bias, rope_h, rope_g, use_sdpa)
        if self.final_norm is not None:
            h, g = self.final_norm(h), self.final_norm(g)
        return h, g

    def _use_sdpa(self, device_type: str, dtype: torch.dtype) -> bool:
        if self.attn_impl == "sdpa":
            return True
        if self.attn_impl == "explicit":
            return False
        if self.attn_impl != "auto":
            raise ValueError(f"attn_impl={self.attn_impl!r} is not one of {', '.join(ATTN_IMPLS)}")
        return sdpa_by_default(device_type, dtype, self.training, self.dropout)
