"""Scores of a classifier's predictions (accuracy with a 95% bootstrap interval, macro-F1, per-class
report, confusion matrix) and the result types of fine-tuning over seeds.

The interval says how much an accuracy could move with another draw of the same number of test
examples: a percentile bootstrap over the examples (RESAMPLES resamples, seeded, so the same
predictions always give the same interval). On 50 test examples it is about 25 points wide.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RESAMPLES = 1000
"""Bootstrap resamples of the test examples behind every accuracy interval."""
SMALL_TEST = 200
"""A test split with fewer examples gets a warning naming its interval's width."""


@dataclass
class Interval:
    """A 95% percentile-bootstrap interval of a mean over test examples."""

    low: float
    high: float
    n: int
    """Examples resampled."""

    @property
    def width(self) -> float:
        return self.high - self.low

    def __str__(self) -> str:
        return f"[{self.low:.4f}, {self.high:.4f}]"


def bootstrap_interval(values: Sequence[float] | np.ndarray, resamples: int = RESAMPLES, seed: int = 0,
                       level: float = 0.95) -> Interval:
    """The `level` percentile interval of mean(values) over `resamples` resamples of the values with replacement.

    values: one number per test example (1/0 for right/wrong; a share of seeds right for a mean over seeds).
    For 0/1 values the resampled mean is a Binomial(n, mean) / n draw, exactly, so that is drawn instead of
    n indices per resample; otherwise indices are drawn in blocks of ~4M (bounded memory).
    """
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n == 0:
        return Interval(float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    if np.all((v == 0) | (v == 1)):
        means = rng.binomial(n, v.mean(), size=resamples) / n
    else:
        means = np.empty(resamples)
        block = max(1, (1 << 22) // n)
        for start in range(0, resamples, block):
            k = min(block, resamples - start)
            means[start:start + k] = v[rng.integers(0, n, size=(k, n))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(low), float(high), n)


def small_test_warning(n_test: int, split: str = "test") -> str | None:
    """A warning for a test split under SMALL_TEST examples, naming the interval's width at 50% accuracy
    (the widest it gets); None for a large enough one."""
    if n_test >= SMALL_TEST:
        return None
    ci = bootstrap_interval(np.arange(n_test) % 2)  # half right: the widest interval for n examples
    return (f"warning: the {split} split has only {n_test} examples: an accuracy's 95% interval is up to "
            f"{100 * ci.width:.0f} points wide (±{50 * ci.width:.0f}), so differences smaller than that are noise; "
            f"hold out more test examples ({SMALL_TEST}+: a `split` column in the task file, or "
            "finetune.test_fraction)")


@dataclass
class Metrics:
    accuracy: float
    macro_f1: float
    n: int
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    """label -> precision, recall, f1, support."""
    confusion: list[list[int]] = field(default_factory=list)
    """confusion[true][predicted], in label-id order."""
    labels: list[str] = field(default_factory=list)
    accuracy_ci: Interval | None = None
    """95% bootstrap interval of the accuracy over the n examples."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[Any]) -> Metrics:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    ids = list(range(len(label_names)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    per_class = {str(label_names[i]): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                       "support": int(s[i])} for i in ids}
    return Metrics(
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        n=len(y_true), per_class=per_class,
        confusion=confusion_matrix(y_true, y_pred, labels=ids).tolist(), labels=[str(x) for x in label_names],
        accuracy_ci=bootstrap_interval(np.asarray(y_true) == np.asarray(y_pred)),
    )


@dataclass
class Summary:
    mean: float
    std: float
    """Sample standard deviation over seeds (0 for one seed)."""
    median: float
    values: list[float]

    @staticmethod
    def of(values: Sequence[float]) -> Summary:
        v = [float(x) for x in values]
        return Summary(statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, statistics.median(v), v)

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f}" if len(self.values) > 1 else f"{self.mean:.4f}"


@dataclass
class SeedResult:
    seed: int
    accuracy: float
    macro_f1: float
    val_accuracy: float
    val_macro_f1: float
    val_loss: float
    """Of the restored (best-validation) weights."""
    steps: int
    best_step: int
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    accuracy_ci: Interval | None = None
    """95% bootstrap interval of `accuracy` over the test examples."""


@dataclass
class FinetuneResult:
    task: str
    run: str
    init: str
    """pretrained or random."""
    seeds: list[SeedResult]
    accuracy: Summary
    macro_f1: Summary
    best_seed: int
    """The seed with the best validation accuracy (then loss): its model is the one saved, `test` scores it."""
    test: Metrics
    label_names: list[Any]
    out_dir: Path | None = None
    accuracy_ci: Interval | None = None
    """95% bootstrap interval over the test examples of the accuracy's mean over seeds (each example
    counts as the share of seeds that got it right)."""
    splits: dict[str, int] = field(default_factory=dict)
    """Examples in the train, validation and test splits."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir) if self.out_dir else None
        return d
