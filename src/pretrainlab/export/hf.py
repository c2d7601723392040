"""Export to a Hugging Face folder that `transformers` loads offline, with equal logits.

    export("runs/mini/finetune-mr", "hf/mini-mr")       # a fine-tuned classifier -> *ForSequenceClassification
    export("runs/mini", "hf/mini-mlm")                  # a pre-training run      -> *ForMaskedLM
    export("runs/gpt", "hf/gpt")                        # a decoder's run         -> LlamaForCausalLM / GPT2LMHeadModel
    export("runs/bart", "hf/bart")                      # an encoder-decoder's    -> BartForConditionalGeneration
    check_export("hf/mini-mr", logits_fn("runs/mini/finetune-mr"), tokenizer=...)  # the snippet below, compared

The folder holds config.json (with id2label / label2id), model.safetensors and the tokenizer
(tokenizer.json + tokenizer_config.json: PreTrainedTokenizerFast). The weight-name maps, backbone
and heads, are export/hf_names.py's:

  bert style   -> BertForSequenceClassification / BertForMaskedLM
  modern style -> ModernBertForSequenceClassification / ModernBertForMaskedLM
  rnn / cnn    no transformers classes exist: the folder carries our own as remote code
               (export/remote: configuration_pretrainlab.py, modeling_pretrainlab.py, `auto_map`
               in config.json); loading takes `trust_remote_code=True`
  decoder      LlamaForCausalLM / GPT2LMHeadModel, LlamaForSequenceClassification /
               GPT2ForSequenceClassification (export/hf_decoder.py); a causal LM's tokenizer encodes a
               prompt as `[CLS] A` (start token, no end token; left padding), so that
               `model.generate(**tokenizer(prompt, return_tensors="pt"))` continues it as we do
  encoder-decoder (bart) -> BartForSequenceClassification / BartForConditionalGeneration
               (export/hf_seq2seq_names.py); AutoModelForSeq2SeqLM's greedy `generate` writes what
               `pretrainlab generate` writes

The check runs the model card's snippet in a fresh process with HF_HUB_OFFLINE=1, so the
folder must load with no network, and compares its logits with pretrainlab's (for a causal LM also
its greedy `generate` with ours).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..backbones.spec import BACKBONES
from ..checkpoint import latest_checkpoint
from ..config import ModelConfig
from ..errors import ExportError, PretrainlabError

CHECK_TEXT = "This is a great movie!"
EXPORT_INFO = "pretrainlab_export.json"

# The check, as a user would run it (the model card's snippet), plus one JSON line for the comparison.
SNIPPET_CLASSIFIER = """\
import json, sys
from transformers import AutoModelForSequenceClassification, AutoTokenizer
DIR, TEXT = sys.argv[1], sys.argv[2]
model = AutoModelForSequenceClassification.from_pretrained(DIR)
tokenizer = AutoTokenizer.from_pretrained(DIR)
inputs = tokenizer(TEXT, return_tensors="pt")
outputs = model(**inputs)
print(model.config.id2label[outputs.logits.argmax().item()])
print("PRETRAINLAB-CHECK", json.dumps({"logits": outputs.logits.tolist(),
                                       **{k: v.tolist() for k, v in inputs.items()}}))
"""
GENERATE_CHECK_TOKENS = 12
"""New tokens the causal-LM check generates greedily on both sides."""
SNIPPET_CAUSAL_LM = f"""\
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
DIR, TEXT = sys.argv[1], sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(DIR)
tokenizer = AutoTokenizer.from_pretrained(DIR)
inputs = tokenizer(TEXT, return_tensors="pt")
generated = model.generate(**inputs, do_sample=False, max_new_tokens={GENERATE_CHECK_TOKENS})
print(tokenizer.decode(generated[0], skip_special_tokens=True))
outputs = model(**inputs)
print("PRETRAINLAB-CHECK", json.dumps({{"logits": outputs.logits.tolist(), "generated": generated[0].tolist(),
                                       **{{k: v.tolist() for k, v in inputs.items()}}}}))
"""
SNIPPET_SEQ2SEQ_LM = """\
import json, sys
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
DIR, TEXT = sys.argv[1], sys.argv[2]
model = AutoModelForSeq2SeqLM.from_pretrained(DIR)
tokenizer = AutoTokenizer.from_pretrained(DIR)
inputs = tokenizer(TEXT, return_tensors="pt")
generated = model.generate(**inputs, max_new_tokens=min(16, model.config.max_position_embeddings - 1))
print(tokenizer.decode(generated[0], skip_special_tokens=True))
outputs = model(**inputs, decoder_input_ids=generated)
print("PRETRAINLAB-CHECK", json.dumps({"logits": outputs.logits.tolist(), "decoder_input_ids": generated.tolist(),
                                       **{k: v.tolist() for k, v in inputs.items()}}))
"""
SNIPPET_MASKED_LM = """\
import json, sys
from transformers import AutoModelForMaskedLM, AutoTokenizer
DIR, TEXT = sys.argv[1], sys.argv[2]
model = AutoModelForMaskedLM.from_pretrained(DIR)
tokenizer = AutoTokenizer.from_pretrained(DIR)
inputs = tokenizer(TEXT.replace("[MASK]", tokenizer.mask_token), return_tensors="pt")
outputs = model(**inputs)
where = (inputs["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0]
print(tokenizer.convert_ids_to_tokens(outputs.logits[0, where].argmax().item()))
print("PRETRAINLAB-CHECK", json.dumps({"logits": outputs.logits.tolist(),
                                       **{k: v.tolist() for k, v in inputs.items()}}))
"""


# --------------------------------------------------------------------------- what is exported


@dataclass
class Source:
    """A fine-tuned classifier or a pre-training run, loaded for export."""

    kind: str
    """classifier, masked_lm, causal_lm (a decoder's pre-training run) or seq2seq_lm (an encoder-decoder's)."""
    model: nn.Module
    """Classifier (either head), or PretrainModel."""
    backbone: nn.Module
    tokenizer: Any
    special: Any
    style: str
    label_names: list[Any] | None
    pooling: str | None
    path: Path
    backbone_kind: str = ModelConfig.backbone
    """model.backbone: its row in backbones/spec.py says how it exports."""


def load_source(src: str | Path) -> Source:
    """A fine-tuned model directory (classifier.json) or a pre-training run (config.yaml + checkpoint)."""
    from ..models import head_kind
    from ..runs import is_classifier_dir, load_classifier, load_pretrained

    src = Path(src)
    if is_classifier_dir(src):
        kind = _check_backbone(src, _read_model_section(src))
        _check_vocab(src / "model.safetensors", _embedding_key(kind), src / "tokenizer.json")
        ft = load_classifier(src)
        return Source("classifier", ft.model, ft.model.backbone, ft.tokenizer, ft.special, head_kind(ft.config.model),
                      list(ft.label_names), ft.meta["pooling"], src, kind)
    if (src / "config.yaml").is_file():
        kind = _check_backbone(src, _read_model_section(src))
        if latest_checkpoint(src) is None:
            raise ExportError(f"{src} has no checkpoint: nothing to export yet; pre-train it first "
                              f"(pretrainlab pretrain --out {src}) or wait for its first checkpoint")
        _check_vocab(latest_checkpoint(src) / "model.safetensors", _embedding_key(kind), src / "tokenizer.json")
        pre = load_pretrained(src)
        lm = BACKBONES[kind].lm  # a decoder's and an encoder-decoder's objectives all train it to write text
        if lm == "masked_lm" and "mlm" not in pre.model.objectives:
            raise ExportError(f"{src} was pre-trained without the mlm objective ({', '.join(pre.model.objectives)}); "
                              "only an MLM head maps onto *ForMaskedLM: fine-tune it and export the classifier instead")
        return Source(lm, pre.model, pre.backbone, pre.tokenizer, pre.special, pre.config.model.style,
                      None, None, src, kind)
    raise ExportError(f"{src} is neither a pre-training run (config.yaml + checkpoints/) "
                      "nor a fine-tuned model (classifier.json)")


def _check_vocab(weights: Path, key: str, tokenizer_path: Path) -> None:
    """The embedding's rows must be the tokenizer's tokens (checked before anything is loaded)."""
    from safetensors import SafetensorError, safe_open

    from ..tokenizer import load_tokenizer

    if not weights.is_file():
        raise ExportError(f"{weights} is missing; nothing to export")
    try:
        with safe_open(str(weights), framework="pt") as f:
            if key not in f.keys():
                return  # let the loader name what does not fit
            rows = f.get_slice(key).get_shape()[0]
    except (OSError, SafetensorError) as e:
        raise ExportError(f"{weights} is not a readable safetensors file ({e}); nothing to export") from None
    n = load_tokenizer(tokenizer_path).get_vocab_size()
    if rows != n:
        raise ExportError(f"{tokenizer_path} has {n} tokens but the model in {weights} embeds {rows}: the tokenizer "
                          "does not belong to this model; put the run's own tokenizer.json back")


def _read_model_section(src: Path) -> dict[str, Any]:
    import yaml

    from ..files import read_yaml

    try:
        return (read_yaml(src / "config.yaml") or {}).get("model", {})
    except (OSError, yaml.YAMLError) as e:
        raise ExportError(f"{src}/config.yaml cannot be read ({e})") from None


def _check_backbone(src: Path, model_section: dict[str, Any]) -> str:
    """The backbone kind: one of backbones/spec.py's, exported as its row says."""
    kind = model_section.get("backbone", ModelConfig.backbone)
    if kind not in BACKBONES:
        raise ExportError(f"{src}/config.yaml: model.backbone={kind!r} is not one of {', '.join(BACKBONES)}; there is "
                          "nothing to export it as")
    if model_section.get("extra_norms"):
        raise ExportError(f"{src} was trained with model.extra_norms=true (LTG-BERT's two extra layer norms per "
                          "layer), which no Hugging Face class has: ModernBert* would compute other logits. Use it "
                          "with pretrainlab (finetune, evaluate, predict, explain), or pre-train without extra_norms "
                          "to export")
    return kind


def _embedding_key(kind: str) -> str:
    return f"backbone.{BACKBONES[kind].embedding_weight}"


# --------------------------------------------------------------------------- weights


def hf_model(source: Source) -> nn.Module:
    """The transformers model holding our weights (fp32, eval mode), made by the kind's exporter (backbones/spec.py)."""
    bb = source.backbone
    if source.tokenizer.get_vocab_size() != bb.vocab_size:
        n = source.tokenizer.get_vocab_size()
        raise ExportError(f"{source.path}: the tokenizer has {n} tokens but the model's embedding has {bb.vocab_size}; "
                          "they do not belong together: export the run's own tokenizer")
    return BACKBONES[source.backbone_kind].export_model(source)


def encoder_hf_model(source: Source) -> nn.Module:
    """The Transformer encoder as BertFor* (style bert) or ModernBertFor* (style modern): a classifier, or the
    run's MLM head."""
    from .hf_names import (classifier_head_to_hf, hf_config_kwargs, mlm_head_to_hf, to_hf_bert_state_dict,
                           to_hf_modernbert_state_dict)

    bb = source.backbone
    kw = hf_config_kwargs(bb)
    sd = {k: v.detach().float() for k, v in bb.state_dict().items()}
    special = source.special
    labels: dict[str, Any] = {}
    if source.label_names is not None:
        labels = dict(num_labels=len(source.label_names),
                      id2label={i: str(x) for i, x in enumerate(source.label_names)},
                      label2id={str(x): i for i, x in enumerate(source.label_names)})
    m = source.model
    if source.style == "bert":
        from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

        hf_sd = to_hf_bert_state_dict(sd, prefix="bert.")
        if source.kind == "classifier":
            if source.pooling != "cls":
                raise ExportError(f"{source.path} pools by {source.pooling!r}, but BertForSequenceClassification pools "
                                  "the [CLS] token; fine-tune with finetune.pooling=cls to export the bert style")
            config = BertConfig(**kw, **labels, classifier_dropout=bb.dropout)
            hf_sd.update(classifier_head_to_hf(m, "bert"))
            model = BertForSequenceClassification(config)
        else:
            head = m.lm_head
            tied = head.embedding is bb.get_input_embeddings()
            config = BertConfig(**kw, tie_word_embeddings=tied)
            hf_sd.update(mlm_head_to_hf(head, "bert"))
            model = BertForMaskedLM(config)
    else:
        from transformers import ModernBertConfig, ModernBertForMaskedLM, ModernBertForSequenceClassification

        try:
            hf_sd = to_hf_modernbert_state_dict(sd, prefix="model.")
        except ValueError as e:
            raise ExportError(f"{source.path}: {e}") from None
        ids = dict(cls_token_id=special.cls, sep_token_id=special.sep, bos_token_id=special.cls,
                   eos_token_id=special.sep)
        kw = {**kw, **ids}
        if source.kind == "classifier":
            config = ModernBertConfig(**kw, **labels, classifier_pooling=source.pooling, classifier_bias=True,
                                      classifier_activation="tanh", classifier_dropout=bb.dropout)
            hf_sd.update(classifier_head_to_hf(m, "modern"))
            model = ModernBertForSequenceClassification(config)
        else:
            head = m.lm_head
            tied = head.embedding is bb.get_input_embeddings()
            config = ModernBertConfig(**kw, classifier_bias=True, classifier_activation="gelu", decoder_bias=True,
                                      tie_word_embeddings=tied)
            hf_sd.update(mlm_head_to_hf(head, "modern"))
            model = ModernBertForMaskedLM(config)
    return with_weights(model, hf_sd, source.path, "export/hf_names.py")


def with_weights(model: nn.Module, hf_sd: dict[str, Any], path: Path, name_maps: str) -> nn.Module:
    """The transformers model holding hf_sd (fp32), in eval mode; a weight it lacks or has no place for is an
    error naming the file of the name maps that made hf_sd."""
    hf_sd = {k: v.detach().float().contiguous() for k, v in hf_sd.items()}
    missing, unexpected = model.load_state_dict(hf_sd, strict=False)
    if missing or unexpected:
        raise ExportError(f"{path}: the weight map is incomplete for {type(model).__name__} "
                          f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}); "
                          f"the name maps in {name_maps} need updating")
    return model.eval()


def bart_model(source: Source) -> nn.Module:
    """An encoder-decoder as BartForConditionalGeneration (pre-training run) or BartForSequenceClassification
    (fine-tuned: our pooler / head are its classification_head.dense / out_proj; pad_token_id set)."""
    from transformers import BartConfig, BartForConditionalGeneration, BartForSequenceClassification

    from .hf_seq2seq_names import classification_head_to_hf, hf_bart_config_kwargs, labels_kwargs, to_hf_bart_state_dict

    bb, sp = source.backbone, source.special
    kw = hf_bart_config_kwargs(vocab_size=bb.vocab_size, d_model=bb.d_model, n_layers=bb.n_layers,
                               n_decoder_layers=bb.n_decoder_layers, n_heads=bb.n_heads, d_ff=bb.d_ff,
                               max_len=bb.max_len, dropout=bb.dropout, pad_id=sp.pad, bos_id=sp.cls, eos_id=sp.sep,
                               decoder_start_id=sp.sep)
    bias = source.model.lm_head.final_logits_bias if source.kind != "classifier" else None
    sd = to_hf_bart_state_dict({k: v.detach().float() for k, v in bb.state_dict().items()}, bias)
    if source.kind == "classifier":
        config = BartConfig(**kw, **labels_kwargs(source.label_names), classifier_dropout=bb.dropout)
        del sd["lm_head.weight"]  # a classifier has classification_head instead
        sd.update(classification_head_to_hf(source.model))
        model = BartForSequenceClassification(config)
    else:
        model = BartForConditionalGeneration(BartConfig(**kw))
    return with_weights(model, sd, source.path, "export/hf_seq2seq_names.py")


# --------------------------------------------------------------------------- export


def export(src: str | Path, to_dir: str | Path, overwrite: bool = False) -> Path:
    """Write a Hugging Face folder for a fine-tuned classifier or a pre-training run (MLM head; a decoder: its LM)."""
    from ..tokenizer import hf_tokenizer, prompt_tokenizer

    src, to_dir = Path(src), Path(to_dir)
    if to_dir.exists() and not to_dir.is_dir():
        raise ExportError(f"--out {to_dir} is a file; give a directory")
    if to_dir.resolve() == src.resolve() or src.resolve().is_relative_to(to_dir.resolve()):
        raise ExportError(f"--out {to_dir} would replace the model being exported ({src}); choose another directory")
    if to_dir.is_dir() and any(to_dir.iterdir()) and not overwrite:
        raise ExportError(f"--out {to_dir} is not empty; pass --overwrite to replace its contents, "
                          "or choose another directory")
    try:
        source = load_source(src)
        model = hf_model(source)
    except ExportError:
        raise
    except PretrainlabError as e:
        raise ExportError(f"cannot export {src}: {e}") from None

    tmp = to_dir.with_name(f".{to_dir.name}.export-tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # one small shard: no "Writing model shards" bar
        try:
            model.save_pretrained(str(tmp), safe_serialization=True)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        if BACKBONES[source.backbone_kind].remote_code:
            from .remote import copy_remote_code

            copy_remote_code(tmp)
        # rnn / cnn have no position limit; they get the default Transformer's 512
        causal = source.kind == "causal_lm"  # a prompt: [CLS] A, padded and cut on the left for generate
        tok = prompt_tokenizer(source.tokenizer) if causal else source.tokenizer
        hf_tok = hf_tokenizer(tok, model_max_length=getattr(source.backbone, "max_len", 512))
        sp = source.special  # the tokens' own names: ours, or an imported BART's <s> </s> ...
        if source.style == "bart":  # BART's bos and eos are the tokens in our [CLS] and [SEP] roles
            hf_tok.bos_token, hf_tok.eos_token = sp.name("cls"), sp.name("sep")
        hf_tok.save_pretrained(str(tmp))
        # what our model saw: bert gets token type ids (segments), ModernBERT has none
        names = ["input_ids", "attention_mask"]
        if source.style == "bert":
            names.insert(1, "token_type_ids")
        tc_path = tmp / "tokenizer_config.json"
        tc = json.loads(tc_path.read_text(encoding="utf-8"))
        side = "left" if causal else "right"
        tc.update(model_input_names=names, padding_side=side, truncation_side=side)
        if causal:
            tc.update(bos_token=sp.name("cls"), eos_token=sp.name("sep"))
        tc_path.write_text(json.dumps(tc, indent=2), encoding="utf-8")
        (tmp / EXPORT_INFO).write_text(json.dumps(
            {"source": str(src.resolve()), "kind": source.kind, "style": source.style,
             "architecture": type(model).__name__}, indent=1), encoding="utf-8")
        if to_dir.exists():
            shutil.rmtree(to_dir)
        os.replace(tmp, to_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return to_dir


# --------------------------------------------------------------------------- check


CHECK_FAILED = "EXPORT_CHECK_FAILED.txt"
"""Written into an export whose check failed: the folder is kept for inspection but marked."""

# Tolerance for |HF logit - ours|: atol + rtol * max|ours|, i.e. relative to the logits' scale. The two sides
# run the same float32 maths in a different order (fused attention, other kernels), so rounding errors grow
# with the logits' size: on weights of a trained size they differ by at most ~5e-7 of it, every backbone and
# style (tests/test_export_trained.py); this allows 20x that. A wrong weight mapping differs by far more, and a
# norm eps of 1e-12 for ModernBERT's 1e-5 in the MLM head by 2.5e-5 of it (the check caught that one).
CHECK_TOLERANCE = {torch.float32: (1e-5, 1e-5), torch.float16: (1e-3, 1e-3), torch.bfloat16: (1.6e-2, 1e-2)}
"""dtype -> (rtol, atol) for the export check."""


@dataclass
class ExportCheck:
    label: str
    """What the snippet printed: the predicted label (classifier), the top token at [MASK] (MLM) or the
    greedy generation (seq2seq LM)."""
    max_abs_diff: float
    """Largest |HF logit - pretrainlab logit|."""
    ids_match: bool | None
    """The exported tokenizer's ids equal pretrainlab's (None: not compared)."""
    ok: bool
    kind: str
    input_ids: list[int]
    tolerance: float = 0.0
    """The largest difference allowed: atol + rtol * max |pretrainlab logit|."""
    scale: float = 0.0
    """max |pretrainlab logit|."""
    top_agree: bool | None = None
    """Both sides pick the same top token / label at every position (None: shapes differ)."""
    generated_match: bool | None = None
    """A causal LM's greedy `generate` gives our greedy tokens (None: not a causal LM)."""

    def summary(self) -> str:
        top = {True: "agree", False: "DIFFER", None: "not comparable"}[self.top_agree]
        ids = {True: "match", False: "DIFFER", None: "not compared"}[self.ids_match]
        text = (f"max |logit difference| {self.max_abs_diff:.2e} (allowed {self.tolerance:.2e} for logits up to "
                f"{self.scale:.3g}), top {'labels' if self.kind == 'classifier' else 'tokens'} {top}, "
                f"tokenizer ids {ids}")
        if self.generated_match is not None:
            text += f", greedy generate {'equal' if self.generated_match else 'DIFFERS'}"
        return text


def logits_fn(src: str | Path) -> Callable[[dict[str, Tensor]], Tensor]:
    """pretrainlab's logits for Hugging Face-style inputs (input_ids, attention_mask[, token_type_ids])."""
    from ..models import MaskedLM, Seq2SeqLM

    source = load_source(src)
    source.model.eval()
    if source.kind == "causal_lm":
        from .hf_decoder import causal_lm_logits_fn

        return causal_lm_logits_fn(source)

    @torch.no_grad()
    def run(inputs: dict[str, Tensor]) -> Tensor:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        segments = inputs.get("token_type_ids") if source.style == "bert" else None
        if source.kind == "classifier":
            return source.model(ids, mask, segments).logits
        if source.kind == "seq2seq_lm":
            return Seq2SeqLM(source.backbone, source.model.lm_head)(ids, mask, inputs["decoder_input_ids"]).float()
        return MaskedLM(source.backbone, source.model.lm_head)(ids, mask, segments).float()

    run.tokenizer = source.tokenizer  # type: ignore[attr-defined]
    return run


def run_snippet(directory: str | Path, text: str | None = None, timeout: float = 600) -> dict[str, Any]:
    """Run the model card snippet on `directory` in a fresh process with HF_HUB_OFFLINE=1.

    -> {"kind", "text", "label" (what it printed), "logits", "input_ids", "attention_mask"[, "token_type_ids"]}
    """
    directory = Path(directory)
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"{directory} holds no readable config.json ({e}); is it an export?") from None
    masked_lm = any(a.endswith("ForMaskedLM") for a in config.get("architectures") or [])
    causal_lm = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in config.get("architectures") or [])
    seq2seq_lm = any(a.endswith("ForConditionalGeneration") for a in config.get("architectures") or [])
    snippet = (SNIPPET_MASKED_LM if masked_lm else SNIPPET_CAUSAL_LM if causal_lm else SNIPPET_SEQ2SEQ_LM if seq2seq_lm
               else SNIPPET_CLASSIFIER)
    if "auto_map" in config:  # our own model code in the folder (rnn / cnn): the user must trust it
        snippet = snippet.replace("from_pretrained(DIR)", "from_pretrained(DIR, trust_remote_code=True)")
    text = text or ("This is a great [MASK]!" if masked_lm or seq2seq_lm else CHECK_TEXT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-c", snippet, str(directory), text], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ExportError(f"transformers could not run the export in {directory}:\n{proc.stderr[-3000:]}")
    lines = proc.stdout.strip().splitlines()
    marked = [ln for ln in lines if ln.startswith("PRETRAINLAB-CHECK ")]
    if not marked:
        raise ExportError(f"the check printed no result:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    data = json.loads(marked[-1].split(" ", 1)[1])
    printed = [ln for ln in lines if not ln.startswith("PRETRAINLAB-CHECK ")]
    kind = "masked_lm" if masked_lm else "causal_lm" if causal_lm else "seq2seq_lm" if seq2seq_lm else "classifier"
    return {"kind": kind, "text": text, "label": printed[-1] if printed else "", **data}


def compare(result: dict[str, Any], ours_logits_fn: Callable[[dict[str, Tensor]], Tensor], atol: float | None = None,
            tokenizer=None, rtol: float | None = None) -> ExportCheck:
    """Our logits for the inputs the snippet's tokenizer made vs the snippet's logits; our ids vs its ids.

    Passes when max |theirs - ours| <= atol + rtol * max |ours| (defaults: CHECK_TOLERANCE for the dtype),
    and the tokenizer ids match; whether the top token / label agrees is reported (a near tie may flip it).
    """
    inputs = {k: torch.tensor(result[k]) for k in ("input_ids", "attention_mask", "token_type_ids", "decoder_input_ids")
              if k in result}
    ours = ours_logits_fn(inputs)
    default_rtol, default_atol = CHECK_TOLERANCE.get(ours.dtype, CHECK_TOLERANCE[torch.float32])
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    ours = ours.float()
    theirs = torch.tensor(result["logits"], dtype=torch.float32)
    scale = float(ours.abs().max()) if ours.numel() else 0.0
    same_shape = theirs.shape == ours.shape
    diff = float((theirs - ours).abs().max()) if same_shape else float("inf")
    top_agree = bool((theirs.argmax(-1) == ours.argmax(-1)).all()) if same_shape else None
    tok = tokenizer if tokenizer is not None else getattr(ours_logits_fn, "tokenizer", None)
    ids_match = None if tok is None else tok.encode(result["text"]).ids == result["input_ids"][0]
    tolerance = atol + rtol * scale
    generated_match = None
    if "generated" in result and hasattr(ours_logits_fn, "generate"):  # a causal LM: greedy tokens, both sides
        generated_match = ours_logits_fn.generate(inputs, GENERATE_CHECK_TOKENS) == result["generated"]
    ok = diff <= tolerance and ids_match is not False and generated_match is not False
    return ExportCheck(result["label"], diff, ids_match, ok, result["kind"], result["input_ids"][0],
                       tolerance, scale, top_agree, generated_match)


def check_export(directory: str | Path, ours_logits_fn: Callable[[dict[str, Tensor]], Tensor],
                 text: str | None = None, atol: float | None = None, tokenizer=None, timeout: float = 600,
                 rtol: float | None = None) -> ExportCheck:
    """Run the model card snippet on `directory` (fresh process, HF_HUB_OFFLINE=1) and compare with ours.

    ours_logits_fn maps the snippet's tokenizer output (tensors) to pretrainlab's logits, e.g.
    `logits_fn(source_dir)`; tokenizer (default: the one logits_fn carries) checks the ids too.
    A failing check keeps the folder but writes CHECK_FAILED into it with the numbers (a passing one
    removes a stale mark), so a half-checked export never looks good.
    """
    directory = Path(directory)
    mark = directory / CHECK_FAILED
    try:
        check = compare(run_snippet(directory, text, timeout), ours_logits_fn, atol, tokenizer, rtol)
    except BaseException as e:
        if directory.is_dir():
            mark.write_text(f"the export check did not complete: {type(e).__name__}: {e}\n", encoding="utf-8")
        raise
    if check.ok:
        mark.unlink(missing_ok=True)
    else:
        mark.write_text(f"this export does not reproduce pretrainlab's logits: {check.summary()}\n"
                        f"input ids {check.input_ids}\n", encoding="utf-8")
    return check
