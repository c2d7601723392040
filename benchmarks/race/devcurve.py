"""The learning curve scored on the task's own VALIDATION split instead of its test split: the figure
recipe choices are made on (issue #28: choices on validation only, test figures reported after).

Everything else is `pretrainlab curve`: the same stratified, nested subsamples of the training split,
a fifth of the N labels as the early-stopping set, the same rows and files (curve.csv holds
validation-split accuracy here).

    python benchmarks/race/devcurve.py RUN --task mr --labels 300 1000 --seeds 0 1 2 \
        --models pretrained --out DIR [--set finetune.lr=5e-4 ...]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from pretrainlab.config import load_config
from pretrainlab.curve import markdown_table, run_curve
from pretrainlab.data.tasks import as_task
from pretrainlab.runs import load_pretrained


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--task", required=True)
    ap.add_argument("--labels", nargs="+", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    pre = load_pretrained(args.run)
    cfg = load_config(None, args.overrides, base=pre.config, base_sections=("finetune",))
    task = as_task(args.task, cfg.finetune)
    dev = replace(task, test=task.validation, notes=[*task.notes, "scored on the validation split (devcurve)"])
    points = run_curve(pre, dev, args.labels, args.seeds, args.out, cfg, run_name=args.run, models=args.models)
    print(markdown_table(points))


if __name__ == "__main__":
    main()
