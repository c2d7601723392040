"""objective.mask_rate_end: the mask rate moves linearly over the budget (GPT-BERT: 0.3 -> 0.15), a function of the
budget's progress, so a resumed run masks exactly as an uninterrupted one."""

import json

import pytest
import torch
from safetensors.torch import load_file

from pretrainlab.config import ConfigError, load_config
from pretrainlab.objectives import mlm
from pretrainlab.objectives.mlm import MLM, MaskRate
from pretrainlab.train import pretrain

from conftest import FAST, TINY, TRANSFORMER, latest_checkpoint_dir, pretrain_interrupted

SETTINGS = TINY + TRANSFORMER + FAST + ["train.eval_every=0", "train.eval_batches=1", "train.deterministic=true",
                                        "objective.mask_rate=0.3", "objective.mask_rate_end=0.15"]
SPECIAL = (0, 1, 2, 3, 4)

pytestmark = pytest.mark.usefixtures("one_thread")


def cfg(*extra):
    return load_config(None, SETTINGS + list(extra))


def test_the_rate_by_hand():
    r = MaskRate(0.3, 0.15)
    assert [r.at(p) for p in (-1.0, 0.0, 0.5, 1.0, 2.0)] == pytest.approx([0.3, 0.3, 0.225, 0.15, 0.15])
    assert MaskRate(0.15, 0.15).at(0.7) == 0.15


def test_the_collator_masks_the_draws_below_the_rate_at_its_progress():
    """The same generator at progress 0 and 1: the positions are exactly the real tokens whose draw is below
    0.3, then below 0.15 (so the later mask is a subset of the earlier one)."""
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 15, 16, 17, 3, 0, 0], [2, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 3]])
    mask = (ids != 0).long()
    obj = MLM(40, SPECIAL, 4, MaskRate(0.3, 0.15))
    real = (mask != 0) & (ids > 4)
    picked = {}
    for progress in (0.0, 1.0):
        select = torch.rand(ids.shape, generator=torch.Generator().manual_seed(7))  # mask_tokens' first draw
        out = obj.prepare({"input_ids": ids, "mask": mask}, torch.Generator().manual_seed(7), progress)
        expect = ((select < obj.rate.at(progress)) & real).reshape(-1).nonzero().squeeze(1)
        assert torch.equal(out["mlm_positions"], expect), progress
        picked[progress] = set(expect.tolist())
    assert picked[1.0] < picked[0.0]


def test_bad_end_rate_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"objective.mask_rate_end must be in \(0, 0.4\]"):
        cfg("objective.mask_rate_end=0.5")


def test_pretraining_masks_at_each_steps_rate_and_validates_at_the_end_rate(review_corpus, tmp_path, monkeypatch):
    """A 4-step budget: the training batches are masked at 0.3, 0.2625, 0.225, 0.1875 (progress 0, 1/4, 2/4, 3/4
    when drawn); the validation batches at 0.15."""
    rates = []
    real = mlm.mask_tokens

    def spy(ids, mask, special_ids, mask_id, vocab_size, rate, gen, *args, **kwargs):
        rates.append(rate)
        return real(ids, mask, special_ids, mask_id, vocab_size, rate, gen, *args, **kwargs)

    monkeypatch.setattr(mlm, "mask_tokens", spy)
    pretrain(cfg("train.budget=4"), review_corpus, tmp_path / "run")
    assert rates == pytest.approx([0.15, 0.3, 0.2625, 0.225, 0.1875])  # validation batches are made first


def test_resume_masks_as_the_uninterrupted_run(review_corpus, tmp_path, monkeypatch):
    straight = pretrain(cfg("train.budget=6"), review_corpus, tmp_path / "straight")
    pretrain_interrupted(monkeypatch, cfg("train.budget=6"), review_corpus, tmp_path / "resumed", step=4)
    pretrain(cfg("train.budget=6"), review_corpus, tmp_path / "resumed", resume=True)
    a, b = (latest_checkpoint_dir(run) for run in (straight, tmp_path / "resumed"))
    assert json.loads((b / "state.json").read_text())["step"] == 6
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=k)
