"""Shared fixtures: a real prepared corpus, tiny and fast."""

import pytest

from pretrainlab.config import load_config


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A real prepared corpus: a few hundred short documents of English-like text."""
    import random

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
