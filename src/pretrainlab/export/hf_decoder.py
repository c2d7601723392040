"""The decoder and Hugging Face: LlamaFor* / GPT2* models built from our weights, and the config check
that importing a local Llama / GPT-2 folder back needs.

    decoder_hf_model(source)                       # export.hf_model's decoder branch
    decoder_model_section(src, hf_config, notes)   # export.hf_import.import_decoder's config check

  pre-training run (clm)  llama -> LlamaForCausalLM               gpt2 -> GPT2LMHeadModel
  fine-tuned classifier   llama -> LlamaForSequenceClassification gpt2 -> GPT2ForSequenceClassification
                          (our LastTokenClassifier's head -> `score`, pad_token_id set, so that theirs
                          pools the same last real token)

The weight names are export/hf_decoder_names.py's (the causal LMs' base model sits under `model.` /
`transformer.`, as it does in the classification classes). Token ids in the config: bos = [CLS] (the
start token), eos = [SEP] (the end of a text: `generate` stops there), pad = [PAD].

Import (export/hf_import.py's `import_decoder`) reads config.json (model_type llama or gpt2) through
`decoder_model_section`, which refuses what our decoder does not compute: grouped-query attention,
another rotary base or scaling, another activation, biases on Llama.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..backbones.spec import kind_of_hf_model_type
from ..errors import ExportError
from .hf_decoder_names import HF_DECODER_CLASSES, HF_LM_HEAD, hf_decoder_config_kwargs, to_hf_decoder_state_dict

HF_DECODER_CLASSIFIERS = {"llama": "LlamaForSequenceClassification", "gpt2": "GPT2ForSequenceClassification"}
"""style -> the transformers sequence-classification class."""
DECODER_MODEL_TYPES = {"llama": "llama", "gpt2": "gpt2"}
"""config.json model_type -> our decoder style."""
BASE_PREFIX = {"llama": "model.", "gpt2": "transformer."}
"""Where the base model's weights sit in the causal-LM and classification classes."""


# --------------------------------------------------------------------------- export


def decoder_hf_model(source) -> nn.Module:
    """The transformers causal LM (pre-training run) or classifier (fine-tuned) holding our weights (fp32, eval)."""
    import transformers

    bb, special = source.backbone, source.special
    style = bb.style
    config_cls = getattr(transformers, HF_DECODER_CLASSES[style][0])
    sd = {k: v.detach().float() for k, v in bb.state_dict().items()}
    ids = dict(bos_id=special.cls, eos_id=special.sep)
    if source.kind == "causal_lm":
        head = source.model.lm_head
        tied = head.embedding is bb.get_input_embeddings()
        config = config_cls(**hf_decoder_config_kwargs(bb, tied, **ids))
        hf_sd = to_hf_decoder_state_dict(style, sd, None if tied else head.embedding.weight.detach().float())
        model = getattr(transformers, HF_DECODER_CLASSES[style][1])(config)
    else:
        names = source.label_names
        labels = dict(num_labels=len(names), id2label={i: str(x) for i, x in enumerate(names)},
                      label2id={str(x): i for i, x in enumerate(names)})
        config = config_cls(**hf_decoder_config_kwargs(bb, False, **ids), **labels)
        hf_sd = to_hf_decoder_state_dict(style, sd)
        del hf_sd[HF_LM_HEAD]  # a classifier has `score` instead
        hf_sd["score.weight"] = source.model.head.weight.detach().float()
        model = getattr(transformers, HF_DECODER_CLASSIFIERS[style])(config)
    hf_sd = {k: v.contiguous() for k, v in hf_sd.items()}
    missing, unexpected = model.load_state_dict(hf_sd, strict=False)
    missing = [k for k in missing if not (k == HF_LM_HEAD and config.tie_word_embeddings)]  # tied: the embedding
    if missing or unexpected:
        raise ExportError(f"{source.path}: the weight map is incomplete for {type(model).__name__} "
                          f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}); "
                          "the name maps in export/hf_decoder_names.py need updating")
    return model.eval()


def causal_lm_logits_fn(source):
    """For the export check: our logits (B, T, V) for HF-style inputs, with `.generate(inputs, n)` (our greedy
    tokens, stopping at [SEP]) and `.tokenizer` (the prompt template the export's tokenizer has)."""
    from ..generate import generate
    from ..models import CausalLM
    from ..tokenizer import prompt_tokenizer

    lm = CausalLM(source.backbone, source.model.lm_head).eval()

    @torch.no_grad()
    def run(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return lm(inputs["input_ids"], inputs["attention_mask"]).float()

    def greedy(inputs: dict[str, torch.Tensor], n: int) -> list[int]:
        out = generate(lm, inputs["input_ids"], n, temperature=0.0, eos_id=source.special.sep,
                       mask=inputs["attention_mask"], pad_id=source.special.pad)
        return out[0].tolist()

    run.tokenizer = prompt_tokenizer(source.tokenizer)  # type: ignore[attr-defined]
    run.generate = greedy  # type: ignore[attr-defined]
    return run


# --------------------------------------------------------------------------- import


def _refuse(src: Path, what: str) -> None:
    raise ExportError(f"{src}/config.json: {what}")


def _rope_theta(hf: dict[str, Any]) -> tuple[float, str]:
    """(rotary base, rope type) from a v5 `rope_parameters` or a v4 `rope_theta` / `rope_scaling`."""
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    kind = rope.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    return float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))), kind


def decoder_model_section(src: Path, hf: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """config.json of a Llama / GPT-2 -> our `model` section, refusing what our decoder does not compute."""
    style = DECODER_MODEL_TYPES[hf["model_type"]]
    required = {"llama": ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"),
                "gpt2": ("n_embd", "n_layer", "n_head")}[style]
    missing = [k for k in required if not isinstance(hf.get(k), int)]
    if missing:
        _refuse(src, f"model_type {hf['model_type']!r} but no {', '.join(missing)} (whole numbers): it does not "
                     f"describe a {style} model")
    if style == "llama":
        d, heads = hf["hidden_size"], hf["num_attention_heads"]
        if hf.get("num_key_value_heads", heads) != heads:
            _refuse(src, f"num_key_value_heads={hf['num_key_value_heads']} < num_attention_heads={heads} (grouped-query "
                         "attention); pretrainlab's decoder has as many key/value heads as query heads")
        if hf.get("head_dim", d // heads) != d // heads:
            _refuse(src, f"head_dim={hf['head_dim']} is not hidden_size / num_attention_heads = {d // heads}")
        if hf.get("hidden_act", "silu") != "silu":
            _refuse(src, f"hidden_act={hf['hidden_act']!r}; the llama style uses SiLU (SwiGLU)")
        if hf.get("attention_bias") or hf.get("mlp_bias"):
            _refuse(src, "attention_bias / mlp_bias are set; the llama style has no biases")
        theta, kind = _rope_theta(hf)
        if theta != 10_000.0 or kind != "default":
            _refuse(src, f"rotary base {theta} ({kind}); pretrainlab's llama style uses the default rotary with base "
                         "10000 (ModelConfig has no rope_theta yet), so the import would not compute what it computes")
        eps = hf.get("rms_norm_eps", 1e-6)
        if abs(eps - 1e-6) > 1e-12:
            notes.append(f"rms_norm_eps={eps} in config.json; pretrainlab's llama style uses 1e-6 (tiny differences)")
        return dict(backbone=kind_of_hf_model_type(hf["model_type"]), style="llama", preset=None, d_model=d, n_layers=hf["num_hidden_layers"],
                    n_heads=heads, d_ff=hf["intermediate_size"], max_len=hf.get("max_position_embeddings", 2048),
                    dropout=float(hf.get("attention_dropout", 0.0)))
    d = hf["n_embd"]
    if hf.get("activation_function", "gelu_new") != "gelu_new":
        _refuse(src, f"activation_function={hf['activation_function']!r}; the gpt2 style uses gelu_new (tanh GELU)")
    if hf.get("scale_attn_by_inverse_layer_idx") or not hf.get("scale_attn_weights", True):
        _refuse(src, "attention scaling other than 1/sqrt(head size); the gpt2 style scales by that only")
    eps = hf.get("layer_norm_epsilon", 1e-5)
    if abs(eps - 1e-5) > 1e-12:
        notes.append(f"layer_norm_epsilon={eps} in config.json; pretrainlab's gpt2 style uses 1e-5 (tiny differences)")
    return dict(backbone=kind_of_hf_model_type(hf["model_type"]), style="gpt2", preset=None, d_model=d, n_layers=hf["n_layer"], n_heads=hf["n_head"],
                d_ff=hf.get("n_inner") or 4 * d, max_len=hf.get("n_positions", 1024),
                dropout=float(hf.get("resid_pdrop", 0.0)))
