"""Every Hugging Face weight-name map in one place: backbones, classifier heads, MLM heads.

    to_hf_bert_state_dict(backbone.state_dict(), prefix="bert.")     # ours -> BertModel's names
    from_hf_modernbert_state_dict(hf_sd, prefix="model.")            # ModernBertModel's -> ours
    classifier_head_to_hf(classifier, "bert")                        # pooler + classifier weights
    mlm_head_to_hf(head, "modern") / mlm_head_from_hf(hf_sd, "bert")  # the MLM head, both ways

  bert style   backbone              -> BertModel            (HF_BERT_NAMES)
               Classifier.pooler     -> bert.pooler.dense    (dense + tanh on [CLS])
               Classifier.head       -> classifier
               MLM head dense / norm -> cls.predictions.transform.dense / LayerNorm
               MLM head bias         -> cls.predictions.bias (decoder tied to the word embeddings)
  modern style backbone              -> ModernBertModel      (HF_MODERNBERT_NAMES)
               ModernClassifier.pooler / norm -> head.dense / head.norm (classifier_activation=tanh)
               ModernClassifier.head -> classifier
               MLM head dense / norm -> head.dense / head.norm (classifier_activation=gelu)
               MLM head bias         -> decoder.bias + E @ norm.bias (ModernBERT's head norm has no
                                        bias; a constant added after the norm moves through the tied
                                        decoder as E @ beta, so it folds into the decoder bias exactly)

`hf_*_config_kwargs` describe a backbone as a BertConfig / ModernBertConfig. The export parity
tests (ours vs transformers' logits) and the import tests are the tests of these maps.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from ..backbones.transformer import BERT_LN_EPS, MODERN_LN_EPS, TransformerBackbone


# --------------------------------------------------------------------------- backbones

HF_BERT_NAMES: dict[str, str | tuple[str, ...]] = {
    # ours -> transformers.BertModel; a tuple means our tensor is theirs concatenated along dim 0
    "tok_emb.weight": "embeddings.word_embeddings.weight",
    "pos_emb.weight": "embeddings.position_embeddings.weight",
    "seg_emb.weight": "embeddings.token_type_embeddings.weight",
    "emb_norm.weight": "embeddings.LayerNorm.weight",
    "emb_norm.bias": "embeddings.LayerNorm.bias",
    **{
        f"layers.{{i}}.attn.qkv.{p}": tuple(f"encoder.layer.{{i}}.attention.self.{n}.{p}" for n in ("query", "key", "value"))
        for p in ("weight", "bias")
    },
    **{f"layers.{{i}}.attn.out.{p}": f"encoder.layer.{{i}}.attention.output.dense.{p}" for p in ("weight", "bias")},
    **{f"layers.{{i}}.attn_norm.{p}": f"encoder.layer.{{i}}.attention.output.LayerNorm.{p}" for p in ("weight", "bias")},
    **{f"layers.{{i}}.ff_in.{p}": f"encoder.layer.{{i}}.intermediate.dense.{p}" for p in ("weight", "bias")},
    **{f"layers.{{i}}.ff_out.{p}": f"encoder.layer.{{i}}.output.dense.{p}" for p in ("weight", "bias")},
    **{f"layers.{{i}}.ff_norm.{p}": f"encoder.layer.{{i}}.output.LayerNorm.{p}" for p in ("weight", "bias")},
}

HF_MODERNBERT_NAMES: dict[str, str | tuple[str, ...]] = {
    # ours -> transformers.ModernBertModel (no biases; layer 0 has no attn_norm on either side;
    # our seg_emb has no counterpart, see to_hf_modernbert_state_dict)
    "tok_emb.weight": "embeddings.tok_embeddings.weight",
    "emb_norm.weight": "embeddings.norm.weight",
    "layers.{i}.attn_norm.weight": "layers.{i}.attn_norm.weight",
    "layers.{i}.attn.qkv.weight": "layers.{i}.attn.Wqkv.weight",
    "layers.{i}.attn.out.weight": "layers.{i}.attn.Wo.weight",
    "layers.{i}.ff_norm.weight": "layers.{i}.mlp_norm.weight",
    "layers.{i}.ff_in.weight": "layers.{i}.mlp.Wi.weight",
    "layers.{i}.ff_out.weight": "layers.{i}.mlp.Wo.weight",
    "final_norm.weight": "final_norm.weight",
}

_LAYER = re.compile(r"^layers\.(\d+)\.")


def _to_hf(sd: dict[str, Tensor], names: dict, prefix: str, skip: tuple[str, ...] = ()) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, t in sd.items():
        if key in skip:
            continue
        m = _LAYER.match(key)
        pattern = _LAYER.sub("layers.{i}.", key) if m else key
        if pattern not in names:
            raise KeyError(f"no Hugging Face name for parameter {key!r}; add it to the name map in export/hf_names.py")
        target = names[pattern]
        i = int(m.group(1)) if m else None
        if isinstance(target, tuple):
            for part, name in zip(t.chunk(len(target), dim=0), target):
                out[prefix + name.format(i=i)] = part.clone()
        else:
            out[prefix + target.format(i=i)] = t
    return out


def _from_hf(hf_sd: dict[str, Tensor], names: dict, prefix: str) -> dict[str, Tensor]:
    """Invert `names`; HF keys we have no use for (pooler, task heads, buffers) are ignored."""
    inverse: dict[str, tuple[str, int, int]] = {}  # their pattern -> (our pattern, part, n_parts)
    for ours, theirs in names.items():
        parts = theirs if isinstance(theirs, tuple) else (theirs,)
        for j, name in enumerate(parts):
            inverse[name] = (ours, j, len(parts))
    pieces: dict[str, list[Tensor | None]] = {}
    for key, t in hf_sd.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        m = re.search(r"layer(?:s)?\.(\d+)\.", key)
        pattern = key.replace(m.group(0), m.group(0).replace(m.group(1), "{i}"), 1) if m else key
        if pattern not in inverse:
            continue
        ours, j, n = inverse[pattern]
        ours = ours.format(i=int(m.group(1))) if m else ours
        pieces.setdefault(ours, [None] * n)[j] = t
    out = {}
    for ours, parts in pieces.items():
        if any(p is None for p in parts):
            raise KeyError(f"{ours}: the Hugging Face state dict holds only some of its {len(parts)} parts")
        out[ours] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
    return out


def to_hf_bert_state_dict(sd: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """Our bert-style state dict -> BertModel's (prefix "bert." for BertForMaskedLM/BertForPreTraining).

    A model built with type_vocab_size=0 gets one all-zero token type row (BertModel always adds one).
    """
    out = _to_hf(sd, HF_BERT_NAMES, prefix)
    if "seg_emb.weight" not in sd:
        d = sd["tok_emb.weight"].shape[1]
        out[prefix + HF_BERT_NAMES["seg_emb.weight"]] = sd["tok_emb.weight"].new_zeros(1, d)
    return out


def from_hf_bert_state_dict(hf_sd: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """BertModel's state dict (keys after `prefix`) -> ours; the pooler and heads are left out."""
    return _from_hf(hf_sd, HF_BERT_NAMES, prefix)


def to_hf_modernbert_state_dict(
    sd: dict[str, Tensor], prefix: str = "", drop_segments: bool = False
) -> dict[str, Tensor]:
    """Our modern-style state dict -> ModernBertModel's (prefix "model." for ModernBertForMaskedLM).

    ModernBERT has no segment embeddings. Ours start at zero and stay there unless the model was
    trained with segment ids; then this refuses unless drop_segments=True (outputs will then
    differ for tokens with a non-zero segment id... and for segment 0 if its row moved).
    """
    seg = sd.get("seg_emb.weight")
    if seg is not None and not drop_segments and bool(seg.count_nonzero()):
        raise ValueError(
            "this modern-style model learned segment (token type) embeddings, which ModernBERT does not have; "
            "export with drop_segments=True to discard them (outputs will differ), or use style=bert"
        )
    return _to_hf(sd, HF_MODERNBERT_NAMES, prefix, skip=("seg_emb.weight",))


def from_hf_modernbert_state_dict(
    hf_sd: dict[str, Tensor], prefix: str = "", type_vocab_size: int = 0
) -> dict[str, Tensor]:
    """ModernBertModel's state dict -> ours; with type_vocab_size > 0, adds all-zero segment embeddings."""
    out = _from_hf(hf_sd, HF_MODERNBERT_NAMES, prefix)
    if type_vocab_size > 0:
        out["seg_emb.weight"] = out["tok_emb.weight"].new_zeros(type_vocab_size, out["tok_emb.weight"].shape[1])
    return out


def hf_bert_config_kwargs(
    *, vocab_size: int, d_model: int, n_layers: int, n_heads: int, d_ff: int, max_len: int,
    dropout: float, type_vocab_size: int, pad_id: int, **_: object,
) -> dict:
    """Keyword arguments for `transformers.BertConfig` describing a bert-style backbone."""
    return dict(
        vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
        intermediate_size=d_ff, hidden_act="gelu", hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, max_position_embeddings=max_len,
        type_vocab_size=max(type_vocab_size, 1), layer_norm_eps=BERT_LN_EPS, pad_token_id=pad_id,
    )


def hf_modernbert_config_kwargs(
    *, vocab_size: int, d_model: int, n_layers: int, n_heads: int, d_ff: int, max_len: int,
    dropout: float, pad_id: int, rope_theta: float = 10_000.0, **_: object,
) -> dict:
    """Keyword arguments for `transformers.ModernBertConfig` describing a modern-style backbone.

    Every layer global (global_attn_every_n_layers=1), one rope theta, GELU GLU, no biases. The
    theta/global keywords are the ones transformers 4.x named, which 5.x still reads. Special
    token ids other than padding (bos/eos/cls/sep) are the exporter's to add.
    """
    return dict(
        vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
        intermediate_size=d_ff, hidden_activation="gelu", max_position_embeddings=max_len,
        norm_eps=MODERN_LN_EPS, norm_bias=False, attention_bias=False, mlp_bias=False,
        embedding_dropout=dropout, attention_dropout=dropout, mlp_dropout=dropout,
        global_attn_every_n_layers=1, global_rope_theta=rope_theta, local_rope_theta=rope_theta,
        pad_token_id=pad_id, bos_token_id=None, eos_token_id=None, cls_token_id=None, sep_token_id=None,
    )


def hf_config_kwargs(backbone: TransformerBackbone) -> dict:
    """The HF config kwargs for this backbone's style (BertConfig or ModernBertConfig)."""
    values = dict(
        vocab_size=backbone.vocab_size, d_model=backbone.d_model, n_layers=backbone.n_layers,
        n_heads=backbone.n_heads, d_ff=backbone.d_ff, max_len=backbone.max_len, dropout=backbone.dropout,
        type_vocab_size=backbone.type_vocab_size, pad_id=backbone.pad_id, rope_theta=backbone.rope_theta,
    )
    return hf_bert_config_kwargs(**values) if backbone.style == "bert" else hf_modernbert_config_kwargs(**values)


# --------------------------------------------------------------------------- heads

HF_BERT_CLASSIFIER_NAMES = {
    # Classifier -> BertForSequenceClassification (beside the backbone's "bert." names)
    "pooler.weight": "bert.pooler.dense.weight",
    "pooler.bias": "bert.pooler.dense.bias",
    "head.weight": "classifier.weight",
    "head.bias": "classifier.bias",
}
HF_MODERNBERT_CLASSIFIER_NAMES = {
    # ModernClassifier -> ModernBertForSequenceClassification (its head norm has no bias)
    "pooler.weight": "head.dense.weight",
    "pooler.bias": "head.dense.bias",
    "norm.weight": "head.norm.weight",
    "head.weight": "classifier.weight",
    "head.bias": "classifier.bias",
}
HF_BERT_MLM_HEAD_NAMES = {
    # heads.MLMHead -> BertForMaskedLM's cls.predictions (the bias is also its decoder.bias)
    "dense.weight": "cls.predictions.transform.dense.weight",
    "dense.bias": "cls.predictions.transform.dense.bias",
    "norm.weight": "cls.predictions.transform.LayerNorm.weight",
    "norm.bias": "cls.predictions.transform.LayerNorm.bias",
    "bias": "cls.predictions.bias",
    "embedding.weight": "cls.predictions.decoder.weight",
}
HF_MODERNBERT_MLM_HEAD_NAMES = {
    # heads.MLMHead -> ModernBertForMaskedLM's head + decoder (decoder.bias: see mlm_head_to_hf)
    "dense.weight": "head.dense.weight",
    "dense.bias": "head.dense.bias",
    "norm.weight": "head.norm.weight",
    "embedding.weight": "decoder.weight",
    "bias": "decoder.bias",
}


def classifier_head_to_hf(model: nn.Module, style: str) -> dict[str, Tensor]:
    """The pooler and classifier weights of a Classifier (bert) / ModernClassifier (modern), HF-named."""
    names = HF_BERT_CLASSIFIER_NAMES if style == "bert" else HF_MODERNBERT_CLASSIFIER_NAMES
    sd = model.state_dict()
    return {theirs: sd[ours] for ours, theirs in names.items()}


def mlm_head_to_hf(head: nn.Module, style: str) -> dict[str, Tensor]:
    """An MLMHead's weights under BertForMaskedLM's (bert) or ModernBertForMaskedLM's (modern) names."""
    sd = head.state_dict()
    if style == "bert":
        out = {theirs: sd[ours] for ours, theirs in HF_BERT_MLM_HEAD_NAMES.items()}
        out["cls.predictions.decoder.bias"] = sd["bias"]
        return out
    out = {theirs: sd[ours] for ours, theirs in HF_MODERNBERT_MLM_HEAD_NAMES.items()}
    out["decoder.bias"] = sd["bias"] + sd["embedding.weight"] @ sd["norm.bias"]  # the norm's bias folded in
    return out


def mlm_head_from_hf(sd: dict[str, Tensor], model_type: str) -> dict[str, Tensor] | None:
    """Our MLM head (dense, norm, bias; not the tied embedding) from a bert / modernbert checkpoint's,
    or None when it has none."""
    if model_type == "bert":
        names = HF_BERT_MLM_HEAD_NAMES
        if names["dense.weight"] not in sd:
            return None
        out = {ours: sd[theirs] for ours, theirs in names.items() if ours not in ("bias", "embedding.weight")}
        out["bias"] = sd.get(names["bias"], sd.get("cls.predictions.decoder.bias"))
        return out
    names = HF_MODERNBERT_MLM_HEAD_NAMES
    if names["dense.weight"] not in sd or names["bias"] not in sd:
        return None  # a sequence classifier's head.* is not an MLM head
    d = sd[names["dense.weight"]].shape[0]
    return {"dense.weight": sd[names["dense.weight"]], "dense.bias": sd.get(names["dense.bias"], torch.zeros(d)),
            "norm.weight": sd[names["norm.weight"]], "norm.bias": torch.zeros(d), "bias": sd[names["bias"]]}
