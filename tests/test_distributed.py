"""Data parallelism with torchrun: 2 CPU processes (gloo) train like 1 process with twice the batch."""

import os
import shutil
import subprocess
import sys

import torch
from safetensors.torch import load_file

from pretrainlab.config import load_config
from pretrainlab.train import pretrain

SETTINGS = ["model.preset=tiny", "model.d_model=32", "model.n_heads=4", "model.d_ff=64", "model.n_layers=2",
            "model.max_len=64", "model.dropout=0", "data.seq_len=16", "train.progress=false", "train.eval_every=0",
            "train.eval_batches=1", "train.log_every=1", "train.deterministic=true", "train.precision=fp32",
            "train.lr=3e-3", "train.budget=6", "train.checkpoint_every=3"]


def weights(run, step=None):
    name = f"step_{step:07d}" if step else (run / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run / "checkpoints" / name / "model.safetensors"))


def assert_same(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


def torchrun(corpus, out, batch, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "pretrainlab.cli", "pretrain", "--corpus", str(corpus), "--out", str(out)]
    for s in SETTINGS + [f"train.batch_size={batch}"]:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_ranks_equal_one_process_with_twice_the_batch_and_resume_under_another_world(tiny_corpus, tmp_path):
    one = pretrain(load_config(None, SETTINGS + ["train.batch_size=4"]), tiny_corpus, tmp_path / "one")
    torchrun(tiny_corpus, tmp_path / "two", batch=2)
    assert_same(weights(one), weights(tmp_path / "two"), atol=1e-5)
    # rank 0 alone wrote the run directory
    metrics = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len([m for m in metrics if '"loss"' in m]) == 6

    # resume the 2-process run's step-3 checkpoint in ONE process (batch 4): same end point
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "two", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_0000006")
    (resumed / "checkpoints" / "latest").write_text("step_0000003\n")
    pretrain(load_config(None, SETTINGS + ["train.batch_size=4"]), tiny_corpus, resumed, resume=True)
    assert_same(weights(one), weights(resumed), atol=1e-5)
