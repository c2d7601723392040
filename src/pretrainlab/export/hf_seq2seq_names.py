"""Hugging Face weight names for the encoder-decoder (backbones/seq2seq.py, style bart).

    HF_BART_NAMES                     ours -> transformers.BartForConditionalGeneration
    to_hf_bart_state_dict(sd, bias)   our backbone's state dict (+ the LM head's bias) -> theirs (strict=True)
    from_hf_bart_state_dict(hf_sd)    theirs -> (our backbone's, the LM head's bias) (loads with strict=True)
    hf_bart_config_kwargs(...)        keyword arguments for transformers.BartConfig

Our fused projections are theirs concatenated along dim 0: `attn.qkv` = [q_proj; k_proj; v_proj],
`cross_attn.kv` = [k_proj; v_proj]. One token embedding is theirs four times over (shared, the
encoder's, the decoder's and lm_head, all tied); our final_logits_bias (V,) is theirs (1, V).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor


def _pairs(ours: str, theirs: str) -> dict[str, str]:
    return {f"{ours}.{p}": f"{theirs}.{p}" for p in ("weight", "bias")}


def _fused(ours: str, theirs: str, parts: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {f"{ours}.{p}": tuple(f"{theirs}.{n}.{p}" for n in parts) for p in ("weight", "bias")}


_ENC, _DEC = "model.encoder.layers.{i}", "model.decoder.layers.{i}"

HF_BART_NAMES: dict[str, str | tuple[str, ...]] = {
    # ours -> BartForConditionalGeneration; a tuple means our tensor is theirs concatenated along dim 0
    "tok_emb.weight": "model.shared.weight",
    "enc_pos.weight": "model.encoder.embed_positions.weight",
    **_pairs("enc_emb_norm", "model.encoder.layernorm_embedding"),
    **_fused("encoder_layers.{i}.attn.qkv", f"{_ENC}.self_attn", ("q_proj", "k_proj", "v_proj")),
    **_pairs("encoder_layers.{i}.attn.out", f"{_ENC}.self_attn.out_proj"),
    **_pairs("encoder_layers.{i}.attn_norm", f"{_ENC}.self_attn_layer_norm"),
    **_pairs("encoder_layers.{i}.ff_in", f"{_ENC}.fc1"),
    **_pairs("encoder_layers.{i}.ff_out", f"{_ENC}.fc2"),
    **_pairs("encoder_layers.{i}.ff_norm", f"{_ENC}.final_layer_norm"),
    "dec_pos.weight": "model.decoder.embed_positions.weight",
    **_pairs("dec_emb_norm", "model.decoder.layernorm_embedding"),
    **_fused("decoder_layers.{i}.self_attn.qkv", f"{_DEC}.self_attn", ("q_proj", "k_proj", "v_proj")),
    **_pairs("decoder_layers.{i}.self_attn.out", f"{_DEC}.self_attn.out_proj"),
    **_pairs("decoder_layers.{i}.self_attn_norm", f"{_DEC}.self_attn_layer_norm"),
    **_pairs("decoder_layers.{i}.cross_attn.q", f"{_DEC}.encoder_attn.q_proj"),
    **_fused("decoder_layers.{i}.cross_attn.kv", f"{_DEC}.encoder_attn", ("k_proj", "v_proj")),
    **_pairs("decoder_layers.{i}.cross_attn.out", f"{_DEC}.encoder_attn.out_proj"),
    **_pairs("decoder_layers.{i}.cross_norm", f"{_DEC}.encoder_attn_layer_norm"),
    **_pairs("decoder_layers.{i}.ff_in", f"{_DEC}.fc1"),
    **_pairs("decoder_layers.{i}.ff_out", f"{_DEC}.fc2"),
    **_pairs("decoder_layers.{i}.ff_norm", f"{_DEC}.final_layer_norm"),
}

HF_BART_TIED = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")
"""Their copies of model.shared.weight (tied): written on export, not read back."""

_INDEX = re.compile(r"\.(\d+)\.")  # the one layer index in a parameter name


def _pattern(key: str) -> tuple[str, int | None]:
    m = _INDEX.search(key)
    return (key[: m.start()] + ".{i}." + key[m.end():], int(m.group(1))) if m else (key, None)


def to_hf_bart_state_dict(sd: dict[str, Tensor], final_logits_bias: Tensor | None = None) -> dict[str, Tensor]:
    """Our Seq2SeqTransformer state dict (+ its LM head's final_logits_bias, heads.Seq2SeqLMHead) ->
    BartForConditionalGeneration's (BartModel's and a classifier's without the bias)."""
    out = to_hf_names(sd, HF_BART_NAMES, "HF_BART_NAMES")
    if final_logits_bias is not None:
        out["final_logits_bias"] = final_logits_bias[None].clone()  # (V,) -> (1, V)
    for name in HF_BART_TIED:
        out[name] = sd["tok_emb.weight"]
    return out


def to_hf_names(sd: dict[str, Tensor], names: dict[str, str | tuple[str, ...]], table: str) -> dict[str, Tensor]:
    """Our state dict -> theirs by a name table (`{i}` the layer index; a tuple: ours is theirs concatenated)."""
    out: dict[str, Tensor] = {}
    for key, t in sd.items():
        pattern, i = _pattern(key)
        if pattern not in names:
            raise KeyError(f"no Hugging Face name for parameter {key!r}; add it to {table} in {__name__}")
        target = names[pattern]
        if isinstance(target, tuple):
            for part, name in zip(t.chunk(len(target), dim=0), target):
                out[name.format(i=i)] = part.clone()
        else:
            out[target.format(i=i)] = t
    return out


def from_hf_bart_state_dict(hf_sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
    """BartForConditionalGeneration's (or BartModel's, with "model." prefixed) state dict -> (our backbone's state
    dict, the LM head's final_logits_bias (V,)).

    The tied copies of the token embedding are not read; a missing final_logits_bias is zero.
    """
    out = from_hf_names(hf_sd, HF_BART_NAMES)
    vocab = out["tok_emb.weight"].shape[0]
    bias = hf_sd.get("final_logits_bias")
    return out, bias.reshape(vocab).clone() if bias is not None else out["tok_emb.weight"].new_zeros(vocab)


def from_hf_names(hf_sd: dict[str, Tensor], names: dict[str, str | tuple[str, ...]]) -> dict[str, Tensor]:
    """Their state dict -> ours by a name table (to_hf_names'); their weights without a name in it are left."""
    inverse: dict[str, tuple[str, int, int]] = {}  # their pattern -> (our pattern, part, n_parts)
    for ours, theirs in names.items():
        parts = theirs if isinstance(theirs, tuple) else (theirs,)
        for j, name in enumerate(parts):
            # a name of one layer's only ("block.0" holds T5's position bias) as the pattern its key has
            inverse[name if "{i}" in name else _pattern(name)[0]] = (ours, j, len(parts))
    pieces: dict[str, list[Tensor | None]] = {}
    for key, t in hf_sd.items():
        pattern, i = _pattern(key)
        if pattern not in inverse:
            continue  # tied copies, task heads
        ours, j, n = inverse[pattern]
        pieces.setdefault(ours.format(i=i), [None] * n)[j] = t
    out: dict[str, Tensor] = {}
    for ours, parts in pieces.items():
        if any(p is None for p in parts):
            raise KeyError(f"{ours}: the Hugging Face state dict holds only some of its {len(parts)} parts")
        out[ours] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
    return out


def classification_head_to_hf(classifier) -> dict[str, Tensor]:
    """A models.Seq2SeqClassifier's pooler and head as BART's (and T5's) classification_head.dense / out_proj."""
    return {"classification_head.dense.weight": classifier.pooler.weight,
            "classification_head.dense.bias": classifier.pooler.bias,
            "classification_head.out_proj.weight": classifier.head.weight,
            "classification_head.out_proj.bias": classifier.head.bias}


def labels_kwargs(label_names) -> dict:
    """A classifier config's num_labels, id2label and label2id for its labels in order."""
    return dict(num_labels=len(label_names), id2label={i: str(x) for i, x in enumerate(label_names)},
                label2id={str(x): i for i, x in enumerate(label_names)})


def hf_bart_config_kwargs(
    *, vocab_size: int, d_model: int, n_layers: int, n_decoder_layers: int, n_heads: int, d_ff: int,
    max_len: int, dropout: float, pad_id: int, bos_id: int, eos_id: int, decoder_start_id: int | None = None,
) -> dict:
    """Keyword arguments for `transformers.BartConfig` describing a bart-style Seq2SeqTransformer.

    decoder_start_id defaults to eos_id, as BART's own configs have it. forced_eos_token_id is None
    (BartConfig's default is 2, which makes `generate` force the end token at max_length):
    pretrainlab's generate forces no token, so Hugging Face's greedy `generate` gives the same
    tokens. (No forced_bos_token_id: BartConfig's default is none.) Our one `dropout` is BART's dropout and attention_dropout.
    """
    return dict(
        vocab_size=vocab_size, d_model=d_model, encoder_layers=n_layers, decoder_layers=n_decoder_layers,
        encoder_attention_heads=n_heads, decoder_attention_heads=n_heads, encoder_ffn_dim=d_ff, decoder_ffn_dim=d_ff,
        activation_function="gelu", dropout=dropout, attention_dropout=dropout, activation_dropout=0.0,
        encoder_layerdrop=0.0, decoder_layerdrop=0.0, max_position_embeddings=max_len, scale_embedding=False,
        init_std=0.02, tie_word_embeddings=True, is_encoder_decoder=True, pad_token_id=pad_id, bos_token_id=bos_id,
        eos_token_id=eos_id, decoder_start_token_id=eos_id if decoder_start_id is None else decoder_start_id,
        forced_eos_token_id=None,
    )
