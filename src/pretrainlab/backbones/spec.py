"""One row per backbone kind: everything the rest of pretrainlab asks about a kind (STYLE.md, principle 15).

    BACKBONES["decoder"].has_positions      # True: the input is capped at model.max_len
    BACKBONES[kind].head(style)             # the classifier head it fine-tunes with
    BACKBONES[kind].build(vocab_size=..., ...)  # the backbone module (backbones.build_backbone)

A row is written out in full below; nothing registers itself. Adding a kind (or a style of one) touches
its own backbone file, its row here, and its tests; config, fine-tuning, export, generation and the
training recipe read the row. Importing this module imports no torch (config reads it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


# --------------------------------------------------------------------------- builders (plain values in)
# Keywords only, as backbones.build_backbone passes them: each reads its own and ignores the other kinds' (`_`).


def _transformer(*, vocab_size, d_model, n_layers, n_heads, d_ff, max_len, dropout, type_vocab_size, style, pad_id,
                 extra_norms=False, **_) -> nn.Module:
    from .transformer import TransformerBackbone

    return TransformerBackbone(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads, d_ff=d_ff,
                               max_len=max_len, dropout=dropout, type_vocab_size=type_vocab_size, style=style,
                               pad_id=pad_id, extra_norms=extra_norms)


def _decoder(*, vocab_size, d_model, n_layers, n_heads, d_ff, max_len, dropout, style, pad_id, **_) -> nn.Module:
    from .decoder import DecoderBackbone

    return DecoderBackbone(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads, d_ff=d_ff,
                           max_len=max_len, dropout=dropout, style=style, pad_id=pad_id)


def _seq2seq(*, vocab_size, d_model, n_layers, n_decoder_layers, n_heads, d_ff, max_len, dropout, style, pad_id,
             **_) -> nn.Module:
    from .seq2seq import Seq2SeqTransformer

    return Seq2SeqTransformer(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers,
                              n_decoder_layers=n_decoder_layers or None, n_heads=n_heads, d_ff=d_ff, max_len=max_len,
                              dropout=dropout, style=style, pad_id=pad_id)


def _rnn(*, vocab_size, d_model, n_layers, rnn_cell, dropout, type_vocab_size, pad_id, **_) -> nn.Module:
    from .rnn import RNNBackbone

    return RNNBackbone(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, cell=rnn_cell, dropout=dropout,
                       type_vocab_size=type_vocab_size, pad_id=pad_id)


def _cnn(*, vocab_size, d_model, n_layers, kernel_size, dilations, dropout, type_vocab_size, pad_id, **_) -> nn.Module:
    from .cnn import CNNBackbone

    return CNNBackbone(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, kernel_size=kernel_size,
                       dilations=dilations, dropout=dropout, type_vocab_size=type_vocab_size, pad_id=pad_id)


# --------------------------------------------------------------------------- sizes

PRESETS: Mapping[str, Mapping[str, int]] = MappingProxyType({
    # name: layers / d_model / heads / feed-forward
    "tiny": dict(n_layers=2, d_model=128, n_heads=2, d_ff=512),
    "mini": dict(n_layers=4, d_model=256, n_heads=4, d_ff=1024),
    "small": dict(n_layers=4, d_model=512, n_heads=8, d_ff=2048),
    "medium": dict(n_layers=8, d_model=512, n_heads=8, d_ff=2048),
    "base": dict(n_layers=12, d_model=768, n_heads=12, d_ff=3072),
})
"""The Transformer's sizes; a decoder is sized as the encoder (d_ff is the SwiGLU inner size, as the modern
style's GeGLU)."""
RNN_DIMS: Mapping[str, Mapping[str, int]] = MappingProxyType({
    "tiny": dict(d_model=128, n_layers=6),
    "mini": dict(d_model=256, n_layers=12),
    "small": dict(d_model=512, n_layers=12),
})
"""RNN (d_model, n_layers per direction) whose parameter count (embeddings included) matches the Transformer
preset of the same name at any vocabulary size: same d_model (so the same embedding and tied head), layers
chosen to match the non-embedding parameters. The recurrence makes this slower than the Transformer it
matches (mini: ~0.55x its tokens/s in a bf16 MLM step on 2 threads), so medium and base (24+ layers per
direction) are not offered."""
CNN_DIMS: Mapping[str, Mapping[str, int]] = MappingProxyType({
    "tiny": dict(d_model=128, n_layers=3),
    "mini": dict(d_model=256, n_layers=5),
    "small": dict(d_model=512, n_layers=5),
    "medium": dict(d_model=512, n_layers=10),
})
"""CNN sizes matched the same way (at kernel_size 5)."""
SEQ2SEQ_SIZES: Mapping[str, Mapping[str, int]] = MappingProxyType({
    name: {**p, "n_layers": max(1, p["n_layers"] // 2)} for name, p in PRESETS.items()
})
"""Encoder-decoder sizes matched to the Transformer preset of the same name: the same width, heads and
feed-forward, half the layers on each side (an encoder layer holds ~12 d^2 weights, a decoder layer ~16 d^2
with its cross-attention, so n/2 + n/2 layers hold ~14 d^2 n against the encoder's 12 d^2 n). base is
BART-base exactly: 6 + 6 layers, d 768, 12 heads, feed-forward 3072. The decoder has as many layers as the
encoder unless model.n_decoder_layers says otherwise."""


# --------------------------------------------------------------------------- the row


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone kind is, as the rest of pretrainlab needs to know it."""

    name: str
    """The model.backbone value."""
    build: Callable[..., nn.Module]
    """Plain values (keywords) -> a freshly initialised backbone."""
    styles: tuple[str, ...]
    """The model.style values it takes, the default first."""
    heads: Mapping[str, str]
    """Its classifier head (models.build_classifier) for each style: bert, modern, decoder or bart."""
    presets: Mapping[str, Mapping[str, int]]
    """model.preset -> the sizes it stands for with this kind (a preset missing here has no matched size)."""
    default_objectives: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({"mlm": 1.0}))
    """objective.weights when none is given (a style in style_objectives has its own)."""
    style_objectives: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: MappingProxyType({}))
    """A style's own objective.weights when none is given, where they are not default_objectives (t5: span)."""
    has_positions: bool = False
    """Position embeddings (learned or rotary) cap an input at model.max_len tokens; without them (rnn,
    cnn) any length runs."""
    has_attention: bool = False
    """Multi-head attention: model.n_heads must divide model.d_model."""
    causal: bool = False
    """Each token's state has read only the tokens before it: a true perplexity from its next-token head."""
    lm: str = "masked_lm"
    """What its pre-training run is as a language model: masked_lm (an encoder: mlm's head; exported as
    *ForMaskedLM), causal_lm (continues a prompt: `generate`, *ForCausalLM) or seq2seq_lm (writes a new text
    from its input: `generate`, *ForConditionalGeneration)."""
    fsdp_blocks: tuple[str, ...] = ()
    """The blocks FSDP shards as units of their own, as `module.Class` under backbones/ (none: one unit)."""
    embedding_weight: str = "tok_emb.weight"
    """The token embedding's weight in the backbone's state dict (export checks its rows against the tokenizer)."""
    exporter: str = ""
    """`module:function` under pretrainlab/ that makes the Hugging Face model of an export (export.hf.Source in)."""
    remote_code: bool = False
    """The export holds our own modeling code (trust_remote_code), not a transformers class."""
    hf_model_types: tuple[str, ...] = ()
    """The Hugging Face config.json model_types that `pretrainlab import` reads into this kind."""
    importer: str = ""
    """`module:function` under pretrainlab/ that imports a Hugging Face folder of those model types."""
    architecture_fields: tuple[str, ...] = ()
    """model.* fields that shape it beyond the sizes every kind has (continued pre-training names their differences)."""
    describe: Callable[[Any], str] = lambda m: ""
    """The model section -> what `pretrain` prints after the kind when it starts, e.g. ' (bi-lstm)'."""

    @property
    def default_style(self) -> str:
        return self.styles[0]

    def head(self, style: str) -> str:
        return self.heads[style]

    def objectives(self, style: str | None = None) -> Mapping[str, float]:
        """objective.weights when none is given, for model.style (None: the default style)."""
        return self.style_objectives.get(style if isinstance(style, str) else self.default_style,
                                         self.default_objectives)

    def input_len(self, wanted: int, max_len: int) -> int:
        """The longest input to encode: `wanted`, capped by the positions where there are any."""
        return min(wanted, max_len) if self.has_positions else wanted

    def block_classes(self) -> tuple[type, ...]:
        return tuple(_resolve(f"backbones.{name}", ".") for name in self.fsdp_blocks)

    def export_model(self, source) -> nn.Module:
        return _resolve(self.exporter)(source)

    def import_folder(self, *args, **kwargs):
        return _resolve(self.importer)(*args, **kwargs)


def _resolve(path: str, sep: str = ":") -> Any:
    """'module:name' (or 'module.name' with sep '.') under pretrainlab -> the object."""
    module, _, name = path.rpartition(sep)
    return getattr(importlib.import_module(f"pretrainlab.{module}"), name)


def _same(head: str, styles: tuple[str, ...]) -> Mapping[str, str]:
    return MappingProxyType(dict.fromkeys(styles, head))


ENCODER_STYLES = ("modern", "bert")
"""The bidirectional encoder's styles, which the rnn and cnn accept too (and ignore)."""

BACKBONES: Mapping[str, BackboneSpec] = MappingProxyType({
    "transformer": BackboneSpec(
        name="transformer", build=_transformer, styles=ENCODER_STYLES,
        heads=MappingProxyType({"modern": "modern", "bert": "bert"}), presets=PRESETS,
        has_positions=True, has_attention=True, fsdp_blocks=("transformer.BertBlock", "transformer.ModernBlock"),
        exporter="export.hf:encoder_hf_model", hf_model_types=("bert", "modernbert"),
        importer="export.hf_import:import_encoder", describe=lambda m: f" ({m.style})"),
    "decoder": BackboneSpec(
        name="decoder", build=_decoder, styles=("llama", "gpt2"), heads=_same("decoder", ("llama", "gpt2")),
        presets=PRESETS, default_objectives=MappingProxyType({"clm": 1.0}), has_positions=True, has_attention=True,
        causal=True, lm="causal_lm", fsdp_blocks=("decoder.LlamaBlock", "decoder.GPT2Block"),
        exporter="export.hf_decoder:decoder_hf_model", hf_model_types=("llama", "gpt2"),
        importer="export.hf_import:import_decoder", describe=lambda m: f" ({m.style})"),
    "encoder-decoder": BackboneSpec(
        name="encoder-decoder", build=_seq2seq, styles=("bart", "t5"), heads=_same("bart", ("bart", "t5")),
        presets=SEQ2SEQ_SIZES, default_objectives=MappingProxyType({"infill": 1.0, "permute": 1.0}),
        style_objectives=MappingProxyType({"t5": MappingProxyType({"span": 1.0})}),
        has_positions=True, has_attention=True, lm="seq2seq_lm",
        fsdp_blocks=("transformer.BertBlock", "seq2seq.DecoderBlock", "t5.T5EncoderBlock", "t5.T5DecoderBlock"),
        exporter="export.hf_t5:encoder_decoder_model", hf_model_types=("bart", "t5"),
        importer="export.hf_t5:import_encoder_decoder", architecture_fields=("n_decoder_layers",),
        describe=lambda m: f" ({m.style}, {m.n_layers} + {m.n_decoder_layers or m.n_layers} layers)"),
    "rnn": BackboneSpec(
        name="rnn", build=_rnn, styles=ENCODER_STYLES, heads=_same("bert", ENCODER_STYLES), presets=RNN_DIMS,
        embedding_weight="embed_tokens.weight", exporter="export.remote:remote_model", remote_code=True,
        architecture_fields=("rnn_cell",), describe=lambda m: f" (bi-{m.rnn_cell})"),
    "cnn": BackboneSpec(
        name="cnn", build=_cnn, styles=ENCODER_STYLES, heads=_same("bert", ENCODER_STYLES), presets=CNN_DIMS,
        fsdp_blocks=("cnn.ConvBlock",), embedding_weight="embed_tokens.weight", exporter="export.remote:remote_model",
        remote_code=True, architecture_fields=("kernel_size", "dilations")),
})
"""Every backbone kind, by its model.backbone name."""


def kind_of_hf_model_type(model_type: str) -> str | None:
    """The backbone kind `pretrainlab import` reads a Hugging Face model_type into (None: not supported)."""
    return next((s.name for s in BACKBONES.values() if model_type in s.hf_model_types), None)
