"""LTG-BERT's touches (Samuel et al. 2023) where the modern style lacks them: model.extra_norms, the two
parameter-free layer norms per layer (attention output before its projection, the gated feed-forward activation
before its projection)."""

import random

import pytest
import torch

from pretrainlab.backbones import build_backbone
from pretrainlab.config import ConfigError, load_config
from pretrainlab.errors import ExportError
from pretrainlab.train import pretrain

from conftest import FAST, FINETUNE, TINY, TRANSFORMER, review_csv

SETTINGS = TINY + TRANSFORMER + FAST + FINETUNE + ["model.style=modern", "train.eval_every=0", "train.eval_batches=1",
                                                   "finetune.epochs=1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def backbone(extra_norms: bool):
    torch.manual_seed(0)
    return build_backbone("transformer", vocab_size=50, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=16,
                          dropout=0.0, style="modern", extra_norms=extra_norms).eval()


def test_extra_norms_add_no_parameters_and_normalise_both_projections_inputs():
    plain, ltg = backbone(False), backbone(True)
    assert plain.state_dict().keys() == ltg.state_dict().keys()
    ltg.load_state_dict(plain.state_dict())
    layer = ltg.layers[1]
    seen = {}
    for name, norm, proj in (("attn", layer.attn.out_norm, layer.attn.out), ("ff", layer.ff_mid_norm, layer.ff_out)):
        norm.register_forward_pre_hook(lambda m, args, name=name: seen.__setitem__(name + " raw", args[0]))
        proj.register_forward_pre_hook(lambda m, args, name=name: seen.__setitem__(name, args[0]))
    ids = torch.randint(5, 50, (2, 8))
    out = ltg(ids, torch.ones_like(ids)).hidden
    for name in ("attn", "ff"):  # what enters W_o is its input normalised (no gain, no bias)
        raw = seen[name + " raw"]
        torch.testing.assert_close(seen[name], torch.nn.functional.layer_norm(raw, raw.shape[-1:], eps=1e-5))
        assert not torch.allclose(seen[name], raw)
    assert not torch.allclose(out, plain(ids, torch.ones_like(ids)).hidden)


def test_extra_norms_belong_to_the_modern_transformer():
    with pytest.raises(ConfigError, match="model.extra_norms .* use model.backbone=transformer with model.style=modern"):
        load_config(None, ["model.style=bert", "model.extra_norms=true"])
    with pytest.raises(ConfigError, match="model.extra_norms"):
        load_config(None, ["model.backbone=rnn", "model.extra_norms=true"])


def test_an_extra_norms_run_fine_tunes_and_export_refuses_it(review_corpus, tmp_path):
    from pretrainlab.export import export
    from pretrainlab.finetune import finetune

    cfg = load_config(None, SETTINGS + ["model.extra_norms=true", "train.budget=3"])
    run = pretrain(cfg, review_corpus, tmp_path / "run")
    task = tmp_path / "t.csv"
    task.write_text(review_csv(random.Random(1), 64), encoding="utf-8")
    ft = finetune(run, task, cfg, out_dir=tmp_path / "ft", seeds=(0,))
    assert ft is not None
    for source in (run, tmp_path / "ft"):
        with pytest.raises(ExportError, match="model.extra_norms=true .* no Hugging Face class"):
            export(source, tmp_path / "hf")
