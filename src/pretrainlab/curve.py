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
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .baselines import majority_baseline, tfidf_baseline
from .config import ConfigError, RunConfig
from .data.tasks import Task, as_task
from .errors import TaskError
from .finetune import finetune
from .metrics import Interval, small_test_warning
from .runs import Pretrained, load_pretrained

MODELS = ("pretrained", "random-init", "tfidf", "majority", "reference")
CSV_COLUMNS = ("labels", "model", "seed", "accuracy", "macro_f1", "ci_low", "ci_high")
"""ci_low, ci_high: the accuracy's 95% bootstrap interval over the test examples (metrics.bootstrap_interval)."""
OLD_CSV_COLUMNS = CSV_COLUMNS[:5]
"""curve.csv before the intervals: still read, and given the new columns (empty) when a curve resumes."""
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


def subsample(task: Task, n: int, seed: int) -> Task:
    """The task with its training split cut to N stratified examples, a fifth of them as validation."""
    picked = stratified_order(task.train.labels, seed)[:n]
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
              models: Sequence[str] | None = None) -> list[CurvePoint]:
    """Fine-tune every model at every label count and seed; write curve.csv, curve.md, curve.png.

    Points already in OUT/curve.csv (from an interrupted run with the same settings) are kept.
    labels: label counts and/or 'all'; None: default_label_counts (100, 300, 1000, ... below the split, and all).
    save_model: where to save the pretrained classifier of the largest label count and first seed.
    models: only these of MODELS (default: all of them, reference only with a reference run).
    """
    pre = run if isinstance(run, Pretrained) else load_pretrained(run)
    run_name = run_name or (str(run) if not isinstance(run, Pretrained) else str(pre.run_dir))
    cfg = cfg or pre.config
    task = as_task(task if task is not None else cfg.finetune.task, cfg.finetune)
    counts = parse_label_counts(labels, task)
    if not seeds:
        raise ConfigError("--seeds: give at least one seed")
    if models is not None:
        unknown = [m for m in models if m not in MODELS]
        if unknown or not models:
            raise ConfigError(f"--models {' '.join(models)}: choose among {', '.join(MODELS)}")
        if "reference" in models and reference is None:
            raise ConfigError("--models reference needs --reference RUN (the run to fine-tune as the reference)")
    ref = load_pretrained(reference) if reference is not None else None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory for curve.csv, curve.md and curve.png")
    out.mkdir(parents=True, exist_ok=True)
    print(f"curve: {task.name}: {len(task.train)} training examples, label counts {' '.join(map(str, counts))} "
          f"(a fifth of each for validation); {len(task.test)} test examples score every model", file=sys.stderr)
    if warning := small_test_warning(len(task.test)):
        print(warning, file=sys.stderr)
    settings = {"run": run_name, "task": task.name, "task_source": task.source, "reference": str(reference or ""),
                "finetune": _jsonable(cfg.finetune), "train_precision": cfg.train.precision}
    points = _resume(out, settings)
    done = {(p.labels, p.model, p.seed) for p in points}
    models = [m for m in MODELS if (m != "reference" or ref is not None) and (models is None or m in models)]
    for n in counts:
        for seed in seeds:
            sub = subsample(task, n, seed)
            for model in models:
                if (n, model, seed) in done:
                    continue
                print(f"curve: {n} labels, seed {seed}, {model}", file=sys.stderr, flush=True)
                keep = save_model if (model == "pretrained" and n == counts[-1] and seed == seeds[0]) else None
                acc, f1, ci = _score_one(model, pre, ref, sub, cfg, reference_cfg, seed, keep)
                point = CurvePoint(n, model, seed, acc, f1, ci.low, ci.high)
                points.append(point)
                _append_csv(out / "curve.csv", point)
    write_markdown(points, out / "curve.md", task, seeds)
    plot_curve(points, out / "curve.png", title=f"{task.name}: accuracy vs labelled examples ({Path(run_name).name})")
    return points


def _score_one(model: str, pre: Pretrained, ref: Pretrained | None, sub: Task, cfg: RunConfig,
               reference_cfg: RunConfig | None, seed: int, out_dir: str | Path | None = None
               ) -> tuple[float, float, Interval]:
    """Test accuracy, macro-F1 and the accuracy's interval of one model trained on the subsample."""
    if model in ("majority", "tfidf"):
        m = majority_baseline(sub) if model == "majority" else tfidf_baseline(sub, seed=seed)
        return m.accuracy, m.macro_f1, m.accuracy_ci
    if model == "reference":
        assert ref is not None
        r = finetune(ref, sub, reference_cfg or ref.config, seeds=[seed], quiet=True)
    else:
        r = finetune(pre, sub, cfg, out_dir, seeds=[seed], random_init=model == "random-init", quiet=True)
    return r.seeds[0].accuracy, r.seeds[0].macro_f1, r.seeds[0].accuracy_ci


def _jsonable(obj) -> dict:
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(obj), default=str))


def _resume(out: Path, settings: dict) -> list[CurvePoint]:
    meta, csv_path = out / "curve-settings.json", out / "curve.csv"
    if csv_path.exists() and meta.exists():
        if json.loads(meta.read_text(encoding="utf-8")) != settings:
            raise ConfigError(f"{out} holds a learning curve with other settings ({meta}); "
                              "give another --out or delete the directory")
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


def _append_csv(path: Path, p: CurvePoint) -> None:
    with open(path, "a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerow(_row(p))


def _columns(path: Path) -> tuple[str, ...]:
    with open(path, newline="", encoding="utf-8") as f:
        return tuple(next(csv.reader(f), ()))


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
    for p in sorted(points, key=lambda p: (p.labels, MODELS.index(p.model), p.seed)):
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
    models = [m for m in MODELS if any(k[1] == m for k in by)]
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


def write_markdown(points: Sequence[CurvePoint], path: Path, task: Task, seeds: Sequence[int]) -> Path:
    text = (f"# Learning curve: {task.name}\n\n"
            f"Test accuracy ({len(task.test)} examples), mean ± std over seeds {list(seeds)}, and in brackets its 95% "
            f"bootstrap interval over the test examples (each seed's, bounds averaged over the seeds): differences "
            f"inside it are within what another draw of {len(task.test)} test examples could give. Each label count N is "
            f"a stratified subsample of the training split, nested across N and the same for every model of a "
            f"seed; a fifth of the N labels is the validation set for early stopping and TF-IDF's C (no other "
            f"labels are used).\n\n{markdown_table(points)}\nMacro-F1:\n\n{markdown_table(points, 'macro_f1')}")
    path.write_text(text, encoding="utf-8")
    return path


def plot_curve(points: Sequence[CurvePoint], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = cells(points)
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"pretrained": "-", "random-init": "-.", "tfidf": "--", "majority": ":", "reference": (0, (3, 1, 1, 1))}
    for model in MODELS:
        keys = sorted(k for k in by if k[1] == model)
        if not keys:
            continue
        xs = [k[0] for k in keys]
        vals = [[p.accuracy for p in by[k]] for k in keys]
        mean = [statistics.fmean(v) for v in vals]
        line, = ax.plot(xs, mean, linestyle=styles[model], marker="o", label=model)
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
