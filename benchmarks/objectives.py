"""Pre-training objectives at equal wall-clock: MLM, MLM+NSP, MLM+SOP, PLM and RTD.

Each objective pre-trains the same preset (mini) on the State of the Union corpus for the same
time budget, then its backbone is fine-tuned on MR (sentence sentiment) and tweets (3-way
sentiment) over several seeds. One table: objective, tokens seen, final pre-training loss (the
objective's own loss: not comparable across objectives), test accuracy per task (mean ± std).

    .venv/bin/python benchmarks/objectives.py                          # 5 min each, 3 seeds: hours on 2 cores
    .venv/bin/python benchmarks/objectives.py --budget 20s --seeds 0 --max-train 300 --max-eval 200 --epochs 1

The corpus is prepared once (pretrainlab's prepare) into --out/corpus and reused. SOTU, MR and
tweets come from pretrainlab.data.sources when it is installed; otherwise give --sotu (the
speeches directory) and --mr / --tweets (CSV/TSV/JSONL files with text and label columns).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from pretrainlab.config import DataConfig, load_config
from pretrainlab.data.tasks import load_task
from pretrainlab.evaluate import finetune
from pretrainlab.train import pretrain

SETUPS: dict[str, dict[str, float]] = {
    "mlm": {"mlm": 1.0},
    "mlm+nsp": {"mlm": 1.0, "nsp": 1.0},
    "mlm+sop": {"mlm": 1.0, "sop": 1.0},
    "plm": {"plm": 1.0},
    "rtd": {"rtd": 1.0},
}


def sotu_path(given: str | None) -> Path:
    if given:
        return Path(given)
    try:
        from pretrainlab.data.sources import get_source
    except ImportError:
        sys.exit("pretrainlab.data.sources is not available here: pass --sotu with the speeches directory")
    return Path(get_source("sotu"))


def prepare(corpus_dir: Path, sotu: str | None, vocab_size: int) -> Path:
    if (corpus_dir / "manifest.json").is_file():
        return corpus_dir
    from pretrainlab.data.prepare import prepare_corpus

    report = prepare_corpus([sotu_path(sotu)], corpus_dir, DataConfig(vocab_size=vocab_size))
    print(report.summary(), file=sys.stderr)
    return corpus_dir


def load(task: str, max_train: int, max_eval: int):
    """A built-in task name or a file; training set cut to max_train, validation/test to max_eval (0: all)."""
    t = load_task(task, max_train=max_train, seed=0)
    if max_eval:
        g = torch.Generator().manual_seed(0)
        for s in ("validation", "test"):
            split = t.split(s)
            if len(split) > max_eval:
                setattr(t, s, split.subset(sorted(torch.randperm(len(split), generator=g)[:max_eval].tolist())))
    return t


def final_loss(run: Path, last: int = 5) -> float:
    """Mean training loss of the last `last` logged steps."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in rows if "loss" in r]
    return sum(losses[-last:]) / max(1, len(losses[-last:])) if losses else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="5m", help="pre-training wall clock per objective (e.g. 5m, 20s)")
    p.add_argument("--objectives", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--preset", default="mini")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning seeds")
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs")
    p.add_argument("--max-train", type=int, default=0, help="fine-tuning examples per task (0: all)")
    p.add_argument("--max-eval", type=int, default=0, help="validation and test examples per task (0: all)")
    p.add_argument("--sotu", help="SOTU speeches (directory or files); default: pretrainlab.data.sources")
    p.add_argument("--mr", default="mr", help="MR task: built-in name or file")
    p.add_argument("--tweets", default="tweets", help="tweets task: built-in name or file")
    p.add_argument("--out", default="runs/bench-objectives", help="work directory (corpus and runs)")
    args = p.parse_args()

    out = Path(args.out)
    corpus = prepare(out / "corpus", args.sotu, args.vocab_size)
    tasks = {"MR": load(args.mr, args.max_train, args.max_eval), "tweets": load(args.tweets, args.max_train, args.max_eval)}
    for t in tasks.values():
        print(t.summary(), file=sys.stderr)

    rows = []
    for name in args.objectives:
        weights = "{" + ", ".join(f"{k}: {v}" for k, v in SETUPS[name].items()) + "}"
        cfg = load_config(None, [
            f"model.preset={args.preset}", f"data.seq_len={args.seq_len}", f"objective.weights={weights}",
            f"train.budget={args.budget}", f"train.batch_size={args.batch_size}", "train.eval_every=0",
            "train.eval_batches=5", "train.progress=false", "train.log_every=1",
            f"finetune.epochs={args.epochs}", f"finetune.max_train={args.max_train}",
        ])
        run = out / "runs" / name
        if (run / "config.yaml").is_file():  # a previous benchmark's run: start afresh
            shutil.rmtree(run)
        t0 = time.perf_counter()
        pretrain(cfg, corpus, run)
        summary = json.loads((run / "summary.json").read_text())
        row = {"objective": name, "tokens": summary["tokens"], "steps": summary["steps"],
               "seconds": summary["seconds"], "loss": final_loss(run)}
        ft_cfg = replace(cfg, train=replace(cfg.train, progress=False))
        for label, task in tasks.items():
            result = finetune(run, task, ft_cfg, seeds=args.seeds)
            row[label] = result.accuracy
        rows.append(row)
        print(f"{name}: done in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        (out / "results.json").write_text(json.dumps(
            [{**r, **{k: [r[k].mean, r[k].std] for k in tasks}} for r in rows], indent=1))

    print(f"\npre-training: {args.preset}, {args.budget} each, seq {args.seq_len}, batch {args.batch_size}, "
          f"on {corpus}; fine-tuning: {len(args.seeds)} seed(s), {args.epochs} epoch(s)"
          + (f", {args.max_train} training examples" if args.max_train else "")
          + (f", {args.max_eval} validation/test examples" if args.max_eval else ""))
    header = f"| {'objective':<9} | {'tokens seen':>11} | {'steps':>5} | {'final loss':>10} | {'MR accuracy':>15} | {'tweets accuracy':>15} |"
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        print(f"| {r['objective']:<9} | {r['tokens']:>11,} | {r['steps']:>5} | {r['loss']:>10.4f} | "
              f"{acc(r['MR']):>15} | {acc(r['tweets']):>15} |")
    print("final loss is each objective's own training loss (rtd: generator + 50 x discriminator): "
          "compare it within a row's history, not across rows")


def acc(s) -> str:
    return f"{s.mean:.4f} ± {s.std:.4f}" if len(s.values) > 1 else f"{s.mean:.4f}"


if __name__ == "__main__":
    main()
