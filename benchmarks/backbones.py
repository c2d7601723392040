"""Transformer vs RNN vs CNN at comparable size and equal wall-clock pre-training.

Each backbone pre-trains with MLM on the State of the Union corpus for the same time budget at
the preset's size (mini: the Transformer's sizes; the RNN's and CNN's matched to it in parameters,
backbones/rnn.py and cnn.py), then its backbone is fine-tuned on MR (sentence sentiment) and tweets
(3-way sentiment) over several seeds. One Markdown table: parameters, pre-training throughput
(tokens/s of the training loop), final pre-training loss (MLM, training: mean of the last 5 steps;
validation: the fixed held-out batches), test accuracy per task (mean ± std over seeds).

    .venv/bin/python benchmarks/backbones.py                                   # 5 min each, 3 seeds: ~1 h+ on 2 cores
    .venv/bin/python benchmarks/backbones.py --budget 3m --seeds 0 1 --max-train 2000 --max-eval 500 --epochs 2

The corpus is prepared once (pretrainlab's prepare) into --out/corpus and reused (or give a prepared
one with --corpus). Fine-tuning goes task by task over all backbones, so with --deadline (HH:MM, local
time) the cells that would start after it are skipped (shown as "skipped") and the table still prints.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
from pretrainlab.train import load_pretrained, pretrain

BACKBONES = ("transformer", "rnn", "cnn")


def prepare(corpus_dir: Path, vocab_size: int) -> Path:
    """SOTU from pretrainlab.data.sources, prepared once."""
    if (corpus_dir / "manifest.json").is_file():
        return corpus_dir
    from pretrainlab.data.prepare import prepare_corpus
    from pretrainlab.data.sources import get_source

    report = prepare_corpus([Path(get_source("sotu"))], corpus_dir, DataConfig(vocab_size=vocab_size))
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


def pretrain_stats(run: Path, last: int = 5) -> dict:
    """Training-loop throughput and the final losses, from metrics.jsonl (logged every step) and summary.json."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "loss" in r]
    summary = json.loads((run / "summary.json").read_text())
    losses = [r["loss"] for r in steps[-last:]]
    return {"params": summary["backbone_parameters"], "steps": summary["steps"], "tokens": summary["tokens"],
            # tokens over the loop's own time up to the last step (the final validation excluded)
            "tok_per_s": steps[-1]["tokens"] / steps[-1]["elapsed"] if steps else float("nan"),
            "loss": sum(losses) / len(losses) if losses else float("nan"),
            "val_loss": summary.get("val_mlm_loss", float("nan"))}


def past(deadline: dt.datetime | None) -> bool:
    return deadline is not None and dt.datetime.now() >= deadline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="5m", help="pre-training wall clock per backbone (e.g. 5m, 90s)")
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    p.add_argument("--preset", default="mini", help="size preset (RNN/CNN: parameter-matched to the Transformer's)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--tasks", nargs="+", default=["mr", "tweets"], help="built-in task names or files")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning seeds")
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (early stopping may end sooner)")
    p.add_argument("--max-train", type=int, default=0, help="fine-tuning examples per task (0: all)")
    p.add_argument("--max-eval", type=int, default=0, help="validation and test examples per task (0: all)")
    p.add_argument("--max-len", type=int, default=128, help="fine-tuning input length in tokens")
    p.add_argument("--corpus", help="a prepared corpus to use (default: prepare SOTU into OUT/corpus once)")
    p.add_argument("--deadline", help="HH:MM (local time): skip fine-tuning cells that would start after it")
    p.add_argument("--out", default="runs/bench-backbones", help="work directory (corpus and runs)")
    p.add_argument("--reuse", action="store_true", help="keep finished pre-training runs in OUT/runs (fine-tune only)")
    args = p.parse_args()

    t_start = time.perf_counter()
    deadline = None
    if args.deadline:
        h, m = (int(x) for x in args.deadline.split(":"))
        deadline = dt.datetime.now().replace(hour=h, minute=m, second=0, microsecond=0)
    out = Path(args.out)
    corpus = Path(args.corpus) if args.corpus else prepare(out / "corpus", args.vocab_size)
    tasks = {name: load(name, args.max_train, args.max_eval) for name in args.tasks}
    for t in tasks.values():
        print(t.summary(), file=sys.stderr)

    rows: dict[str, dict] = {}
    cfgs = {}
    for kind in args.backbones:
        cfg = load_config(None, [
            f"model.backbone={kind}", f"model.preset={args.preset}", f"data.seq_len={args.seq_len}",
            "objective.weights={mlm: 1.0}", f"train.budget={args.budget}", f"train.batch_size={args.batch_size}",
            "train.eval_every=0", "train.eval_batches=5", "train.progress=false", "train.log_every=1",
            f"finetune.epochs={args.epochs}", f"finetune.max_train={args.max_train}", f"finetune.max_len={args.max_len}",
        ])
        run = out / "runs" / kind
        t0 = time.perf_counter()
        if args.reuse and (run / "summary.json").is_file():
            print(f"{kind}: reusing the finished pre-training run {run}", file=sys.stderr)
        else:
            if (run / "config.yaml").is_file():  # a previous benchmark's run: start afresh
                shutil.rmtree(run)
            pretrain(cfg, corpus, run)
        m = cfg.model
        rows[kind] = {"backbone": kind, "size": f"d={m.d_model}, {m.n_layers} layers" + (" per direction" if kind == "rnn" else ""),
                      **pretrain_stats(run)}
        cfgs[kind] = replace(cfg, train=replace(cfg.train, progress=False))
        print(f"{kind}: pre-trained in {time.perf_counter() - t0:.0f}s", file=sys.stderr)

    for name, task in tasks.items():
        for kind in args.backbones:
            if past(deadline):
                print(f"{kind} / {name}: skipped (past the deadline {args.deadline})", file=sys.stderr)
                rows[kind][name] = None
                continue
            t0 = time.perf_counter()
            pre = load_pretrained(out / "runs" / kind)
            rows[kind][name] = finetune(pre, task, cfgs[kind], seeds=args.seeds).accuracy
            print(f"{kind} / {name}: fine-tuned in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        (out / "results.json").write_text(json.dumps(
            [{**r, **{t: ([r[t].mean, r[t].std, r[t].values] if r.get(t) else None) for t in tasks}}
             for r in rows.values()], indent=1))

    print(f"\npre-training: MLM on {'SOTU, ' if not args.corpus else ''}{corpus}, preset {args.preset}, {args.budget} wall clock each, seq "
          f"{args.seq_len}, batch {args.batch_size}, {torch.get_num_threads()} threads; fine-tuning: seeds "
          f"{args.seeds}, up to {args.epochs} epoch(s), max_len {args.max_len}"
          + (f", {args.max_train} training examples per task" if args.max_train else "")
          + (f", {args.max_eval} validation/test examples" if args.max_eval else "")
          + f"; total {(time.perf_counter() - t_start) / 60:.1f} min\n")
    task_cols = [f"{Path(n).stem} accuracy" for n in tasks]
    print("| backbone | size | parameters | steps | tokens | tokens/s | final MLM loss (train / val) | "
          + " | ".join(task_cols) + " |")
    print("|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(task_cols))
    for r in rows.values():
        accs = [acc(r.get(n)) for n in tasks]
        print(f"| {r['backbone']} | {r['size']} | {r['params'] / 1e6:.2f}M | {r['steps']} | {r['tokens']:,} | "
              f"{r['tok_per_s']:,.0f} | {r['loss']:.3f} / {r['val_loss']:.3f} | " + " | ".join(accs) + " |")


def acc(s) -> str:
    if s is None:
        return "skipped"
    return f"{s.mean:.4f} ± {s.std:.4f}" if len(s.values) > 1 else f"{s.mean:.4f}"


if __name__ == "__main__":
    main()
