"""The decoder and the encoder-decoder in the benchmark grid, next to the encoder (issue #16, item 5).

At one wall-clock budget each, on the State of the Union corpus with benchmarks/grid.yaml's settings
(mini size, packed 64-token rows, lr 2e-3, no dropout): the encoder with MLM, the causal decoder
(llama style) with next-token prediction (clm), and the encoder-decoder (bart style) with BART's
infill+permute and with T5's span corruption. Each is fine-tuned on MR and tweets over 3 seeds
next to its own architecture from scratch and the majority / TF-IDF baselines, on the same splits.

    .venv/bin/python benchmarks/generative.py                   # 2 min each + fine-tuning
    .venv/bin/python benchmarks/generative.py --budget 20s --seeds 0 --set finetune.max_train=300 --out /tmp/gen

It runs pretrainlab's benchmark grid (benchmarks/suite.py): finished cells are reused and an
interrupted run resumes. The encoder's row is run here too, so every row shares the machine's
conditions (wall-clock budgets buy fewer tokens on a loaded machine: compare rows of one run).
"""

from __future__ import annotations

from suite import arguments, run, table

CELLS: dict[str, list[str]] = {
    "transformer-mlm": ["model.backbone=transformer", "objective.weights={mlm: 1.0}"],
    "decoder-clm": ["model.backbone=decoder", "model.style=llama", "objective.weights={clm: 1.0}"],
    "encoder-decoder-infill+permute": ["model.backbone=encoder-decoder", "model.style=bart",
                                       "objective.tie_embeddings=true", "objective.weights={infill: 1.0, permute: 1.0}"],
    "encoder-decoder-span": ["model.backbone=encoder-decoder", "model.style=bart", "objective.tie_embeddings=true",
                             "objective.weights={span: 1.0}"],
}


def main() -> None:
    p = arguments(__doc__)
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    args = p.parse_args()
    rows = run("generative", {c: CELLS[c] for c in args.cells}, args)
    print(f"\nPre-training: each cell {args.budget} wall clock on SOTU (benchmarks/grid.yaml settings); "
          "fine-tuning: the same recipe and splits for every row.\n")
    print(table(rows, "model", lambda r: r.cell if r.kind == "pretrained" else r.name))
    print("\nval loss is each objective's own validation loss (clm: next token; infill+permute / span: the "
          "decoder's reconstruction); val MLM loss exists for the encoder only. Compare within a column's objective.")


if __name__ == "__main__":
    main()
