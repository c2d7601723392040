#!/usr/bin/env bash
# usage: run_variant.sh NAME CORPUS "pretrain --set args" ["finetune --set args"]
# pre-trains at a fixed token budget (quality independent of machine load), then fine-tunes on
# 1000 MR labels (seeds 0 1), early stopping on MR validation; records validation accuracy only.
set -u
name=$1; corpus=$2; pargs=$3; fargs=${4:-}
PL="env OMP_NUM_THREADS=${THREADS:-1} ${PL:-.venv/bin/pretrainlab}"
BASE="--set model.preset=tiny --set model.style=modern --set model.max_len=128 --set model.dropout=0 --set data.seq_len=64 --set objective.tie_embeddings=false --set train.batch_size=32 --set train.lr=2e-3 --set train.warmup=0.06 --set train.eval_every=500 --set train.eval_batches=8 --set train.budget=${TOK:-4Mtok}"
FT="--set finetune.max_train=1000 --set finetune.epochs=20 --set finetune.patience=3 --set finetune.evals=0 --set finetune.max_minutes=0 --set finetune.pooling=mean --set finetune.lr=1e-3 --set finetune.dropout=0.1 --set finetune.max_len=64"
mkdir -p runs logs
if [ ! -f runs/$name/summary.json ]; then
  $PL pretrain --corpus $corpus --out runs/$name $BASE $pargs > logs/$name.pre.log 2>&1 || { echo "$name pretrain failed"; exit 1; }
fi
$PL finetune runs/$name --task mr --seeds 0 1 --out runs/$name/ft1000 $FT $fargs > logs/$name.ft.log 2>&1 || { echo "$name finetune failed"; exit 1; }
${PY:-.venv/bin/python} - "$name" "$pargs $fargs" <<'PY'
import json, sys
name, args = sys.argv[1], sys.argv[2]
s = json.load(open(f"runs/{name}/summary.json"))
r = json.load(open(f"runs/{name}/ft1000/results.json"))
vals = [x["val_accuracy"] for x in r["seeds"]]
line = (f"{name}\t{args.strip()}\t{s['tokens']}\t{s['tok_per_s']:.0f}\t{s.get('val_mlm_loss', float('nan')):.3f}\t"
        f"{s.get('val_mlm_acc', float('nan')):.3f}\t{sum(vals)/len(vals):.4f}\t{vals}")
print(line)
open("results.tsv", "a").write(line + "\n")
PY
