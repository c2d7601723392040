"""Fine-tune and score pre-trained models on labelled tasks; baselines; result tables.

    result = finetune("runs/mini", "mr", cfg, out_dir="runs/mini/finetune-mr", seeds=(0, 1, 2))
    result.accuracy.mean, result.macro_f1.std       # over seeds; the best-validation seed's model is saved
    evaluate("runs/mini/finetune-mr", "mr")           # -> Metrics, plus JSON/Markdown/PNG reports
    predict("runs/mini/finetune-mr", ["a gripping, funny film"])   # -> [("pos", 0.93)]

Fine-tuning = the run's backbone (a fresh copy per seed) + a classification head, trained by the
one loop `train.fit` for finetune.epochs epochs, validated every epoch, stopped early after
finetune.patience evaluations without a better validation accuracy; the best-validation weights are
restored before the test split is scored. `random_init=True` trains the same architecture from
scratch (what pre-training buys is the difference).

Inputs are the run's tokenizer output: `[CLS] A [SEP]`, or `[CLS] A [SEP] B [SEP]` for pairs with
segment ids 0 then 1, cut to finetune.max_len tokens. The modern style gets no segment ids (as
ModernBERT has none) and a LayerNorm after the pooler (as ModernBERT's head has), so that both
styles export to Hugging Face with equal logits.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from .config import Budget, ConfigError, RunConfig, config_from_dict, save_config
from .data.encoding import collate, encode, encode_split
from .data.tasks import BUILTIN_TASKS, Task, TaskSplit, task_from_config
from .errors import CheckpointError, TaskError
from .models import Classifier, build_classifier, head_kind
from .runs import FineTuned, Pretrained, load_classifier, load_pretrained, save_classifier
from .loop import BudgetSchedule, LoopSettings, autocast, fit, make_optimizer, pick_device, pick_dtype, set_seed

# --------------------------------------------------------------------------- inputs


@torch.no_grad()
def predict_logits(model: nn.Module, enc: Encoded, pad_id: int, segments: bool, device: torch.device,
                   dtype: torch.dtype | None, batch_size: int = 64) -> Tensor:
    """(N, n_labels) float logits, in the examples' order (batched by length for speed)."""
    model.eval()
    order = sorted(range(len(enc)), key=lambda i: len(enc.ids[i]))
    out = torch.empty(len(enc), model.head.out_features)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        b = collate(enc, idx, pad_id, segments)
        with autocast(device, dtype):
            logits = model(b["input_ids"].to(device), b["mask"].to(device),
                           b["segment_ids"].to(device) if segments else None).logits
        out[idx] = logits.float().cpu()
    return out


# --------------------------------------------------------------------------- metrics


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


# --------------------------------------------------------------------------- fine-tuning


def finetune(
    run: str | Path | Pretrained,
    task: str | Path | Task | None = None,
    cfg: RunConfig | None = None,
    out_dir: str | Path | None = None,
    seeds: Sequence[int] | None = None,
    *,
    random_init: bool = False,
    eval_every: int | None = None,
) -> FinetuneResult:
    """Fine-tune a pre-training run's backbone on a task, once per seed.

    cfg supplies the finetune section (columns, epochs, lr, ...) and train settings (precision,
    device, warm-up, weight decay, clipping); the architecture always comes from the run.
    eval_every: validate every N steps (default: once per epoch).
    """
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a directory for the model and reports")
    pre = run if isinstance(run, Pretrained) else load_pretrained(run)
    run_name = str(pre.checkpoint.parent.parent) if pre.checkpoint else "?"
    cfg = cfg or pre.config
    ft, tc0 = cfg.finetune, cfg.train
    seeds = tuple(seeds if seeds is not None else ft.seeds)
    if not seeds:
        raise ConfigError("finetune.seeds is empty; give at least one seed")
    task = _as_task(task if task is not None else ft.task, ft)
    model_cfg = pre.config.model
    head = head_kind(model_cfg)
    segments = head == "bert"
    max_len = ft.max_len if model_cfg.backbone != "transformer" else min(ft.max_len, model_cfg.max_len)
    device = pick_device(tc0.device)
    dtype = pick_dtype(tc0.precision, device)
    pad_id = pre.special.pad

    enc = {s: encode_split(pre.tokenizer, task.split(s), max_len) for s in ("train", "validation", "test")}
    if len(enc["validation"]) == 0:
        raise TaskError(f"task {task.name}: the validation split is empty; raise finetune.val_fraction")
    n_train = len(enc["train"])
    steps_per_epoch = math.ceil(n_train / ft.batch_size)
    total_steps = ft.epochs * steps_per_epoch
    every = eval_every or steps_per_epoch

    results: list[SeedResult] = []
    # (validation key, seed, weights, test logits) of the best seed so far
    best: tuple[tuple[float, float], int, dict[str, Tensor], Tensor] | None = None
    for seed in seeds:
        set_seed(seed, tc0.deterministic)
        backbone = _fresh_backbone(pre, random_init, ft.dropout)
        drop = model_cfg.dropout if ft.dropout is None else ft.dropout
        model = build_classifier(backbone, task.n_labels, ft.pooling, head, drop).to(device)
        settings = LoopSettings(grad_accum=1, clip=tc0.clip, on_nan=tc0.on_nan, log_every=max(1, steps_per_epoch // 4),
                                eval_every=every, progress=tc0.progress)
        optimizer = make_optimizer(model, ft.lr, tc0.weight_decay, device)
        schedule = BudgetSchedule(optimizer, Budget(steps=total_steps), tc0.warmup, tokens_per_step=0)

        gen = torch.Generator().manual_seed(seed)
        cursor = {"order": [], "pos": 0}

        def next_batch() -> dict[str, Tensor]:
            if cursor["pos"] >= len(cursor["order"]):  # a new epoch: a new shuffle
                cursor["order"], cursor["pos"] = torch.randperm(n_train, generator=gen).tolist(), 0
            idx = cursor["order"][cursor["pos"]:cursor["pos"] + ft.batch_size]
            cursor["pos"] += ft.batch_size
            return collate(enc["train"], idx, pad_id, segments)

        def step_loss(m: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
            out = m(batch["input_ids"], batch["mask"], batch.get("segment_ids"), batch["labels"])
            return out.loss, {"acc": (out.logits.argmax(-1) == batch["labels"]).float().mean().detach()}

        # best = highest validation accuracy, ties broken by lower validation loss (so a plateau
        # in accuracy while the loss still falls does not count against the patience)
        track: dict[str, Any] = {"key": None, "best": 0.0, "f1": 0.0, "step": 0, "weights": None, "since": 0}

        def validate(m: nn.Module) -> dict[str, float]:
            logits = predict_logits(m, enc["validation"], pad_id, segments, device, dtype)
            y = torch.tensor(enc["validation"].labels)
            metrics = score(y.tolist(), logits.argmax(-1).tolist(), task.label_names)
            loss = float(nn.functional.cross_entropy(logits, y))
            key = (metrics.accuracy, -loss)
            if track["key"] is None or key > track["key"]:
                track.update(key=key, best=metrics.accuracy, f1=metrics.macro_f1, step=schedule.step_count, since=0,
                             weights={k: v.detach().clone() for k, v in m.state_dict().items()})
            else:
                track["since"] += 1
            return {"val_loss": loss, "val_acc": metrics.accuracy, "val_macro_f1": metrics.macro_f1}

        def should_stop(_: dict[str, float]) -> bool:
            return ft.patience > 0 and track["since"] >= ft.patience

        t0 = time.perf_counter()
        loop = fit(model, next_batch, step_loss, settings, device=device, dtype=dtype, optimizer=optimizer,
                   schedule=schedule, evaluate=validate, should_stop=should_stop,
                   desc=f"finetune {task.name} seed {seed}")
        model.load_state_dict(track["weights"])  # the best-validation weights
        test_logits = predict_logits(model, enc["test"], pad_id, segments, device, dtype)
        on_test = score(enc["test"].labels, test_logits.argmax(-1).tolist(), task.label_names)
        results.append(SeedResult(seed, on_test.accuracy, on_test.macro_f1, track["best"], track["f1"],
                                  -track["key"][1], loop.steps, track["step"], loop.stopped_early,
                                  round(time.perf_counter() - t0, 2), loop.history))
        if best is None or track["key"] > best[0]:
            best = (track["key"], seed, {k: v.cpu() for k, v in track["weights"].items()}, test_logits)
        print(f"seed {seed}: test accuracy {on_test.accuracy:.4f}, macro-F1 {on_test.macro_f1:.4f} "
              f"(best validation accuracy {track['best']:.4f} at step {track['step']} of {loop.steps})",
              file=sys.stderr)

    assert best is not None
    _, best_seed, weights, test_logits = best
    test = score(enc["test"].labels, test_logits.argmax(-1).tolist(), task.label_names)
    result = FinetuneResult(
        task=task.name, run=run_name, init="random" if random_init else "pretrained", seeds=results,
        accuracy=Summary.of([r.accuracy for r in results]), macro_f1=Summary.of([r.macro_f1 for r in results]),
        best_seed=best_seed, test=test, label_names=list(task.label_names),
    )
    if out_dir is not None:
        out = Path(out_dir)
        model = build_classifier(_fresh_backbone(pre, True), task.n_labels, ft.pooling, head, model_cfg.dropout)
        model.load_state_dict(weights)
        task_ref = task.name if task.name in BUILTIN_TASKS else task.source
        used = RunConfig(model=model_cfg, data=pre.config.data, objective=pre.config.objective, train=tc0,
                         finetune=replace(ft, task=task_ref, max_len=max_len, seeds=seeds))
        meta = {"task": task.name, "task_source": task_ref, "source_run": run_name, "init": result.init,
                "seed": best_seed, "head": head, "pooling": ft.pooling, "max_len": max_len, "pairs": task.has_pairs,
                "segments": segments, "split": task.split_kind}
        save_classifier(out, model, pre.tokenizer, used, task.label_names, meta)
        result.out_dir = out
        write_reports(out, result, test, title=f"{task.name}: {Path(run_name).name} ({result.init} init)")
    return result


def finetune_random_init(run: str | Path | Pretrained, task: str | Path | Task | None = None,
                         cfg: RunConfig | None = None, out_dir: str | Path | None = None,
                         seeds: Sequence[int] | None = None, **kw: Any) -> FinetuneResult:
    """The same architecture and recipe, randomly initialised: the baseline pre-training must beat."""
    return finetune(run, task, cfg, out_dir, seeds, random_init=True, **kw)


def _fresh_backbone(pre: Pretrained, random_init: bool, dropout: float | None = None) -> nn.Module:
    """A copy of the run's backbone (or the same architecture, randomly initialised), with the
    fine-tuning dropout when one is given."""
    if not random_init and (dropout is None or dropout == pre.config.model.dropout):
        return copy.deepcopy(pre.backbone)
    from .backbones import backbone_from_config

    model_cfg = pre.config.model if dropout is None else replace(pre.config.model, dropout=dropout)
    backbone = backbone_from_config(model_cfg, pre.tokenizer.get_vocab_size(), pad_id=pre.special.pad)
    if not random_init:
        backbone.load_state_dict(pre.backbone.state_dict())
    return backbone


def _as_task(task: str | Path | Task, ft) -> Task:
    if isinstance(task, Task):
        return task
    return task_from_config(replace(ft, task=str(task)))


def _as_finetuned(model: str | Path | FineTuned) -> FineTuned:
    return model if isinstance(model, FineTuned) else load_classifier(model)


def predict(model: str | Path | FineTuned, texts: Sequence[str], pairs: Sequence[str] | None = None,
            batch_size: int = 64) -> list[tuple[Any, float]]:
    """(label, probability) of the most likely class for each text (or text pair)."""
    ftm = _as_finetuned(model)
    if isinstance(texts, str):
        texts = [texts]
    if pairs is not None and len(pairs) != len(texts):
        raise TaskError(f"got {len(texts)} texts but {len(pairs)} pair texts; give one --pair per text")
    if pairs is None and ftm.meta.get("pairs"):
        raise TaskError("this model was fine-tuned on text pairs; give the second text of each pair (--pair)")
    enc = encode(ftm.tokenizer, texts, pairs, ftm.meta["max_len"])
    probs = predict_logits(ftm.model, enc, ftm.special.pad, ftm.meta["segments"], torch.device("cpu"), None,
                           batch_size).softmax(-1)
    p, i = probs.max(-1)
    return [(ftm.label_names[int(k)], float(v)) for k, v in zip(i, p)]


def evaluate(model: str | Path | FineTuned, task: str | Path | Task | None = None, out_dir: str | Path | None = None,
             split: str = "test") -> Metrics:
    """Accuracy, macro-F1, per-class report and confusion matrix of a fine-tuned model on a task's split.

    A task given by name or file is read with the columns and split settings the model was
    fine-tuned with; its labels are matched to the model's by name. Reports go to out_dir
    (default: <model>/eval-<task>).
    """
    ftm = _as_finetuned(model)
    task = _as_task(task if task is not None else ftm.meta["task_source"], ftm.config.finetune)
    known = {str(x): i for i, x in enumerate(ftm.label_names)}
    remap = []
    for name in task.label_names:
        if str(name) not in known:
            raise TaskError(f"task {task.name} ({task.source}) has label {name!r}, which the model at {ftm.path} "
                            f"does not know (its labels: {ftm.label_names})")
        remap.append(known[str(name)])
    data = task.split(split)
    enc = encode(ftm.tokenizer, data.texts, data.pairs, ftm.meta["max_len"], [remap[y] for y in data.labels])
    logits = predict_logits(ftm.model, enc, ftm.special.pad, ftm.meta["segments"], torch.device("cpu"), None)
    metrics = score(enc.labels, logits.argmax(-1).tolist(), ftm.label_names)
    out = Path(out_dir) if out_dir is not None else ftm.path / f"eval-{task.name}"
    out.mkdir(parents=True, exist_ok=True)
    report = {"task": task.name, "source": task.source, "split": split, "model": str(ftm.path), **metrics.to_dict()}
    (out / "metrics.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (out / "metrics.md").write_text(f"# {ftm.path.name} on {task.name} ({split})\n\n" + metrics_markdown(metrics),
                                    encoding="utf-8")
    plot_confusion(metrics, out / "confusion.png", f"{task.name} ({split}): {ftm.path.name}")
    return metrics


# --------------------------------------------------------------------------- baselines


def majority_baseline(task: Task) -> Metrics:
    """Always the most frequent training label, scored on the test split."""
    counts = np.bincount(task.train.labels, minlength=task.n_labels)
    guess = int(counts.argmax())
    return score(task.test.labels, [guess] * len(task.test), task.label_names)


def tfidf_baseline(task: Task, seed: int = 0) -> Metrics:
    """TF-IDF (word 1-2 grams) + logistic regression; C picked on validation; scored on test.

    Pairs: the features of A, of B and their elementwise product (the words they share).
    """
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, lowercase=True)
    corpus = task.train.texts + (task.train.pairs or [])
    vec.fit(corpus)

    def features(s: TaskSplit):
        a = vec.transform(s.texts)
        if s.pairs is None:
            return a
        b = vec.transform(s.pairs)
        return hstack([a, b, a.multiply(b)]).tocsr()

    X = {s: features(task.split(s)) for s in ("train", "validation", "test")}
    best = None
    for C in (0.25, 1.0, 4.0, 16.0):
        # saga on sparse TF-IDF: the same multinomial model as lbfgs, ~20x faster on 30k texts x 250k n-grams
        clf = LogisticRegression(C=C, solver="saga", tol=1e-3, max_iter=1000, random_state=seed)
        clf.fit(X["train"], task.train.labels)
        acc = float(np.mean(clf.predict(X["validation"]) == np.asarray(task.validation.labels))) \
            if len(task.validation) else 0.0
        if best is None or acc > best[0]:
            best = (acc, clf)
    assert best is not None
    return score(task.test.labels, best[1].predict(X["test"]).tolist(), task.label_names)


# --------------------------------------------------------------------------- reports


def metrics_markdown(m: Metrics) -> str:
    lines = [f"accuracy **{m.accuracy:.4f}**, macro-F1 **{m.macro_f1:.4f}** on {m.n} examples", "",
             "| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for label, r in m.per_class.items():
        lines.append(f"| {label} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |")
    lines += ["", "confusion matrix (rows: true, columns: predicted)", "",
              "| | " + " | ".join(m.labels) + " |", "|---" * (len(m.labels) + 1) + "|"]
    for label, row in zip(m.labels, m.confusion):
        lines.append(f"| **{label}** | " + " | ".join(str(x) for x in row) + " |")
    return "\n".join(lines) + "\n"


def results_table(rows: dict[str, Metrics | FinetuneResult]) -> str:
    """One Markdown table for baselines and fine-tuned models (mean ± std over seeds where there are several)."""
    lines = ["| model | accuracy | macro-F1 | seeds |", "|---|---:|---:|---:|"]
    for name, r in rows.items():
        if isinstance(r, FinetuneResult):
            lines.append(f"| {name} | {r.accuracy} | {r.macro_f1} | {len(r.seeds)} |")
        else:
            lines.append(f"| {name} | {r.accuracy:.4f} | {r.macro_f1:.4f} | - |")
    return "\n".join(lines) + "\n"


def write_reports(out: Path, result: FinetuneResult, test: Metrics, title: str) -> None:
    """results.json, results.md, per_class.md and confusion.png in out."""
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
    lines = [f"# Fine-tuning: {title}", "",
             f"test accuracy {result.accuracy} (median {result.accuracy.median:.4f}), "
             f"macro-F1 {result.macro_f1} (median {result.macro_f1.median:.4f}) over {len(result.seeds)} seed(s)", "",
             "| seed | test accuracy | test macro-F1 | val accuracy | best step | steps | early stop | seconds |",
             "|---:|---:|---:|---:|---:|---:|---|---:|"]
    for s in result.seeds:
        lines.append(f"| {s.seed} | {s.accuracy:.4f} | {s.macro_f1:.4f} | {s.val_accuracy:.4f} | {s.best_step} | "
                     f"{s.steps} | {'yes' if s.stopped_early else 'no'} | {s.seconds:.1f} |")
    lines += ["", f"## Saved model (seed {result.best_seed}, best validation accuracy) on test", "",
              metrics_markdown(test)]
    (out / "results.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "per_class.md").write_text(metrics_markdown(test), encoding="utf-8")
    plot_confusion(test, out / "confusion.png", title)


def plot_confusion(m: Metrics, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(m.confusion)
    k = len(m.labels)
    size = min(12.0, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), m.labels, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), m.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\naccuracy {m.accuracy:.3f}, macro-F1 {m.macro_f1:.3f}", fontsize=9)
    if k <= 30:
        top = cm.max() if cm.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
