"""The label-scarcity learning curve: test accuracy against the number of labelled examples.

For each label count N and seed, a stratified subsample of N examples is drawn from the task's
training split. The subsamples of one seed are nested (the 100 lie inside the 300, which lie inside
the 1000) and every model of that seed sees exactly the same N examples:

    pretrained    the run's backbone, fine-tuned
    random-init   the same architecture and recipe, randomly initialised
    tfidf         TF-IDF + logistic regression
    majority      the most frequent label
    reference     another run (e.g. an imported MiniLM), when given

Honest model selection with few labels: a fifth of the N examples (every fifth one of the
stratified order) is the validation set that early stopping and TF-IDF's C see; the model trains on
the other four fifths. Nothing outside the N labels is used for any choice. The task's own
validation split is not used at all; the test split scores every model.

With jobs > 1 (`curve --jobs N`) the fine-tuning fits run in worker processes (curve_jobs.py): the same rows,
written in the same order.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import shutil
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import Budget, ConfigError, RunConfig
from .curve_jobs import FitPool, check_jobs
from .curve_rows import (ALL_MODELS, BASE_OF, SELF_TRAINED, CurveExtras, CurveRows, available_models, missing_flags,
                         reference_settings, teacher_of)
from .data.tasks import Task, as_task
from .distill import AUGMENT, BEFORE_EVALS, POOL_LABELS, TextPool, resume_hint, typical_words, unsaved_settings
from .errors import TaskError
from .finetune import clock, finetune_budget
from .metrics import small_test_warning
from .runs import Pretrained, load_pretrained
from .semisup import check_student, curve_student, student_source, unlabelled_inputs

log = logging.getLogger(__name__)

MODELS = ("pretrained", "random-init", "tfidf", "majority", "reference")
CSV_COLUMNS = ("labels", "model", "seed", "accuracy", "macro_f1", "ci_low", "ci_high")
"""ci_low, ci_high: the accuracy's 95% bootstrap interval over the test examples (metrics.bootstrap_interval)."""
OLD_CSV_COLUMNS = CSV_COLUMNS[:5]
"""curve.csv before the intervals: still read, and given the new columns (empty) when a curve resumes."""
BEFORE_BUDGETS = {"budget": "auto", "max_minutes": 0.0, "evals": 0}
"""The finetune settings a curve-settings.json from before finetune.budget lacks, at the values that give the
rule it was made with: such a curve resumes when run with them (and finetune.patience=3)."""
LADDER = (1, 3)
"""Default label counts: 100 x 1, 3, 10, 30, ... below the training split, then all of it."""
VAL_EVERY = 5
"""Every VAL_EVERY-th example of a subsample is held out for validation (a fifth of the labels)."""


# --------------------------------------------------------------------------- subsamples


def stratified_order(labels: Sequence[int], seed: int) -> list[int]:
    """A random order of the training split in which every prefix holds each class in its share.

    Class c's k-th member (in a seeded shuffle) gets the key (k + 0.5) / n_c; sorting by the key
    interleaves the classes, so a prefix of any length N holds round(N * n_c / n) +- 1 of class c.
    Prefixes are nested by construction.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    keys = np.empty(len(labels))
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        keys[members] = (np.arange(len(members)) + 0.5) / len(members)
    tiebreak = rng.random(len(labels))
    return np.lexsort((tiebreak, keys)).tolist()


def default_label_counts(task: Task) -> list[int]:
    """100, 300, 1000, 3000, ... while below the training split (and not below what stratifying needs), then all."""
    n_train, least = len(task.train), smallest_label_count(task)
    counts, scale = [], 100
    while True:
        for k in LADDER:
            if k * scale >= n_train:
                return [n for n in counts if n >= least] + [n_train]
            counts.append(k * scale)
        scale *= 10


def parse_label_counts(values: Sequence[str | int] | None, task: Task) -> list[int]:
    """`100 300 all` -> [100, 300, len(train)], checked against the task; sorted, unique.
    None: default_label_counts."""
    if values is None:
        return default_label_counts(task)
    n_train = len(task.train)
    counts = []
    for v in values:
        if str(v).strip().lower() == "all":
            counts.append(n_train)
            continue
        try:
            n = int(v)
        except ValueError:
            raise ConfigError(f"--labels {v!r}: give whole numbers of labelled examples or 'all'") from None
        if n > n_train:
            raise ConfigError(f"--labels {n}: the training split of {task.name} has only {n_train} examples; "
                              f"use at most {n_train} (or 'all'), or leave --labels out for counts that fit "
                              f"({' '.join(map(str, default_label_counts(task)))})")
        counts.append(n)
    if not counts:
        raise ConfigError("--labels: give at least one label count, e.g. --labels 100 300 1000 all")
    least = smallest_label_count(task)
    for n in counts:
        if n < least:
            raise ConfigError(
                f"--labels {n}: too small to stratify {task.name}'s {task.n_labels} classes "
                f"(shares {_shares(task)}): each class needs one training and one validation example; "
                f"use at least {least}")
    return sorted(set(counts))


def smallest_label_count(task: Task) -> int:
    """The smallest N whose subsample gives every class at least 2 examples (train + validation)."""
    counts = np.bincount(task.train.labels, minlength=task.n_labels)
    if (counts < 2).any():
        missing = [str(task.label_names[i]) for i in np.flatnonzero(counts < 2)]
        raise TaskError(f"task {task.name}: classes {missing} have fewer than 2 training examples; "
                        "a learning curve needs at least 2 of each")
    share = counts / counts.sum()
    return max(2 * task.n_labels, math.ceil(2 / share.min()))


def _shares(task: Task) -> str:
    counts = np.bincount(task.train.labels, minlength=task.n_labels)
    return ", ".join(f"{task.label_names[i]} {c / counts.sum():.0%}" for i, c in enumerate(counts))


def picked_examples(task: Task, n: int, seed: int) -> list[int]:
    """The indices (into the training split) of the N stratified examples of this seed."""
    return stratified_order(task.train.labels, seed)[:n]


def subsample(task: Task, n: int, seed: int) -> Task:
    """The task with its training split cut to N stratified examples, a fifth of them as validation."""
    picked = picked_examples(task, n, seed)
    val = [i for k, i in enumerate(picked) if k % VAL_EVERY == VAL_EVERY - 1]
    train = [i for k, i in enumerate(picked) if k % VAL_EVERY != VAL_EVERY - 1]
    present = set(task.train.labels[i] for i in train)
    if len(present) < task.n_labels:
        raise ConfigError(f"--labels {n}: seed {seed}'s subsample leaves a class out of training; "
                          f"use at least {smallest_label_count(task)} labels")
    note = f"learning curve: {n} labels (seed {seed}): {len(train)} train + {len(val)} validation"
    return replace(task, train=task.train.subset(train), validation=task.train.subset(val),
                   notes=[*task.notes, note])


# --------------------------------------------------------------------------- running


@dataclass
class CurvePoint:
    labels: int
    model: str
    seed: int
    accuracy: float
    macro_f1: float
    ci_low: float | None = None
    ci_high: float | None = None
    """The accuracy's 95% bootstrap interval over the test examples (None in a curve.csv from before them)."""


def run_curve(run: str | Path | Pretrained, task: str | Path | Task, labels: Sequence[str | int] | None,
              seeds: Sequence[int], out: str | Path, cfg: RunConfig | None = None,
              reference: str | Path | None = None, reference_cfg: RunConfig | None = None,
              run_name: str | None = None, save_model: str | Path | None = None,
              models: Sequence[str] | None = None, extras: CurveExtras | None = None,
              jobs: int = 1) -> list[CurvePoint]:
    """Fine-tune every model at every label count and seed; write curve.csv, curve.md, curve.png.

    Points already in OUT/curve.csv (from an interrupted run with the same settings) are kept; a row stopped
    while it trained continues from its checkpoint.
    labels: label counts and/or 'all'; None: default_label_counts (100, 300, 1000, ... below the split, and all).
    save_model: where to save the pretrained classifier of the largest label count and first seed.
    models: only these rows (default: every row the curve has; see curve_rows.available_models).
    extras: self-trained, distilled and adapted-reference rows (curve_rows.CurveExtras); every check of them
    (the student, the unlabelled inputs, the reference) is made before any training.
    jobs: fine-tuning fits to run at once, in worker processes (curve_jobs.py; 1 on a GPU); the curve is the same.
    """
    pre = run if isinstance(run, Pretrained) else load_pretrained(run)
    run_name = run_name or (str(run) if not isinstance(run, Pretrained) else str(pre.run_dir))
    cfg = cfg or pre.config
    task = as_task(task if task is not None else cfg.finetune.task, cfg.finetune)
    counts = parse_label_counts(labels, task)
    if not seeds:
        raise ConfigError("--seeds: give at least one seed")
    extras = extras or CurveExtras()
    names = _requested(models, available_models(reference is not None, extras), reference, extras)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory for curve.csv, curve.md and curve.png")
    inputs = _check_extras(extras, task, cfg, pre, reference)  # before any training: bad input costs nothing
    ref = load_pretrained(reference) if reference is not None else None
    ref_settings = reference_settings(reference_cfg, ref)  # what the reference's rows train with
    jobs = check_jobs(jobs, [cfg.train.device, *([ref_settings.train.device] if ref_settings else [])])
    out.mkdir(parents=True, exist_ok=True)
    log.info(f"curve: {task.name}: {len(task.train)} training examples, label counts {' '.join(map(str, counts))} "
             f"(a fifth of each for validation); {len(task.test)} test examples score every model")
    if warning := small_test_warning(len(task.test)):
        log.warning(warning)
    settings = {"run": run_name, "task": task.name, "task_source": task.source, "reference": str(reference or ""),
                "finetune": _jsonable(cfg.finetune), "train_precision": cfg.train.precision,
                **_extra_settings(extras, cfg, ref_cfg=reference_cfg, inputs=inputs, ref=ref)}
    if ref_settings is not None:  # the reference's own rate (curve --reference-lr): its rows must share it too
        settings["reference_lr"] = ref_settings.finetune.lr
    points = _resume(out, settings, ref_own_selftrain=_jsonable(ref.config.selftrain) if ref is not None else None,
                     dapt_warmup_before=(reference_cfg or cfg).train.head_warmup)
    dapt = None
    if extras.reference_dapt:
        from .dapt import adapt_reference

        dapt = load_pretrained(adapt_reference(Path(reference), pre, extras.reference_dapt, out / "reference-dapt",
                                               reference_settings(reference_cfg, ref), extras.dapt_lr))
    cfg = replace(cfg, distill=replace(cfg.distill, cache=cfg.distill.cache or str(out / "teacher-logits")))
    rows = CurveRows(pre, ref, dapt, task, cfg, reference_cfg, out, extras, inputs, typical_words(task),
                     (Path(save_model), counts[-1], seeds[0]) if save_model is not None else None)
    fine_tuned = [m for m in names if m not in ("majority", "tfidf") and teacher_of(m) is None]
    with FitPool(rows, jobs) as fits:
        _score_rows(rows, fits, points, counts, seeds, names, fine_tuned)
    details = read_details(out / DETAILS_FILE)
    write_markdown(points, out / "curve.md", task, seeds, details)
    plot_curve(points, out / "curve.png", title=f"{task.name}: accuracy vs labelled examples ({Path(run_name).name})")
    return points


def _score_rows(rows: CurveRows, fits: FitPool, points: list[CurvePoint], counts: Sequence[int], seeds: Sequence[int],
                names: Sequence[str], fine_tuned: Sequence[str]) -> None:
    """Score every row not in `points` yet, in table order, appending each to curve.csv and the details as it is
    done. With worker processes (fits.active) every fine-tuned row's fit starts at once, in that order; the
    curve waits for each in turn, and for all of them before it trains a taught row itself."""
    out, task = rows.out, rows.task
    done = {(p.labels, p.model, p.seed) for p in points}
    todo = [(n, seed, m) for n in counts for seed in seeds for m in names if (n, m, seed) not in done]
    teaches = {(n, m, seed): any(teacher_of(t) == m and (n, t, seed) not in done for t in names) for n, seed, m in todo}
    teachers = [m for m in ALL_MODELS if any(teacher_of(t) == m for t in ALL_MODELS)]  # fine-tuned or self-trained
    eta = Eta([_budget(n, rows.source(m)[1]) if m in fine_tuned else None for n, _, m in todo])
    if fits.active:
        for n, seed, m in todo:
            if m in fine_tuned:
                fits.submit(n, seed, m, subsample(task, n, seed), teaches[(n, m, seed)])
    for n in counts:
        for seed in seeds:
            sub, picked = subsample(task, n, seed), picked_examples(task, n, seed)
            for model in names:
                if (n, model, seed) in done:
                    continue
                left = eta.left()
                log.info(f"curve: {n} labels, seed {seed}, {model} [{eta.k + 1}/{len(todo)}"
                         f"{f', ~{clock(left)} left' if left is not None else ''}]")
                started = time.perf_counter()
                if (n, model, seed) in fits:
                    row = fits.result(n, model, seed)
                else:
                    if teacher_of(model) is not None:
                        fits.drain()
                    row = rows.score(n, seed, sub, picked, model, teaches[(n, model, seed)])
                eta.done(time.perf_counter() - started)
                point = CurvePoint(n, model, seed, row.accuracy, row.macro_f1, row.ci.low, row.ci.high)
                _append_details(out / DETAILS_FILE, point, row.details)
                points.append(point)
                done.add((n, model, seed))
                _append_csv(out / "curve.csv", point)
                shutil.rmtree(rows.work(n, model, seed), ignore_errors=True)  # a worker's fit leaves it till now
            for model in teachers:  # a teacher goes once every row it teaches is scored (or not asked for now)
                if all((n, m, seed) in done for m in names if teacher_of(m) == model):
                    shutil.rmtree(rows.teacher_dir(n, model, seed), ignore_errors=True)


def _requested(models: Sequence[str] | None, available: list[str], reference, extras: CurveExtras) -> list[str]:
    """The rows to score, in table order: the ones asked for (default: all available) and the teachers of those
    that are taught."""
    if models is None:
        return available
    unknown = [m for m in models if m not in ALL_MODELS]
    if unknown or not models:
        raise ConfigError(f"--models {' '.join(models)}: choose among {', '.join(available)}")
    for m in models:
        if m in available:
            continue
        needs = ("--reference RUN (the run to fine-tune as the reference)" if reference is None and "reference" in m
                 else "--reference-dapt BUDGET" if m.startswith("reference+dapt") and not extras.reference_dapt
                 else " and ".join(missing_flags(m, extras)))
        raise ConfigError(f"--models {m} needs {needs}")
    wanted: set[str] = set()
    for m in models:  # each row with its teacher, and that teacher's own (X+self-train->student: X+self-train, X)
        while m is not None:
            wanted.add(m)
            m = teacher_of(m)
    return [m for m in available if m in wanted]


def _check_extras(extras: CurveExtras, task: Task, cfg: RunConfig, pre: Pretrained, reference) -> TextPool | None:
    """Every check of the extra rows, before any work; the unlabelled inputs' pieces (None without them)."""
    if extras.unlabelled and not extras.semi:
        raise ConfigError("--unlabelled feeds the pool of the --self-train and --student rows; add one of them")
    if extras.reference_dapt:
        if reference is None:
            raise ConfigError("--reference-dapt BUDGET adapts the --reference checkpoint to the run's corpus; give "
                              "--reference DIR (e.g. a model from pretrainlab import)")
        Budget.parse(extras.reference_dapt, "--reference-dapt")
    if not extras.semi:
        return None
    if task.has_pairs:
        raise ConfigError(f"--self-train and --student label single texts, and task {task.name} has text pairs; "
                          "drop them for this task")
    if extras.student is not None:
        check_student(extras.student, extras.student_backbone)  # a run: loaded there, once (a model and tokenizer)
        if student_source(extras.student, extras.student_backbone)[1] is not None:  # a preset: does its size fit?
            curve_student(extras.student, extras.student_backbone, cfg, Path(str(pre.run_dir)) / "tokenizer.json")
    return unlabelled_inputs(extras.unlabelled, task, cfg.finetune, cfg.data, cfg.distill.max_texts)


def _extra_settings(extras: CurveExtras, cfg: RunConfig, ref_cfg: RunConfig | None,
                    inputs: TextPool | None, ref: Pretrained | None = None) -> dict[str, Any]:
    """What the extra rows must share with the rows of them already in the curve (none: nothing). ref: the reference
    run (None: no reference rows)."""
    settings: dict[str, Any] = {}
    if extras.self_train:  # the reference's: what its rows self-train with
        reference = reference_settings(ref_cfg, ref)
        settings["self_train"] = {"selftrain": _jsonable(cfg.selftrain),
                                  "reference_selftrain": _jsonable(reference.selftrain) if reference else None}
    if extras.student is not None:
        skip = ("cache", "shard_texts", "teacher_batch_size", "throughput_texts", "vocab_size",  # the run's tokenizer
                *AUGMENT, *POOL_LABELS)  # the pool's soft labels', below: they feed the self-trained rows too
        student, backbone = student_source(extras.student, extras.student_backbone)  # a run: its absolute path
        settings["student"] = {"student": student, "backbone": backbone,
                               "distill": {k: v for k, v in _jsonable(cfg.distill).items() if k not in skip}}
    if extras.semi:
        texts = inputs.texts if inputs is not None else []
        settings["unlabelled"] = {"inputs": list(extras.unlabelled), "max_texts": cfg.distill.max_texts,
                                  "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest()}
        if cfg.distill.augment:  # none: as a curve from before distill.augment recorded it
            settings["unlabelled"]["augment"] = {k: getattr(cfg.distill, k) for k in AUGMENT
                                                 if k not in unsaved_settings(cfg.distill)}  # as distill saves them
        for k in POOL_LABELS:  # away from the default only: as a curve from before the setting recorded it
            if k not in unsaved_settings(cfg.distill):
                settings["unlabelled"][k] = getattr(cfg.distill, k)
    if extras.reference_dapt:  # the reference's head warm-up: what adapt_reference pre-trains with
        settings["reference_dapt"] = {"budget": extras.reference_dapt, "lr": extras.dapt_lr,
                                      "head_warmup": reference_settings(ref_cfg, ref).train.head_warmup}
    return settings


def _pool_distill(unlabelled: dict[str, Any]) -> dict[str, Any]:
    """The distill settings a curve's pool records (distill.augment*, POOL_LABELS), as distill saves them."""
    return {**unlabelled.get("augment", {}), **{k: v for k, v in unlabelled.items() if k in POOL_LABELS}}


def _budget(n: int, cfg: RunConfig) -> Budget:
    """The budget of a row fine-tuned on N labels (a fifth of them for validation)."""
    ft = cfg.finetune
    return finetune_budget(ft, math.ceil((n - n // VAL_EVERY) / ft.batch_size))


class Eta:
    """The time a curve has left: the seconds per budgeted step of the rows done so far, times the steps
    budgeted for the fine-tuned rows to come (each at most its time cap). A row without a budget (None: a
    baseline, or a self-trained or distilled row) is neither counted nor foreseen."""

    def __init__(self, budgets: Sequence[Budget | None]):
        self.budgets, self.k = list(budgets), 0  # every job's budget; the jobs done
        self.steps, self.seconds = 0, 0.0  # the budgeted steps of the fine-tunes done, and the seconds they took

    def done(self, seconds: float) -> None:
        b = self.budgets[self.k]
        if b is not None and b.steps is not None:
            self.steps, self.seconds = self.steps + b.steps, self.seconds + seconds
        self.k += 1

    def left(self) -> float | None:
        """Seconds, or None before a fine-tune of steps has finished (nothing to go by)."""
        if self.steps == 0:
            return None
        rate = self.seconds / self.steps
        est = [min(b.steps * rate if b.steps is not None else math.inf, b.seconds or math.inf)
               for b in self.budgets[self.k:] if b is not None]
        return sum(x for x in est if x != math.inf)


def _jsonable(obj) -> dict:
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(obj), default=str))


def _resume(out: Path, settings: dict, ref_own_selftrain: dict | None = None,
            dapt_warmup_before: float | None = None) -> list[CurvePoint]:
    """The points of a curve in `out` with the same settings; a curve's extra rows may join it later (their
    settings are added), but a setting that differs from the one its rows were scored with is refused.
    ref_own_selftrain: the reference run's own selftrain section, which the reference rows of a curve that recorded
    none self-trained with (before the record named them, a curve given no reference settings recorded None).
    dapt_warmup_before: the reference_dapt head_warmup a curve with these settings recorded before the record named
    the reference's (the reference settings', else the curve's own train.head_warmup: not the one its rows used)."""
    meta, csv_path = out / "curve-settings.json", out / "curve.csv"
    if csv_path.exists() and meta.exists():
        saved = json.loads(meta.read_text(encoding="utf-8"))
        if isinstance(saved.get("finetune"), dict):  # a curve from before finetune.budget: the rule it had
            saved["finetune"] = {**BEFORE_BUDGETS, **saved["finetune"]}
        self_train = saved.get("self_train")
        if isinstance(self_train, dict) and self_train.get("reference_selftrain") is None and saved.get("reference"):
            self_train["reference_selftrain"] = ref_own_selftrain  # what its reference rows self-trained with
        student = saved.get("student")
        if isinstance(student, dict) and isinstance(student.get("distill"), dict):  # students from before
            student["distill"] = {**BEFORE_EVALS, **student["distill"]}  # distill.evals_per_epoch: once a pass
        dapt = saved.get("reference_dapt")
        if isinstance(dapt, dict) and "reference_dapt" in settings and dapt.get("head_warmup") == dapt_warmup_before:
            dapt["head_warmup"] = settings["reference_dapt"]["head_warmup"]  # its rows: the reference's, as now
        differ = sorted(k for k in set(saved) & set(settings) if saved[k] != settings[k])
        base = [k for k in settings if k not in EXTRA_SETTINGS]
        if differ or any(k not in saved for k in base):
            hint = resume_hint(student.get("distill", {}), settings["student"]["distill"]) \
                if "student" in differ and isinstance(student, dict) else ""
            if "unlabelled" in differ and isinstance(saved["unlabelled"], dict):  # the pool's distill.* settings
                hint += resume_hint(_pool_distill(saved["unlabelled"]), _pool_distill(settings["unlabelled"]))
            raise ConfigError(f"{out} holds a learning curve with other settings ({meta}: {', '.join(differ) or 'keys'}"
                              f"); give another --out or delete the directory{hint}")
        if any(k not in saved for k in settings):
            meta.write_text(json.dumps({**saved, **settings}, indent=1), encoding="utf-8")
        points = read_csv(csv_path)
        if _columns(csv_path) != CSV_COLUMNS:  # a curve from before the intervals: the new columns, left empty
            _write_csv(csv_path, points)
        return points
    if csv_path.exists():
        raise ConfigError(f"{csv_path} exists without {meta.name}; give another --out or delete it")
    meta.write_text(json.dumps(settings, indent=1), encoding="utf-8")
    _write_csv(csv_path, [])
    return []


def _row(p: CurvePoint) -> list:
    bound = lambda x: "" if x is None else f"{x:.6f}"  # noqa: E731
    return [p.labels, p.model, p.seed, f"{p.accuracy:.6f}", f"{p.macro_f1:.6f}", bound(p.ci_low), bound(p.ci_high)]


def _write_csv(path: Path, points: Sequence[CurvePoint]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        w.writerows(_row(p) for p in points)


EXTRA_SETTINGS = ("self_train", "student", "unlabelled", "reference_dapt", "reference_lr")
DETAILS_FILE = "curve-details.jsonl"
"""Beside curve.csv, one JSON line a row: validation accuracy (what a choice may use), steps, seconds, parameters
and CPU texts/s of its model, and for a taught row its teacher and pool."""


def _append_csv(path: Path, p: CurvePoint) -> None:
    with open(path, "a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerow(_row(p))


def _columns(path: Path) -> tuple[str, ...]:
    with open(path, newline="", encoding="utf-8") as f:
        return tuple(next(csv.reader(f), ()))


def _append_details(path: Path, p: CurvePoint, details: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"labels": p.labels, "model": p.model, "seed": p.seed, **details}) + "\n")


def read_details(path: Path) -> dict[tuple[int, str, int], dict[str, Any]]:
    """(labels, model, seed) -> the row's details (the last line of a row written twice)."""
    out: dict[tuple[int, str, int], dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                out[(d["labels"], d["model"], d["seed"])] = d
    return out


def read_csv(path: Path) -> list[CurvePoint]:
    """The points of a curve.csv, with or without the interval columns (OLD_CSV_COLUMNS)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) not in (CSV_COLUMNS, OLD_CSV_COLUMNS):
            raise ConfigError(f"{path}: expected the columns {','.join(CSV_COLUMNS)}, found {reader.fieldnames}")
        bound = lambda x: float(x) if x else None  # noqa: E731
        return [CurvePoint(int(r["labels"]), r["model"], int(r["seed"]), float(r["accuracy"]), float(r["macro_f1"]),
                           bound(r.get("ci_low")), bound(r.get("ci_high"))) for r in reader]


# --------------------------------------------------------------------------- reports


def cells(points: Sequence[CurvePoint]) -> dict[tuple[int, str], list[CurvePoint]]:
    out: dict[tuple[int, str], list[CurvePoint]] = {}
    for p in sorted(points, key=lambda p: (p.labels, ALL_MODELS.index(p.model), p.seed)):
        out.setdefault((p.labels, p.model), []).append(p)
    return out


def _mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def _cell(points: Sequence[CurvePoint], metric: str) -> str:
    """mean ± std over seeds; for accuracy also the seeds' 95% intervals, bounds averaged (where every seed has one)."""
    text = _mean_std([getattr(p, metric) for p in points])
    if metric == "accuracy" and all(p.ci_low is not None for p in points):
        text += f" [{statistics.fmean(p.ci_low for p in points):.3f}, {statistics.fmean(p.ci_high for p in points):.3f}]"
    return text


def markdown_table(points: Sequence[CurvePoint], metric: str = "accuracy") -> str:
    by = cells(points)
    models = [m for m in ALL_MODELS if any(k[1] == m for k in by)]
    counts = sorted({k[0] for k in by})
    lines = ["| labels | " + " | ".join(models) + " | pretrained - random-init |",
             "|---:|" + "---:|" * (len(models) + 1)]
    for n in counts:
        row = [_cell(by[(n, m)], metric) if (n, m) in by else "-" for m in models]
        margin = "-"
        if (n, "pretrained") in by and (n, "random-init") in by:
            a = statistics.fmean(getattr(p, metric) for p in by[(n, "pretrained")])
            b = statistics.fmean(getattr(p, metric) for p in by[(n, "random-init")])
            margin = f"{a - b:+.4f}"
        lines.append(f"| {n} | " + " | ".join(row) + f" | {margin} |")
    return "\n".join(lines) + "\n"


def write_markdown(points: Sequence[CurvePoint], path: Path, task: Task, seeds: Sequence[int],
                   details: dict[tuple[int, str, int], dict[str, Any]] | None = None) -> Path:
    text = (f"# Learning curve: {task.name}\n\n"
            f"Test accuracy ({len(task.test)} examples), mean ± std over seeds {list(seeds)}, and in brackets its 95% "
            f"bootstrap interval over the test examples (each seed's, bounds averaged over the seeds): differences "
            f"inside it are within what another draw of {len(task.test)} test examples could give. Each label count N is "
            f"a stratified subsample of the training split, nested across N and the same for every model of a "
            f"seed; a fifth of the N labels is the validation set for early stopping and TF-IDF's C (no other "
            f"labels are used).\n\n{markdown_table(points)}\nMacro-F1:\n\n{markdown_table(points, 'macro_f1')}")
    if any(p.model not in MODELS for p in points):
        text += ("\nWhat each stage adds (the row against the one it builds on: pre-training against random init, "
                 "self-training or a student against its teacher, adaptation against the reference), with the "
                 "validation accuracy a choice may use and each model's size and CPU speed (fp32, batch 32):\n\n"
                 + stages_table(points, details or {}))
    path.write_text(text, encoding="utf-8")
    return path


def _mean(points: Sequence[CurvePoint], details: dict, key: str) -> float | None:
    values = [details[(p.labels, p.model, p.seed)][key] for p in points
              if key in details.get((p.labels, p.model, p.seed), {})]
    return statistics.fmean(values) if values else None


def stages_table(points: Sequence[CurvePoint], details: dict[tuple[int, str, int], dict[str, Any]]) -> str:
    """One line per label count and model: test accuracy, the gain over the row it builds on, validation accuracy,
    parameters, texts/s and minutes (means over seeds)."""
    by = cells(points)
    lines = ["| labels | model | test accuracy | vs | gain | validation | parameters | texts/s | minutes |",
             "|---:|---|---:|---|---:|---:|---:|---:|---:|"]

    def fmt(v: float | None, f: str) -> str:
        return "-" if v is None else format(v, f)

    for (n, model), ps in by.items():
        base = BASE_OF.get(model)
        gain = None
        if base is not None and (n, base) in by:
            gain = statistics.fmean(p.accuracy for p in ps) - statistics.fmean(p.accuracy for p in by[(n, base)])
        params, speed, secs = (_mean(ps, details, k) for k in ("parameters", "texts_per_s", "seconds"))
        lines.append(f"| {n} | {model} | {_mean_std([p.accuracy for p in ps])} | {base or '-'} | {fmt(gain, '+.4f')} | "
                     f"{fmt(_mean(ps, details, 'val_accuracy'), '.4f')} | "
                     f"{'-' if params is None else f'{params / 1e6:.2f}M'} | {fmt(speed, ',.0f')} | "
                     f"{fmt(None if secs is None else secs / 60, '.1f')} |")
    return "\n".join(lines) + "\n"


def plot_curve(points: Sequence[CurvePoint], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = cells(points)
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"pretrained": "-", "random-init": "-.", "tfidf": "--", "majority": ":", "reference": (0, (3, 1, 1, 1)),
              "reference+dapt": (0, (5, 1))}
    for model in ALL_MODELS:
        keys = sorted(k for k in by if k[1] == model)
        if not keys:
            continue
        xs = [k[0] for k in keys]
        vals = [[p.accuracy for p in by[k]] for k in keys]
        mean = [statistics.fmean(v) for v in vals]
        taught = "o" if teacher_of(model) is None else "s" if model.endswith(SELF_TRAINED) else "^"
        line, = ax.plot(xs, mean, linestyle=styles.get(model, styles.get(teacher_of(model) or "", "-")),
                        marker=taught, label=model)
        if any(len(v) > 1 for v in vals):
            ax.fill_between(xs, [min(v) for v in vals], [max(v) for v in vals], color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training examples (log scale; a fifth of them for validation)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(title="band: min-max over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
