"""The learning curve's semi-supervised rows: where the unlabelled text pays a second time.

For a label count N and a seed, a model X fine-tuned on those N labels (the teacher: the pretrained run, the
reference, the adapted reference) labels the pool, and

    X+self-train   a student with X's own pre-trained starting weights learns the teacher's soft labels on the
                   pool plus the gold labels (Du et al. 2021; noisy student: the student trains with dropout,
                   the teacher labels without), for selftrain.rounds rounds (a later round's teacher is the
                   previous round's student); the round best on validation is the row's model
    X->student     a student learns the same soft labels, as `pretrainlab distill` trains one (distill.*): a small
                   random-init one (preset:NAME, backbone transformer, rnn or cnn, the run's tokenizer), or a
                   pre-training run's backbone with its tokenizer (well-read students learn better: Turc et al. 2019)

Both are distillations (distill.distill_setup / distill_seed: the soft-label loss, the teacher-logits cache,
checkpoints that resume), stopped early on the curve's validation fifth of the N labels.

    inputs = unlabelled_inputs(["sotu/"], task, cfg.finetune, cfg.data, max_texts=0)   # once: errors first
    pool = curve_pool(task.train.texts, picked, inputs)      # texts only: the labels outside the N never come in
    run, setup = self_train(teacher_dir, student_from_run(pre), sub, pool, selftrain_config(cfg, cache), work, seed)
    student = curve_student("runs/mine", None, cfg, tokenizer)   # or ("preset:tiny", "rnn", ...)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path

from .config import DEFAULT_STUDENT_BACKBONE, PRESETS, STUDENT_BACKBONES, ConfigError, RunConfig, load_config
from .data.tasks import Task
from .distill import (PRESET_PREFIX, DistillSetup, Student, TextPool, distill_seed, distill_setup, kept_count,
                      load_student, load_teacher, pool_with_copies, read_unlabelled, save_student, student_from_run,
                      text_hash, warn_if_patience_cannot_stop)
from .errors import CheckpointError
from .runs import load_pretrained
from .seeds import SeedRun

# --------------------------------------------------------------------------- the pool


def unlabelled_inputs(inputs: Sequence[str], task: Task, finetune_cfg, data_cfg, max_texts: int) -> TextPool | None:
    """The pieces of the --unlabelled inputs (none: None), read once before any training: a CorpusError names an
    input with no usable text, or one that holds any of the task's test texts. max_texts: a sample by text hash."""
    if not inputs:
        return None
    return read_unlabelled(inputs, task, finetune_cfg, data_cfg, max_texts, strict=True, flag="--unlabelled")


def curve_pool(train_texts: Sequence[str], picked: Collection[int], inputs: TextPool | None, piece_words: int,
               max_texts: int = 0) -> TextPool:
    """The pool of one label count and seed: the training split's texts outside the N picked ones (their labels
    are not even passed in), then the unlabelled inputs' pieces (which hold none of the task's texts); at most
    max_texts of them (0: all), a fixed sample by text hash (the teacher labels every pool text once)."""
    chosen = set(picked)
    own = [t for i, t in enumerate(train_texts) if i not in chosen]
    extra = inputs.texts if inputs is not None else []
    sources = {"the training split outside the labels": len(own), **(inputs.sources if inputs is not None else {})}
    pool = TextPool(own + extra, piece_words, sources)
    if max_texts and len(pool.texts) > max_texts:
        keep = set(sorted(pool.texts, key=text_hash)[:max_texts])
        pool.sampled_from, pool.texts = len(pool.texts), [t for t in pool.texts if t in keep]
    return pool


# --------------------------------------------------------------------------- students and their settings


def check_student(spec: str, backbone: str | None) -> None:
    """A curve's --student / --student-backbone (None: not given), refused before any work with what fits; a run
    is loaded once to see that it is one."""
    if not spec.startswith(PRESET_PREFIX):
        if backbone is not None:
            raise ConfigError(f"--student-backbone {backbone} goes with a random-init student (--student preset:NAME); "
                              f"the student {spec} is a pre-training run, whose architecture is its own: drop "
                              "--student-backbone")
        run_student(spec)
        return
    if spec[len(PRESET_PREFIX):] not in PRESETS:
        raise ConfigError(f"--student {spec}: no such preset; a curve's student is {student_fits()}")
    if backbone is not None and backbone not in STUDENT_BACKBONES:
        raise ConfigError(f"--student-backbone {backbone}: a student classifies fast with "
                          f"{', '.join(STUDENT_BACKBONES)}; choose one of them")


def student_fits() -> str:
    """What a curve's --student may be (for messages)."""
    return (f"{', '.join(PRESET_PREFIX + p for p in PRESETS)} (random init; --student-backbone "
            f"{' | '.join(STUDENT_BACKBONES)}) or a pre-training run directory (e.g. the curve's RUN)")


def student_source(spec: str, backbone: str | None) -> tuple[str, str | None]:
    """The student as a curve's settings record it: (preset:NAME, its backbone: --student-backbone, default
    DEFAULT_STUDENT_BACKBONE) or (the run's absolute path, None: the run's own architecture)."""
    if spec.startswith(PRESET_PREFIX):
        return spec, backbone or DEFAULT_STUDENT_BACKBONE
    return str(Path(spec).resolve()), None


def curve_student(spec: str, backbone: str | None, cfg: RunConfig, tokenizer: Path) -> Student:
    """A curve's student: a random-init preset with the given tokenizer (the run's), or a run's pre-trained
    backbone with its own tokenizer."""
    source, kind = student_source(spec, backbone)
    return run_student(source) if kind is None else preset_student(source, kind, cfg, tokenizer)


def run_student(spec: str) -> Student:
    """A student that starts from a pre-training run's backbone (or a fine-tuned model's: load_pretrained);
    a path that is not one is refused with what fits."""
    try:
        pre = load_pretrained(Path(spec))
    except CheckpointError as e:
        raise ConfigError(f"--student {e}; a curve's student is {student_fits()}") from None  # e names the path
    return student_from_run(pre, spec)


def student_run_config(cfg: RunConfig, spec: str, backbone: str) -> RunConfig:
    """The curve's settings with the student's architecture (model.preset and model.backbone)."""
    model = load_config(None, [f"model.preset={spec[len(PRESET_PREFIX):]}", f"model.backbone={backbone}"]).model
    return replace(cfg, model=model)


def preset_student(spec: str, backbone: str, cfg: RunConfig, tokenizer: Path) -> Student:
    """A random-init student of this preset and backbone, with the given tokenizer (the run's)."""
    return load_student(spec, student_run_config(cfg, spec, backbone), None, tokenizer)


def selftrain_config(cfg: RunConfig, steps: int) -> RunConfig:
    """Self-training as a distillation: selftrain.* for the loss, rounds' length and dropout; finetune.* for the
    learning rate, batch, patience and step floor; `steps` optimizer steps a round, validated once a pass (as
    fine-tuning with finetune.evals=0; distill.evals_per_epoch is the distilled students')."""
    st, ft = cfg.selftrain, cfg.finetune
    # max_unk 1: the student reads with the tokenizer its teacher was fine-tuned with (fine-tuning warned already)
    dc = replace(cfg.distill, temperature=st.temperature, alpha=st.alpha, hidden_weight=0.0, budget=str(steps),
                 batch_size=ft.batch_size, lr=ft.lr, patience=ft.patience, min_steps=ft.min_steps, eval_every=0,
                 evals_per_epoch=1, max_unk=1.0)
    dropout = st.dropout if st.dropout is not None else ft.dropout
    return replace(cfg, distill=dc, finetune=replace(ft, dropout=dropout))


def selftrain_steps(cfg: RunConfig, n_texts: int) -> int:
    """selftrain.epochs passes over n_texts at finetune.batch_size, at least finetune.min_steps."""
    return max(cfg.selftrain.epochs * math.ceil(n_texts / cfg.finetune.batch_size), cfg.finetune.min_steps)


# --------------------------------------------------------------------------- the rows


def self_train(teacher: Path, student: Student, sub: Task, pool: TextPool, cfg: RunConfig, work: Path, seed: int,
               quiet: bool = True) -> tuple[SeedRun, DistillSetup]:
    """selftrain.rounds rounds of teacher -> student (X's pre-trained weights each time); the round best on the
    validation fifth, with its setup. Every round checkpoints into work/round-R and resumes there. A round's
    passes count distill.augment's copies of the pool, made once here for every round (the same texts each;
    distill.augment_targets=source: each round's teacher labels their sources, and each copy takes its source's);
    with distill.confident_share, the share of the pool a round learns (each round's teacher picks its own)."""
    first = load_teacher(teacher)
    copies = pool_with_copies(pool, sub, first, cfg.distill)
    learnt = kept_count(cfg.distill.confident_share, len(copies.texts))  # about the pool texts a round learns
    cfg = selftrain_config(cfg, selftrain_steps(cfg, len(sub.train) + learnt))
    best: tuple[SeedRun, DistillSetup] | None = None
    for r in range(1, cfg.selftrain.rounds + 1):
        setup = distill_setup(first if r == 1 else load_teacher(teacher), sub, student, copies, cfg,
                              work / f"round-{r}", resume=True, quiet=quiet, copied=True)
        run = distill_seed(setup, seed)
        if best is None or run.key > best[0].key:
            best = (run, setup)
        if r < cfg.selftrain.rounds:  # the next round's teacher: this round's student
            teacher = work / f"round-{r}" / "student"
            if not (teacher / "classifier.json").is_file():
                save_student(setup, run, (seed,), teacher)
    assert best is not None
    return best


def distil_student(teacher: Path, student: Student, sub: Task, pool: TextPool, cfg: RunConfig, work: Path, seed: int,
                   quiet: bool = True, warned: set[tuple] | None = None) -> tuple[SeedRun, DistillSetup]:
    """The small student learns the teacher's soft labels on the pool plus the gold labels (distill.*). warned: the
    settings whose unreachable distill.patience the caller has warned about (warn_if_patience_cannot_stop)."""
    setup = distill_setup(load_teacher(teacher), sub, student, pool, cfg, work, resume=True, quiet=quiet)
    warn_if_patience_cannot_stop(setup, warned)
    return distill_seed(setup, seed), setup
