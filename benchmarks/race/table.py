"""The recipe race's tables and plot (issue #28, item 4): recipes at equal pre-training wall clock.

Reads what benchmarks/race/run.sh writes under WORK:
    runs/NAME-MIN/summary.json            a recipe pre-trained for MIN minutes (a token budget: MIN x its rate)
    curves/NAME-MIN-TASK/curve.csv        its pretrained rows on the TEST split
    dev/NAME-MIN-TASK/curve.csv           the same fine-tuning scored on the VALIDATION split (for choices)
    curves/base-ARCH-TASK/curve.csv       random init / TF-IDF / majority for an architecture (test)
and the recipes file (NAME ARCH RATE settings...), and writes race.md and race-TASK.png.

    python benchmarks/race/table.py WORK --recipes benchmarks/race/recipes.txt --out benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path


TASKS = ("mr", "tweets")
LABELS = (300, 1000)


def read_recipes(path: Path) -> list[dict]:
    """NAME ARCH RATE SETTINGS... per line ('#' comments): RATE is the quiet 2-thread tokens/s."""
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, arch, rate, *settings = line.split()
            out.append({"name": name, "arch": arch, "rate": float(rate), "settings": settings})
    return out


def accs(path: Path, labels: int | str, model: str) -> list[float]:
    """A curve's accuracies at a label count; "all": at the largest count beyond 1,000 (the whole training split)."""
    if not path.exists():
        return []
    with path.open() as f:  # csv, not curve.read_csv: curves of older trees lack the interval columns
        rows = [r for r in csv.DictReader(f) if r["model"] == model]
    if labels == "all":
        labels = max([int(r["labels"]) for r in rows if int(r["labels"]) > 1000], default=-1)
    return [float(r["accuracy"]) for r in rows if int(r["labels"]) == labels]


def fmt(values: list[float], std: bool = True) -> str:
    if not values:
        return "-"
    if len(values) == 1 or not std:
        return f"{statistics.fmean(values):.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def budget_table(work: Path, recipes: list[dict], minutes: int, corpus_tokens: int) -> list[str]:
    runs = [work / "curves" / f"{r['name']}-{minutes}-{t}" / "curve.csv" for r in recipes for t in TASKS]
    test_labels = LABELS + (("all",) if any(accs(c, "all", "pretrained") for c in runs) else ())  # the finalists
    head = ["recipe", "params", "tokens", "passes", "tok/param", "val loss"]
    head += [f"{t} {n} test" for t in TASKS for n in test_labels] + [f"{t} {n} dev" for t in TASKS for n in LABELS]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in recipes:
        run = work / "runs" / f"{r['name']}-{minutes}"
        if not (run / "summary.json").exists():
            continue
        s = json.loads((run / "summary.json").read_text())
        own = run / "corpus.json"  # the corpus this run read (v3k's is another tokenization of the same texts)
        train_tokens = json.loads(own.read_text()).get("train_tokens", corpus_tokens) if own.exists() else corpus_tokens
        row = [r["name"], f"{s['backbone_parameters'] / 1e6:.2f}M", f"{s['tokens'] / 1e6:.1f}M",
               f"{s['tokens'] / train_tokens:.1f}", f"{s['tokens'] / s['backbone_parameters']:.1f}",
               f"{s.get('val_loss', float('nan')):.3f}"]
        for split, labels in (("curves", test_labels), ("dev", LABELS)):
            for t in TASKS:
                for n in labels:
                    row.append(fmt(accs(work / split / f"{r['name']}-{minutes}-{t}" / "curve.csv", n, "pretrained"),
                                   std=split == "curves"))
        lines.append("| " + " | ".join(row) + " |")
    archs = [a for a in sorted({r["arch"] for r in recipes}) if (work / "curves" / f"base-{a}-{TASKS[0]}").exists()]
    rows = [(f"base-{a}", "random-init", f"random init ({a})") for a in archs]
    rows += [(f"base-{archs[0]}", "tfidf", "TF-IDF + LR")] if archs else []  # the same for every arch: shown once
    for base, model, label in rows:
        row = [label, "", "", "", "", ""]
        row += [fmt(accs(work / "curves" / f"{base}-{t}" / "curve.csv", n, model)) for t in TASKS for n in test_labels]
        row += [fmt(accs(work / "dev" / f"{base}-{t}" / "curve.csv", n, model), std=False) for t in TASKS for n in LABELS]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def plot(work: Path, recipes: list[dict], minutes: list[int], task: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in recipes:
        pts = [(m, accs(work / "curves" / f"{r['name']}-{m}-{task}" / "curve.csv", 1000, "pretrained")) for m in minutes]
        pts = [(m, v) for m, v in pts if v]
        if pts:
            ax.plot([m for m, _ in pts], [statistics.fmean(v) for _, v in pts], marker="o", label=r["name"])
    first = sorted({r["arch"] for r in recipes})[0]
    for model, style in (("random-init", "-."), ("tfidf", "--")):
        v = accs(work / "curves" / f"base-{first}-{task}" / "curve.csv", 1000, model)
        if v:
            ax.axhline(statistics.fmean(v), color="grey", linestyle=style, linewidth=1, label=f"{model} ({first})")
    ax.set_xscale("log")
    ax.set_xlabel("pre-training minutes (token budget = minutes x the recipe's quiet 2-core rate)")
    ax.set_ylabel("test accuracy at 1,000 labels (mean of 3 seeds)")
    ax.set_title(f"{task}: the recipe race")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path)
    ap.add_argument("--recipes", type=Path, default=Path("benchmarks/race/recipes.txt"))
    ap.add_argument("--minutes", type=int, nargs="+", default=[5, 15, 60])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    recipes = read_recipes(args.recipes)
    corpus = json.loads((args.work / "corpus" / "corpus.json").read_text()) if (args.work / "corpus" / "corpus.json").exists() else {}
    corpus_tokens = int(corpus.get("train_tokens", 3_561_260))
    parts = []
    for m in args.minutes:
        lines = budget_table(args.work, recipes, m, corpus_tokens)
        if len(lines) > 2:
            parts.append(f"## {m} minutes\n\n" + "\n".join(lines) + "\n")
    for t in TASKS:
        plot(args.work, recipes, args.minutes, t, args.out / f"race-{t}.png")
    text = "\n".join(parts)
    print(text)
    (args.out / "race-tables.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
