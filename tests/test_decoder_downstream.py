"""A decoder downstream: last-token classifiers (finetune, evaluate, predict, curve, explain through
the CLI), and Hugging Face export / import (LlamaForCausalLM, GPT2LMHeadModel, *ForSequenceClassification)."""

import json
import random

import pytest
import torch

from pretrainlab.cli import main
from pretrainlab.models import LastTokenClassifier, pool
from pretrainlab.runs import load_classifier, load_pretrained

from conftest import FINETUNE, TINY, TRANSFORMER
from test_finetune import great_csv, make_run

DECODER = ["model.backbone=decoder", "model.dropout=0"]
SETTINGS = TINY + TRANSFORMER + FINETUNE + DECODER
FT = ["finetune.epochs=2", "finetune.min_steps=0", "finetune.lr=0.01"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def sets(settings):
    """--set arguments for commands on a run (its architecture is the run's: no model.* settings)."""
    return [a for s in settings if not s.startswith("model.") for a in ("--set", s)]


def make_decoder_run(path, style="llama"):
    """A decoder run directory as `pretrain` writes it (one checkpoint of a fresh model)."""
    from test_finetune import cfg  # noqa: F401  (make_run's settings are test_finetune's, plus ours)

    return make_run(path, *DECODER, f"model.style={style}")


@pytest.fixture(scope="module")
def dec_run(tmp_path_factory):
    return make_decoder_run(tmp_path_factory.mktemp("dec") / "run")


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return great_csv(tmp_path_factory.mktemp("task") / "great.csv", n=96)


@pytest.fixture(scope="module")
def pair_task(tmp_path_factory):
    """Pairs: label pos exactly when the SECOND text holds 'great' (so the model must read past the first)."""
    rng = random.Random(2)
    words = "the a film movie story actor plot was good bad dull fun".split()
    rows = ["first,second,label"]
    for i in range(96):
        a = " ".join(rng.choice(words) for _ in range(4)) + f" {i}"
        b = [rng.choice(words) for _ in range(4)]
        if i % 2:
            b[rng.randrange(4)] = "great"
        rows.append(f"{a},{' '.join(b)},{'pos' if i % 2 else 'neg'}")
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the last-token classifier


def test_last_token_pooling_finds_the_last_real_token():
    hidden = torch.arange(2 * 5 * 1, dtype=torch.float).view(2, 5, 1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert pool(hidden, mask, "last")[:, 0].tolist() == [2.0, 9.0]


def test_a_decoder_classifier_reads_each_text_as_if_alone(dec_run):
    pre = load_pretrained(dec_run)
    clf = LastTokenClassifier(pre.backbone, 3).eval()
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 20, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        both = clf(ids, mask).logits
        alone = clf(ids[1:, :3], mask[1:, :3]).logits
        other_padding = clf(torch.where(mask.bool(), ids, 7), mask).logits  # what lies in the padding is never read
    torch.testing.assert_close(both[1:], alone)
    torch.testing.assert_close(other_padding, both)
    assert clf.head.bias is None  # Llama's / GPT-2's `score`: no bias


# --------------------------------------------------------------------------- fine-tuning through the CLI


@pytest.fixture(scope="module")
def classifier(dec_run, task, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "clf"
    assert main(["finetune", str(dec_run), "--task", str(task), "--out", str(out), "--seeds", "0",
                 *sets(SETTINGS + FT)]) == 0
    return out


def test_finetune_evaluate_predict_on_a_decoder(dec_run, classifier, capsys):
    info = json.loads((classifier / "classifier.json").read_text())
    assert (info["head"], info["pooling"], info["segments"]) == ("decoder", "last", False)
    ftm = load_classifier(classifier)
    assert isinstance(ftm.model, LastTokenClassifier)
    capsys.readouterr()
    assert main(["evaluate", str(classifier)]) == 0
    assert "macro-F1" in capsys.readouterr().out
    assert main(["predict", str(classifier), "a great film", "a dull film"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in ("neg", "pos") for line in lines)


def test_a_decoder_learns_a_pair_task_from_its_last_token(dec_run, pair_task, tmp_path, capsys):
    out = tmp_path / "pairs"
    extra = ["finetune.text_column=first", "finetune.text_pair_column=second", "finetune.epochs=6",
             "finetune.max_len=24", "finetune.lr=0.01"]
    assert main(["finetune", str(dec_run), "--task", str(pair_task), "--out", str(out), "--seeds", "0",
                 *sets(SETTINGS + FT + extra)]) == 0
    ftm = load_classifier(out)
    assert ftm.meta["pairs"] is True
    capsys.readouterr()
    assert main(["predict", str(out), "a film 1", "--pair", "the great plot"]) == 0
    assert capsys.readouterr().out.split("\t")[0] in ("neg", "pos")
    assert json.loads((out / "results.json").read_text())["accuracy"]["mean"] >= 0.8  # measured: 1.0 (10 test pairs)


def test_curve_and_explain_work_on_a_decoder(dec_run, classifier, task, tmp_path, capsys):
    out = tmp_path / "curve"
    assert main(["curve", str(dec_run), "--task", str(task), "--labels", "16", "all", "--seeds", "0",
                 "--out", str(out), *sets(SETTINGS + ["finetune.epochs=1", "finetune.min_steps=2"])]) == 0
    assert (out / "curve.csv").is_file() and "pretrained" in (out / "curve.csv").read_text()
    html = tmp_path / "report.html"
    assert main(["explain", str(classifier), "--text", "a great film", "--steps", "4", "--out", str(html)]) == 0
    page = html.read_text(encoding="utf-8")
    assert "hv-data" in page  # the attention head view: the decoder returns its (causal) attention maps
