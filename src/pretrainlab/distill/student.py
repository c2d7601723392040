"""The student: what it starts from (a preset architecture with random weights, or a run's pretrained
backbone), its tokenizer, and the classifier built on it.

    cfg = student_config("preset:tiny", None, ["model.backbone=rnn"])   # default: a CNN
    student = load_student("preset:tiny", cfg, teacher, texts=texts)   # its own WordPiece, or tokenizer=FILE
    model = student_classifier(student, n_labels, pooling="mean", dropout=0.1)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from ..config import DEFAULT_STUDENT_BACKBONE, PRESETS, ConfigError, ModelConfig, RunConfig, load_config
from ..data.encoding import Encoded
from ..finetune import unknown_token_rate
from ..models import build_classifier, head_kind
from ..runs import FineTuned, Pretrained, load_pretrained
from ..tokenizer import TokenizerError, load_tokenizer, special_ids, train_tokenizer

PRESET_PREFIX = "preset:"


@dataclass
class Student:
    """What the student starts from: an architecture, a tokenizer and, from a run, pretrained weights."""

    source: str
    """preset:NAME or the run directory."""
    model_cfg: ModelConfig
    tokenizer: Any
    special: Any
    tokenizer_source: str
    """Where the tokenizer came from (for messages and the report)."""
    backbone: nn.Module | None = None
    """The run's pretrained backbone; None: random init."""
    run_config: RunConfig | None = None


def student_config(student: str, config_path: str | Path | None, overrides: Sequence[str]) -> RunConfig:
    """The settings of a distillation: for preset:NAME, model.backbone=DEFAULT_STUDENT_BACKBONE (the measured
    best student, a CNN) and model.preset=NAME, then --config, then --set (e.g. model.backbone=rnn); for a run,
    whose architecture is its own, no model.* setting may be given."""
    if student.startswith(PRESET_PREFIX):
        base = RunConfig(model=ModelConfig(backbone=DEFAULT_STUDENT_BACKBONE))
        return load_config(config_path, [f"model.preset={student[len(PRESET_PREFIX):]}", *overrides], base=base,
                           base_sections=("model",))
    given = [o for o in overrides if o.strip().startswith("model.")]
    if given:
        raise ConfigError(f"--set {given[0]}: the student {student} is a pre-training run, whose architecture is "
                          "its own; model.* settings go with a random-init student (--student preset:tiny)")
    return load_config(config_path, overrides)


def load_student(spec: str | Path, cfg: RunConfig, teacher: FineTuned, tokenizer: str | Path | None = None,
                 texts: Sequence[str] = ()) -> Student:
    """preset:NAME (random init, cfg.model's architecture; its tokenizer: `tokenizer`, else its own WordPiece of
    distill.vocab_size trained on `texts`, the ones it learns from, else (distill.vocab_size=0) the teacher's), a
    run, or a fine-tuned model directory (its backbone: e.g. a student distilled before)."""
    spec = str(spec)
    if spec.startswith(PRESET_PREFIX):
        name = spec[len(PRESET_PREFIX):]
        if name not in PRESETS:
            raise ConfigError(f"--student {spec}: no preset {name!r}; choose "
                              f"{', '.join(PRESET_PREFIX + p for p in PRESETS)} or a pre-training run directory")
        if cfg.model.preset != name:
            raise ConfigError(f"--student {spec} but model.preset={cfg.model.preset}; build the settings with "
                              "distill.student_config (the CLI does)")
        if tokenizer is not None:
            tok, where = load_tokenizer(tokenizer), str(tokenizer)
        elif cfg.distill.vocab_size:
            tok, where = own_tokenizer(texts, cfg)
        else:
            tok, where = teacher.tokenizer, f"the teacher's tokenizer, {teacher.path / 'tokenizer.json'}"
        return Student(spec, cfg.model, tok, special_ids(tok, where), where)
    if tokenizer is not None:
        raise ConfigError("--tokenizer goes with a random-init student (--student preset:NAME); "
                          f"the run {spec} brings its own tokenizer")
    return student_from_run(load_pretrained(Path(spec)), spec)  # a run, or a fine-tuned model's backbone


def own_tokenizer(texts: Sequence[str], cfg: RunConfig) -> tuple[Any, str]:
    """A WordPiece (data.tokenizer_kind) of at most distill.vocab_size tokens trained on the student's texts, and
    what to call it. The same texts give the same tokenizer, so a resumed distillation trains it again."""
    if not texts:
        raise ConfigError("a preset student's own tokenizer is trained on the texts it learns from, and none were "
                          "given; pass them (texts=...), a tokenizer file, or distill.vocab_size=0 for the teacher's")
    tok = train_tokenizer(list(texts), cfg.data.tokenizer_kind, cfg.distill.vocab_size, cfg.data.lowercase)
    return tok, (f"its own {cfg.data.tokenizer_kind} of {tok.get_vocab_size():,} tokens (distill.vocab_size="
                 f"{cfg.distill.vocab_size}) trained on the {len(texts):,} texts it learns from")


def student_from_run(pre: Pretrained, source: str | None = None) -> Student:
    """A student that starts from a loaded run's pretrained backbone, with its tokenizer (self-training's)."""
    path = Path(str(pre.run_dir))
    return Student(source or str(path), pre.config.model, pre.tokenizer, pre.special, str(path / "tokenizer.json"),
                   pre.backbone, pre.config)


def student_classifier(student: Student, n_labels: int, pooling: str, dropout: float | None) -> nn.Module:
    """A fresh classifier on a copy of the student's backbone (or a random one), with the fine-tuning dropout."""
    from ..backbones import backbone_from_config

    model_cfg = student.model_cfg if dropout is None else replace(student.model_cfg, dropout=dropout)
    backbone = backbone_from_config(model_cfg, student.tokenizer.get_vocab_size(), pad_id=student.special.pad)
    if student.backbone is not None:
        backbone.load_state_dict(copy.deepcopy(student.backbone.state_dict()))
    return build_classifier(backbone, n_labels, pooling, head_kind(student.model_cfg), model_cfg.dropout,
                            eos_id=student.special.sep)


def check_unknown_tokens(enc: Encoded, texts: Sequence[str], student: Student, max_unk: float) -> float:
    """The share of the texts' tokens the student's tokenizer maps to [UNK]; a TokenizerError above max_unk."""
    rate = unknown_token_rate(enc, student.special.unk)
    if rate > max_unk:
        worst = max(range(len(enc)), key=lambda i: enc.ids[i].count(student.special.unk))
        raise TokenizerError(
            f"the student's tokenizer ({student.tokenizer_source}) maps {rate:.1%} of the texts' tokens to [UNK] "
            f"(more than distill.max_unk={max_unk:.0%}; e.g. {texts[worst][:80]!r}): it cannot encode these texts. "
            "Give a tokenizer trained on such text (--tokenizer FILE for a preset student; for a run: one "
            "prepared and pre-trained on such text)")
    return rate

