"""Weight EMA (train.ema): the average is exact, validated, saved as the checkpoint's model (what finetune and
export read), and --resume continues it exactly."""

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from pretrainlab.checkpoint import TRAINING_WEIGHTS
from pretrainlab.config import ConfigError, load_config
from pretrainlab.ema import WeightEMA
from pretrainlab.train import pretrain

from conftest import FAST, TINY, TRANSFORMER, latest_checkpoint_dir, pretrain_interrupted

SETTINGS = TINY + TRANSFORMER + FAST + ["train.eval_every=0", "train.eval_batches=1", "train.deterministic=true",
                                        "train.ema=0.9"]

pytestmark = pytest.mark.usefixtures("one_thread")


def cfg(*extra):
    return load_config(None, SETTINGS + list(extra))


def checkpoints(run):
    return sorted(p for p in (run / "checkpoints").iterdir() if p.is_dir())


def test_the_average_by_hand():
    """Two updates on a tied pair of parameters: d_t = min(0.9, (1 + t) / (10 + t)); the tied one counted once."""
    lin = nn.Linear(1, 1, bias=False)
    model = nn.ModuleDict({"a": lin, "b": nn.Linear(1, 1, bias=False)})
    model["b"].weight = lin.weight  # tied
    ema = WeightEMA(model, 0.9)
    assert len(ema.shadow) == 1
    with torch.no_grad():
        lin.weight.fill_(0.0)
        ema.take_from_model(0)
        lin.weight.fill_(11.0)
        ema.update()  # step 1, d = 2/11: 0 * 2/11 + 11 * 9/11 = 9
        assert ema.shadow[0].item() == pytest.approx(9.0)
        ema.steps = 89
        lin.weight.fill_(-3.0)
        ema.update()  # step 90, d = min(0.9, 91/100) = 0.9: 9 * 0.9 - 3 * 0.1 = 7.8
        assert ema.shadow[0].item() == pytest.approx(7.8)
        with ema.applied():
            assert lin.weight.item() == pytest.approx(7.8)
        assert lin.weight.item() == -3.0  # the trained weights back


def test_bad_decay_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"train.ema is a decay in \[0, 1\)"):
        cfg("train.ema=1.0")


def test_the_checkpoint_model_is_the_average_and_is_what_exports(review_corpus, tmp_path):
    """Step by step (a checkpoint each step, the last two kept): model.safetensors(N) = lerp of model.safetensors(N-1)
    toward the trained weights of step N; load_pretrained and the Hugging Face export hold the average."""
    run = pretrain(cfg("train.budget=5", "train.checkpoint_every=1", "model.style=modern"), review_corpus,
                   tmp_path / "run")
    before, last = checkpoints(run)
    avg_before, avg = (load_file(str(ckpt / "model.safetensors")) for ckpt in (before, last))
    trained = load_file(str(last / TRAINING_WEIGHTS))
    d = min(0.9, 6 / 15)  # step 5
    for k in avg:
        torch.testing.assert_close(avg[k], avg_before[k] + (1 - d) * (trained[k] - avg_before[k]), msg=k)
    key = "backbone.tok_emb.weight"
    assert not torch.equal(avg[key], trained[key])

    from pretrainlab.export import export
    from pretrainlab.runs import load_pretrained

    pre = load_pretrained(run)
    torch.testing.assert_close(pre.backbone.get_input_embeddings().weight, avg[key], rtol=0, atol=0)
    from transformers import AutoModelForMaskedLM

    hf = AutoModelForMaskedLM.from_pretrained(export(run, tmp_path / "hf"))
    torch.testing.assert_close(hf.get_input_embeddings().weight, avg[key], rtol=0, atol=0)


def test_validation_scores_the_average(review_corpus, tmp_path, monkeypatch):
    import pretrainlab.train as train

    seen = []
    real = train.evaluate_pretrain

    def spy(model, batches, device, dtype):
        seen.append(model.backbone.get_input_embeddings().weight.detach().clone())
        return real(model, batches, device, dtype)

    monkeypatch.setattr(train, "evaluate_pretrain", spy)
    run = pretrain(cfg("train.budget=3"), review_corpus, tmp_path / "run")
    avg = load_file(str(checkpoints(run)[-1] / "model.safetensors"))
    torch.testing.assert_close(seen[-1], avg["backbone.tok_emb.weight"], rtol=0, atol=0)


def test_resume_continues_the_average_exactly(review_corpus, tmp_path, monkeypatch):
    straight = pretrain(cfg("train.budget=6"), review_corpus, tmp_path / "straight")
    pretrain_interrupted(monkeypatch, cfg("train.budget=6"), review_corpus, tmp_path / "resumed", step=4)
    pretrain(cfg("train.budget=6"), review_corpus, tmp_path / "resumed", resume=True)
    a, b = latest_checkpoint_dir(straight), latest_checkpoint_dir(tmp_path / "resumed")
    assert json.loads((b / "state.json").read_text())["step"] == 6
    for name in ("model.safetensors", TRAINING_WEIGHTS):
        wa, wb = load_file(str(a / name)), load_file(str(b / name))
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=f"{name}: {k}")
