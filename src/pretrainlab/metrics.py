"""Scores of a classifier's predictions (accuracy, macro-F1, per-class report, confusion matrix) and
the result types of fine-tuning over seeds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir) if self.out_dir else None
        return d
