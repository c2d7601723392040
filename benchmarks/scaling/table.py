"""The scaling table and plot (issue #15, item 5): test accuracy against pre-training minutes.

Reads the curve directories that benchmarks/scaling/run.sh writes (WORK/curves/base-TASK for the
random-init twin, TF-IDF and majority, computed once; WORK/curves/mMIN-TASK for each pre-training
run's pretrained rows) and writes scaling.md and scaling-TASK.png.

    python benchmarks/scaling/table.py WORK --minutes 5 15 30 60 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from pretrainlab.curve import read_csv

TASKS = ("mr", "tweets")


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def cell(points, labels: int, model: str) -> list[float]:
    return [p.accuracy for p in points if p.labels == labels and p.model == model]


def task_table(work: Path, task: str, minutes: list[int]) -> tuple[str, dict]:
    base_csv = work / "curves" / f"base-{task}" / "curve.csv"
    if not base_csv.exists():
        return f"(no baselines for {task} yet)\n", {}
    base = read_csv(base_csv)
    runs = {}
    for m in minutes:  # a run's rows may be split over several directories (curves/m60-tweets, -s2, ...)
        dirs = [work / "curves" / f"m{m}-{task}", *sorted((work / "curves").glob(f"m{m}-{task}-*"))]
        points = [p for d in dirs if (d / "curve.csv").exists() for p in read_csv(d / "curve.csv")]
        if points:
            runs[m] = points
    counts = sorted({p.labels for p in base})
    head = ["labels", *(f"pretrained {m} min" for m in runs), "random init", "TF-IDF + LR", "majority",
            *(f"{m} min - random init" for m in runs), *(f"{m} min - TF-IDF" for m in runs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    series: dict = {}
    for n in counts:
        rand, tfidf = cell(base, n, "random-init"), cell(base, n, "tfidf")
        pre = {m: cell(pts, n, "pretrained") for m, pts in runs.items()}
        margin = lambda a, b: f"{statistics.fmean(a) - statistics.fmean(b):+.4f}" if a and b else "-"  # noqa: E731
        row = [str(n), *(mean_std(pre[m]) for m in runs), mean_std(rand), mean_std(tfidf),
               mean_std(cell(base, n, "majority")), *(margin(pre[m], rand) for m in runs),
               *(margin(pre[m], tfidf) for m in runs)]
        lines.append("| " + " | ".join(row) + " |")
        series[n] = {"pretrained": {m: pre[m] for m in runs if pre[m]}, "random-init": rand, "tfidf": tfidf}
    return "\n".join(lines) + "\n", series


def plot(series: dict, task: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for n, s in sorted(series.items()):
        mins = sorted(s["pretrained"])
        if not mins:
            continue
        mean = [statistics.fmean(s["pretrained"][m]) for m in mins]
        line, = ax.plot(mins, mean, marker="o", label=f"pretrained, {n} labels")
        ax.fill_between(mins, [min(s["pretrained"][m]) for m in mins], [max(s["pretrained"][m]) for m in mins],
                        color=line.get_color(), alpha=0.15)
        for model, style in (("random-init", "-."), ("tfidf", "--")):
            if s[model]:
                ax.axhline(statistics.fmean(s[model]), color=line.get_color(), linestyle=style, linewidth=1,
                           label=f"{model}, {n} labels")
    ax.set_xscale("log")
    ax.set_xlabel("pre-training CPU-minutes (2 cores; token budget at the quiet-machine rate)")
    ax.set_ylabel("test accuracy (mean of seeds; band: min-max)")
    ax.set_title(f"{task}: accuracy vs pre-training minutes")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path)
    ap.add_argument("--minutes", type=int, nargs="+", default=[5, 15, 30, 60])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    parts = []
    for task in TASKS:
        table, series = task_table(args.work, task, args.minutes)
        parts.append(f"## {task}\n\n{table}")
        if series:
            plot(series, task, args.out / f"scaling-{task}.png")
    text = "\n".join(parts)
    print(text)
    (args.out / "scaling-tables.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
