"""Shared fixtures: the tiny settings every test builds on, one thread, and tiny data to train on."""

import random

import pytest
import torch

from pretrainlab.config import load_config

# --------------------------------------------------------------------------- settings (`section.key=value`)

TINY = ["model.preset=tiny", "model.n_layers=2", "model.d_model=32", "data.seq_len=16", "train.progress=false",
        "train.precision=fp32", *[
            # the defaults the tests were written against (the package defaults are the measured CPU
            # recipe: modern, untied, no dropout, a 5-minute budget, fine-tuning with a step floor);
            # tests of the new defaults say so themselves (test_curve.py)
            "model.style=bert", "model.dropout=0.1", "objective.tie_embeddings=true", "train.budget=1000",
            "train.lr=1e-3", "finetune.pooling=cls", "finetune.dropout=null", "finetune.epochs=3",
            "finetune.lr=5e-4", "finetune.patience=2", "finetune.min_steps=0", "finetune.inference_precision=fp32"]]
"""Every test's base: a 2-layer d=32 model on 16-token sequences, fp32, no progress bar. Each test file adds
what it needs (`SETTINGS = TINY + TRANSFORMER + [...]`), so that the additions are visible where they matter."""
TRANSFORMER = ["model.n_heads=4", "model.d_ff=64", "model.max_len=64"]
"""Transformer sizes that go with TINY (heads of 8, a 2x feed-forward) instead of the tiny preset's 2 heads / 512."""
FAST = ["train.batch_size=8", "train.lr=0.01", "train.warmup=0"]
"""Pre-training that learns something in a handful of steps."""
FINETUNE = ["finetune.max_len=16", "finetune.batch_size=16", "finetune.lr=0.005"]
"""Fine-tuning on tiny tasks: short texts, one or two batches an epoch."""


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (a second one only adds synchronisation, and the cores are shared).
    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------- tiny data

REVIEW_WORDS = ("the a film movie story actor plot scene was is very quite rather good bad great awful dull fun long "
                "short").split()


def review_docs(rng: random.Random, n: int, words=REVIEW_WORDS) -> str:
    """`n` documents of 6-30 random words, blank lines between: the text of a .txt corpus."""
    return "\n\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(6, 30))) + "." for _ in range(n))


def review_csv(rng: random.Random, n: int, labels=("neg", "pos"), words=REVIEW_WORDS) -> str:
    """A text,label task of `n` rows of 6 random words (+ the row number, so every text is unique);
    labels in turn, so they are balanced and not learnable."""
    rows = ["text,label"] + [" ".join(rng.choice(words) for _ in range(6)) + f" {i}," + labels[i % len(labels)]
                             for i in range(n)]
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A real prepared corpus: a few hundred short documents of English-like text."""
    from pretrainlab.data.prepare import prepare_corpus

    rng = random.Random(0)
    words = ("the cat dog sat on a mat and ran to house with big small red blue tree under over "
             "river near far people nation state union congress law year war peace").split()
    raw = tmp_path_factory.mktemp("raw")
    docs = []
    for d in range(300):
        sents = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))).capitalize() + "."
                 for _ in range(rng.randint(1, 5))]
        docs.append(f"Document {d}. " + " ".join(sents))
    (raw / "corpus.txt").write_text("\n\n".join(docs), encoding="utf-8")
    out = tmp_path_factory.mktemp("prepared")
    data = load_config(None, ["data.vocab_size=120", "data.min_chars=5", "data.val_fraction=0.1"]).data
    prepare_corpus([str(raw / "corpus.txt")], out, data)
    return out


@pytest.fixture(scope="module")
def review_corpus(tmp_path_factory):
    """A prepared corpus of 200 movie-review-like documents (vocabulary 120), one per test module."""
    from pretrainlab.data.prepare import prepare_corpus

    raw = tmp_path_factory.mktemp("raw") / "corpus.txt"
    raw.write_text(review_docs(random.Random(0), 200), encoding="utf-8")
    out = tmp_path_factory.mktemp("corpus")
    prepare_corpus([str(raw)], out, load_config(None, ["data.vocab_size=120", "data.min_chars=5"]).data)
    return out
