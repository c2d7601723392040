import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from pretrainlab.config import Budget, ConfigError, load_config
from pretrainlab.data import packing
from pretrainlab.errors import CheckpointError, TrainingError
from pretrainlab.loop import Interrupted, lr_factor
from pretrainlab.train import pretrain

from conftest import TINY, TRANSFORMER

SETTINGS = TINY + TRANSFORMER + ["train.batch_size=4", "train.eval_every=0", "train.eval_batches=1", "train.log_every=1",
                              "train.deterministic=true", "train.lr=3e-3"]


def cfg(*extra):
    return load_config(None, SETTINGS + list(extra))


def final_weights(run):
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    return load_file(str(ckpt / "model.safetensors"))


def test_budget_parsing():
    assert Budget.parse("10m").seconds == 600
    assert Budget.parse("2000").steps == 2000
    assert Budget.parse("3Mtok").tokens == 3_000_000
    with pytest.raises(ConfigError, match="zero"):
        Budget.parse("0")
    with pytest.raises(ConfigError, match="not a budget"):
        Budget.parse("ten minutes")


@pytest.mark.parametrize("text, expected", [
    ("90s", Budget(seconds=90)), ("10m", Budget(seconds=600)), ("10min", Budget(seconds=600)),
    ("1h", Budget(seconds=3600)), ("2000steps", Budget(steps=2000)), ("500tok", Budget(tokens=500)),
    ("500ktok", Budget(tokens=500_000)), ("3Mtok", Budget(tokens=3_000_000)), ("1.5H", Budget(seconds=5400)),
])
def test_budget_units(text, expected):
    assert Budget.parse(text) == expected


def test_budget_in_capital_m_is_refused_as_ambiguous():
    """10M read as 10 minutes (the unit was lower-cased) while 3Mtok meant tokens: refused, with both readings."""
    with pytest.raises(ConfigError, match="train.budget='10M' is ambiguous: write 10m for 10 minutes or 10Mtok"):
        Budget.parse("10M")
    with pytest.raises(ConfigError, match="distill.budget='2M' is ambiguous"):
        cfg("distill.budget=2M")


def test_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0.0, 0.1) == 0.0
    assert lr_factor(0.05, 0.1) == pytest.approx(0.5)
    assert lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert lr_factor(0.55, 0.1) == pytest.approx(0.5)
    assert lr_factor(1.0, 0.1) == 0.0


def test_impossible_configs_are_rejected_naming_the_field():
    with pytest.raises(ConfigError, match="n_heads=3 does not divide"):
        cfg("model.n_heads=3")
    with pytest.raises(ConfigError, match="seq_len=128 is longer than model.max_len=64"):
        cfg("data.seq_len=128")
    with pytest.raises(ConfigError, match="zero"):
        cfg("train.budget=0")
    with pytest.raises(ConfigError, match="did you mean train.lr"):
        cfg("train.lrr=1")


def test_pretrain_writes_a_self_describing_run(tiny_corpus, tmp_path):
    run = pretrain(cfg("train.budget=6", "train.eval_every=3"), tiny_corpus, tmp_path / "run")
    for name in ("config.yaml", "tokenizer.json", "corpus.json", "metrics.jsonl", "loss.png", "summary.json"):
        assert (run / name).is_file(), name
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert any("val_loss" in r and "val_mlm_acc" in r for r in rows)
    # the same directory again is refused rather than overwritten
    with pytest.raises(ConfigError, match="already holds a run"):
        pretrain(cfg("train.budget=6"), tiny_corpus, tmp_path / "run")


def test_tiny_model_overfits_one_batch(tiny_corpus, tmp_path, monkeypatch):
    from pretrainlab.models import PretrainModel

    fixed = {}
    real_prepare = PretrainModel.prepare

    def same_masked_batch(self, batch, gen, progress=1.0):  # one batch, one mask, every step
        if "b" not in fixed:
            fixed["b"] = real_prepare(self, batch, gen, progress)
        return dict(fixed["b"])

    monkeypatch.setattr(PretrainModel, "prepare", same_masked_batch)
    run = pretrain(cfg("train.budget=100", "train.lr=1e-2", "train.warmup=0.02", "model.dropout=0",
                       "train.batch_size=4", "train.eval_batches=1"), tiny_corpus, tmp_path / "run")
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    first, last = rows[0]["mlm_loss"], rows[-1]["mlm_loss"]
    assert last < 0.05 * first, (first, last)
    assert rows[-1]["mlm_acc"] == 1.0


def read_checkpoint_state(run):
    return json.loads((run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip() / "state.json")
                      .read_text())


def interrupt_at_step_5(monkeypatch, moment):
    """Patch training so that its 5th step is interrupted at `moment`; -> the step count the checkpoint
    must have: 4 when the interrupt cuts the step short, 5 when a signal lets it complete."""
    from pretrainlab.models import PretrainModel

    calls = {"draw": 0, "forward": 0}
    real_next, real_forward = packing.PackedLoader.next_batch, PretrainModel.forward

    def next_batch(self):
        if self.shuffle:  # training batches only (validation batches are not shuffled)
            calls["draw"] += 1
            if calls["draw"] == 5 and moment == "before the draw":
                raise KeyboardInterrupt
        return real_next(self)

    def forward(self, batch):  # the loader has advanced; the step is not done
        out = real_forward(self, batch)
        if self.training:
            calls["forward"] += 1
            if calls["forward"] == 5 and moment == "inside the step":
                raise KeyboardInterrupt
            if calls["forward"] == 5 and moment.startswith("SIG"):
                os.kill(os.getpid(), getattr(signal, moment))
        return out

    monkeypatch.setattr(packing.PackedLoader, "next_batch", next_batch)
    monkeypatch.setattr(PretrainModel, "forward", forward)
    return 5 if moment.startswith("SIG") else 4


@pytest.mark.parametrize("moment", ["before the draw", "inside the step", "SIGINT", "SIGTERM"])
def test_interrupted_run_resumes_to_the_same_weights(tiny_corpus, tmp_path, monkeypatch, moment):
    """Whenever the interrupt lands, the checkpoint's data position matches its step, and the resumed
    run ends at the uninterrupted run's weights exactly (dropout 0.1: the RNG is rewound as well).
    "inside the step" is the moment that skipped a batch (issue #17 finding 1): the loader had drawn
    step 5's batch, the checkpoint said step 4."""
    straight = pretrain(cfg("train.budget=8"), tiny_corpus, tmp_path / "straight")
    with monkeypatch.context() as m:
        saved_step = interrupt_at_step_5(m, moment)
        with pytest.raises(Interrupted, match=f"at step {saved_step}; checkpoint saved") as info:
            pretrain(cfg("train.budget=8"), tiny_corpus, tmp_path / "resumed")
    state = read_checkpoint_state(tmp_path / "resumed")
    assert state["step"] == saved_step
    assert (state["data"]["epoch"], state["data"]["row"]) == (0, 4 * saved_step)  # 4 rows a step, one epoch
    assert info.value.signum == getattr(signal, moment, signal.SIGINT)
    pretrain(cfg("train.budget=8"), tiny_corpus, tmp_path / "resumed", resume=True)
    assert read_checkpoint_state(tmp_path / "resumed")["data"] == read_checkpoint_state(straight)["data"]
    a, b = final_weights(straight), final_weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_an_interrupt_inside_the_optimizer_step_saves_nothing_half_updated(tiny_corpus, tmp_path, monkeypatch):
    """A KeyboardInterrupt (a second Ctrl-C) while the optimizer updates the weights: they belong to no
    step, so no checkpoint is saved; --resume continues from the last one, to the same end."""
    straight = pretrain(cfg("train.budget=6"), tiny_corpus, tmp_path / "straight")
    real_step, calls = torch.optim.AdamW.step, {"n": 0}

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(torch.optim.AdamW, "step", step)
        with pytest.raises(Interrupted, match=r"inside an optimizer step: no checkpoint saved; --resume continues "
                                              r"from the last checkpoint, .*step_0000002"):
            pretrain(cfg("train.budget=6", "train.checkpoint_every=2"), tiny_corpus, tmp_path / "resumed")
    assert read_checkpoint_state(tmp_path / "resumed")["step"] == 2
    pretrain(cfg("train.budget=6", "train.checkpoint_every=2"), tiny_corpus, tmp_path / "resumed", resume=True)
    a, b = final_weights(straight), final_weights(tmp_path / "resumed")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_resume_with_another_config_is_refused_showing_the_difference(tiny_corpus, tmp_path):
    pretrain(cfg("train.budget=2"), tiny_corpus, tmp_path / "run")
    with pytest.raises(CheckpointError, match=r"model.d_ff: checkpoint 64 vs now 128"):
        pretrain(cfg("train.budget=4", "model.d_ff=128"), tiny_corpus, tmp_path / "run", resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        pretrain(cfg("train.budget=4"), tiny_corpus, tmp_path / "other", resume=True)


def test_nan_loss_stops_naming_the_step_or_is_skipped(tiny_corpus, tmp_path, monkeypatch):
    from pretrainlab.models import PretrainModel

    real_forward = PretrainModel.forward
    calls = {"n": 0}

    def nan_at_3(self, batch):
        out = real_forward(self, batch)
        calls["n"] += 1
        if calls["n"] == 3 and self.training:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(PretrainModel, "forward", nan_at_3)
    with pytest.raises(TrainingError, match="at step 3"):
        pretrain(cfg("train.budget=5"), tiny_corpus, tmp_path / "stop")
    calls["n"] = 0
    run = pretrain(cfg("train.budget=5", "train.on_nan=skip"), tiny_corpus, tmp_path / "skip")
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    state = json.loads((ckpt / "state.json").read_text())
    assert state["nan_skipped"] == 1 and state["step"] == 5


def test_time_budget_ends_on_time(tiny_corpus, tmp_path):
    import time

    t = time.perf_counter()
    run = pretrain(cfg("train.budget=3s"), tiny_corpus, tmp_path / "run")
    assert time.perf_counter() - t < 30
    summary = json.loads((run / "summary.json").read_text())
    assert 2.5 <= summary["seconds"] < 10


def test_corrupt_checkpoint_is_refused(tiny_corpus, tmp_path):
    run = pretrain(cfg("train.budget=2"), tiny_corpus, tmp_path / "run")
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    data = bytearray((ckpt / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (ckpt / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        pretrain(cfg("train.budget=4"), tiny_corpus, run, resume=True)


def test_whole_word_masking_runs_end_to_end(tiny_corpus, tmp_path):
    run = pretrain(cfg("train.budget=2", "objective.whole_word=true"), tiny_corpus, tmp_path / "run")
    assert (run / "summary.json").is_file()


def test_no_weight_decay_on_embeddings_biases_and_norms():
    from pretrainlab.backbones import build_backbone
    from pretrainlab.loop import make_optimizer

    bb = build_backbone("transformer", vocab_size=50, d_model=32, n_layers=1, n_heads=4, d_ff=64, max_len=16)
    opt = make_optimizer(bb, 1e-3, 0.1, torch.device("cpu"))
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 0.1 and opt.param_groups[1]["weight_decay"] == 0.0
    for name, p in bb.named_parameters():
        expect = p.ndim >= 2 and "emb" not in name and "norm" not in name
        assert (id(p) in decayed) == expect, name
