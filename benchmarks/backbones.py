"""Transformer vs RNN vs CNN at comparable size and equal wall-clock pre-training (issue #6).

Each backbone pre-trains with MLM on the State of the Union corpus for the same time budget at
mini size (the RNN's and CNN's widths matched to the Transformer's parameter count:
backbones/rnn.py, cnn.py), then its backbone is fine-tuned on MR (sentence sentiment) and tweets
(3-way sentiment) over 3 seeds, next to the majority / TF-IDF baselines and (with --random-init)
each architecture from scratch. One table: parameters, pre-training throughput (tokens/s of the training loop), final
pre-training loss (training: mean of the last 5 logged steps; validation: fixed held-out batches),
test accuracy per task (mean ± std over seeds).

    .venv/bin/python benchmarks/backbones.py                  # 2 min each + fine-tuning: ~15 min on 2 cores
    .venv/bin/python benchmarks/backbones.py --budget 20s --seeds 0 --set finetune.max_train=300 --out /tmp/bb

It runs pretrainlab's benchmark grid with benchmarks/grid.yaml's settings (benchmarks/suite.py):
finished cells are reused (transformer-mlm is shared with benchmarks/objectives.py), an interrupted
run resumes, and the full grid table (results.md, .csv, plots) lands in the out directory too.
"""

from __future__ import annotations

from suite import arguments, run, table

BACKBONES = ("transformer", "rnn", "cnn")


def main() -> None:
    p = arguments(__doc__)
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    p.add_argument("--random-init", action="store_true",
                   help="also fine-tune each backbone from scratch (the Transformer's twin is shared with objectives.py)")
    args = p.parse_args()
    cells = {f"{b}-mlm": [f"model.backbone={b}", "objective.weights={mlm: 1.0}"] for b in args.backbones}
    rows = run("backbones", cells, args, random_init=args.random_init)
    print(f"\nPre-training: MLM, {args.budget} wall clock each on SOTU (benchmarks/grid.yaml settings); "
          "fine-tuning: the same recipe and splits for every row.\n")
    print(table(rows, "backbone", lambda r: r.cell.removesuffix("-mlm") if r.kind == "pretrained" else r.name))


if __name__ == "__main__":
    main()
