"""The decoder end to end: config (styles, presets, clm by default, what it refuses), pre-training
through the CLI with checkpoints and resume, generation and perplexity on the run."""

import json

import pytest
import torch
from safetensors.torch import load_file

from pretrainlab.cli import main
from pretrainlab.config import PRESETS, ConfigError, describe, load_config
from pretrainlab.runs import load_pretrained

from conftest import FAST, TINY, TRANSFORMER

DECODER = ["model.backbone=decoder", "model.style=llama", "model.dropout=0"]
SETTINGS = TINY + TRANSFORMER + FAST + DECODER + ["train.eval_every=0", "train.eval_batches=1", "train.log_every=1"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def sets(settings):
    return [a for s in settings for a in ("--set", s)]


# --------------------------------------------------------------------------- config


def test_decoder_defaults_llama_style_and_clm_and_is_sized_like_the_encoder():
    cfg = load_config(None, ["model.backbone=decoder"])
    assert (cfg.model.style, cfg.objective.weights) == ("llama", {"clm": 1.0})
    for preset, sizes in PRESETS.items():
        m = load_config(None, ["model.backbone=decoder", "model.style=gpt2", f"model.preset={preset}"]).model
        assert dict(n_layers=m.n_layers, d_model=m.d_model, n_heads=m.n_heads, d_ff=m.d_ff) == sizes
    # the encoder keeps its own defaults
    assert load_config(None, []).objective.weights == {"mlm": 1.0}
    assert load_config(None, []).model.style == "modern"


@pytest.mark.parametrize("objective, why", [
    ("mlm", "predicts a masked token from both sides"),
    ("nsp", r"from its first token \(\[CLS\]\)"),
    ("sop", r"from its first token \(\[CLS\]\)"),
    ("plm", "two-stream attention"),
    ("rtd", "generator is a masked LM"),
])
def test_objectives_a_decoder_cannot_express_are_refused_at_load(objective, why):
    with pytest.raises(ConfigError, match=rf"objective {objective} does not fit model.backbone=decoder \(causal.*{why}"
                                          r".*objective.weights=\{clm: 1.0\}"):
        load_config(None, ["model.backbone=decoder", f"objective.weights={{{objective}: 1.0, clm: 1.0}}"])


@pytest.mark.parametrize("backbone, why", [("transformer", "every position attends to both sides"),
                                           ("cnn", "every kernel reads both sides")])
def test_clm_on_a_bidirectional_backbone_is_refused_at_load(backbone, why):
    with pytest.raises(ConfigError, match=rf"objective clm .* the {backbone} backbone does not have \({why}.*"
                                          r"use model.backbone=decoder"):
        load_config(None, [f"model.backbone={backbone}", "objective.weights={clm: 1.0}"])
    assert load_config(None, ["model.backbone=rnn", "objective.weights={clm: 1.0}"]).objective.weights == {"clm": 1.0}


def test_bad_decoder_settings_are_refused():
    with pytest.raises(ConfigError, match="model.style='modern' is not a decoder style.*choose llama or gpt2"):
        load_config(None, ["model.backbone=decoder", "model.style=modern"])
    with pytest.raises(ConfigError, match="data.seq_len=128 is longer than model.max_len=64"):
        load_config(None, ["model.backbone=decoder", "model.max_len=64", "data.seq_len=128"])
    with pytest.raises(ConfigError, match="model.style=llama needs an even head size"):
        load_config(None, ["model.backbone=decoder", "model.d_model=30", "model.n_heads=10"])


def test_help_config_says_when_to_choose_the_decoder(capsys):
    text = describe()
    assert "decoder (a causal Transformer)" in text and "llama" in text and "gpt2" in text
    assert main(["--help-config"]) == 0
    assert "Choose the encoder to classify" in capsys.readouterr().out


# --------------------------------------------------------------------------- pre-training through the CLI


@pytest.fixture(scope="module")
def run(review_corpus, tmp_path_factory):
    """A tiny llama-style decoder pre-trained 8 steps through the CLI (checkpoints at 4 and 8)."""
    out = tmp_path_factory.mktemp("dec") / "run"
    extra = ["train.budget=8", "train.checkpoint_every=4", "train.deterministic=true"]
    assert main(["pretrain", "--corpus", str(review_corpus), "--out", str(out), *sets(SETTINGS + extra)]) == 0
    return out


def test_pretrain_trains_a_decoder_with_clm_and_resumes_exactly(run, review_corpus, tmp_path, capsys):
    pre = load_pretrained(run)
    assert type(pre.backbone).__name__ == "DecoderBackbone" and pre.backbone.style == "llama"
    assert list(pre.model.objectives) == ["clm"] and type(pre.model.objectives["clm"]).__name__ == "CLM"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["clm_loss"] for r in rows if "clm_loss" in r]
    assert len(losses) == 8 and losses[-1] < losses[0]

    # cut back to the step-4 checkpoint, resume: the same weights as the uninterrupted run
    import shutil

    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_0000008")
    (resumed / "checkpoints" / "latest").write_text("step_0000004\n")
    extra = ["train.budget=8", "train.checkpoint_every=4", "train.deterministic=true"]
    assert main(["pretrain", "--corpus", str(review_corpus), "--out", str(resumed), "--resume",
                 *sets(SETTINGS + extra)]) == 0
    assert "resuming from" in capsys.readouterr().err
    a = load_file(str(run / "checkpoints" / "step_0000008" / "model.safetensors"))
    b = load_file(str(resumed / "checkpoints" / "step_0000008" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_gpt2_style_and_a_tied_head_train_too(review_corpus, tmp_path):
    extra = ["model.style=gpt2", "objective.tie_embeddings=true", "train.budget=2"]
    assert main(["pretrain", "--corpus", str(review_corpus), "--out", str(tmp_path / "g"), *sets(SETTINGS + extra)]) == 0
    pre = load_pretrained(tmp_path / "g")
    assert pre.backbone.style == "gpt2"
    assert pre.model.objectives["clm"].head.embedding is pre.backbone.get_input_embeddings()
