"""The demo: its task-adaptive corpus, and the whole job end to end on tiny local data (no network)."""

import random
import re

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pretrainlab.data import sources
from pretrainlab.data.readers import read_documents
from pretrainlab.demo import run_demo, write_task_text

from conftest import FINETUNE, TINY, TRANSFORMER, review_csv, review_docs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_task_text_becomes_documents_of_its_training_sentences(tmp_path):
    texts = [f"sentence number {i} is\nhere ." for i in range(45)]
    path = write_task_text(texts, tmp_path / "train.txt", per_doc=20)
    docs = list(read_documents([path]))
    assert len(docs) == 3  # 20 + 20 + 5 sentences, blank lines between
    lines = [line for d in docs for line in d.splitlines()]
    assert lines == [" ".join(t.split()) for t in texts]  # every sentence once, in order, on its own line


def test_demo_end_to_end_on_tiny_local_data(tmp_path, monkeypatch, capsys):
    """run_demo on a local corpus and task file, a tiny model, one pre-training step and one epoch."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("the demo test must not fetch a source")

    monkeypatch.setattr(sources, "get_source", no_network)
    monkeypatch.setattr(sources, "fetch", no_network)
    rng = random.Random(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(review_docs(rng, 120), encoding="utf-8")
    task_file = tmp_path / "mr.csv"
    task_file.write_text(review_csv(rng, 100), encoding="utf-8")
    settings = TINY + TRANSFORMER + FINETUNE + [
        "train.budget=1", "train.batch_size=4", "train.eval_batches=1", "data.vocab_size=120", "data.min_chars=5"]
    out = run_demo(tmp_path / "demo", seeds=(0, 1), corpus=corpus, task_file=task_file, labels=("20", "all"),
                   settings=tuple(settings + ["finetune.epochs=1", "finetune.min_steps=2"]))

    # the curve: every model at every label count, printed as written, with the one-sentence reading
    results = (out / "results.md").read_text(encoding="utf-8")
    assert results in capsys.readouterr().out  # printed as written
    assert re.search(r"^\| labels \| pretrained \| random-init \| tfidf \| majority \| pretrained - random-init \|$",
                     results, re.M), results
    for n in (20, 80):  # 100 rows, 10% validation and 10% test held out by the task's split: 80 training
        cell = r" [01]\.\d{4} ± [01]\.\d{4} \[[01]\.\d{3}, [01]\.\d{3}\] \|"  # mean ± std [95% interval]
        assert re.search(rf"^\| {n} \|({cell}){{4}} [+-]\d\.\d{{4}} \|$", results, re.M), n
    assert re.search(r"What the figure shows: pre-training is ahead of its random-init twin on the mean at [0-2] of 2 "
                     r"label counts .*, and below TF-IDF \+ logistic regression at [0-2] of 2\.", results)
    assert (out / "curve" / "curve.png").stat().st_size > 0 and (out / "curve" / "curve.csv").exists()
    assert "Pre-training: 1 steps" in results

    # the export: loads with transformers offline, and the snippet printed one of the task's labels
    printed = re.search(r"the snippet printed '(\w+)' for 'This is a great movie!'", results)
    assert printed and printed.group(1) in ("neg", "pos"), results
    hf = out / "hf-model"
    model = AutoModelForSequenceClassification.from_pretrained(hf).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf)
    with torch.no_grad():
        logits = model(**tokenizer("This is a great movie!", return_tensors="pt")).logits
    assert model.config.id2label[int(logits.argmax())] == printed.group(1)
    assert float(re.search(r"max \|logit difference\| vs pretrainlab (\S+)\.\n", results).group(1)) <= 1e-4
