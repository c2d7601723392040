"""What benchmarks/objectives.py and benchmarks/backbones.py share: they run pretrainlab's benchmark
grid (pretrainlab.grid) with benchmarks/grid.yaml's settings and out directory, on MR and tweets
with 3 seeds, and only their own cells and one budget. So a cell finished by one of them, or by
`pretrainlab benchmark --config benchmarks/grid.yaml`, is not run again by another, every row is
scored on the same fingerprinted splits, and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from pretrainlab.grid import Row, arch_name, load_grid, run_grid

GRID = Path(__file__).with_name("grid.yaml")


def arguments(doc: str, budget: str = "2m") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default=budget, help=f"pre-training wall clock per cell (default {budget})")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning seeds (default: 0 1 2)")
    p.add_argument("--tasks", nargs="+", default=["mr", "tweets"], help="fine-tuning tasks (default: mr tweets)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra shared setting (e.g. finetune.max_train=500); changes the cells: use a new --out")
    p.add_argument("--out", help="work directory (default: grid.yaml's, shared with the other benchmarks)")
    return p


def run(name: str, cells: dict[str, list[str]], args: argparse.Namespace, random_init: bool = True) -> list[Row]:
    """Run (or resume) `cells` at args.budget (with their random-init twins); -> the rows of these cells."""
    raw = yaml.safe_load(GRID.read_text(encoding="utf-8"))
    out = Path(args.out or raw["out"])
    raw.update(cells=cells, budgets=[args.budget], reference=False, continued=[], random_init=random_init,
               order=["baselines", "cells", "random_init", "reference", "continued"], out=str(out))
    raw["settings"] = list(raw["settings"]) + list(args.overrides)
    raw["seeds"] = args.seeds
    raw["tasks"] = args.tasks
    out.mkdir(parents=True, exist_ok=True)
    config = out / f"{name}.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    print(f"{name}: grid config {config} (from {GRID}), out {out}", file=sys.stderr)
    result = run_grid(config, out)
    grid = load_grid(config)
    twins = {f"{arch_name(grid.base(*overrides))}, random init" for overrides in cells.values()}
    return [r for r in result.rows if r.kind in ("majority", "tfidf") or r.name in twins
            or (r.kind == "pretrained" and r.cell in cells and r.budget == args.budget)]


def table(rows: list[Row], first: str, label) -> str:
    """One Markdown line per model (cells, random-init twins, baselines), one accuracy column per task."""
    tasks = list(dict.fromkeys(r.task for r in rows))
    models: dict[str, dict[str, Row]] = {}
    for r in rows:
        models.setdefault(r.name, {})[r.task] = r
    lines = [f"| {first} | parameters | tokens seen | tokens/s | final train loss | val loss | val MLM loss | "
             + " | ".join(f"{Path(t).stem} accuracy" for t in tasks) + " |",
             "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(tasks)]
    for name, by_task in models.items():
        r = next(iter(by_task.values()))
        f3 = lambda x: f"{x:.3f}" if x is not None else "-"  # noqa: E731
        accs = []
        for t in tasks:
            x = by_task.get(t)
            accs.append("-" if x is None else f"{x.accuracy:.4f} ± {x.accuracy_std:.4f}" if len(x.seeds) > 1
                        else f"{x.accuracy:.4f}")
        lines.append(f"| {label(r)} | {r.parameters / 1e6:.2f}M | {r.pretrain_tokens:,} | {r.tok_per_s:,.0f} | "
                     f"{f3(r.train_loss)} | {f3(r.val_loss)} | {f3(r.val_mlm_loss)} | " + " | ".join(accs) + " |"
                     if r.pretrain_tokens else
                     f"| {label(r)} | {r.parameters / 1e6:.2f}M | - | - | - | - | - | " + " | ".join(accs) + " |"
                     if r.parameters else
                     f"| {label(r)} | - | - | - | - | - | - | " + " | ".join(accs) + " |")
    return "\n".join(lines)
