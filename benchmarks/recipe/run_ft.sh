#!/usr/bin/env bash
# usage: run_ft.sh RUN TAG LABELS "finetune args"  -- fine-tune an existing run on LABELS MR labels, seeds 0 1; val accuracy
set -u
run=$1; tag=$2; n=$3; fargs=${4:-}
PL="env OMP_NUM_THREADS=${THREADS:-1} ${PL:-.venv/bin/pretrainlab}"
FT="--set finetune.max_train=$n --set finetune.epochs=20 --set finetune.patience=3 --set finetune.evals=0 --set finetune.max_minutes=0 --set finetune.pooling=mean --set finetune.lr=1e-3 --set finetune.dropout=0.1 --set finetune.max_len=64"
$PL finetune runs/$run --task mr --seeds 0 1 --out runs/$run/ft-$tag $FT $fargs > logs/$run.ft-$tag.log 2>&1 || { echo "$run $tag failed"; exit 1; }
${PY:-.venv/bin/python} - "$run" "$tag" "$n" "$fargs" <<'PY'
import json, sys
run, tag, n, args = sys.argv[1:5]
r = json.load(open(f"runs/{run}/ft-{tag}/results.json"))
vals = [x["val_accuracy"] for x in r["seeds"]]
steps = [(x["best_step"], x["steps"]) for x in r["seeds"]]
line = f"{run}\t{tag}\t{n}\t{args.strip()}\t{sum(vals)/len(vals):.4f}\t{vals}\t{steps}"
print(line)
open("results-ft.tsv", "a").write(line + "\n")
PY
