#!/usr/bin/env bash
# One prepared smoke run of the GPU paths (issue #27); benchmarks/gpu_smoke.py says what it checks.
#   bash benchmarks/gpu_smoke.sh                # a GPU machine (the lent one: python3 holds torch, offline)
#   bash benchmarks/gpu_smoke.sh --device cpu   # the same, tiny, on a CPU (a test in the suite)
# Runs the repository's src/ on $PYTHON, else the repository's .venv, else python3; results under $OUT
# (default ./gpu_smoke_out). Exit status 1 when a check FAILs.
set -u
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then py="$repo/.venv/bin/python"; else py=python3; fi
fi
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}  # deterministic cuBLAS (the resume check)
exec "$py" "$repo/benchmarks/gpu_smoke.py" "$@"
