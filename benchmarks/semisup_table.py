"""The tables and plots of benchmarks/semisup.sh (issue #29), with the issue's goals checked against them.

Reads WORK/curves/TASK-run and WORK/curves/TASK-reference (curve.csv and curve-details.jsonl each) and writes
WORK/semisup.md (per task: test accuracy per row and label count, mean ± std over seeds, X+self-train->student
beside X->student when the curve has it; what each stage adds over the row it builds on, with validation accuracy,
parameters, CPU texts/s and minutes; the goals, every student against its own teacher) and
WORK/semisup-TASK.png.

    python benchmarks/semisup_table.py WORK [--tasks mr tweets]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from pretrainlab.curve import DETAILS_FILE, markdown_table, plot_curve, read_csv, read_details, stages_table
from pretrainlab.curve_rows import ALL_MODELS, DISTILLED, teacher_of


def load(work: Path, task: str):
    points, details = [], {}
    for part in ("run", "reference"):
        d = work / "curves" / f"{task}-{part}"
        if (d / "curve.csv").is_file():
            points += read_csv(d / "curve.csv")
            details.update(read_details(d / DETAILS_FILE))
    return points, details


def mean(points, labels: int, model: str) -> float | None:
    values = [p.accuracy for p in points if p.labels == labels and p.model == model]
    return statistics.fmean(values) if values else None


def goals(points, details) -> list[str]:
    """The issue's goals, each with the figures it rests on (mean test accuracy over seeds)."""
    out = []
    for n in sorted({p.labels for p in points}):
        m = {model: mean(points, n, model) for model in {p.model for p in points}}

        def check(what: str, row: str, base: str, margin: float) -> None:
            if m.get(row) is None or m.get(base) is None:
                return
            gain = m[row] - m[base]
            out.append(f"- {n} labels: {what}: {row} {m[row]:.4f} vs {base} {m[base]:.4f} ({gain:+.4f}; goal "
                       f"{margin:+.2f}): {'met' if gain >= margin else 'not met'}")

        check("self-training a checkpoint", "reference+self-train", "reference", 0.02)
        check("self-training from scratch", "pretrained+self-train", "pretrained", 0.02)
        check("self-training from scratch against TF-IDF", "pretrained+self-train", "tfidf", 0.03)
        check("adapting the checkpoint", "reference+dapt", "reference", 0.01)
        pool_rows = [r for r in m if teacher_of(r) is not None and m[r] is not None]
        if pool_rows and m.get("tfidf") is not None:
            best = max(pool_rows, key=lambda r: m[r])
            check("the best row that uses the pool, against TF-IDF", best, "tfidf", 0.14)
        for student in [r for r in ALL_MODELS if r in m and r.endswith(DISTILLED)]:  # X+self-train->student too
            teacher = teacher_of(student)  # the goal compares a student with ITS teacher
            ds = [d for (k, r, _), d in details.items() if k == n and r == student]
            ts = [d for (k, r, _), d in details.items() if k == n and r == teacher]
            if not ds or not ts or m.get(teacher) is None:
                continue
            params = statistics.fmean(d["parameters"] for d in ds)
            speed = statistics.fmean(d["texts_per_s"] for d in ds) / statistics.fmean(d["texts_per_s"] for d in ts)
            gap = m[student] - m[teacher]
            ok = params <= 2e6 and gap >= -0.03 and speed >= 10
            out.append(f"- {n} labels: {student}: {params / 1e6:.2f}M parameters, {gap:+.4f} against its teacher, "
                       f"{speed:.1f}x its texts/s (goal: <= 2M, >= -0.03, >= 10x): {'met' if ok else 'not met'}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", type=Path)
    p.add_argument("--tasks", nargs="+", default=["mr", "tweets"])
    args = p.parse_args()
    text = ["# Self-training, students and an adapted checkpoint in the learning curve (issue #29)\n",
            "Test accuracy, mean ± std over seeds (each seed's 95% bootstrap interval in brackets); each label count "
            "a stratified subsample, a fifth of it the validation set that stops every model.\n"]
    for task in args.tasks:
        points, details = load(args.work, task)
        if not points:
            text.append(f"## {task}\n\n(no curve yet)\n")
            continue
        plot = plot_curve(points, args.work / f"semisup-{task}.png", title=f"{task}: unlabelled text, a second time")
        text.append(f"## {task}\n\n{markdown_table(points)}\nWhat each stage adds:\n\n{stages_table(points, details)}"
                    f"\nGoals:\n\n" + "\n".join(goals(points, details)) + f"\n\nPlot: {plot}\n")
    out = args.work / "semisup.md"
    out.write_text("\n".join(text), encoding="utf-8")
    print(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
