"""The encoder-decoder's t5 style on the Hugging Face side: T5ForConditionalGeneration's weight names and config,
the export and the import (backbones/t5.py is the model; the bart style's counterparts are hf_seq2seq_names.py,
hf.bart_model and hf_import.import_bart, which `encoder_decoder_model` and `import_encoder_decoder` pick by style).

    HF_T5_NAMES                         ours -> transformers.T5ForConditionalGeneration
    to_hf_t5_state_dict(sd)             our backbone's state dict -> theirs (the tied copies of the embedding too)
    from_hf_t5_state_dict(hf_sd)        theirs -> our backbone's (loads with strict=True)
    hf_t5_config_kwargs(bb, ...)        keyword arguments for transformers.T5Config

T5's relative position bias lives in the first layer of each stack (block.0 ... relative_attention_bias) and
is ours at the stack (enc_rel, dec_rel). Hugging Face ties the LM head to the token embedding (transformers 5:
always) and multiplies the decoder's states by d_model**-0.5 first (scale_decoder_outputs, on when the config
says tie_word_embeddings): the t5 style does both (heads.Seq2SeqLMHead with the backbone's output_scale).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..backbones.t5 import MAX_DISTANCE, N_BUCKETS, T5_NORM_EPS
from ..errors import ExportError
from .hf_seq2seq_names import classification_head_to_hf, from_hf_names, labels_kwargs, to_hf_names

_ENC, _DEC = "encoder.block.{i}.layer", "decoder.block.{i}.layer"


def _attention(ours: str, theirs: str) -> dict[str, str]:
    return {f"{ours}.{p}.weight": f"{theirs}.{p}.weight" for p in ("q", "k", "v", "o")}


def _feed_forward(ours: str, theirs: str) -> dict[str, str]:
    return {f"{ours}.{p}.weight": f"{theirs}.{p}.weight" for p in ("wi_0", "wi_1", "wo")}


HF_T5_NAMES: dict[str, str] = {
    # ours -> T5ForConditionalGeneration (every weight a matrix or a norm's scale: T5 has no biases)
    "tok_emb.weight": "shared.weight",
    "enc_rel.weight": "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
    "encoder_layers.{i}.attn_norm.weight": f"{_ENC}.0.layer_norm.weight",
    **_attention("encoder_layers.{i}.attn", f"{_ENC}.0.SelfAttention"),
    "encoder_layers.{i}.ff_norm.weight": f"{_ENC}.1.layer_norm.weight",
    **_feed_forward("encoder_layers.{i}.ff", f"{_ENC}.1.DenseReluDense"),
    "enc_norm.weight": "encoder.final_layer_norm.weight",
    "dec_rel.weight": "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
    "decoder_layers.{i}.self_attn_norm.weight": f"{_DEC}.0.layer_norm.weight",
    **_attention("decoder_layers.{i}.self_attn", f"{_DEC}.0.SelfAttention"),
    "decoder_layers.{i}.cross_norm.weight": f"{_DEC}.1.layer_norm.weight",
    **_attention("decoder_layers.{i}.cross_attn", f"{_DEC}.1.EncDecAttention"),
    "decoder_layers.{i}.ff_norm.weight": f"{_DEC}.2.layer_norm.weight",
    **_feed_forward("decoder_layers.{i}.ff", f"{_DEC}.2.DenseReluDense"),
    "dec_norm.weight": "decoder.final_layer_norm.weight",
}

HF_T5_TIED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")
"""Their copies of shared.weight (tied): written on export, read back only when shared.weight is missing."""


def to_hf_t5_state_dict(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our t5-style Seq2SeqTransformer's state dict -> T5ForConditionalGeneration's."""
    out = to_hf_names(sd, HF_T5_NAMES, "HF_T5_NAMES")
    for name in HF_T5_TIED:
        out[name] = sd["tok_emb.weight"]
    return out


def from_hf_t5_state_dict(hf_sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """T5ForConditionalGeneration's, T5Model's or T5ForSequenceClassification's (its `transformer.`) state dict ->
    our backbone's."""
    if any(k.startswith("transformer.") for k in hf_sd):
        hf_sd = {k.removeprefix("transformer."): v for k, v in hf_sd.items()}
    if "shared.weight" not in hf_sd:  # save_pretrained keeps one of the tied copies
        tied = [k for k in HF_T5_TIED if k in hf_sd]
        if not tied:
            raise KeyError("no token embedding among the weights (shared.weight or its tied copies)")
        hf_sd = {**hf_sd, "shared.weight": hf_sd[tied[0]]}
    return from_hf_names(hf_sd, HF_T5_NAMES)


def hf_t5_config_kwargs(bb: nn.Module, *, pad_id: int, eos_id: int, decoder_start_id: int) -> dict[str, Any]:
    """Keyword arguments for `transformers.T5Config` describing a t5-style Seq2SeqTransformer `bb`: T5 v1.1's
    gated-GELU, its norm eps and buckets, the LM head tied and its input scaled (tie_word_embeddings=True). T5's
    positions are relative only; n_positions (as T5's own configs have it) and max_position_embeddings (what a
    model card's snippet reads) say the max_len pretrainlab caps an input at."""
    return dict(
        vocab_size=bb.vocab_size, d_model=bb.d_model, d_kv=bb.d_model // bb.n_heads, d_ff=bb.d_ff,
        num_layers=bb.n_layers, num_decoder_layers=bb.n_decoder_layers, num_heads=bb.n_heads,
        relative_attention_num_buckets=N_BUCKETS, relative_attention_max_distance=MAX_DISTANCE,
        dropout_rate=bb.dropout, layer_norm_epsilon=T5_NORM_EPS, feed_forward_proj="gated-gelu",
        tie_word_embeddings=True, is_encoder_decoder=True, pad_token_id=pad_id, eos_token_id=eos_id,
        decoder_start_token_id=decoder_start_id, n_positions=bb.max_len, max_position_embeddings=bb.max_len,
    )


# --------------------------------------------------------------------------- export


def encoder_decoder_model(source) -> nn.Module:
    """The encoder-decoder's exporter (its row in backbones/spec.py): bart -> BartFor*, t5 -> T5For*."""
    from .hf import bart_model

    return bart_model(source) if source.backbone.style == "bart" else t5_model(source)


def t5_model(source) -> nn.Module:
    """A t5-style pre-training run as T5ForConditionalGeneration, a fine-tuned one as T5ForSequenceClassification
    (our pooler / head are its classification_head.dense / out_proj; its T5Model is `transformer.`)."""
    from transformers import T5Config, T5ForConditionalGeneration, T5ForSequenceClassification

    from .hf import with_weights

    bb, sp = source.backbone, source.special
    kw = hf_t5_config_kwargs(bb, pad_id=sp.pad, eos_id=sp.sep, decoder_start_id=bb.decoder_start(sp.sep))
    sd = to_hf_t5_state_dict(bb.state_dict())
    if source.kind == "classifier":
        model = T5ForSequenceClassification(T5Config(**kw, **labels_kwargs(source.label_names),
                                                     classifier_dropout=bb.dropout))
        del sd["lm_head.weight"]  # a classifier has classification_head instead
        sd = {f"transformer.{k}": v for k, v in sd.items()} | classification_head_to_hf(source.model)
    else:
        if source.model.lm_head.final_logits_bias.abs().max() > 0:
            raise ExportError(f"{source.path}: its LM head has a logits bias, which T5ForConditionalGeneration lacks")
        model = T5ForConditionalGeneration(T5Config(**kw))
    return with_weights(model, sd, source.path, "export/hf_t5.py")


# --------------------------------------------------------------------------- import

T5_NEEDS = {"feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": N_BUCKETS,
            "relative_attention_max_distance": MAX_DISTANCE, "layer_norm_epsilon": T5_NORM_EPS}
"""config.json values the t5 style computes with (T5 v1.1's feed-forward; T5Config's defaults otherwise)."""


def import_encoder_decoder(src: Path, out: Path, hf: dict[str, Any], *, seq_len: int = 128, quiet: bool = False):
    """The encoder-decoder's importer (its row in backbones/spec.py): a BART folder (hf_import.import_bart) or a T5
    one (T5ForConditionalGeneration, T5ForSequenceClassification or T5Model weights; objective span) -> a
    pretrainlab run; -> ImportReport."""
    from .hf_import import _import_converted, import_bart

    if hf.get("model_type") == "bart":
        return import_bart(src, out, hf, seq_len=seq_len, quiet=quiet)
    return _import_converted(_t5_run, src, out, hf, seq_len, quiet)


def _check_t5_config(src: Path, hf: dict[str, Any], special) -> None:
    from .hf_import import ImportError_

    for key, value in T5_NEEDS.items():
        if hf.get(key, value) != value:
            raise ImportError_(f"{src}/config.json: {key}={hf[key]!r}; pretrainlab's t5 style has {key}={value!r}, "
                               "so the import would not compute what the checkpoint computes")
    if hf["d_model"] != hf.get("d_kv", 64) * hf.get("num_heads", 8):
        raise ImportError_(f"{src}/config.json: d_kv={hf.get('d_kv')} x num_heads={hf.get('num_heads')} is not "
                           f"d_model={hf['d_model']}; pretrainlab's heads split d_model")
    if not hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False):
        raise ImportError_(f"{src}/config.json: the decoder's states reach the LM head unscaled (T5 v1.1's untied "
                           "head); pretrainlab's t5 style ties the head to the token embedding and scales by "
                           "d_model**-0.5, as T5ForConditionalGeneration with tie_word_embeddings=true")
    ids = {"pad_token_id": special.pad, "eos_token_id": special.sep,
           "decoder_start_token_id": special.pad}  # T5's decoder starts from its padding token, and so does ours
    for key, ours in ids.items():
        theirs = hf.get(key, hf.get("pad_token_id") if key == "decoder_start_token_id" else None)
        if theirs is not None and theirs != ours:
            raise ImportError_(f"{src}/config.json: {key}={theirs}, but the tokenizer's token in that role has id "
                               f"{ours}; pretrainlab's t5 style needs them to agree ([PAD] pads and starts the "
                               "decoder, [SEP] ends a text)")


def _t5_run(src: Path, hf: dict[str, Any], sd: dict[str, Tensor], model_type: str, architecture: str,
            n_tokens: int, special, seq_len: int, notes: list[str]):
    """A T5 checkpoint -> (run config: an encoder-decoder of style t5 pre-trained with span, PretrainModel, prefix,
    head state), as hf_import._import_converted asks."""
    from ..backbones.spec import kind_of_hf_model_type
    from ..config import RunConfig, build_section
    from ..runs import build_pretrain_model
    from .hf_import import ImportError_, read_hf_tokenizer

    _check_t5_config(src, hf, special)
    if "lm_head.weight" in sd and "shared.weight" in sd and not torch.equal(sd["lm_head.weight"], sd["shared.weight"]):
        raise ImportError_(f"{src}: lm_head.weight is not the token embedding (an untied T5 v1.1 head); pretrainlab's "
                           "t5 style ties them")
    try:
        backbone_sd = from_hf_t5_state_dict(sd)
    except KeyError as e:
        raise ImportError_(f"{src}: {e.args[0]}") from None
    rows = backbone_sd["tok_emb.weight"].shape[0]
    if rows != n_tokens:
        raise ImportError_(f"{src}: the tokenizer has {n_tokens} tokens but the embedding {rows} rows; "
                           "they do not belong together")
    n_layers = hf.get("num_layers", 6)
    dec_layers = hf.get("num_decoder_layers") or n_layers
    model_cfg = build_section("model", dict(
        backbone=kind_of_hf_model_type(model_type), style="t5", preset=None, d_model=hf["d_model"], n_layers=n_layers,
        n_decoder_layers=0 if dec_layers == n_layers else dec_layers, n_heads=hf.get("num_heads", 8),
        d_ff=hf.get("d_ff", 2048), max_len=hf.get("n_positions", 512), dropout=hf.get("dropout_rate", 0.1)))
    kind = {"WordPiece": "wordpiece", "BPE": "bpe", "Unigram": "unigram"}.get(
        json.loads(read_hf_tokenizer(src).to_str())["model"]["type"], "bpe")
    data_cfg = build_section("data", dict(seq_len=min(seq_len, model_cfg.max_len), vocab_size=n_tokens,
                                          tokenizer_kind=kind))
    cfg = RunConfig(model=model_cfg, data=data_cfg, objective=build_section("objective", {"weights": {"span": 1.0}}))
    model = build_pretrain_model(cfg, n_tokens, special)
    try:
        model.backbone.load_state_dict({k: v.float() for k, v in backbone_sd.items()}, strict=True)
    except RuntimeError as e:
        raise ImportError_(f"{src}: the weights do not fit a t5 encoder-decoder of its config.json ({e})") from None
    notes.append("an encoder-decoder: its output projection is the tied token embedding (no MLM head); the run "
                 "continues with objective span (T5's), --set objective.weights=... to change it")
    return cfg, model, "", "none (the decoder's output projection is the tied token embedding)"
