"""Reports of scores: Markdown tables, the fine-tuning results files and confusion-matrix plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .metrics import FinetuneResult, Metrics


def metrics_markdown(m: Metrics) -> str:
    ci = f" (95% interval {m.accuracy_ci}, bootstrap over the examples)" if m.accuracy_ci is not None else ""
    lines = [f"accuracy **{m.accuracy:.4f}**{ci}, macro-F1 **{m.macro_f1:.4f}** on {m.n} examples", "",
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
    lines = ["| model | accuracy | 95% interval | macro-F1 | seeds |", "|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        ci = r.accuracy_ci if r.accuracy_ci is not None else "-"
        if isinstance(r, FinetuneResult):
            lines.append(f"| {name} | {r.accuracy} | {ci} | {r.macro_f1} | {len(r.seeds)} |")
        else:
            lines.append(f"| {name} | {r.accuracy:.4f} | {ci} | {r.macro_f1:.4f} | - |")
    return "\n".join(lines) + "\n"


def write_reports(out: Path, result: FinetuneResult, test: Metrics, title: str) -> None:
    """results.json, results.md, per_class.md and confusion.png in out."""
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
    splits = ", ".join(f"{n} {name}" for name, n in result.splits.items())
    lines = [f"# Fine-tuning: {title}", "",
             f"test accuracy {result.accuracy} (median {result.accuracy.median:.4f}), 95% interval "
             f"{result.accuracy_ci} over the test examples; macro-F1 {result.macro_f1} "
             f"(median {result.macro_f1.median:.4f}); over {len(result.seeds)} seed(s)", "",
             f"examples: {splits}", "",
             "| seed | test accuracy | 95% interval | test macro-F1 | val accuracy | best step | steps | early stop | seconds |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for s in result.seeds:
        lines.append(f"| {s.seed} | {s.accuracy:.4f} | {s.accuracy_ci} | {s.macro_f1:.4f} | {s.val_accuracy:.4f} | "
                     f"{s.best_step} | {s.steps} | {'yes' if s.stopped_early else 'no'} | {s.seconds:.1f} |")
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
