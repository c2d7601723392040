"""Export to Hugging Face: pre-train -> fine-tune -> export -> load in transformers -> equal logits."""

import json
import random
import shutil

import pytest
import torch

from pretrainlab.cli import main
from pretrainlab.config import load_config, save_config
from pretrainlab.errors import ExportError
from pretrainlab.export import compare, export, logits_fn, run_snippet
from pretrainlab.finetune import finetune
from pretrainlab.runs import load_classifier, load_pretrained
from pretrainlab.tokenizer import save_tokenizer, train_tokenizer
from pretrainlab.train import pretrain

from conftest import FAST, FINETUNE, TINY, TRANSFORMER, review_csv

SETTINGS = TINY + TRANSFORMER + FAST + FINETUNE + ["train.eval_every=0", "finetune.epochs=1"]
TEXTS = ["This is a great movie!", "the plot was dull"]


pytestmark = pytest.mark.usefixtures("one_thread")


def cfg(*extra):
    return load_config(None, SETTINGS + list(extra))


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    f = tmp_path_factory.mktemp("task") / "t.csv"
    f.write_text(review_csv(random.Random(1), 64), encoding="utf-8")
    return f


@pytest.fixture(scope="module")
def runs(review_corpus, task_file, tmp_path_factory):
    """Per style: a pre-training run (MLM, a few steps) and a classifier fine-tuned from it."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for style, pooling in (("bert", "cls"), ("modern", "mean")):
        run = pretrain(cfg(f"model.style={style}", "train.budget=6"), review_corpus, root / f"{style}-run")
        finetune(run, task_file, cfg(f"finetune.pooling={pooling}"), out_dir=root / f"{style}-ft", seeds=(0,))
        out[style] = (run, root / f"{style}-ft")
    return out


def test_bert_classifier_loads_offline_with_equal_logits(runs, tmp_path):
    _, ft = runs["bert"]
    to = export(ft, tmp_path / "hf")
    files = {p.name for p in to.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    config = json.loads((to / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {"neg": 0, "pos": 1}

    # the model card snippet, in a fresh process with HF_HUB_OFFLINE=1
    result = run_snippet(to)
    assert result["label"] in ("neg", "pos") and "token_type_ids" in result
    ours = logits_fn(ft)
    check = compare(result, ours, atol=1e-4)
    assert check.ok and check.ids_match and check.max_abs_diff <= 1e-4, check
    assert check.label == ["neg", "pos"][int(ours({k: torch.tensor(result[k]) for k in
                                                     ("input_ids", "attention_mask", "token_type_ids")}).argmax())]
    wrong = compare(result, lambda inputs: ours(inputs) + 1e-3)
    assert not wrong.ok and wrong.max_abs_diff == pytest.approx(1e-3, rel=1e-2)

    # pairs and padding, in-process: token type ids reach BERT as our segment ids
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(to)
    tokenizer = AutoTokenizer.from_pretrained(to)
    batch = tokenizer(TEXTS, ["a long story about an actor", "fun"], padding=True, return_tensors="pt")
    assert batch["token_type_ids"].sum() > 0 and tokenizer.padding_side == "right"
    with torch.no_grad():
        theirs = model(**batch).logits
    torch.testing.assert_close(theirs, ours(dict(batch)), atol=1e-4, rtol=0)


def test_modern_classifier_loads_with_equal_logits(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, ft = runs["modern"]
    to = export(ft, tmp_path / "hf")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(to)
    tokenizer = AutoTokenizer.from_pretrained(to)
    assert type(model).__name__ == "ModernBertForSequenceClassification"
    assert model.config.classifier_pooling == "mean" and model.config.id2label == {0: "neg", 1: "pos"}
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert set(batch) == {"input_ids", "attention_mask"}  # ModernBERT has no token types
    assert batch["attention_mask"][1].sum() < batch["attention_mask"].shape[1]  # the batch is padded
    with torch.no_grad():
        theirs = model(**batch).logits
    torch.testing.assert_close(theirs, logits_fn(ft)(dict(batch)), atol=1e-4, rtol=0)


@pytest.mark.parametrize("style", ["bert", "modern"])
def test_masked_lm_export_of_a_pretraining_run(runs, tmp_path, style):
    run, _ = runs[style]
    to = export(run, tmp_path / "hf")
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(to)
    assert type(model).__name__ == ("BertForMaskedLM" if style == "bert" else "ModernBertForMaskedLM")
    tokenizer = AutoTokenizer.from_pretrained(to)
    batch = tokenizer(["the film was [MASK] and long"], return_tensors="pt")
    with torch.no_grad():
        theirs = model(**batch).logits
    ours = logits_fn(run)(dict(batch))
    assert theirs.shape == ours.shape == (1, batch["input_ids"].shape[1], tokenizer.vocab_size)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)
    # the decoder stays tied to the word embeddings
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize("style", ["bert", "modern"])
def test_masked_lm_export_with_untied_embeddings(review_corpus, tmp_path, style):
    """objective.tie_embeddings=false: the head's own output matrix is exported untied, equal logits."""
    run = pretrain(cfg(f"model.style={style}", "train.budget=4", "objective.tie_embeddings=false"), review_corpus,
                   tmp_path / "run")
    from pretrainlab.runs import load_pretrained

    pre = load_pretrained(run)
    out_emb = pre.model.lm_head.embedding
    assert out_emb is not pre.backbone.get_input_embeddings()
    assert not torch.equal(out_emb.weight, pre.backbone.get_input_embeddings().weight)  # both trained, apart
    to = export(run, tmp_path / "hf")
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(to)
    assert model.config.tie_word_embeddings is False
    assert model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    batch = AutoTokenizer.from_pretrained(to)(["the film was [MASK] and long"], return_tensors="pt")
    with torch.no_grad():
        theirs = model(**batch).logits
    torch.testing.assert_close(theirs, logits_fn(run)(dict(batch)), atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- refusals


def test_refuses_a_run_without_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_config(cfg(), run / "config.yaml")
    with pytest.raises(ExportError, match="has no checkpoint: nothing to export yet"):
        export(run, tmp_path / "hf")


def test_refuses_a_non_empty_target_unless_overwrite(runs, tmp_path):
    _, ft = runs["bert"]
    target = tmp_path / "hf"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="is not empty; pass --overwrite"):
        export(ft, target)
    assert (target / "notes.txt").read_text() == "mine"
    export(ft, target, overwrite=True)
    assert not (target / "notes.txt").exists() and (target / "model.safetensors").is_file()
    with pytest.raises(ExportError, match="would replace the model being exported"):
        export(ft, ft.parent, overwrite=True)


def test_refuses_a_tokenizer_that_does_not_fit_the_model(runs, tmp_path):
    _, ft = runs["bert"]
    copy = tmp_path / "ft"
    shutil.copytree(ft, copy)
    save_tokenizer(train_tokenizer(["other words entirely here"] * 20 + ["the film"] * 5, vocab_size=40),
                   copy / "tokenizer.json")
    with pytest.raises(ExportError, match=r"tokenizer\.json has \d+ tokens but the model .* embeds \d+"):
        export(copy, tmp_path / "hf")


def test_refuses_bert_style_with_mean_pooling(runs, tmp_path):
    _, ft = runs["bert"]
    copy = tmp_path / "ft"
    shutil.copytree(ft, copy)
    info = json.loads((copy / "classifier.json").read_text())
    (copy / "classifier.json").write_text(json.dumps({**info, "pooling": "mean"}))
    assert load_classifier(copy).model.pooling == "mean"
    with pytest.raises(ExportError, match="BertForSequenceClassification pools the \\[CLS\\] token"):
        export(copy, tmp_path / "hf")


def test_cli_export(runs, tmp_path, capsys):
    run, _ = runs["bert"]
    assert main(["export", str(run), "--to", str(tmp_path / "hf"), "--no-check"]) == 0
    assert "exported" in capsys.readouterr().out
    assert main(["export", str(run), "--to", str(tmp_path / "hf"), "--no-check"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert load_pretrained(run).checkpoint.is_dir()  # the source is untouched


def _realistic(result, scale, noise):
    """The snippet's result with logits of a realistic size (scaled up) and ours off by float32-like noise."""
    theirs = torch.tensor(result["logits"]) * scale
    return {**result, "logits": theirs.tolist()}, lambda inputs: theirs + noise


def test_the_check_tolerance_is_relative_to_the_logits_scale(runs, tmp_path):
    """Finding 11: logits ~30 differ by ~1.5e-4 between two float32 kernels; a wrong mapping differs by far more."""
    from pretrainlab.export import CHECK_FAILED, check_export

    _, ft = runs["bert"]
    to = export(ft, tmp_path / "hf")
    result = run_snippet(to)
    scale = 30 / float(torch.tensor(result["logits"]).abs().max())
    big, ours = _realistic(result, scale, 1.5e-4)
    check = compare(big, ours, tokenizer=None)
    assert check.max_abs_diff == pytest.approx(1.5e-4, rel=1e-2) and check.max_abs_diff > 1e-4  # old check: fail
    assert check.ok and check.top_agree and check.scale == pytest.approx(30, rel=1e-4), check
    assert "max |logit difference| 1.5" in check.summary() and "top labels agree" in check.summary()

    wrong = compare(big, lambda inputs: torch.tensor(big["logits"]).flip(-1))  # a real mismatch: labels swapped
    assert not wrong.ok and wrong.top_agree is False and "top labels DIFFER" in wrong.summary()

    # a failing check keeps the folder, marks it with the numbers; a passing one removes the mark
    bad = check_export(to, lambda inputs: logits_fn(ft)(inputs) + 1.0)
    assert not bad.ok and (to / "config.json").is_file()
    assert "does not reproduce" in (to / CHECK_FAILED).read_text() and "max |logit difference|" in (to / CHECK_FAILED).read_text()
    assert check_export(to, logits_fn(ft)).ok and not (to / CHECK_FAILED).exists()
