"""benchmarks/gpu_smoke.sh --device cpu: the GPU smoke run's every check, tiny, on the CPU (issue #27).

A session with a GPU runs the same script on the card (`bash benchmarks/gpu_smoke.sh`); here it must pass
offline with this interpreter alone, as on a fresh CI machine."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_smoke.sh"
CHECKS = ["env", "prepare", "recipe", "resume", "families", "downstream", "gpu-on-cpu", "throughput"]


def test_gpu_smoke_passes_on_the_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "PRETRAINLAB_CACHE": str(tmp_path / "cache")}
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
