"""A run directory as an artifact: load and save pre-training runs and fine-tuned models.

    pre = load_pretrained("runs/mini")                # -> Pretrained: model, tokenizer, config, special ids
    ftm = load_classifier("runs/mini/finetune-mr")    # -> FineTuned: classifier, labels, how it was trained

A pre-training run holds config.yaml, tokenizer.json, corpus.json, metrics.jsonl, summary.json and
checkpoints/ (see checkpoint.py). A fine-tuned model holds model.safetensors, config.yaml,
tokenizer.json and classifier.json (labels, head, input convention). Nothing here trains:
`export/`, `interpret/` and the intrinsic evaluations read runs without importing the loop.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_model
from torch import nn

from .checkpoint import latest_checkpoint, load_state, load_weights, read_state
from .config import RunConfig, config_from_dict, save_config
from .errors import CheckpointError
from .files import read_yaml
from .models import build_classifier, renamed_weights

# --------------------------------------------------------------------------- pre-training runs


def build_pretrain_model(cfg: RunConfig, vocab_size: int, special) -> nn.Module:
    """The run's PretrainModel (backbone + LM head + objectives), freshly initialised."""
    from .backbones import backbone_from_config
    from .models import PretrainModel
    from .objectives import build_objectives

    backbone = backbone_from_config(cfg.model, vocab_size, pad_id=special.pad)
    o = cfg.objective
    objectives, lm_head = build_objectives(
        o.weights, backbone=backbone, backbone_kind=cfg.model.backbone, vocab_size=vocab_size, special=special,
        settings=asdict(o),
        make_backbone=lambda **kw: backbone_from_config(replace(cfg.model, preset=None, **kw), vocab_size, special.pad),
    )
    # an objective not named in the weights is a combination (infill+permute): weight 1
    return PretrainModel(backbone, objectives, {k: o.weights.get(k, 1.0) for k in objectives}, lm_head)


def count_parameters(model: nn.Module) -> int:
    """Parameters counted once even where they are shared (tied embeddings)."""
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n


@dataclass
class Pretrained:
    """A pre-training run loaded back: the model (backbone + objective heads), its tokenizer and config."""

    model: nn.Module
    tokenizer: Any
    config: RunConfig
    special: Any
    checkpoint: Path | None
    source: Path | None = None
    """The fine-tuned model directory whose backbone this is (None: a pre-training run, see run_dir)."""

    @property
    def backbone(self) -> nn.Module:
        return self.model.backbone

    @property
    def lm(self) -> nn.Module | None:
        """The backbone with its LM head: models.MaskedLM, CausalLM or Seq2SeqLM, as the kind's row in
        backbones/spec.py says (None: no objective trained one, e.g. nsp alone or rtd)."""
        from .models import language_model

        return language_model(self.config.model.backbone, self.model.backbone, self.model.lm_head)

    @property
    def run_dir(self) -> Path | None:
        """The directory it was loaded from: the run, or the fine-tuned model."""
        return self.source or (self.checkpoint.parent.parent if self.checkpoint else None)


def load_pretrained(run_dir: str | Path) -> Pretrained:
    """Rebuild the model of a pre-training run from its config, tokenizer and latest checkpoint.

    A fine-tuned model directory (e.g. a distilled student) gives its backbone instead, with no
    pre-training objectives: `finetune` and `curve` start from it as from a run."""
    from .tokenizer import load_tokenizer, special_ids

    run_dir = Path(run_dir)
    if is_classifier_dir(run_dir):
        return classifier_backbone(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory; give the --out of `pretrainlab pretrain`")
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{run_dir} is not a pretrainlab run directory (no config.yaml)")
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise CheckpointError(f"{run_dir} has no checkpoint yet; pre-train it first (pretrainlab pretrain --out {run_dir})")
    cfg = read_run_config(run_dir)
    tok = load_tokenizer(run_dir / "tokenizer.json")
    special = special_ids(tok)
    model = build_pretrain_model(cfg, tok.get_vocab_size(), special)
    read_state(ckpt)
    load_weights(ckpt, model, rename=renamed_weights)
    model.eval()
    return Pretrained(model, tok, cfg, special, ckpt)


def classifier_backbone(path: Path) -> Pretrained:
    """A fine-tuned model's backbone and tokenizer as a starting point (its objectives: none)."""
    from .models import PretrainModel

    ftm = load_classifier(path)
    return Pretrained(PretrainModel(ftm.model.backbone, {}, {}), ftm.tokenizer, ftm.config, ftm.special, None, path)


def read_run_config(run_dir: Path) -> RunConfig:
    return config_from_dict(read_yaml(run_dir / "config.yaml"))


# --------------------------------------------------------------------------- continued pre-training (--init)


def init_model_section(init: str | Path) -> dict[str, Any] | None:
    """The `model` section of a run directory (own or imported) used as --init; None for a bare weights folder."""
    return init_section(init, "model")


def init_section(init: str | Path, name: str) -> dict[str, Any] | None:
    """One section of the config.yaml of a run directory used as --init; None for a bare weights folder."""
    f = Path(init) / "config.yaml"
    if not f.is_file():
        return None
    return (read_yaml(f) or {}).get(name)


def adopt_init_model(cfg: RunConfig, init: str | Path) -> tuple[RunConfig, list[str]]:
    """-> (cfg with the init run's model section and heads' tying, notes). Continued pre-training keeps the
    architecture; `train.pretrain` applies this to every run given an init, so every caller gets it.

    Decision (issue #7): a config whose model section differs from the init run's is not refused;
    the init's architecture is taken (only dropout stays the user's) and every difference is named,
    so that `pretrain --init RUN --config other.yaml` reuses the rest of other.yaml.
    """
    from .backbones.spec import BACKBONES
    from .config import ObjectiveConfig, build_section

    section = init_model_section(init)
    if section is None:
        return cfg, []
    theirs = build_section("model", {k: v for k, v in section.items() if k != "preset"} | {"preset": None})
    spec = BACKBONES[theirs.backbone]
    ours = cfg.model
    keep_dropout = replace(theirs, dropout=ours.dropout)
    relevant = ["backbone", "style", "d_model", "n_layers", "n_heads", "d_ff", "max_len", "type_vocab_size", "vocab_size",
                *spec.architecture_fields]
    diffs = [f"model.{k}: config {getattr(ours, k)!r} -> init {getattr(theirs, k)!r}" for k in relevant
             if getattr(ours, k) != getattr(theirs, k) and not (k == "vocab_size" and getattr(ours, k) == 0)]
    notes = []
    if diffs:
        notes.append(f"--init {init}: its architecture is used, not the config's (" + "; ".join(diffs) + ")")
    objective = cfg.objective
    default = dict(spec.objectives(theirs.style))
    if default != ObjectiveConfig().weights and objective.weights == ObjectiveConfig().weights:  # decoder: clm ...
        objective = replace(objective, weights=default)
        notes.append(f"--init {init} is a {theirs.backbone}: objective.weights={objective.weights} (its default)")
    tied = (init_section(init, "objective") or {}).get("tie_embeddings")
    if tied is not None and tied != objective.tie_embeddings:  # a tied head has no projection of its own to load
        objective = replace(objective, tie_embeddings=tied)
        notes.append(f"--init {init}: its heads' tying is used "
                     f"(objective.tie_embeddings: config {not tied} -> init {tied})")
    new = replace(cfg, model=keep_dropout, objective=objective) if diffs or objective is not cfg.objective else cfg
    if new.data.seq_len > keep_dropout.max_len and spec.has_positions:
        new = replace(new, data=replace(new.data, seq_len=keep_dropout.max_len))
        notes.append(f"data.seq_len lowered to the init model's max_len {keep_dropout.max_len}")
    return new, notes


def init_from(model: nn.Module, init: Path, tokenizer_hash: str) -> list[str]:
    """Continued pre-training: start from another run's (or an imported or fine-tuned model's) weights -> notes.

    Every weight of the model's backbone must come from the init, or it is an error naming the weights (they
    would start random). A head the init has none of (an MLM head a fine-tuned classifier lacks) starts fresh, and
    the init's weights the run has no place for (a classifier's head, an objective it does not train) are left;
    each said once in the notes.
    """
    ckpt = latest_checkpoint(init) if (init / "checkpoints").exists() else init
    if ckpt is None or not (Path(ckpt) / "model.safetensors").is_file():
        raise CheckpointError(f"--init {init}: no model.safetensors found (a run directory or an imported model)")
    state_file = Path(ckpt) / "state.json"
    if state_file.exists():
        th = json.loads(state_file.read_text()).get("tokenizer_hash")
        if th and th != tokenizer_hash:
            raise CheckpointError(
                f"--init {init} was trained with tokenizer {th}, but the corpus was prepared with {tokenizer_hash}; "
                f"prepare the corpus with --tokenizer {init}/tokenizer.json"
            )
    f = Path(ckpt) / "model.safetensors"
    try:
        missing, unexpected = load_state(model, renamed_weights(load_file(str(f))))
    except RuntimeError as e:  # a tensor of another shape: torch names it
        raise CheckpointError(f"--init {init}: {f} does not fit this model's architecture: "
                              f"{str(e).splitlines()[-1].strip()}") from None
    except SafetensorError as e:
        raise CheckpointError(f"--init {init}: {f} is not a safetensors file ({e})") from None
    return _init_notes(init, model, missing, unexpected)


def _part(key: str) -> str:
    """The part of a model a weight belongs to: the backbone, or one head (objectives.<name>, lm_head, ...)."""
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] == "objectives" else parts[0]


def _init_notes(init: Path, model: nn.Module, missing: list[str], unexpected: list[str]) -> list[str]:
    """Weights the init lacks: an error unless they are whole heads (fresh, noted); weights it has to spare: noted."""
    by_part: dict[str, list[str]] = {}
    seen: set[int] = set()
    for key, t in sorted(model.state_dict(keep_vars=True).items()):  # a tied tensor under its first name only
        if id(t) not in seen:
            seen.add(id(t))
            by_part.setdefault(_part(key), []).append(key)
    lacking = {part for part, keys in by_part.items() if set(keys) <= set(missing)}
    wrong = sorted(k for k in missing if _part(k) == "backbone" or _part(k) not in lacking)
    if wrong:
        raise CheckpointError(
            f"--init {init}: its weights lack {len(wrong)} of this model's ({', '.join(wrong[:4])}"
            f"{', ...' if len(wrong) > 4 else ''}), which would start random: it is not this architecture. Give "
            "the run directory (its config.yaml makes the run take its architecture), or the settings it was trained with")
    notes = [f"--init {init} has no {part} weights: they start fresh" for part in sorted(lacking - {"backbone"})]
    spare = sorted({_part(k) for k in unexpected})
    if spare:
        notes.append(f"--init {init}: its {', '.join(spare)} weights are not used (this run has no such part)")
    return notes


# --------------------------------------------------------------------------- resuming a run

RESUMABLE = {"budget", "progress", "log_every", "eval_every", "eval_batches", "checkpoint_minutes",
             "checkpoint_every", "tensorboard", "device", "parallel", "prefetch"}
"""Settings that may change between a run and its resumption."""


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """'section.field: checkpoint X vs now Y' for every setting that differs (objective weights as one)."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict) and not k == "weights":
            out += config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: checkpoint {va!r} vs now {vb!r}")
    return out


def check_resumable(run_dir: Path, ckpt: Path, cfg: RunConfig, tokenizer_hash: str, world: int) -> None:
    """Raise CheckpointError unless the checkpoint can be continued with `cfg` on `world` processes."""
    saved = read_run_config(run_dir)
    state = read_state(ckpt)
    diff = [d for d in config_diff(saved.to_dict(), cfg.to_dict())
            if d.split(":")[0].split(".")[-1] not in RESUMABLE | {"batch_size"}]
    # another world size may resume a run when the GLOBAL batch (per-rank batch x ranks) is the same
    saved_world = state.get("data", {}).get("world", 1)
    if saved.train.batch_size * saved_world != cfg.train.batch_size * world:
        diff.append(f"global batch (train.batch_size x processes): checkpoint {saved.train.batch_size} x "
                    f"{saved_world} vs now {cfg.train.batch_size} x {world}")
    if diff:
        raise CheckpointError("cannot resume: the configuration differs from the checkpoint's:\n  " + "\n  ".join(diff))
    if state.get("tokenizer_hash") != tokenizer_hash:
        raise CheckpointError(
            f"cannot resume: the checkpoint was trained with tokenizer {state.get('tokenizer_hash')}, "
            f"the corpus uses {tokenizer_hash}"
        )


# --------------------------------------------------------------------------- fine-tuned models


CLASSIFIER_FILE = "classifier.json"


@dataclass
class FineTuned:
    """A fine-tuned classifier loaded back from its directory."""

    model: nn.Module
    """models.Classifier, or models.Seq2SeqClassifier for an encoder-decoder."""
    tokenizer: Any
    config: RunConfig
    label_names: list[Any]
    meta: dict[str, Any]
    special: Any
    path: Path

    @property
    def id2label(self) -> dict[int, Any]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[Any, int]:
        return {name: i for i, name in enumerate(self.label_names)}


def save_classifier(out: Path, model: nn.Module, tokenizer, cfg: RunConfig, label_names: Sequence[Any],
                    meta: dict[str, Any]) -> Path:
    """model.safetensors + config.yaml + tokenizer.json + classifier.json (labels, head, inputs)."""
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / "model.safetensors"))
    save_config(cfg, out / "config.yaml")
    tokenizer.save(str(out / "tokenizer.json"))
    labels = list(label_names)
    info = {"format": 1, "n_labels": len(labels), "labels": labels,
            "id2label": {str(i): str(x) for i, x in enumerate(labels)},
            "label2id": {str(x): i for i, x in enumerate(labels)}, **meta}
    (out / CLASSIFIER_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")
    return out


def is_classifier_dir(path: str | Path) -> bool:
    return (Path(path) / CLASSIFIER_FILE).is_file()


def load_classifier(path: str | Path) -> FineTuned:
    """Rebuild a fine-tuned classifier saved by `finetune(..., out_dir=...)`."""
    import yaml

    from .backbones import backbone_from_config
    from .tokenizer import load_tokenizer, special_ids

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such model directory; give the --out of `pretrainlab finetune`")
    if not is_classifier_dir(path):
        hint = " (that is a pre-training run: fine-tune it first with `pretrainlab finetune`)" \
            if (path / "config.yaml").is_file() else ""
        raise CheckpointError(f"{path} is not a fine-tuned model (no {CLASSIFIER_FILE}){hint}")
    try:
        info = json.loads((path / CLASSIFIER_FILE).read_text(encoding="utf-8"))
        cfg = config_from_dict(read_yaml(path / "config.yaml"))
    except (OSError, ValueError, TypeError, yaml.YAMLError) as e:
        raise CheckpointError(f"{path}: {CLASSIFIER_FILE} or config.yaml is missing or unreadable ({e}); "
                              "fine-tune again into a new --out") from None
    tok = load_tokenizer(path / "tokenizer.json")
    special = special_ids(tok)
    backbone = backbone_from_config(cfg.model, tok.get_vocab_size(), pad_id=special.pad)
    model = build_classifier(backbone, info["n_labels"], info["pooling"], info["head"], cfg.model.dropout,
                             eos_id=special.sep)
    try:
        weights = renamed_weights(load_file(str(path / "model.safetensors")))
        weights.pop("lm_head.final_logits_bias", None)  # an older encoder-decoder classifier's backbone held it
        missing, unexpected = load_state(model, weights)
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}/model.safetensors is missing or not a safetensors file ({e}); "
                              "fine-tune again into a new --out") from None
    if missing or unexpected:
        raise CheckpointError(f"{path}/model.safetensors does not fit its config.yaml "
                              f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    model.eval()
    return FineTuned(model, tok, cfg, info["labels"], info, special, path)
