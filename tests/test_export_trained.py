"""Exports of weights of a trained size: every backbone and style, pre-training head and classifier, equal logits.

The other parity tests compare weights that are fresh or a few steps old, whose activations and logits are too
small to show a mismatch: the default recipe's 5-minute run exported with 2.8e-4 of difference for logits up to
11.3 while they passed, because its MLM head normalised at BERT's eps (1e-12) under ModernBERT's (1e-5). Here
every run and classifier gets weights of a trained size (conftest.trained_like: logits up to ~20), goes through
`export`, is loaded back by transformers from the folder, and must give our logits within float32 noise
(conftest.FP32_PARITY: 1e-5 + 2e-6 x the largest logit), which that eps alone exceeds 9x. One test trains the
default recipe itself (modern, untied head) for a few hundred steps instead.
"""

import random
import shutil

import pytest
import torch

from pretrainlab.config import load_config
from pretrainlab.export import export, logits_fn
from pretrainlab.finetune import finetune
from pretrainlab.train import pretrain

from conftest import FAST, FINETUNE, FP32_PARITY, TINY, TRANSFORMER, assert_parity, review_csv, trained_like_dir

SETTINGS = TINY + TRANSFORMER + FAST + FINETUNE + [
    "train.budget=1", "train.eval_every=0", "train.eval_batches=1", "model.dropout=0", "finetune.epochs=1",
    "finetune.steps=1"]
KINDS = {  # name: settings, classifier pooling
    "bert": (["model.style=bert"], "cls"),
    "modern": (["model.style=modern"], "mean"),
    "modern-untied": (["model.style=modern", "objective.tie_embeddings=false"], "mean"),
    "llama": (["model.backbone=decoder", "model.style=llama"], "mean"),
    "gpt2": (["model.backbone=decoder", "model.style=gpt2", "objective.tie_embeddings=false"], "mean"),
    "bart": (["model.backbone=encoder-decoder", "model.style=bart", "model.n_layers=1",
              "objective.weights={infill: 1.0}"], "mean"),
    "t5": (["model.backbone=encoder-decoder", "model.style=t5", "model.n_layers=1"], "mean"),  # span, its default
    "lstm": (["model.backbone=rnn"], "cls"),
    "gru": (["model.backbone=rnn", "model.rnn_cell=gru"], "mean"),
    "cnn": (["model.backbone=cnn", "model.kernel_size=3", "model.dilations=[1, 2]"], "mean"),
}
TEXTS = ["the film was [MASK] and far too long", "a fun story"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def runs(review_corpus, tmp_path_factory):
    """Per kind: a pre-training run (one step) and a classifier fine-tuned from it (one step)."""
    root = tmp_path_factory.mktemp("runs")
    task = root / "t.csv"
    task.write_text(review_csv(random.Random(1), 32), encoding="utf-8")
    out = {}
    for name, (sets, pooling) in KINDS.items():
        cfg = load_config(None, SETTINGS + sets + [f"finetune.pooling={pooling}"])
        run = pretrain(cfg, review_corpus, root / f"{name}-run")
        out[name] = {"pretrained": run,
                     "fine-tuned": root / f"{name}-ft"}
        finetune(run, task, cfg, out_dir=out[name]["fine-tuned"], seeds=(0,))
    return out


def hf_logits(folder, what: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The exported model's logits on TEXTS, loaded by transformers' Auto classes -> (logits, the inputs)."""
    import transformers

    arch = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=True).architectures[0]
    auto = ("AutoModelForSequenceClassification" if what == "fine-tuned" else "AutoModelForMaskedLM"
            if arch.endswith("ForMaskedLM") else "AutoModelForSeq2SeqLM" if arch.endswith("ForConditionalGeneration")
            else "AutoModelForCausalLM")
    model = getattr(transformers, auto).from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    if auto == "AutoModelForCausalLM":  # a prompt each, unpadded: a plain forward numbers left padding as tokens
        inputs = dict(tokenizer(TEXTS[:1], return_tensors="pt"))
    else:
        inputs = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    if auto == "AutoModelForSeq2SeqLM":  # the decoder reads the input behind its start token
        start = torch.full_like(inputs["input_ids"][:, :1], model.config.decoder_start_token_id)
        inputs["decoder_input_ids"] = torch.cat((start, inputs["input_ids"][:, :-1]), dim=1)
    with torch.no_grad():
        return model(**inputs).logits, inputs


@pytest.mark.parametrize("what", ["pretrained", "fine-tuned"])
@pytest.mark.parametrize("name", list(KINDS))
def test_trained_size_weights_export_with_equal_logits(runs, tmp_path, name, what):
    src = trained_like_dir(shutil.copytree(runs[name][what], tmp_path / "src"))
    theirs, inputs = hf_logits(export(src, tmp_path / "hf"), what)
    ours = logits_fn(src)(inputs)
    assert ours.abs().max() > 1  # of a trained size: fresh weights give ~0.1
    if what == "pretrained" and "decoder_input_ids" not in inputs:
        real = inputs["attention_mask"].bool()  # a padding position's MLM logits are nobody's
        theirs, ours = theirs[real], ours[real]
    assert_parity(theirs, ours, f"{name} {what}")


def test_the_default_recipe_trained_exports_within_float32_noise(review_corpus, tmp_path):
    """The package's default recipe (modern, untied MLM head, lr 2e-3, no dropout) at test size, 300 real steps."""
    cfg = load_config(None, ["model.preset=tiny", "model.n_layers=2", "model.d_model=32", "model.n_heads=4",
                             "model.d_ff=64", "model.max_len=64", "data.seq_len=16", "train.budget=300",
                             "train.batch_size=8", "train.eval_every=0", "train.progress=false",
                             "train.precision=fp32"])
    assert (cfg.model.style, cfg.objective.tie_embeddings) == ("modern", False)
    run = pretrain(cfg, review_corpus, tmp_path / "run")
    theirs, inputs = hf_logits(export(run, tmp_path / "hf"), "pretrained")
    real = inputs["attention_mask"].bool()
    ours = logits_fn(run)(inputs)
    assert_parity(theirs[real], ours[real], "the default recipe's MLM")
    rtol, atol = FP32_PARITY
    assert float(ours.abs().max()) * rtol > atol / 2  # logits large enough that the relative part counts
