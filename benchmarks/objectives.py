"""Pre-training objectives at equal wall clock: MLM, MLM+NSP, MLM+SOP, PLM and RTD (issue #5).

Each objective pre-trains the same mini-size Transformer on the State of the Union corpus for the
same time budget; then its backbone is fine-tuned on MR (sentence sentiment) and tweets (3-way
sentiment) over 3 seeds, next to the same Transformer from scratch and the majority / TF-IDF
baselines. One table: objective, tokens seen, throughput, final pre-training losses (the
objective's own loss is not comparable across objectives; the MLM loss is, where there is one),
test accuracy per task (mean ± std over seeds).

    .venv/bin/python benchmarks/objectives.py                 # 2 min each + fine-tuning: ~30 min on 2 cores
    .venv/bin/python benchmarks/objectives.py --budget 20s --seeds 0 --set finetune.max_train=300 --out /tmp/obj

It runs pretrainlab's benchmark grid with benchmarks/grid.yaml's settings (benchmarks/suite.py):
finished cells are reused, an interrupted run resumes, and the full grid table (results.md, .csv,
plots) lands in the out directory too.
"""

from __future__ import annotations

from suite import arguments, run, table

SETUPS: dict[str, str] = {
    "mlm": "{mlm: 1.0}",
    "mlm+nsp": "{mlm: 1.0, nsp: 1.0}",
    "mlm+sop": "{mlm: 1.0, sop: 1.0}",
    "plm": "{plm: 1.0}",
    "rtd": "{rtd: 1.0}",
}


def main() -> None:
    p = arguments(__doc__)
    p.add_argument("--objectives", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    args = p.parse_args()
    cells = {f"transformer-{o}": ["model.backbone=transformer", f"objective.weights={SETUPS[o]}"]
             for o in args.objectives}
    rows = run("objectives", cells, args)
    print(f"\nPre-training: each objective {args.budget} wall clock on SOTU (benchmarks/grid.yaml settings); "
          "fine-tuning: the same recipe and splits for every row.\n")
    print(table(rows, "objective", lambda r: r.cell.removeprefix("transformer-") if r.kind == "pretrained" else r.name))
    print("\nval loss is each objective's own validation loss (rtd: generator MLM + 50 x discriminator; "
          "mlm+nsp/sop: MLM + the pair loss): compare it within a row, not across rows.")


if __name__ == "__main__":
    main()
