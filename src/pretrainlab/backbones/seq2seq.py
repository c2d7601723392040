"""Encoder-decoder Transformer in two styles, readable top to bottom.

    bart: post-LN, learned absolute positions (offset by 2, as BART's table is), GELU, biases
          everywhere, a LayerNorm on the embeddings of each side, no embedding scaling, one token
          embedding shared by encoder and decoder (and the LM head's output projection, heads.Seq2SeqLMHead):
          computes exactly what `transformers.BartModel` computes (with the head: what
          BartForConditionalGeneration computes, its logits; models.Seq2SeqLM). The decoder starts from [SEP].
    t5:   T5 v1.1's pre-RMSNorm blocks with relative position buckets, gated-GELU and no biases, a final norm on
          each side, the decoder starting from [PAD] (its blocks: t5.py): with the head (its states scaled by
          d_model**-0.5), what `transformers.T5ForConditionalGeneration` computes.

Story of a forward pass (bart; t5 embeds the tokens alone, adds a bias per query-key distance to the scores, and
normalises each stack's output):
    encoder:  ids, mask -> token + position embeddings -> norm -> dropout
                        -> n_layers x EncoderBlock(x, doc_bias)        # bidirectional, per document
    decoder:  dec_ids   -> token + position embeddings -> norm -> dropout
                        -> n_decoder_layers x DecoderBlock:
                              self-attention (causal, per document) -> cross-attention (reads the
                              encoder's states of the same document) -> feed-forward
    -> Seq2SeqOutput(encoder_hidden, decoder_hidden, ...): hidden states only, as every backbone; the logits
       (decoder_hidden @ tok_emb^T + final_logits_bias) are the LM head's (models.Seq2SeqLM)

Masks are document ids as everywhere in pretrainlab (0 = padding, k >= 1 = k-th document of the
row); a plain 0/1 padding mask is the one-document case, and is what Hugging Face passes. Decoder
document k reads encoder document k. Positions restart at each document, so they equal BART's
0, 1, 2, ... for right-padded rows (the BART tokenizer pads on the right).

Generation (generate.py, with models.Seq2SeqLM) runs the encoder once and then one decoder step per new
token with a `Seq2SeqCache`: each layer's self-attention keys/values grow by one token per step, its
cross-attention keys/values are computed from the encoder's states on the first step only.

What is imported from transformer.py (never copied): the encoder block is `BertBlock` (BART's
encoder layer is BERT's post-LN layer, only with nn.LayerNorm's default eps), attention is
`SelfAttention` and its `attend` (softmax(q k^T / sqrt(d_k) + bias) v, explicit or SDPA), norms,
dropout and `visibility`. Written here because nothing there has it: the decoder's causal
self-attention with a KV cache, cross-attention (queries and keys from different sequences), BART's
position offset and the decoder block. Hugging Face weight names live in export/hf_seq2seq_names.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import EncoderOutput, positions_from_mask
from .decoder import RMSNorm
from .t5 import T5_NORM_EPS, RelativePositionBias, ScoreBias, T5DecoderBlock, T5EncoderBlock, reset_t5_parameters
from .transformer import BertBlock, Dropout, LayerNorm, SelfAttention, Visibility, sdpa_by_default, visibility

STYLES = ("bart", "t5")
ATTN_IMPLS = ("auto", "sdpa", "explicit")
BART_LN_EPS = 1e-5  # BART uses nn.LayerNorm's default eps (BERT's is 1e-12)
BART_POS_OFFSET = 2  # BartLearnedPositionalEmbedding: position p reads row p + 2 (rows 0, 1 unused)


# --------------------------------------------------------------------------- the cache


@dataclass
class LayerCache:
    """One decoder layer's keys/values, each (B, H, ., head_dim)."""

    self_k: Tensor | None = None
    """(B, H, t, Dh): the self-attention keys of every decoder token so far; grows each step."""
    self_v: Tensor | None = None
    cross_k: Tensor | None = None
    """(B, H, S, Dh): the cross-attention keys, from the encoder's states, computed once."""
    cross_v: Tensor | None = None

    def append_self(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add this step's keys/values (B, H, T, Dh); -> all of them so far (B, H, t + T, Dh)."""
        if self.self_k is not None:
            k, v = torch.cat((self.self_k, k), dim=2), torch.cat((self.self_v, v), dim=2)
        self.self_k, self.self_v = k, v
        return k, v


@dataclass
class Seq2SeqCache:
    """What one generation keeps between decoder steps: the encoder's pass and per-layer keys/values.

    Start with `Seq2SeqCache()`; the first forward fills it, later forwards take only the new
    decoder tokens and skip the encoder.
    """

    encoder_hidden: Tensor | None = None
    """(B, S, D) the encoder's output, computed on the first call."""
    encoder_mask: Tensor | None = None
    """(B, S) the encoder's document-id mask."""
    layers: list[LayerCache] = field(default_factory=list)
    length: int = 0
    """Decoder tokens already in the cache (the position of the next one)."""


# --------------------------------------------------------------------------- outputs


@dataclass
class Seq2SeqOutput:
    encoder_hidden: Tensor
    """(B, S, D) the encoder's final hidden states."""
    decoder_hidden: Tensor
    """(B, T, D) the decoder's final hidden states."""
    cache: Seq2SeqCache | None = None
    """The cache passed in, updated (None without one)."""
    encoder_attentions: list[Tensor] | None = None
    """output_attentions: per encoder layer (B, H, S, S) self-attention weights."""
    decoder_attentions: list[Tensor] | None = None
    """output_attentions: per decoder layer (B, H, T, T) causal self-attention weights (with a cache: (B, H, T, past + T))."""
    cross_attentions: list[Tensor] | None = None
    """output_attentions: per decoder layer (B, H, T, S) weights of the decoder's queries over the encoder's states."""
    encoder_hidden_states: list[Tensor] | None = None
    """output_hidden_states: per encoder layer (B, S, D) outputs, embeddings first (probes)."""
    decoder_hidden_states: list[Tensor] | None = None
    """output_hidden_states: per decoder layer (B, T, D) outputs, embeddings first."""


@dataclass
class DecoderStates:
    """What `decode` returns: the final states, and per layer what output_attentions / _hidden_states ask for."""

    hidden: Tensor
    """(B, T, D) the decoder's final hidden states."""
    self_attentions: list[Tensor] | None = None
    cross_attentions: list[Tensor] | None = None
    hidden_states: list[Tensor] | None = None


# --------------------------------------------------------------------------- attention


class CausalSelfAttention(SelfAttention):
    """SelfAttention (same fused qkv, same `attend`) whose keys/values may come from a cache."""

    def forward(self, x: Tensor, attn_bias: Visibility, cache: LayerCache | None, use_sdpa: bool,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T, Dh)
        if cache is not None:
            k, v = cache.append_self(k, v)  # (B, H, past + T, Dh): every decoder token so far
        ctx, weights = self.attend(q, k, v, attn_bias, use_sdpa, need_weights)
        return self.out(ctx.transpose(1, 2).reshape(B, T, D)), weights


class CrossAttention(nn.Module):
    """Decoder queries over the encoder's states: q from x (B, T, D), k and v from memory (B, S, D)."""

    attend = SelfAttention.attend  # the same softmax(q k^T / sqrt(d_k) + bias) v, shared not copied

    def __init__(self, d_model: int, n_heads: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = n_heads, d_model // n_heads, dropout
        self.q = nn.Linear(d_model, d_model, bias=bias)
        self.kv = nn.Linear(d_model, 2 * d_model, bias=bias)  # rows: [k; v]: two sequences, two projections
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x: Tensor, memory: Tensor, attn_bias: Visibility, cache: LayerCache | None, use_sdpa: bool,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        B, T, D = x.shape
        if cache is not None and cache.cross_k is not None:
            k, v = cache.cross_k, cache.cross_v  # the encoder does not change while decoding
        else:
            S = memory.shape[1]
            k, v = self.kv(memory).view(B, S, 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            if cache is not None:
                cache.cross_k, cache.cross_v = k, v
        q = self.q(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        ctx, weights = self.attend(q, k, v, attn_bias, use_sdpa, need_weights)  # weights (B, H, T, S)
        return self.out(ctx.transpose(1, 2).reshape(B, T, D)), weights


# --------------------------------------------------------------------------- blocks


class EncoderBlock(BertBlock):
    """BART's encoder layer: BERT's post-LN block, LayerNorm eps 1e-5 instead of 1e-12."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__(d_model, n_heads, d_ff, dropout)
        self.attn_norm.eps = self.ff_norm.eps = BART_LN_EPS


class DecoderBlock(nn.Module):
    """Post-LN: x = LN(x + self_attn(x)); x = LN(x + cross_attn(x, enc)); x = LN(x + W2 gelu(W1 x))  (BartDecoderLayer)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = CausalSelfAttention(d_model, n_heads, dropout, bias=True)
        self.self_attn_norm = LayerNorm(d_model, eps=BART_LN_EPS)
        self.cross_attn = CrossAttention(d_model, n_heads, dropout, bias=True)
        self.cross_norm = LayerNorm(d_model, eps=BART_LN_EPS)
        self.ff_in = nn.Linear(d_model, d_ff)
        self.ff_out = nn.Linear(d_ff, d_model)
        self.ff_norm = LayerNorm(d_model, eps=BART_LN_EPS)
        self.drop = Dropout(dropout)

    def forward(self, x, self_bias, memory, cross_bias, cache: LayerCache | None = None, use_sdpa: bool = False,
                need_weights: bool = False):
        """-> (x, self-attention weights, cross-attention weights); the weights are None unless need_weights."""
        a, self_w = self.self_attn(x, self_bias, cache, use_sdpa, need_weights)
        x = self.self_attn_norm(x + self.drop(a))
        a, cross_w = self.cross_attn(x, memory, cross_bias, cache, use_sdpa, need_weights)
        x = self.cross_norm(x + self.drop(a))
        return self.ff_norm(x + self.drop(self.ff_out(F.gelu(self.ff_in(x))))), self_w, cross_w


# --------------------------------------------------------------------------- the model


def shift_right(labels: Tensor, decoder_start_id: int, pad_id: int) -> Tensor:
    """BART's shift_tokens_right: decoder input = [start, labels[:-1]], with -100 (ignored labels) -> pad.

    BART starts the decoder with its end-of-sequence token (BartConfig.decoder_start_token_id =
    eos_token_id = 2); pretrainlab's is [SEP], the exported config says so.
    """
    shifted = labels.new_full(labels.shape, decoder_start_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill_(shifted == -100, pad_id)


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder: (ids, mask, decoder_ids, decoder_mask, cache) -> Seq2SeqOutput.

    n_layers encoder blocks, n_decoder_layers (default n_layers) decoder blocks. dropout applies to
    embeddings, residual branches and attention weights (BART's `dropout` and `attention_dropout`).
    attn_impl: "auto", "sdpa" or "explicit", as in TransformerBackbone; may be set at any time.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        n_decoder_layers: int | None = None,
        n_heads: int = 4,
        d_ff: int = 1024,
        max_len: int = 512,
        dropout: float = 0.1,
        style: str = "bart",
        pad_id: int = 0,
        attn_impl: str = "auto",
    ) -> None:
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"unknown encoder-decoder style {style!r}; choose {' or '.join(STYLES)}")
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}; pick n_heads dividing it")
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl={attn_impl!r} is not one of {', '.join(ATTN_IMPLS)}")
        n_decoder_layers = n_layers if n_decoder_layers is None else n_decoder_layers
        self.vocab_size, self.d_model, self.n_layers, self.n_decoder_layers = vocab_size, d_model, n_layers, n_decoder_layers
        self.n_heads, self.d_ff, self.max_len, self.dropout = n_heads, d_ff, max_len, dropout
        self.style, self.pad_id, self.attn_impl = style, pad_id, attn_impl

        self.output_scale = 1.0 if style == "bart" else d_model ** -0.5
        """What the LM head multiplies the decoder's states by before its tied projection (heads.Seq2SeqLMHead):
        1 for bart, d_model**-0.5 for t5 (T5ForConditionalGeneration's scale_decoder_outputs)."""

        # shared: encoder, decoder, output; T5's padding row is trained (the decoder starts from it)
        self.tok_emb = nn.Embedding(vocab_size, d_model, padding_idx=pad_id if style == "bart" else None)
        if style == "bart":
            self._bart_stacks()
        else:
            self._t5_stacks()
        self.emb_drop = Dropout(dropout)
        self.reset_parameters()

    def _bart_stacks(self) -> None:
        """Learned positions and a LayerNorm on the embeddings of each side, post-LN blocks."""
        d, h, f, p = self.d_model, self.n_heads, self.d_ff, self.dropout
        self.enc_pos = nn.Embedding(self.max_len + BART_POS_OFFSET, d)
        self.enc_emb_norm = LayerNorm(d, eps=BART_LN_EPS)
        self.encoder_layers = nn.ModuleList(EncoderBlock(d, h, f, p) for _ in range(self.n_layers))
        self.dec_pos = nn.Embedding(self.max_len + BART_POS_OFFSET, d)
        self.dec_emb_norm = LayerNorm(d, eps=BART_LN_EPS)
        self.decoder_layers = nn.ModuleList(DecoderBlock(d, h, f, p) for _ in range(self.n_decoder_layers))

    def _t5_stacks(self) -> None:
        """A position bias per stack (bidirectional in the encoder), pre-norm blocks, a final norm on each side."""
        d, h, f, p = self.d_model, self.n_heads, self.d_ff, self.dropout
        self.enc_rel = RelativePositionBias(h, bidirectional=True)
        self.encoder_layers = nn.ModuleList(T5EncoderBlock(d, h, f, p) for _ in range(self.n_layers))
        self.enc_norm = RMSNorm(d, T5_NORM_EPS)
        self.dec_rel = RelativePositionBias(h, bidirectional=False)
        self.decoder_layers = nn.ModuleList(T5DecoderBlock(d, h, f, p) for _ in range(self.n_decoder_layers))
        self.dec_norm = RMSNorm(d, T5_NORM_EPS)

    def reset_parameters(self) -> None:
        """BART's initialisation (init_std 0.02): weights N(0, 0.02), biases 0, norms 1, the padding row 0;
        T5's for the t5 style (t5.reset_t5_parameters)."""
        if self.style == "t5":
            reset_t5_parameters(self, self.d_model, self.d_ff)
            return
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.LayerNorm):
                m.reset_parameters()
        with torch.no_grad():
            self.tok_emb.weight[self.pad_id].zero_()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tok_emb

    def decoder_start(self, eos_id: int) -> int:
        """The token the decoder reads first (its input is the target shifted right behind it): BART's
        end-of-sequence token (eos_id, pretrainlab's [SEP]), T5's padding."""
        return eos_id if self.style == "bart" else self.pad_id

    # ------------------------------------------------------------------ encoder

    def encode(self, ids: Tensor, mask: Tensor, output_attentions: bool = False, output_hidden_states: bool = False,
               inputs_embeds: Tensor | None = None) -> EncoderOutput:
        """(B, S) ids and document-id mask -> EncoderOutput(hidden (B, S, D), per-layer attentions / states if asked).

        inputs_embeds: (B, S, D) token embeddings used instead of tok_emb(ids) (integrated gradients)."""
        self._check_length(ids.shape[1], "encoder input")
        tokens = self.tok_emb(ids) if inputs_embeds is None else inputs_embeds
        visible = mask[:, :, None] == mask[:, None, :]  # own document only
        if self.style == "bart":
            x = self.emb_drop(self.enc_emb_norm(tokens + self.enc_pos(positions_from_mask(mask) + BART_POS_OFFSET)))
            bias = visibility(visible)
        else:  # t5: no positions in the embeddings, a bias for each query-key distance instead
            x = self.emb_drop(tokens)
            idx = torch.arange(ids.shape[1], device=x.device)
            bias = ScoreBias.of(visible, self.enc_rel(idx, idx), self.n_heads, self._compute_dtype(x))
        dtype = self._compute_dtype(x)
        use_sdpa = self._use_sdpa(dtype)
        attentions: list[Tensor] | None = [] if output_attentions else None
        states: list[Tensor] | None = [x] if output_hidden_states else None
        for layer in self.encoder_layers:
            x, weights = layer(x, bias, None, use_sdpa, output_attentions)
            if attentions is not None:
                attentions.append(weights)
            if states is not None:
                states.append(x)
        if self.style == "t5":
            x = self.emb_drop(self.enc_norm(x))
            if states is not None:  # as T5Stack's: the last entry is the normed output
                states[-1] = x
        return EncoderOutput(hidden=x, attentions=attentions, hidden_states=states)

    # ------------------------------------------------------------------ decoder

    def decode(
        self, dec_ids: Tensor, memory: Tensor, enc_mask: Tensor, dec_mask: Tensor | None = None,
        cache: Seq2SeqCache | None = None, output_attentions: bool = False, output_hidden_states: bool = False,
        inputs_embeds: Tensor | None = None,
    ) -> DecoderStates:
        """(B, T) decoder ids over encoder states memory (B, S, D) -> DecoderStates(hidden (B, T, D), ...).

        dec_mask: document ids of the decoder tokens (None: one document, no padding). With a
        cache, dec_ids are the new tokens only, at positions cache.length, cache.length + 1, ...
        inputs_embeds: (B, T, D) token embeddings used instead of tok_emb(dec_ids).
        """
        B, T = dec_ids.shape
        past = cache.length if cache is not None else 0
        self._check_length(past + T, "decoder input (with the cache)")
        if cache is not None and dec_mask is not None:
            raise ValueError("decoding with a cache takes one document per row: pass decoder_attention_mask=None")
        tokens = self.tok_emb(dec_ids) if inputs_embeds is None else inputs_embeds
        if self.style == "bart":
            if dec_mask is None:
                positions = torch.arange(past, past + T, device=dec_ids.device).expand(B, T)
            else:
                positions = positions_from_mask(dec_mask)
            x = self.emb_drop(self.dec_emb_norm(tokens + self.dec_pos(positions + BART_POS_OFFSET)))
        else:  # t5: positions only as query-key distances (a document's are those of its own tokens)
            x = self.emb_drop(tokens)

        q_idx = torch.arange(past, past + T, device=x.device)
        k_idx = torch.arange(past + T, device=x.device)
        visible = (k_idx[None, :] <= q_idx[:, None]).expand(B, T, past + T)  # causal: itself and earlier tokens
        if dec_mask is not None:
            visible = visible & (dec_mask[:, :, None] == dec_mask[:, None, :])  # ... of its own document
            # document k reads encoder document k; decoder padding reads every real encoder token (finite, ignored)
            cross_visible = (dec_mask[:, :, None] == enc_mask[:, None, :]) | (dec_mask[:, :, None] == 0)
            cross_visible = cross_visible & (enc_mask[:, None, :] != 0)
        else:
            cross_visible = (enc_mask[:, None, :] != 0).expand(B, T, enc_mask.shape[1])
        dtype = self._compute_dtype(x)
        use_sdpa = self._use_sdpa(dtype)
        if self.style == "bart":
            self_bias, cross_bias = visibility(visible), visibility(cross_visible)  # (B, 1, T, past + T), (B, 1, T, S)
        else:  # (B, H, T, past + T) with the distance biases, (B, H, T, S) without
            self_bias = ScoreBias.of(visible, self.dec_rel(q_idx, k_idx), self.n_heads, dtype)
            cross_bias = ScoreBias.of(cross_visible, None, self.n_heads, dtype)

        if cache is not None and not cache.layers:
            cache.layers = [LayerCache() for _ in self.decoder_layers]
        out = DecoderStates(x, [] if output_attentions else None, [] if output_attentions else None,
                            [x] if output_hidden_states else None)
        for i, layer in enumerate(self.decoder_layers):
            x, self_w, cross_w = layer(x, self_bias, memory, cross_bias, cache.layers[i] if cache is not None else None,
                                       use_sdpa, output_attentions)
            if output_attentions:
                out.self_attentions.append(self_w)
                out.cross_attentions.append(cross_w)
            if output_hidden_states:
                out.hidden_states.append(x)
        if cache is not None:
            cache.length = past + T
        if self.style == "t5":
            x = self.emb_drop(self.dec_norm(x))
            if output_hidden_states:  # as T5Stack's: the last entry is the normed output
                out.hidden_states[-1] = x
        out.hidden = x
        return out

    # ------------------------------------------------------------------ both

    def forward(
        self,
        input_ids: Tensor | None,
        attention_mask: Tensor | None,
        decoder_input_ids: Tensor,
        decoder_attention_mask: Tensor | None = None,
        cache: Seq2SeqCache | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        inputs_embeds: Tensor | None = None,
        decoder_inputs_embeds: Tensor | None = None,
    ) -> Seq2SeqOutput:
        """output_attentions / output_hidden_states: per-layer weights / states of both stacks (explain, probes);
        inputs_embeds / decoder_inputs_embeds: token embeddings instead of looking the ids up (the ids still give
        the lengths). With a cache holding the encoder's pass, the encoder's attentions and states are not returned."""
        enc = None
        if cache is not None and cache.encoder_hidden is not None:
            memory, enc_mask = cache.encoder_hidden, cache.encoder_mask  # encoded on the first step
        else:
            if input_ids is None or attention_mask is None:
                raise ValueError("input_ids and attention_mask are needed unless the cache already holds the encoder's pass")
            enc = self.encode(input_ids, attention_mask, output_attentions, output_hidden_states, inputs_embeds)
            memory, enc_mask = enc.hidden, attention_mask
            if cache is not None:
                cache.encoder_hidden, cache.encoder_mask = memory, enc_mask
        dec = self.decode(decoder_input_ids, memory, enc_mask, decoder_attention_mask, cache, output_attentions,
                          output_hidden_states, decoder_inputs_embeds)
        return Seq2SeqOutput(
            encoder_hidden=memory, decoder_hidden=dec.hidden, cache=cache,
            encoder_attentions=enc.attentions if enc is not None else None, decoder_attentions=dec.self_attentions,
            cross_attentions=dec.cross_attentions, encoder_hidden_states=enc.hidden_states if enc is not None else None,
            decoder_hidden_states=dec.hidden_states)

    def _check_length(self, T: int, what: str) -> None:
        if T > self.max_len:
            raise ValueError(f"{what} has {T} tokens, more than max_len={self.max_len} (the position embeddings); "
                             "truncate it or build the model with a larger max_len")

    @staticmethod
    def _compute_dtype(x: Tensor) -> torch.dtype:
        """What attention computes in: the autocast dtype if autocast is on, else the activations' dtype."""
        dev = x.device.type
        return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype

    def _use_sdpa(self, dtype: torch.dtype) -> bool:
        if self.attn_impl != "auto":
            return self.attn_impl == "sdpa"
        # as TransformerBackbone decides
        return sdpa_by_default(self.tok_emb.weight.device.type, dtype, self.training, self.dropout)
