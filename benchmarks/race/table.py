"""The recipe race's tables and plot (issue #28, item 4): recipes at equal pre-training wall clock.

Reads what benchmarks/race/run.sh writes under WORK:
    runs/NAME-MIN/summary.json            a recipe pre-trained for MIN minutes (a token budget: MIN x its rate)
    curves/NAME-MIN-TASK/curve.csv        its pretrained rows on the TEST split
    dev/NAME-MIN-TASK/curve.csv           the same fine-tuning scored on the VALIDATION split (for choices)
    curves/base-ARCH-TASK/curve.csv       random init / TF-IDF / majority for an architecture (test)
and the recipes file (NAME ARCH RATE settings...), and writes race-tables.md and race-TASK.png.

    python benchmarks/race/table.py WORK --recipes benchmarks/race/recipes.txt --out benchmarks/results \
        [--previous benchmarks/results/race.md]

--previous: the tables of an earlier race.md fill in the rows that WORK lacks (runs measured in another WORK, by
another session); a row WORK has replaces the earlier one. The plot draws from the merged tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from pathlib import Path


TASKS = ("mr", "tweets")
LABELS = (300, 1000)
FIXED = ["recipe", "params", "tokens", "passes", "tok/param", "val loss"]
Table = dict[str, dict[str, str]]
"""A budget's rows: the row's label -> its cells by column name (in table order)."""


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


def columns(with_all: bool) -> list[str]:
    """A budget table's columns: the test label counts (all labels: the 60-minute finalists), then validation."""
    test = LABELS + (("all",) if with_all else ())
    return FIXED + [f"{t} {n} test" for t in TASKS for n in test] + [f"{t} {n} dev" for t in TASKS for n in LABELS]


def curve_cells(work: Path, stem: str, model: str) -> dict[str, str]:
    """The test and validation cells of one model in WORK's curves/STEM-TASK and dev/STEM-TASK."""
    cells = {}
    for t in TASKS:
        for n in (*LABELS, "all"):
            v = accs(work / "curves" / f"{stem}-{t}" / "curve.csv", n, model)
            if v:
                cells[f"{t} {n} test"] = fmt(v)
        for n in LABELS:
            v = accs(work / "dev" / f"{stem}-{t}" / "curve.csv", n, model)
            if v:
                cells[f"{t} {n} dev"] = fmt(v, std=False)
    return cells


def budget_rows(work: Path, recipes: list[dict], minutes: int, corpus_tokens: int) -> Table:
    """The rows WORK holds for one budget: each recipe run, then the baselines of its architectures."""
    rows: Table = {}
    for r in recipes:
        run = work / "runs" / f"{r['name']}-{minutes}"
        if not (run / "summary.json").exists():
            continue
        s = json.loads((run / "summary.json").read_text())
        own = run / "corpus.json"  # the corpus this run read (v3k's and free's differ from the race's)
        train_tokens = json.loads(own.read_text()).get("train_tokens", corpus_tokens) if own.exists() else corpus_tokens
        rows[r["name"]] = {"params": f"{s['backbone_parameters'] / 1e6:.2f}M", "tokens": f"{s['tokens'] / 1e6:.1f}M",
                           "passes": f"{s['tokens'] / train_tokens:.1f}",
                           "tok/param": f"{s['tokens'] / s['backbone_parameters']:.1f}",
                           "val loss": f"{s.get('val_loss', float('nan')):.3f}",
                           **curve_cells(work, f"{r['name']}-{minutes}", "pretrained")}
    archs = [a for a in sorted({r["arch"] for r in recipes}) if (work / "curves" / f"base-{a}-{TASKS[0]}").exists()]
    for a in archs:
        rows[f"random init ({a})"] = curve_cells(work, f"base-{a}", "random-init")
    if archs:  # the same for every architecture: shown once
        rows["TF-IDF + LR"] = curve_cells(work, f"base-{archs[0]}", "tfidf")
    return rows


def read_previous(path: Path) -> dict[int, Table]:
    """The budget tables of an earlier race.md ('## N minutes' then a markdown table), by minutes."""
    tables: dict[int, Table] = {}
    minutes, head = None, None
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"## (\d+) minutes", line)
        if m:
            minutes, head = int(m.group(1)), None
            tables[minutes] = {}
        elif minutes is not None and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if head is None:
                head = cells
            elif not set(cells[0]) <= set("-:"):  # not the |---| line
                tables[minutes][cells[0]] = {h: c for h, c in zip(head[1:], cells[1:]) if c and c != "-"}
        elif minutes is not None and head is not None and not line.strip():
            minutes = None
    return tables


def render(rows: Table) -> list[str]:
    """Recipes first (in the order given), baselines last; a dash is a cell not measured."""
    with_all = any(k.endswith(" all test") for cells in rows.values() for k in cells)
    head = columns(with_all)
    base = [k for k in rows if k.startswith(("random init", "TF-IDF"))]
    order = [k for k in rows if k not in base] + base
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for k in order:
        cells = rows[k]
        lines.append("| " + " | ".join([k] + [cells.get(h, "" if h in FIXED else "-") for h in head[1:]]) + " |")
    return lines


def mean_of(cell: str | None) -> float | None:
    """The mean in a cell such as '0.6866 ± 0.0016' (None: not measured)."""
    return float(cell.split("±")[0]) if cell and cell != "-" else None


def plot(tables: dict[int, Table], task: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    col = f"{task} 1000 test"
    names = list(dict.fromkeys(k for t in tables.values() for k in t if not k.startswith(("random init", "TF-IDF"))))
    for name in names:
        pts = [(m, mean_of(t.get(name, {}).get(col))) for m, t in sorted(tables.items())]
        pts = [(m, v) for m, v in pts if v is not None]
        if pts:
            ax.plot([m for m, _ in pts], [v for _, v in pts], marker="o", label=name)
    for label, style in (("random init (tiny)", "-."), ("TF-IDF + LR", "--")):
        v = next((mean_of(t[label].get(col)) for t in tables.values() if label in t and t[label].get(col)), None)
        if v is not None:
            ax.axhline(v, color="grey", linestyle=style, linewidth=1, label=label)
    ax.set_xscale("log")
    ax.set_xticks(sorted(tables), [str(m) for m in sorted(tables)])
    ax.minorticks_off()
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
    ap.add_argument("--previous", type=Path, help="an earlier race.md whose rows fill in what WORK lacks")
    args = ap.parse_args()
    recipes = read_recipes(args.recipes)
    corpus = json.loads((args.work / "corpus" / "corpus.json").read_text()) if (args.work / "corpus" / "corpus.json").exists() else {}
    corpus_tokens = int(corpus.get("train_tokens", 3_561_260))
    earlier = read_previous(args.previous) if args.previous else {}
    tables: dict[int, Table] = {}
    for m in args.minutes:
        rows = dict(earlier.get(m, {}))
        for k, cells in budget_rows(args.work, recipes, m, corpus_tokens).items():
            rows[k] = {**rows.get(k, {}), **cells}
        if rows:
            tables[m] = rows
    for t in TASKS:
        plot(tables, t, args.out / f"race-{t}.png")
    text = "\n".join(f"## {m} minutes\n\n" + "\n".join(render(rows)) + "\n" for m, rows in tables.items())
    print(text)
    (args.out / "race-tables.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
