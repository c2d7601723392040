"""Data parallelism with torchrun: 2 CPU processes (gloo) train like 1 process with twice the batch,
with DDP and with FSDP, and their checkpoints continue under any of the three."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from pretrainlab.config import load_config
from pretrainlab.train import pretrain

from conftest import TINY, TRANSFORMER

SETTINGS = TINY + TRANSFORMER + ["model.dropout=0", "train.eval_every=0", "train.eval_batches=1", "train.log_every=1",
                              "train.deterministic=true", "train.lr=3e-3", "train.budget=6", "train.checkpoint_every=3"]


def weights(run, step=None):
    name = f"step_{step:07d}" if step else (run / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run / "checkpoints" / name / "model.safetensors"))


def assert_same(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


def metadata(run, step):
    with safe_open(str(run / "checkpoints" / f"step_{step:07d}" / "model.safetensors"), "pt") as f:
        return f.metadata()


def resume_from(run, step, into):
    """A copy of `run` cut back to its checkpoint at `step`."""
    shutil.copytree(run, into)
    for ckpt in (into / "checkpoints").glob("step_*"):
        if ckpt.name != f"step_{step:07d}":
            shutil.rmtree(ckpt)
    (into / "checkpoints" / "latest").write_text(f"step_{step:07d}\n")
    return into


def torchrun(corpus, out, batch, nproc=2, settings=(), resume=False):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "pretrainlab.cli", "pretrain", "--corpus", str(corpus), "--out", str(out)]
    cmd += ["--resume"] if resume else []
    for s in SETTINGS + [f"train.batch_size={batch}", *settings]:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def one(tiny_corpus, tmp_path_factory):
    """The reference: one process, batch 4."""
    return pretrain(load_config(None, SETTINGS + ["train.batch_size=4"]), tiny_corpus, tmp_path_factory.mktemp("one") / "run")


def test_two_ranks_equal_one_process_with_twice_the_batch_and_resume_under_another_world(tiny_corpus, tmp_path, one):
    torchrun(tiny_corpus, tmp_path / "two", batch=2)
    assert_same(weights(one), weights(tmp_path / "two"), atol=1e-5)
    # rank 0 alone wrote the run directory
    metrics = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len([m for m in metrics if '"loss"' in m]) == 6
    # with every rank's CPU generator (rank 0's under "torch"), not rank 0's alone
    rng = load_file(str(tmp_path / "two" / "checkpoints" / "step_0000006" / "rng.safetensors"))
    assert set(rng) == {"torch", "rank1.torch"}

    # resume the 2-process run's step-3 checkpoint in ONE process (batch 4): same end point
    resumed = resume_from(tmp_path / "two", 3, tmp_path / "resumed")
    pretrain(load_config(None, SETTINGS + ["train.batch_size=4"]), tiny_corpus, resumed, resume=True)
    assert_same(weights(one), weights(resumed), atol=1e-5)


def test_fsdp_two_ranks_equal_one_process_and_checkpoints_cross_between_them(tiny_corpus, tmp_path, one):
    fsdp = tmp_path / "fsdp"
    proc = torchrun(tiny_corpus, fsdp, batch=2, settings=["train.parallel=fsdp"])
    assert "2 processes (fsdp)" in proc.stderr
    assert_same(weights(one), weights(fsdp), atol=1e-5)
    # the same checkpoint format as one process writes: whole weights, the tied decoder named in the metadata
    assert metadata(fsdp, 6) == metadata(one, 6)

    # the FSDP run's step-3 checkpoint continues in ONE process (batch 4, ddp): same end point
    resumed = resume_from(fsdp, 3, tmp_path / "fsdp_then_one")
    pretrain(load_config(None, SETTINGS + ["train.batch_size=4"]), tiny_corpus, resumed, resume=True)
    assert_same(weights(one), weights(resumed), atol=1e-5)

    # and the one-process run's step-3 checkpoint continues sharded over 2 ranks
    resumed = resume_from(one, 3, tmp_path / "one_then_fsdp")
    torchrun(tiny_corpus, resumed, batch=2, settings=["train.parallel=fsdp"], resume=True)
    assert_same(weights(one), weights(resumed), atol=1e-5)


@pytest.mark.parametrize("parallel", ["ddp", pytest.param("fsdp", marks=pytest.mark.slow)])
def test_gradient_accumulation_reduces_once_per_step_and_trains_like_one_process(tiny_corpus, tmp_path, parallel):
    """2 ranks x 2 micro-batches of 2 (gradients reduced across ranks on the second only: DDP's no_sync,
    FSDP's set_requires_gradient_sync) end where 1 process x 2 micro-batches of 4 does."""
    one = pretrain(load_config(None, SETTINGS + ["train.batch_size=4", "train.grad_accum=2"]), tiny_corpus,
                   tmp_path / "one")
    torchrun(tiny_corpus, tmp_path / "two", batch=2, settings=["train.grad_accum=2", f"train.parallel={parallel}"])
    assert_same(weights(one), weights(tmp_path / "two"), atol=1e-5)


@pytest.mark.parametrize("objective", ["plm", "rtd", "mlm+nsp"])
def test_every_objective_two_ranks_equal_one_process(tiny_corpus, tmp_path, objective):
    """Not only MLM: permuted LM (its order), ELECTRA's RTD (its mask and samples) and NSP's sentence
    pairs draw per row too, and their losses are means over the global batch."""
    weights_set = "objective.weights={" + ", ".join(f"{o}: 1.0" for o in objective.split("+")) + "}"
    settings = [weights_set, "train.budget=4", "train.checkpoint_every=4"]
    one = pretrain(load_config(None, SETTINGS + settings + ["train.batch_size=4"]), tiny_corpus, tmp_path / "one")
    torchrun(tiny_corpus, tmp_path / "two", batch=2, settings=settings)
    assert_same(weights(one), weights(tmp_path / "two"), atol=1e-5)


@pytest.mark.parametrize("parallel", ["ddp", pytest.param("fsdp", marks=pytest.mark.slow)])
def test_decoder_two_ranks_equal_one_process_and_resume_in_one(tiny_corpus, tmp_path, parallel):
    """The causal decoder (clm, packed documents) under torchrun: 2 ranks x batch 2 end where 1 process x
    batch 4 does, and the 2-rank run's step-2 checkpoint continues in one process to the same end."""
    settings = ["model.backbone=decoder", "model.style=llama", "objective.weights={clm: 1.0}", "train.budget=4",
                "train.checkpoint_every=2", f"train.parallel={parallel}"]
    one = pretrain(load_config(None, SETTINGS + settings + ["train.batch_size=4"]), tiny_corpus, tmp_path / "one")
    proc = torchrun(tiny_corpus, tmp_path / "two", batch=2, settings=settings)
    assert f"2 processes ({parallel})" in proc.stderr and "model: decoder (llama)" in proc.stderr
    assert_same(weights(one), weights(tmp_path / "two"), atol=1e-5)
    resumed = resume_from(tmp_path / "two", 2, tmp_path / "resumed")
    pretrain(load_config(None, SETTINGS + settings + ["train.batch_size=4", "train.parallel=ddp"]), tiny_corpus, resumed,
             resume=True)
    assert_same(weights(one), weights(resumed), atol=1e-5)
def test_encoder_decoder_two_ranks_equal_one_process_under_ddp_and_fsdp(tiny_corpus, tmp_path):
    """BART's infill+permute: every row corrupted from its own seed, the loss a mean over the global batch's
    target tokens; FSDP shards the encoder and decoder blocks."""
    settings = ["model.backbone=encoder-decoder", "model.style=bart", "train.budget=4", "train.checkpoint_every=4"]
    one = pretrain(load_config(None, SETTINGS + settings + ["train.batch_size=4"]), tiny_corpus, tmp_path / "one")
    torchrun(tiny_corpus, tmp_path / "ddp", batch=2, settings=settings)
    assert_same(weights(one), weights(tmp_path / "ddp"), atol=1e-5)
    proc = torchrun(tiny_corpus, tmp_path / "fsdp", batch=2, settings=settings + ["train.parallel=fsdp"])
    assert "2 processes (fsdp)" in proc.stderr
    assert_same(weights(one), weights(tmp_path / "fsdp"), atol=1e-5)
