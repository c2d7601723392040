#!/usr/bin/env bash
# The recipe race (issue #28, item 4): each recipe pre-trained at equal wall clock (a token budget: minutes x
# its quiet-machine rate), then fine-tuned by `curve` on MR and tweets at 300 and 1,000 labels, seeds 0 1 2,
# scored on the test split (curves/) and, for choices, on the validation split (dev/, devcurve.py).
#
#   bash benchmarks/race/run.sh WORK prepare                 # SOTU + MR + tweets training texts -> WORK/corpus
#   bash benchmarks/race/run.sh WORK calibrate NAME          # quiet machine: NAME's tokens/s (2 threads, 75 s)
#   bash benchmarks/race/run.sh WORK base ARCH SETTINGS...   # random init, TF-IDF, majority for an architecture
#   bash benchmarks/race/run.sh WORK run NAME MINUTES        # pre-train NAME for MINUTES, then its curves
#   python benchmarks/race/table.py WORK                     # race-tables.md, race-TASK.png
#
# LABELS="300 1000 all": the test curves' label counts (default: 300 1000), e.g. the 60-minute finalists'; the
# validation curves, which only choose between recipes, stay at 300 and 1,000.
# CORE=0 pins a lane to one core with one thread (OMP_NUM_THREADS=1): two lanes share the 2 cores without
# changing any figure (budgets are tokens and steps), only how long they take.
# PTX: more pre-training settings for every run, e.g. "train.precision=fp32" on a CPU with fast bf16 (auto would
# pick bf16 there), so that runs compare with the fp32 ones of an AVX2-only machine.
# CORPUS=DIR pre-trains on another prepared corpus of WORK (default: corpus), e.g. corpus-v0: the same texts with
# the vocabulary `prepare` proposes (data.vocab_size=0), recipe v3k.
set -eu
WORK=$1 cmd=$2; shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
PL=${PL:-$HERE/../../.venv/bin/pretrainlab}
PY=${PY:-$HERE/../../.venv/bin/python}
RECIPES=${RECIPES:-$HERE/recipes.txt}
LANE=(); [ -n "${CORE:-}" ] && LANE=(env OMP_NUM_THREADS=1 taskset -c "$CORE")
read -r -a LAB <<< "${LABELS:-300 1000}"
FT=(--seeds 0 1 2 --set finetune.max_len=64 --set train.progress=false)
# FTX: more fine-tuning settings, e.g. the rule of an older code tree so that recipes from two trees compare
read -r -a FTX <<< "${FTX:-}"; for s in "${FTX[@]}"; do FT+=(--set "$s"); done
PT=(); read -r -a PTX <<< "${PTX:-}"; for s in "${PTX[@]}"; do PT+=(--set "$s"); done
mkdir -p "$WORK"/{runs,curves,dev,cal} && cd "$WORK"
recipe() { awk -v n="$1" '$1 == n {for (i = 4; i <= NF; i++) printf "--set %s ", $i; exit}' "$RECIPES"; }
rate() { awk -v n="$1" '$1 == n {print $3; exit}' "$RECIPES"; }
arch() { awk -v n="$1" '$1 == n {print $2; exit}' "$RECIPES"; }
curves() {  # RUN NAME MODELS...: test and validation curves of a run on both tasks
  local run=$1 name=$2; shift 2
  for task in mr tweets; do
    "${LANE[@]}" "$PL" curve "$run" --task $task --labels "${LAB[@]}" "${FT[@]}" --models "$@" --out curves/$name-$task > curves/$name-$task.log 2>&1
    "${LANE[@]}" "$PY" "$HERE/devcurve.py" "$run" --task $task --labels 300 1000 "${FT[@]}" --models "$@" --out dev/$name-$task > dev/$name-$task.log 2>&1
  done
}
case $cmd in
  prepare)
    SOTU=$("$PL" data get sotu | sed 's/^sotu: //')
    [ -d corpus ] || "$PL" prepare "$SOTU" task:mr task:tweets --out corpus ;;
  calibrate)
    name=$1; rm -rf cal/$name
    # shellcheck disable=SC2046
    "$PL" pretrain --corpus "${CORPUS:-corpus}" --out cal/$name --set train.budget=75s --set train.progress=false \
      --set train.eval_every=0 $(recipe $name) "${PT[@]}" > cal/$name.log 2>&1
    "$PY" -c "import json; s = json.load(open('cal/$name/summary.json')); print('$name', s['tok_per_s'])" ;;
  base)
    a=$1; shift; sets=(); for s in "$@"; do sets+=(--set "$s"); done
    [ -f runs/twin-$a/summary.json ] || "${LANE[@]}" "$PL" pretrain --corpus "${CORPUS:-corpus}" --out runs/twin-$a --set train.budget=1 \
      --set train.progress=false "${sets[@]}" "${PT[@]}" > runs/twin-$a.log 2>&1
    curves runs/twin-$a base-$a random-init tfidf majority ;;
  run)
    name=$1 min=$2 out=runs/$1-$2
    tok=$("$PY" -c "print(int($min * 60 * $(rate $name)))")
    if [ ! -f $out/summary.json ]; then
      res=(); [ -f $out/checkpoints/latest ] && res=(--resume)
      # shellcheck disable=SC2046
      "${LANE[@]}" "$PL" pretrain --corpus "${CORPUS:-corpus}" --out $out "${res[@]}" --set train.budget=${tok}tok \
        --set train.progress=false $(recipe $name) "${PT[@]}" > $out.log 2>&1
    fi
    curves $out $name-$min pretrained ;;
  *) echo "unknown command $cmd; see the header of $0" >&2; exit 2 ;;
esac
