"""Hugging Face weight names for the decoder (backbones/decoder.py): ours <-> LlamaForCausalLM, GPT2LMHeadModel.

A map goes from our backbone's parameter names to theirs; "{i}" stands for a layer index. A tuple
means our tensor is theirs concatenated along dim 0 (our fused [q; k; v] and [gate; up]). GPT-2's
Conv1D layers store their weights transposed ((in, out), not nn.Linear's (out, in)): those names
are listed in HF_GPT2_TRANSPOSED.

    to_hf_llama_state_dict(backbone_sd, lm_head)   -> LlamaForCausalLM's state dict
    from_hf_llama_state_dict(hf_sd)                -> (backbone_sd, lm_head weight)
    hf_llama_config_kwargs(...)                    -> keyword arguments for LlamaConfig
    (the same three for gpt2), and hf_decoder_* which pick by the backbone's style.

The LM head is `lm_head.weight` (V, D) on their side, our LMHead's `embedding.weight`: the token
embedding itself when tied (then tie_word_embeddings=True, and both keys hold the same values).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from ..backbones.decoder import GPT2_LN_EPS, LLAMA_RMS_EPS

HF_LLAMA_NAMES: dict[str, str | tuple[str, ...]] = {
    # ours (DecoderBackbone, style llama) -> transformers.LlamaForCausalLM
    "tok_emb.weight": "model.embed_tokens.weight",
    "layers.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "layers.{i}.attn.qkv.weight": tuple(f"model.layers.{{i}}.self_attn.{n}_proj.weight" for n in "qkv"),
    "layers.{i}.attn.out.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "layers.{i}.ff_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "layers.{i}.ff_in.weight": ("model.layers.{i}.mlp.gate_proj.weight", "model.layers.{i}.mlp.up_proj.weight"),
    "layers.{i}.ff_out.weight": "model.layers.{i}.mlp.down_proj.weight",
    "norm.weight": "model.norm.weight",
}

HF_GPT2_NAMES: dict[str, str | tuple[str, ...]] = {
    # ours (DecoderBackbone, style gpt2) -> transformers.GPT2LMHeadModel
    "tok_emb.weight": "transformer.wte.weight",
    "pos_emb.weight": "transformer.wpe.weight",
    **{f"layers.{{i}}.attn_norm.{p}": f"transformer.h.{{i}}.ln_1.{p}" for p in ("weight", "bias")},
    **{f"layers.{{i}}.attn.qkv.{p}": f"transformer.h.{{i}}.attn.c_attn.{p}" for p in ("weight", "bias")},
    **{f"layers.{{i}}.attn.out.{p}": f"transformer.h.{{i}}.attn.c_proj.{p}" for p in ("weight", "bias")},
    **{f"layers.{{i}}.ff_norm.{p}": f"transformer.h.{{i}}.ln_2.{p}" for p in ("weight", "bias")},
    **{f"layers.{{i}}.ff_in.{p}": f"transformer.h.{{i}}.mlp.c_fc.{p}" for p in ("weight", "bias")},
    **{f"layers.{{i}}.ff_out.{p}": f"transformer.h.{{i}}.mlp.c_proj.{p}" for p in ("weight", "bias")},
    **{f"norm.{p}": f"transformer.ln_f.{p}" for p in ("weight", "bias")},
}
HF_GPT2_TRANSPOSED = frozenset(f"layers.{{i}}.{n}.weight" for n in ("attn.qkv", "attn.out", "ff_in", "ff_out"))

HF_LM_HEAD = "lm_head.weight"
_LAYER = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)\.")


def _n_layers(keys) -> int:
    return 1 + max((int(m.group(1)) for k in keys if (m := _LAYER.search(k))), default=-1)


def _table(names: dict, n_layers: int) -> dict[str, tuple[str, tuple[str, ...]]]:
    """{our name: (our pattern, their names)} for a model with n_layers layers."""
    out = {}
    for ours, theirs in names.items():
        parts = theirs if isinstance(theirs, tuple) else (theirs,)
        for i in range(n_layers) if "{i}" in ours else (None,):
            out[ours.format(i=i)] = (ours, tuple(p.format(i=i) for p in parts))
    return out


def _to_hf(sd: dict[str, Tensor], names: dict, transposed: frozenset, lm_head: Tensor | None) -> dict[str, Tensor]:
    table = _table(names, _n_layers(sd))
    unknown = sorted(set(sd) - set(table))
    if unknown:
        raise KeyError(f"no Hugging Face name for {unknown}; add them to the map in export/hf_decoder_names.py")
    out: dict[str, Tensor] = {}
    for ours, (pattern, theirs) in table.items():
        t = sd[ours].t() if pattern in transposed else sd[ours]
        for name, part in zip(theirs, t.chunk(len(theirs), dim=0)):
            out[name] = part.clone()
    out[HF_LM_HEAD] = (sd["tok_emb.weight"] if lm_head is None else lm_head).clone()
    return out


def _from_hf(hf_sd: dict[str, Tensor], names: dict, transposed: frozenset) -> tuple[dict[str, Tensor], Tensor]:
    """Keys we have no use for (buffers, other heads) are ignored; a missing one is an error."""
    table = _table(names, _n_layers(hf_sd))
    missing = sorted(n for _, theirs in table.values() for n in theirs if n not in hf_sd)
    if missing:
        raise KeyError(f"the Hugging Face state dict lacks {missing[:4]}{' ...' if len(missing) > 4 else ''}")
    sd = {}
    for ours, (pattern, theirs) in table.items():
        t = hf_sd[theirs[0]] if len(theirs) == 1 else torch.cat([hf_sd[n] for n in theirs], dim=0)
        sd[ours] = (t.t() if pattern in transposed else t).clone()
    lm_head = hf_sd.get(HF_LM_HEAD, sd["tok_emb.weight"])  # absent when saved tied
    return sd, lm_head.clone()


def to_hf_llama_state_dict(sd: dict[str, Tensor], lm_head: Tensor | None = None) -> dict[str, Tensor]:
    """Our llama-style backbone state dict (+ the LM head weight; None = tied) -> LlamaForCausalLM's."""
    return _to_hf(sd, HF_LLAMA_NAMES, frozenset(), lm_head)


def from_hf_llama_state_dict(hf_sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
    """LlamaForCausalLM's state dict -> (our backbone state dict, the LM head weight (V, D))."""
    return _from_hf(hf_sd, HF_LLAMA_NAMES, frozenset())


def to_hf_gpt2_state_dict(sd: dict[str, Tensor], lm_head: Tensor | None = None) -> dict[str, Tensor]:
    """Our gpt2-style backbone state dict (+ the LM head weight; None = tied) -> GPT2LMHeadModel's."""
    return _to_hf(sd, HF_GPT2_NAMES, HF_GPT2_TRANSPOSED, lm_head)


def from_hf_gpt2_state_dict(hf_sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
    """GPT2LMHeadModel's state dict -> (our backbone state dict, the LM head weight (V, D))."""
    return _from_hf(hf_sd, HF_GPT2_NAMES, HF_GPT2_TRANSPOSED)


def hf_llama_config_kwargs(
    *, vocab_size: int, d_model: int, n_layers: int, n_heads: int, d_ff: int, max_len: int, dropout: float,
    pad_id: int, rope_theta: float = 10_000.0, tie_embeddings: bool = True, bos_id: int | None = None,
    eos_id: int | None = None, **_: object,
) -> dict:
    """Keyword arguments for `transformers.LlamaConfig` describing a llama-style decoder.

    As many key/value heads as query heads, SiLU gate, no biases, default rope with our theta.
    """
    return dict(
        vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
        num_key_value_heads=n_heads, head_dim=d_model // n_heads, intermediate_size=d_ff, hidden_act="silu",
        max_position_embeddings=max_len, rms_norm_eps=LLAMA_RMS_EPS, attention_bias=False, mlp_bias=False,
        attention_dropout=dropout, rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        tie_word_embeddings=tie_embeddings, pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id,
    )


def hf_gpt2_config_kwargs(
    *, vocab_size: int, d_model: int, n_layers: int, n_heads: int, d_ff: int, max_len: int, dropout: float,
    pad_id: int, tie_embeddings: bool = True, bos_id: int | None = None, eos_id: int | None = None, **_: object,
) -> dict:
    """Keyword arguments for `transformers.GPT2Config` describing a gpt2-style decoder."""
    return dict(
        vocab_size=vocab_size, n_embd=d_model, n_layer=n_layers, n_head=n_heads, n_inner=d_ff,
        n_positions=max_len, activation_function="gelu_new", layer_norm_epsilon=GPT2_LN_EPS,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, scale_attn_weights=True,
        tie_word_embeddings=tie_embeddings, pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id,
    )


HF_DECODER_CLASSES = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "gpt2": ("GPT2Config", "GPT2LMHeadModel")}
"""style -> (transformers config class, causal-LM class)."""


def hf_decoder_config_kwargs(backbone, tie_embeddings: bool, bos_id: int | None = None,
                             eos_id: int | None = None) -> dict:
    """The HF config kwargs for this DecoderBackbone's style (LlamaConfig or GPT2Config)."""
    values = dict(
        vocab_size=backbone.vocab_size, d_model=backbone.d_model, n_layers=backbone.n_layers,
        n_heads=backbone.n_heads, d_ff=backbone.d_ff, max_len=backbone.max_len, dropout=backbone.dropout,
        pad_id=backbone.pad_id, rope_theta=backbone.rope_theta, tie_embeddings=tie_embeddings,
        bos_id=bos_id, eos_id=eos_id,
    )
    return hf_llama_config_kwargs(**values) if backbone.style == "llama" else hf_gpt2_config_kwargs(**values)


def to_hf_decoder_state_dict(style: str, sd: dict[str, Tensor], lm_head: Tensor | None = None) -> dict[str, Tensor]:
    """Our backbone state dict of the given style (+ the LM head; None = tied) -> the HF causal LM's."""
    if style == "llama":
        return to_hf_llama_state_dict(sd, lm_head)
    elif style == "gpt2":
        return to_hf_gpt2_state_dict(sd, lm_head)
    raise ValueError(f"unknown decoder style {style!r}; choose llama or gpt2")


def from_hf_decoder_state_dict(style: str, hf_sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
    """The HF causal LM's state dict -> (our backbone state dict of that style, the LM head weight)."""
    if style == "llama":
        return from_hf_llama_state_dict(hf_sd)
    elif style == "gpt2":
        return from_hf_gpt2_state_dict(hf_sd)
    raise ValueError(f"unknown decoder style {style!r}; choose llama or gpt2")
