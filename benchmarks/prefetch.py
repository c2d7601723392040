"""Batches built ahead on a thread (train.prefetch) against built in turn: training tokens/s, same run, ABBA.

The default recipe (or what --set gives) pre-trains on a prepared corpus for --steps steps once per depth and
repeat, alternating the depths (ABBA: each goes first every other repeat), with no validation and one
checkpoint at the end, so that the figure is the training loop's. Each run's tokens/s is the median of its
logged windows after the first (the first holds the warm-up); each depth's figure is the median over repeats.
The CPU default (train.prefetch=-1 -> 0 on a CPU) is to be decided by this run on the 2-core machine:

    python benchmarks/prefetch.py --corpus prepared/                          # depths 0 and 2, 300 steps, 3 repeats
    python benchmarks/prefetch.py --corpus prepared/ --set model.preset=mini --steps 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pretrainlab.config import load_config
from pretrainlab.train import pretrain


def tokens_per_second(run: Path) -> float:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"tok_per_s"' in x]
    return statistics.median(r["tok_per_s"] for r in rows[1:] or rows)


def one_run(corpus: str, depth: int, args, work: Path, n: int) -> float:
    settings = [f"train.prefetch={depth}", f"train.budget={args.steps}", "train.eval_every=0", "train.eval_batches=0",
                "train.checkpoint_minutes=0", f"train.log_every={args.log_every}", "train.progress=false", *args.set]
    run = pretrain(load_config(None, settings), corpus, work / f"depth{depth}-{n}")
    return tokens_per_second(run)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True, help="a prepared corpus (pretrainlab prepare ... --out DIR)")
    ap.add_argument("--depths", nargs="+", type=int, default=[0, 2], help="train.prefetch values to compare")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--set", nargs="*", default=[], help="more settings, section.key=value")
    args = ap.parse_args(argv)
    figures: dict[int, list[float]] = {d: [] for d in args.depths}
    with tempfile.TemporaryDirectory(prefix="prefetch_") as tmp:
        for r in range(args.repeats):
            for d in args.depths if r % 2 == 0 else args.depths[::-1]:
                t = time.perf_counter()
                figures[d].append(one_run(args.corpus, d, args, Path(tmp), r))
                print(f"repeat {r} prefetch {d}: {figures[d][-1]:,.0f} tok/s ({time.perf_counter() - t:.0f}s)",
                      file=sys.stderr, flush=True)
    base = statistics.median(figures[args.depths[0]])
    print(f"\n| train.prefetch | tok/s (median of {args.repeats}) | runs | vs prefetch {args.depths[0]} |\n|---:|---:|---|---:|")
    for d, xs in figures.items():
        print(f"| {d} | {statistics.median(xs):,.0f} | {', '.join(f'{x:,.0f}' for x in xs)} "
              f"| {statistics.median(xs) / base:.3f}x |")


if __name__ == "__main__":
    main()
