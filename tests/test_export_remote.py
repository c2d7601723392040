"""RNN / CNN export as remote code: fine-tune -> export -> `trust_remote_code=True` -> equal logits."""

import json
import random

import pytest
import torch

from pretrainlab.cli import main
from pretrainlab.config import load_config
from pretrainlab.errors import ExportError
from pretrainlab.export import compare, export, logits_fn, run_snippet
from pretrainlab.export.remote import FILES
from pretrainlab.finetune import finetune
from pretrainlab.runs import load_classifier, load_pretrained
from pretrainlab.train import pretrain

from conftest import FAST, FINETUNE, TINY, review_csv

SETTINGS = TINY + FAST + FINETUNE + ["train.eval_every=0", "train.budget=4", "finetune.epochs=1"]
TEXTS = ["This is a great movie!", "the plot was dull"]
# rnn: LSTM, [CLS] pooling; gru: mean pooling; cnn: kernel 3 and dilations that cycle over 3 layers
SETUPS = {
    "rnn": (["model.backbone=rnn"], "cls"),
    "gru": (["model.backbone=rnn", "model.rnn_cell=gru"], "mean"),
    "cnn": (["model.backbone=cnn", "model.n_layers=3", "model.kernel_size=3", "model.dilations=[1, 2]"], "cls"),
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def cfg(*extra):
    return load_config(None, SETTINGS + list(extra))


@pytest.fixture(scope="module")
def runs(review_corpus, tmp_path_factory):
    """Per setup: a pre-training run (MLM, a few steps) and a 3-class classifier fine-tuned from it."""
    root = tmp_path_factory.mktemp("runs")
    (root / "t.csv").write_text(review_csv(random.Random(1), 60, ("neg", "pos", "mixed")), encoding="utf-8")
    out = {}
    for name, (sets, pooling) in SETUPS.items():
        run = pretrain(cfg(*sets), review_corpus, root / f"{name}-run")
        finetune(run, root / "t.csv", cfg(*sets, f"finetune.pooling={pooling}"), out_dir=root / f"{name}-ft",
                 seeds=(0,))
        out[name] = (run, root / f"{name}-ft")
    return out


def perturb_heads(ft_dir):
    """Non-trivial pooler/head weights (a 1-epoch fine-tune leaves them near 0), saved back."""
    from safetensors.torch import save_model

    ftm = load_classifier(ft_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in list(ftm.model.pooler.parameters()) + list(ftm.model.head.parameters()):
            p.add_(torch.randn_like(p) * 0.5)
    save_model(ftm.model, str(ft_dir / "model.safetensors"))


@pytest.mark.parametrize("name", list(SETUPS))
def test_classifier_round_trip_with_equal_logits(runs, tmp_path, name):
    _, ft = runs[name]
    perturb_heads(ft)
    to = export(ft, tmp_path / "hf")
    files = {p.name for p in to.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", *FILES} <= files
    config = json.loads((to / "config.json").read_text())
    assert config["architectures"] == ["PretrainlabForSequenceClassification"]
    assert config["auto_map"]["AutoModelForSequenceClassification"] == \
        "modeling_pretrainlab.PretrainlabForSequenceClassification"
    assert config["id2label"] == {"0": "mixed", "1": "neg", "2": "pos"}

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForSequenceClassification.from_pretrained(to)  # our code runs only when the user trusts it
    model = AutoModelForSequenceClassification.from_pretrained(to, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(to)
    assert type(model).__name__ == "PretrainlabForSequenceClassification" and not model.training
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert batch["attention_mask"][1].sum() < batch["attention_mask"].shape[1]  # the batch is padded
    ours = logits_fn(ft)
    with torch.no_grad():
        theirs = model(**batch).logits
    assert theirs.shape == (2, 3) and theirs.abs().max() > 0.1
    torch.testing.assert_close(theirs, ours(dict(batch)), atol=1e-4, rtol=0)
    # text pairs: token type ids reach the model as our segment ids
    pairs = tokenizer(TEXTS, ["a long story about an actor", "fun"], padding=True, return_tensors="pt")
    assert pairs["token_type_ids"].sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(model(**pairs).logits, ours(dict(pairs)), atol=1e-4, rtol=0)


def test_model_card_snippet_in_a_fresh_offline_process(runs, tmp_path):
    _, ft = runs["rnn"]
    to = export(ft, tmp_path / "hf")
    result = run_snippet(to)  # AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)
    check = compare(result, logits_fn(ft), atol=1e-4)
    assert check.ok and check.ids_match and check.max_abs_diff <= 1e-4, check
    assert check.label in ("mixed", "neg", "pos")


@pytest.mark.parametrize("name", ["rnn", "cnn"])
def test_auto_model_gives_the_backbone_states(runs, tmp_path, name):
    _, ft = runs[name]
    to = export(ft, tmp_path / "hf")
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(to, trust_remote_code=True).eval()
    assert type(model).__name__ == "PretrainlabModel"
    batch = AutoTokenizer.from_pretrained(to)(TEXTS, padding=True, return_tensors="pt")
    backbone = load_classifier(ft).model.backbone
    with torch.no_grad():
        theirs = model(**batch).last_hidden_state
        ours = backbone(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).hidden
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["rnn", "cnn"])
def test_masked_lm_export_of_a_pretraining_run(runs, tmp_path, name):
    run, _ = runs[name]
    to = export(run, tmp_path / "hf")
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(to, trust_remote_code=True)
    assert type(model).__name__ == "PretrainlabForMaskedLM"
    tokenizer = AutoTokenizer.from_pretrained(to)
    batch = tokenizer(["the film was [MASK] and long", "fun"], padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = model(**batch).logits
    ours = logits_fn(run)(dict(batch))
    assert theirs.shape == ours.shape == (2, batch["input_ids"].shape[1], tokenizer.vocab_size)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(theirs[real], ours[real], atol=1e-4, rtol=0)


def test_cli_export_checks_the_round_trip(runs, tmp_path, capsys):
    _, ft = runs["cnn"]
    assert main(["export", str(ft), "--to", str(tmp_path / "hf")]) == 0
    out = capsys.readouterr().out
    assert "transformers (offline) loads it" in out and "tokenizer ids match" in out


def test_a_run_without_mlm_head_is_refused(review_corpus, tmp_path):
    run = pretrain(cfg("model.backbone=rnn", "objective.weights={clm: 1.0}", "train.budget=1"), review_corpus,
                   tmp_path / "run")
    assert "bilm" in load_pretrained(run).model.objectives  # clm on an rnn is read as bilm
    with pytest.raises(ExportError, match=r"pre-trained without the mlm objective \(bilm\)"):
        export(run, tmp_path / "hf")
