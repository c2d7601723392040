"""The distillation recipe: checks, the teacher's labels, one student per seed, the best one saved and reported.

    setup = prepare_distill(teacher, "preset:tiny", ["task:mr"], "runs/student", cfg)   # every check, then labels
    run = distill_seed(setup, seed=0)                                               # seeds.train_seed
    result = distill(teacher, "preset:tiny", ["task:mr"], "runs/student", cfg, seeds=(0, 1, 2))   # all of it

`distill_setup` is the part after the inputs are read: a teacher, a task (e.g. a learning curve's
subsample), a student and a pool of unlabelled texts -> the student's encodings and the teacher's
logits; the learning curve's distilled and self-trained rows start there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import Budget, ConfigError, DistillConfig, RunConfig
from ..data.encoding import Encoded, encode
from ..data.tasks import Task
from ..errors import TaskError
from ..finetune import input_max_len
from ..loop import pick_device, pick_dtype
from ..metrics import Summary, score
from ..models import head_kind
from ..runs import FineTuned, count_parameters, load_classifier, save_classifier
from ..seeds import EpochBatches, SeedRun, SeedScoring, SeedSettings, best_seed, hashed_shuffles, train_seed
from . import teacher as _teacher
from .augment import augmented_pool
from .cache import TeacherLabels, default_cache_dir, label_texts, teacher_hash
from .loss import NO_LABEL, DistillModel, soft_label_step_loss
from .pool import TextPool, read_unlabelled
from .report import DistillResult, ModelFigures, report_markdown, speeds
from .student import Student, check_unknown_tokens, load_student, student_classifier, student_config
from .teacher import load_teacher, mask_token, teacher_task

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- setting up


@dataclass
class DistillSetup:
    """What every seed of one distillation shares."""

    teacher: FineTuned
    task: Task
    student: Student
    cfg: RunConfig
    out: Path
    head: str
    segments: bool
    max_len: int
    device: torch.device
    dtype: torch.dtype | None
    texts: TextPool
    """The unlabelled pool, with distill.augment's copies (pool_with_copies)."""
    train: Encoded
    """The student's encodings of the labelled training texts, then the unlabelled pieces (label NO_LABEL)."""
    targets: Tensor
    """(N, K) the teacher's logits on each of them (distill.augment_targets=source: a copy's are its source's)."""
    teacher_pooled: Tensor | None
    enc: dict[str, Encoded]
    """validation and test, for the student (labels in the teacher's ids)."""
    labels: TeacherLabels
    """The teacher's labelling: of every text, or (distill.augment_targets=source) of all but the copies."""
    unk_rate: float
    budget: Budget
    eval_every: int
    settings: dict[str, Any]
    quiet: bool = False

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.cfg.distill.batch_size)


def prepare_distill(teacher: str | Path | FineTuned, student: str | Path, inputs: Sequence[str | Path],
                    out: str | Path, cfg: RunConfig, *, task: str | Path | Task | None = None,
                    tokenizer: str | Path | None = None, resume: bool = False, quiet: bool = False) -> DistillSetup:
    """Every check first (teacher, task labels, student, texts, [UNK] rate), then the teacher's labels."""
    teacher = teacher if isinstance(teacher, FineTuned) else load_teacher(teacher)
    task, _ = teacher_task(teacher, task)
    pool = read_unlabelled(inputs, task, teacher.config.finetune, cfg.data, cfg.distill.max_texts)
    stud = load_student(student, cfg, teacher, tokenizer, texts=task.train.texts + pool.texts)
    setup = distill_setup(teacher, task, stud, pool, cfg, out, resume=resume, quiet=quiet)
    warn_if_patience_cannot_stop(setup)
    return setup


def distill_setup(teacher: FineTuned, task: Task, student: Student, pool: TextPool, cfg: RunConfig,
                  out: str | Path, *, resume: bool = False, quiet: bool = False, copied: bool = False) -> DistillSetup:
    """The student's encodings of the task's labelled training texts and the pool with distill.augment's copies
    (checked for [UNK]), its validation and test splits, `out` checked (resume: the same distillation's only), then
    the teacher's logits on every training text (from the cache where it has them; distill.augment_targets=source:
    on all but the copies, which take their sources' logits and pooled representations). copied: the pool holds its
    copies already (pool_with_copies: self-training's rounds share them)."""
    task, remap = teacher_task(teacher, task)
    dc = cfg.distill
    pool = pool if copied else pool_with_copies(pool, task, teacher, dc)
    if dc.augment and not pool.augmented and not quiet:  # a setting that did nothing: said
        why = ("the pool holds no unlabelled text, and only its pieces are copied (never the labelled training "
               "texts); give --texts with text beyond the task's own" if not pool.texts else
               "every copy equalled a text already there; raise distill.augment_mask, distill.augment_swap or "
               "distill.augment_ngram")
        log.warning(f"warning: distill.augment={dc.augment} made no copies: {why}")
    max_len = input_max_len(student.model_cfg, cfg.finetune.max_len)
    head = head_kind(student.model_cfg)
    texts = task.train.texts + pool.texts
    labels = [remap[y] for y in task.train.labels] + [NO_LABEL] * len(pool.texts)
    train = encode(student.tokenizer, texts, None, max_len, labels)
    unk_rate = check_unknown_tokens(train, texts, student, dc.max_unk)
    enc = {s: encode(student.tokenizer, task.split(s).texts, None, max_len, [remap[y] for y in task.split(s).labels])
           for s in ("validation", "test")}
    if len(enc["validation"]) == 0:
        raise TaskError(f"task {task.name}: the validation split is empty; early stopping needs it "
                        "(raise finetune.val_fraction and fine-tune the teacher with it)")
    device = pick_device(cfg.train.device)
    dtype = pick_dtype(cfg.train.precision, device)
    key = teacher_hash(teacher)
    settings = _settings(teacher, key, student, task, texts, pool.augmented, cfg)
    out = _check_out(Path(out), settings, resume)  # before the teacher's work: a wrong --out costs nothing
    read = texts if dc.augment_targets == "teacher" else texts[:len(texts) - pool.augmented]  # source: no copy
    teacher.model.to(device)
    got = label_texts(teacher, read, Path(dc.cache) if dc.cache else default_cache_dir(),
                      shard_texts=dc.shard_texts, batch_size=dc.teacher_batch_size, device=device, dtype=dtype,
                      with_pooled=dc.hidden_weight > 0, quiet=quiet)
    teacher.model.cpu()
    targets, pooled = got.logits, got.pooled
    if dc.tfidf_weight:  # on what the teacher read; a copy under augment_targets=source takes its source's mix
        targets = _teacher.with_tfidf(targets, task, remap, read, dc.tfidf_weight, quiet)
    if dc.augment_targets == "source":  # the cache holds the teacher's logits on a text only: none for a copy
        rows = source_rows(len(task.train), pool)
        targets, pooled = targets[rows], pooled[rows] if pooled is not None else None
    if dc.confident_share < 1:  # the labelled texts and the pool texts the soft labels are surest of
        rows = confident_rows(targets, len(task.train), dc.confident_share)
        train = Encoded(*([part[i] for i in rows] for part in (train.ids, train.segments, train.labels)))
        targets, pooled = targets[rows], pooled[rows] if pooled is not None else None
        if not quiet:
            log.info(f"distill.confident_share={dc.confident_share}: the student learns {len(rows) - len(task.train):,}"
                     f" of the pool's {len(texts) - len(task.train):,} texts, those the soft labels are surest of")
    setup = DistillSetup(teacher, task, student, cfg, out, head, head == "bert", max_len, device, dtype, pool, train,
                         targets, pooled, enc, got, unk_rate, Budget(steps=1), 1, settings, quiet)
    setup.budget, setup.eval_every = student_budget(dc, setup.steps_per_epoch)
    return setup


def pool_with_copies(pool: TextPool, task: Task, teacher: FineTuned, dc: DistillConfig) -> TextPool:
    """The pool with distill.augment copies of each of its texts (augment.py; masked with "[MASK]" when the teacher
    reads it as its mask token), none equal to one of the task's texts; distill.augment=0: the pool as it is."""
    if not dc.augment:
        return pool
    return augmented_pool(pool, dc.augment, dc.augment_mask, dc.augment_swap, dc.augment_ngram,
                          mask_token(teacher.tokenizer), held_out=task.validation.texts + task.test.texts,
                          labelled=task.train.texts)


def source_rows(n_labelled: int, pool: TextPool) -> list[int]:
    """Each training text's row among the labelled texts and the pool's originals (what the teacher labels under
    distill.augment_targets=source): its own, and for a copy its source's."""
    originals = n_labelled + len(pool.texts) - pool.augmented
    return list(range(originals)) + [n_labelled + i for i in pool.copy_sources]


def confident_rows(targets: Tensor, n_labelled: int, share: float) -> list[int]:
    """The rows of the labelled texts (the first n_labelled), then, class by class, the `share` of the pool rows whose
    soft label picks that class with the highest probability for it (kept_count), in their order: the pool keeps
    its class proportions (distill.confident_share)."""
    sure, picked = targets[n_labelled:].float().softmax(-1).max(-1)
    kept: list[int] = []
    for c in picked.unique().tolist():
        rows = (picked == c).nonzero().squeeze(1)
        order = sure[rows].argsort(descending=True, stable=True)
        kept += rows[order[:kept_count(share, len(rows))]].tolist()
    return list(range(n_labelled)) + [n_labelled + i for i in sorted(kept)]


def kept_count(share: float, n: int) -> int:
    """How many of n texts distill.confident_share keeps: the share rounded half up, at least one (of none: none)."""
    return min(n, max(1, math.floor(share * n + 0.5)))


def student_budget(dc: DistillConfig, steps_per_epoch: int) -> tuple[Budget, int]:
    """Each seed's budget and the steps between its validations: distill.budget as given, or distill.epochs passes
    (a cap that distill.patience is meant to end sooner); distill.eval_every, or distill.evals_per_epoch a pass."""
    budget = Budget.parse(dc.budget, "distill.budget") if dc.budget else Budget(steps=dc.epochs * steps_per_epoch)
    return budget, dc.eval_every or max(1, steps_per_epoch // dc.evals_per_epoch)


def warn_if_patience_cannot_stop(setup: DistillSetup, warned: set[tuple] | None = None) -> None:
    """A budget of steps with too few validations for distill.patience to ever end a run: warned, with what to change.
    warned: the settings and step counts already warned about in the caller's scope, their key added once warned (a
    curve's one set: it distils a student per label count and seed, and says it once for each budget of steps, with
    that budget's numbers); None (one distillation): always said."""
    dc, steps, every = setup.cfg.distill, setup.budget.steps, setup.eval_every
    key = (dc.patience, dc.min_steps, dc.epochs, dc.evals_per_epoch, dc.budget, dc.eval_every, steps, every)
    if not dc.patience or steps is None or setup.budget.seconds or setup.budget.tokens or key in (warned or ()):
        return
    inside = (steps - 1) // every  # the validations before the last step (after the last one nothing stops)
    before = min(inside, max(0, (dc.min_steps - 1) // every))  # those before distill.min_steps count for nothing
    counted, need = inside - before, dc.patience + (0 if before else 1)  # a best one, then the patience's worth
    if counted >= need:
        return
    if warned is not None:
        warned.add(key)
    longer = "raise distill.budget" if dc.budget else f"raise distill.epochs (the cap, {dc.epochs} passes now)"
    denser = "lower distill.eval_every" if dc.eval_every else "raise distill.evals_per_epoch"
    log.warning(f"distill.patience={dc.patience} can never end this distillation early: its budget of {steps:,} "
                f"steps validates every {every:,} steps, {counted} time{'' if counted == 1 else 's'} before its end"
                f"{f' from step {dc.min_steps} on' if before else ''}, and stopping needs {need}; {longer}, "
                f"{denser}, or lower distill.patience (0: never stop early; the best validation's weights are kept)")


RESUMABLE = ("budget", "cache", "shard_texts", "teacher_batch_size", "throughput_texts", "seeds")
"""distill settings that may change when a distillation is resumed."""
BY_THE_TOKENIZER = ("vocab_size",)
"""distill settings that the student's tokenizer (the settings' `tokenizer`) stands for: a distillation from
before them, with a tokenizer file, resumes."""
BY_THE_BUDGET = ("epochs",)
"""distill settings that an explicit distill.budget makes unused: not saved with it (a self-training round, whose
budget is given, resumes whatever distill.epochs is)."""
AUGMENT = ("augment", "augment_mask", "augment_swap", "augment_ngram", "augment_targets")
"""distill settings that distill.augment=0 (the default) leaves unused: not saved with it (a distillation from before
them resumes)."""
POOL_LABELS = ("tfidf_weight", "confident_share")
"""distill settings that shape the soft labels the pool gives beyond the teacher's own (a second teacher, the share
kept): a curve records them with its pool, as they feed its self-trained rows and its students alike."""
BY_DEFAULT = {"augment_targets": DistillConfig.augment_targets, "tfidf_weight": DistillConfig.tfidf_weight,
              "confident_share": DistillConfig.confident_share}
"""distill settings saved only away from their default (here): a distillation saved before them, or with them at it,
resumes, and one saved without them is compared as at it."""
BEFORE_EVALS = {"evals_per_epoch": 1}
"""The distill settings that a distillation saved before issue #29's distill.evals_per_epoch lacks, at the value it
ran with (one validation a pass): it resumes with them (and its own epochs and patience: the refusal names them)."""


def _settings(teacher: FineTuned, key: str, student: Student, task: Task, texts: list[str], augmented: int,
              cfg: RunConfig) -> dict:
    """What a resumed distillation must share with the one it continues (the texts by their hash; with
    distill.augment, how many of them are augmented copies)."""
    tc, dc = cfg.train, cfg.distill
    return {"teacher": str(teacher.path), "teacher_hash": key, "student": student.source,
            "student_model": asdict(student.model_cfg), "tokenizer": student.tokenizer_source, "task": task.name,
            "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest(), "n_texts": len(texts),
            **({"augmented": augmented} if dc.augment else {}),
            "distill": {k: v for k, v in asdict(dc).items() if k not in unsaved_settings(dc)},
            "finetune": {k: getattr(cfg.finetune, k) for k in ("pooling", "dropout", "max_len")},
            "train": {k: getattr(tc, k) for k in ("precision", "deterministic", "warmup", "weight_decay", "clip")}}


def unsaved_settings(dc: DistillConfig) -> tuple[str, ...]:
    """The distill settings a distillation's settings leave out: those that may change on resuming, and those that
    these settings leave unused."""
    return (RESUMABLE + BY_THE_TOKENIZER + (BY_THE_BUDGET if dc.budget else ()) + (() if dc.augment else AUGMENT)
            + tuple(k for k, v in BY_DEFAULT.items() if getattr(dc, k) == v))


SETTINGS_FILE = "distill-settings.json"


def _check_out(out: Path, settings: dict, resume: bool) -> Path:
    """A new --out, or with resume the same distillation's (its seeds' checkpoints continue)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory for the student and its report")
    saved_file = out / SETTINGS_FILE
    if saved_file.is_file():
        from ..runs import config_diff

        if not resume:
            raise ConfigError(f"{out} already holds a distillation; pass --resume to continue it (or to redo its "
                              "report), or choose another --out")
        saved, now = json.loads(saved_file.read_text(encoding="utf-8")), json.loads(json.dumps(settings, default=str))
        saved["distill"] = {**BEFORE_EVALS, **BY_DEFAULT, **saved.get("distill", {})}
        now["distill"] = {**BY_DEFAULT, **now["distill"]}
        if "epochs" not in now["distill"]:  # unused (an explicit budget), saved by a distillation before BY_THE_BUDGET
            saved["distill"].pop("epochs", None)
        diff = config_diff(saved, now)
        if diff:
            raise ConfigError(f"cannot resume {out}: it holds a distillation with other settings; give another "
                              "--out, or the same settings:\n  " + "\n  ".join(diff) +
                              resume_hint(saved["distill"], now["distill"]))
    elif out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty and holds no distillation; choose another directory")
    out.mkdir(parents=True, exist_ok=True)
    saved_file.write_text(json.dumps(settings, indent=1, default=str), encoding="utf-8")
    return out


def resume_hint(saved: dict[str, Any], now: dict[str, Any]) -> str:
    """The --set that give a saved distillation's distill settings back (none differ: nothing)."""
    if now.get("augment") and "augment" not in saved:  # distill.augment=0 saved no augment settings
        saved = {**saved, "augment": 0}
    saved = {**{k: v for k, v in BY_DEFAULT.items() if k in now}, **saved}  # not saved: at its default
    sets = [f"--set distill.{k}={v}" for k, v in saved.items() if now.get(k) != v]  # absent now: unused (augment=0)
    return f"\n(to continue it: {' '.join(sets)})" if sets else ""


# --------------------------------------------------------------------------- training one seed


def distill_seed(setup: DistillSetup, seed: int) -> SeedRun:
    """Train one student with this seed (or continue its checkpoint, or read its finished result): the soft-label
    loss on batches of the texts with the teacher's logits, in the one seed routine (seeds.train_seed)."""
    dc, tc, ft = setup.cfg.distill, setup.cfg.train, setup.cfg.finetune
    teacher_dim = setup.teacher_pooled.shape[1] if setup.teacher_pooled is not None else None
    n_labels, pad_id = len(setup.teacher.label_names), setup.student.special.pad

    def build() -> DistillModel:
        return DistillModel(student_classifier(setup.student, n_labels, ft.pooling, ft.dropout), teacher_dim)

    batches = EpochBatches(setup.train, dc.batch_size, pad_id, setup.segments, hashed_shuffles(len(setup.train), seed),
                           {"teacher_logits": setup.targets, "teacher_pooled": setup.teacher_pooled})
    settings = SeedSettings(dc.lr, setup.budget, dc.patience, dc.min_steps, setup.eval_every,
                            max(1, setup.eval_every // 4), tc.weight_decay, tc.warmup, tc.clip, tc.on_nan,
                            tc.deterministic, tc.checkpoint_every, tc.checkpoint_minutes, tc.progress)
    scoring = SeedScoring(setup.enc["validation"], setup.enc["test"], list(setup.teacher.label_names), pad_id,
                          setup.segments, setup.device, setup.dtype, classifier=lambda m: m.student)
    step_loss = soft_label_step_loss(dc.temperature, dc.alpha, ft.pooling, dc.hidden_weight)
    return train_seed(seed, build, step_loss, batches, settings, scoring, seed_dir=setup.out / "seeds" / f"seed-{seed}",
                      desc=f"distill {setup.task.name} seed {seed}", quiet=setup.quiet)


# --------------------------------------------------------------------------- the recipe


def distill(teacher: str | Path | FineTuned, student: str | Path, inputs: Sequence[str | Path], out: str | Path,
            cfg: RunConfig | None = None, seeds: Sequence[int] | None = None, *, task: str | Path | Task | None = None,
            tokenizer: str | Path | None = None, resume: bool = False, quiet: bool = False) -> DistillResult:
    """Distil the teacher into the student on the inputs' text and the task's labelled training split,
    once per seed; save the best seed's student as a classifier directory in `out`, with report.md/json.

    cfg: the settings (distill.*, finetune.pooling / dropout / max_len, train.* precision, device, warm-up,
    checkpoints); for student preset:NAME its model section is the architecture (see student_config).
    resume: continue the distillation in `out` (its finished seeds are read, the others' checkpoints resumed).
    """
    t0 = time.perf_counter()
    cfg = cfg or student_config(str(student), None, [])
    seeds = tuple(seeds if seeds is not None else cfg.finetune.seeds)
    if not seeds:
        raise ConfigError("--seeds is empty; give at least one seed")
    setup = prepare_distill(teacher, student, inputs, out, cfg, task=task, tokenizer=tokenizer, resume=resume,
                            quiet=quiet)
    runs = [distill_seed(setup, seed) for seed in seeds]
    best = best_seed(runs)
    save_student(setup, best, seeds, setup.out)
    result = _report(setup, runs, best)
    result.seconds = round(time.perf_counter() - t0, 2)
    (setup.out / "report.json").write_text(json.dumps(result.to_dict(), indent=1, default=str), encoding="utf-8")
    (setup.out / "report.md").write_text(report_markdown(result), encoding="utf-8")
    return result


def save_student(setup: DistillSetup, run: SeedRun, seeds: tuple[int, ...], out: Path,
                 extra_meta: dict[str, Any] | None = None) -> Path:
    """A seed's student as a fine-tuned classifier directory (runs.save_classifier) in out."""
    from ..data.tasks import BUILTIN_TASKS

    st, task, ft = setup.student, setup.task, setup.cfg.finetune
    model = student_classifier(replace(st, backbone=None), len(setup.teacher.label_names), ft.pooling, None)
    model.load_state_dict(run.best_weights())
    task_ref = task.name if task.name in BUILTIN_TASKS else task.source
    base = st.run_config or setup.cfg
    used = RunConfig(model=st.model_cfg, data=base.data, objective=base.objective, train=setup.cfg.train,
                     finetune=replace(setup.teacher.config.finetune, task=task_ref, pooling=ft.pooling,
                                      dropout=ft.dropout, max_len=setup.max_len, seeds=seeds),
                     distill=setup.cfg.distill)
    meta = {"task": task.name, "task_source": task_ref, "source_run": st.source, "init": "distilled",
            "seed": run.result.seed, "head": setup.head, "pooling": ft.pooling, "max_len": setup.max_len,
            "pairs": False, "segments": setup.segments, "split": task.split_kind, "teacher": str(setup.teacher.path),
            "teacher_hash": setup.settings["teacher_hash"], **(extra_meta or {})}
    return save_classifier(out, model, st.tokenizer, used, setup.teacher.label_names, meta)


def _report(setup: DistillSetup, runs: list[SeedRun], best: SeedRun) -> DistillResult:
    """Teacher against student on the test split, sizes and speeds measured now, on the same texts."""
    teacher, task, test = setup.teacher, setup.task, setup.enc["test"]
    names = teacher.label_names
    teacher.model.to(setup.device)
    t_logits, _ = _teacher.run_teacher(teacher, task.test.texts, setup.cfg.distill.teacher_batch_size, setup.device,
                              setup.dtype, False)
    teacher.model.cpu()
    t_pred = t_logits.argmax(-1)
    t_test = score(test.labels, t_pred.tolist(), names)
    saved = load_classifier(setup.out)
    timed = task.test.texts[:setup.cfg.distill.throughput_texts]
    t_speed = speeds(teacher.model, teacher.tokenizer, teacher.meta["max_len"], teacher.special.pad,
                      teacher.meta["segments"], timed)
    s_speed = speeds(saved.model, saved.tokenizer, setup.max_len, saved.special.pad, setup.segments, timed)
    seeds = [r.result for r in runs]
    teacher_fig = ModelFigures(str(teacher.path), Summary.of([t_test.accuracy]), Summary.of([t_test.macro_f1]),
                               count_parameters(teacher.model), (teacher.path / "model.safetensors").stat().st_size,
                               *t_speed)
    student_fig = ModelFigures(setup.student.source, Summary.of([s.accuracy for s in seeds]),
                               Summary.of([s.macro_f1 for s in seeds]), count_parameters(saved.model),
                               (setup.out / "model.safetensors").stat().st_size, *s_speed)
    agreement = Summary.of([float((r.test_logits.argmax(-1) == t_pred).float().mean()) for r in runs])
    pool, got, dc = setup.texts, setup.labels, setup.cfg.distill
    texts = {"labelled": len(task.train), "unlabelled": len(pool.texts) - pool.augmented,
             "augmented": pool.augmented, "augment_held_out_dropped": pool.augment_held_out_dropped,
             **({"augment_targets": dc.augment_targets} if dc.augment_targets != "teacher" else {}),
             **({"kept": len(setup.train) - len(task.train), "confident_share": dc.confident_share}
                if dc.confident_share < 1 else {}),
             "piece_words": pool.piece_words,
             "sources": pool.sources, "held_out_dropped": pool.held_out_dropped,
             "labelled_dropped": pool.labelled_dropped, "duplicates_dropped": pool.duplicates_dropped,
             "sampled_from": pool.sampled_from, "unk_rate": round(setup.unk_rate, 5)}
    cache = {"dir": str(got.cache_dir), "computed": got.computed, "reused": got.reused, "refused": got.refused,
             "seconds": got.seconds}
    settings = {"temperature": dc.temperature, "alpha": dc.alpha, "hidden_weight": dc.hidden_weight,
                "budget": asdict(setup.budget), "eval_every": setup.eval_every, "patience": dc.patience,
                "batch_size": dc.batch_size, "lr": dc.lr,
                **({"tfidf_weight": dc.tfidf_weight} if dc.tfidf_weight else {}),
                "student_backbone": setup.student.model_cfg.backbone, "tokenizer": setup.student.tokenizer_source}
    best_test = score(test.labels, best.test_logits.argmax(-1).tolist(), names)
    return DistillResult(task.name, teacher_fig, student_fig, agreement, seeds, best.result.seed, best_test,
                         list(names), texts, cache, settings, str(setup.out))
