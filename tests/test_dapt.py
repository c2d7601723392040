"""A real checkpoint adapted to the run's text (`curve --reference-dapt`): an imported model without an MLM head
gets one that starts as the identity on the body's output and warms up with the body frozen (the body is unchanged
to the last bit until train.head_warmup of the budget is spent, then moves); the curve's reference+dapt row is that
model pre-trained further on the run's own corpus, then fine-tuned like the others."""

import json

import pytest
import torch
from safetensors.torch import load_file

from pretrainlab.config import load_config
from pretrainlab.curve import run_curve
from pretrainlab.curve_rows import CurveExtras
from pretrainlab.dapt import write_corpus_text
from pretrainlab.data.prepare import prepare_corpus
from pretrainlab.export.hf_import import import_hf
from pretrainlab.runs import load_pretrained
from pretrainlab.tokenizer import train_tokenizer
from pretrainlab.train import pretrain

from conftest import FAST, TINY, TRANSFORMER
from test_import import _bert, _save_hf
from test_semisup import cfg as curve_cfg
from test_semisup import rows, write_task

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = ("the cat dog sat on a mat and ran to house with big small red blue tree under over river near far people "
         "nation state union congress law year war peace document").split()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A tiny BertModel (no MLM head, as all-MiniLM-L6-v2) imported as a run, with a tokenizer for the corpus."""
    import random

    rng = random.Random(0)
    tok = train_tokenizer([" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(300)], vocab_size=100)
    root = tmp_path_factory.mktemp("reference")
    report = import_hf(_save_hf(_bert(tok), tok, root / "hf"), root / "run", quiet=True)
    assert report.mlm_head == "initialised"
    return root / "run"


def test_a_fresh_head_warms_up_with_the_body_frozen(reference, tiny_corpus, tmp_path):
    prepared = tmp_path / "corpus"
    prepare_corpus([str(write_corpus_text(tiny_corpus, tmp_path / "corpus.txt"))], prepared,
                   load_config(None, ["data.min_chars=5"]).data, tokenizer_path=reference / "tokenizer.json")
    settings = TINY + TRANSFORMER + FAST + ["train.budget=10", "train.head_warmup=0.5", "train.checkpoint_every=5",
                                            "train.lr=1e-3"]
    run = pretrain(load_config(None, settings), prepared, tmp_path / "dapt", init=reference)  # the init's architecture
    before = {k: v for k, v in load_pretrained(reference).model.state_dict().items()}
    at = {s: load_file(str(run / "checkpoints" / f"step_{s:07d}" / "model.safetensors")) for s in (5, 10)}
    body = [k for k in at[5] if k.startswith("backbone.")]
    assert len(body) > 10
    for k in body:  # five steps of the head alone: the body to the last bit
        assert torch.equal(at[5][k], before[k]), k
    dense = "lm_head.dense.weight"  # the model's MLM head
    assert not torch.equal(at[5][dense], before[dense])  # the head moved (from the identity it started as)
    assert torch.allclose(at[5][dense], torch.eye(32), atol=0.05)  # ... a little, from the identity
    assert sum(not torch.equal(at[10][k], before[k]) for k in body) > len(body) // 2  # then the body moves
    # a checkpoint's head is trained: continuing from the run warms nothing up
    assert json.loads((run / "corpus.json").read_text())["init"] == str(reference)


def test_the_curve_adapts_the_reference_to_the_runs_corpus(reference, tiny_corpus, tmp_path):
    run = pretrain(load_config(None, TINY + TRANSFORMER + FAST + ["train.budget=3"]), tiny_corpus, tmp_path / "run")
    task = write_task(tmp_path / "great.csv", rows(100, seed=1))
    out = tmp_path / "curve"
    ref_cfg = curve_cfg("data.min_chars=5")
    extras = CurveExtras(reference_dapt="4")
    points = run_curve(run, task, [20], [0], out, curve_cfg(), reference=reference, reference_cfg=ref_cfg,
                       models=["reference", "reference+dapt"], extras=extras)
    assert [p.model for p in points] == ["reference", "reference+dapt"]
    dapt = out / "reference-dapt" / "run"
    summary = json.loads((dapt / "summary.json").read_text())
    assert summary["steps"] == 4 and json.loads((dapt / "corpus.json").read_text())["init"] == str(reference)
    adapted, original = load_pretrained(dapt).backbone.state_dict(), load_pretrained(reference).backbone.state_dict()
    assert any(not torch.equal(adapted[k], original[k]) for k in original)
    assert "| 20 | reference+dapt |" in (out / "curve.md").read_text()
    # the corpus text is the run's, decoded: the reference read what the run was pre-trained on
    assert (out / "reference-dapt" / "corpus.txt").read_text().startswith("document 0.")
    stamp = (dapt / "summary.json").stat().st_mtime_ns
    run_curve(run, task, [20], [0, 1], out, curve_cfg(), reference=reference, reference_cfg=ref_cfg,
              models=["reference+dapt"], extras=extras)  # another seed: the adapted reference is reused
    assert (dapt / "summary.json").stat().st_mtime_ns == stamp
