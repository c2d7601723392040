"""benchmarks/gpu_smoke.sh --device cpu: the GPU smoke run's every check, tiny, on the CPU (issue #27).

A session with a GPU runs the same script on the card (`bash benchmarks/gpu_smoke.sh`); here it must pass
offline with this interpreter alone, as on a fresh CI machine, and without the packages the lent machine lacks."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_smoke.sh"
CHECKS = ["env", "prepare", "recipe", "resume", "families", "downstream", "gpu-on-cpu", "throughput"]


MISSING_THERE = ["datasketch", "platformdirs"]
"""Packages pretrainlab depends on that the lent GPU machine's Python lacks: the smoke run must not import them."""


def test_gpu_smoke_passes_on_the_cpu(tmp_path):
    missing = tmp_path / "missing"
    missing.mkdir()
    for name in MISSING_THERE:
        (missing / f"{name}.py").write_text(f"raise ImportError('{name} is not on the lent GPU machine')\n")
    env = {k: v for k, v in os.environ.items() if k != "PRETRAINLAB_CACHE"}
    env.update(PYTHON=sys.executable, OUT=str(tmp_path / "out"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(missing), HOME=str(tmp_path / "home"))
    proc = subprocess.run(["bash", str(SCRIPT), "--device", "cpu"], capture_output=True, text=True, env=env,
                          timeout=1800, cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    for check in CHECKS:
        assert f"PASS {check} (" in out, f"{check}:\n{out[-4000:]}"
    assert f"SUMMARY: {len(CHECKS)} of {len(CHECKS)} checks PASS" in out
    results = {r["check"]: r for r in json.loads((tmp_path / "out" / "results.json").read_text())}
    assert results["resume"]["max |weight difference|"] == "0"
    assert {"results.json", "summary.md", "log.txt"} <= {p.name for p in (tmp_path / "out").iterdir()}
