"""Intrinsic evaluations on tiny models: exact pseudo-perplexity, linear probes per layer."""

import math
import random

import pytest
import torch

from pretrainlab.cli import main
from pretrainlab.config import load_config
from pretrainlab.intrinsic import IntrinsicError, probe, pseudo_perplexity
from pretrainlab.runs import load_pretrained
from pretrainlab.train import pretrain

from conftest import FAST, TINY, TRANSFORMER

SETTINGS = TINY + TRANSFORMER + FAST + ["train.eval_every=0", "train.budget=4"]
TEXTS = ["The cat sat on a mat.", "People of the nation and the union", "a", "Red river near the big house."]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory):
    return pretrain(load_config(None, SETTINGS), tiny_corpus, tmp_path_factory.mktemp("runs") / "mlm")


@torch.no_grad()
def _naive_pppl(pre, texts):
    """One text, one masked token, one forward at a time."""
    special = set(pre.special.all)
    nll, n = 0.0, 0
    for text in texts:
        ids = pre.tokenizer.encode(text).ids
        for j, t in enumerate(ids):
            if t in special:
                continue
            x = torch.tensor([ids])
            x[0, j] = pre.special.mask
            h = pre.backbone(x, torch.ones_like(x)).hidden[0, j]
            nll -= float(torch.log_softmax(pre.model.lm_head(h).float(), -1)[t])
            n += 1
    return math.exp(nll / n), n


def test_uniform_head_scores_the_vocabulary_size(run):
    pre = load_pretrained(run)
    head = pre.model.lm_head
    with torch.no_grad():  # tied decoder at zero and no bias: every logit is 0, the prediction uniform
        head.embedding.weight.zero_()
        head.bias.zero_()
    result = pseudo_perplexity(pre, TEXTS, batch_size=5)
    V = pre.tokenizer.get_vocab_size()
    assert result.vocab_size == V
    assert result.pseudo_perplexity == pytest.approx(V, rel=1e-6)
    assert result.n_texts == 4


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batched_equals_one_at_a_time(run, batch_size):
    pre = load_pretrained(run)
    expected, n = _naive_pppl(pre, TEXTS)
    result = pseudo_perplexity(pre, TEXTS, batch_size=batch_size)
    assert result.n_tokens == n
    assert result.pseudo_perplexity == pytest.approx(expected, rel=1e-5)


def test_no_mlm_head_is_a_clear_error(tiny_corpus, tmp_path):
    rtd = pretrain(load_config(None, SETTINGS + ["objective.weights={rtd: 1.0}", "train.budget=1"]), tiny_corpus,
                   tmp_path / "rtd")
    with pytest.raises(IntrinsicError, match="no MLM head"):
        pseudo_perplexity(rtd, TEXTS)


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    # label = whether the text mentions "cat": decodable from mean-pooled embeddings
    rng = random.Random(0)
    words = "the dog sat on a mat and ran to house with big small red blue tree".split()
    rows = ["text,label"]
    for i in range(160):
        ws = [rng.choice(words) for _ in range(6)]
        if i % 2:
            ws[rng.randrange(6)] = "cat"
        rows.append(" ".join(ws) + f",{'yes' if i % 2 else 'no'}")
    f = tmp_path_factory.mktemp("task") / "cats.csv"
    f.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return f


def test_probe_per_layer(run, task_file):
    report = probe(run, task_file, max_len=16)
    assert report.layers == ["embeddings", "layer 1", "layer 2"]
    assert len(report.test_accuracy) == 3 and report.n_train == 128 and report.n_test == 16
    assert report.majority == pytest.approx(0.5)
    assert report.test_accuracy[0] >= 0.9  # "cat" is one token: its mean-pooled embedding gives it away
    assert "| embeddings |" in report.markdown()


def test_probe_and_perplexity_cli(run, task_file, tmp_path, capsys):
    assert main(["probe", str(run), "--task", str(task_file), "--max-len", "16"]) == 0
    assert "| layer 2 |" in capsys.readouterr().out
    f = tmp_path / "held_out.txt"
    f.write_text("\n".join(TEXTS) + "\n\n", encoding="utf-8")
    assert main(["perplexity", str(run), "--text-file", str(f)]) == 0
    assert "pseudo-perplexity" in capsys.readouterr().out
    assert main(["perplexity", str(run), "--text-file", str(tmp_path / "missing.txt")]) == 2
