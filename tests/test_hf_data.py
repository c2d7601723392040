"""Hugging Face data on disk (issue #17 finding 9): save_to_disk folders and Parquet files as tasks and
corpora, read with pyarrow; a Hub name gets a clear error (nothing is downloaded).

The fixtures in tests/data/hf were written by the real `datasets` package (tests/data/hf/make.py), which
pretrainlab never imports."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from pretrainlab.cli import main
from pretrainlab.config import DataConfig
from pretrainlab.data.prepare import prepare_corpus, train_tokenizer_on_files
from pretrainlab.data.readers import read_documents, resolve_inputs
from pretrainlab.data.tasks import load_task
from pretrainlab.errors import CorpusError, TaskError

from conftest import FINETUNE
from test_finetune import make_run

pa = pytest.importorskip("pyarrow")
HF = Path(__file__).parent / "data" / "hf"
REVIEWS, PARQUET = HF / "reviews", HF / "reviews-parquet"

pytestmark = pytest.mark.usefixtures("one_thread")


def arrow_column(path: Path, column: str) -> list:
    """A column of a save_to_disk Arrow file, read with pyarrow alone."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all().column(column).to_pylist()


def test_a_save_to_disk_folder_is_a_task_with_its_own_splits_and_class_names():
    task = load_task(REVIEWS)
    assert (task.name, task.split_kind, task.label_names) == ("reviews", "file", ["neg", "pos"])
    assert [len(task.split(s)) for s in ("train", "validation", "test")] == [40, 10, 10]
    assert task.train.texts == arrow_column(REVIEWS / "train/data-00000-of-00001.arrow", "text")
    names = ["neg", "pos"]
    assert [task.label_names[y] for y in task.test.labels] == [names[y] for y in
                                                               arrow_column(REVIEWS / "test/data-00000-of-00001.arrow", "label")]
    assert task.notes == ["skipped split 'unsupervised' (not train, validation or test)"]
    stars = load_task(REVIEWS, label_column="stars")  # finetune.label_column: another column is the label
    assert stars.label_names == [1, 5] and len(stars.train) == 40


def test_parquet_files_are_tasks_split_by_their_names():
    task = load_task(PARQUET)
    assert task.label_names == ["neg", "pos"]  # the ClassLabel names from the Parquet schema's metadata
    assert (len(task.train) + len(task.validation), len(task.test)) == (40, 10)
    assert "the file has no validation split; drew 10% of train for validation" in task.notes
    one = load_task(PARQUET / "train-00000-of-00001.parquet", text_column="text", label_column="label")
    assert one.split_kind == "stratified" and len(one.train) + len(one.validation) + len(one.test) == 40


def test_rows_without_a_label_are_dropped_with_a_note(tmp_path):
    """GLUE-style test splits are labelled -1 (ClassLabel for "no label"): they cannot be scored."""
    folder = shutil.copytree(REVIEWS, tmp_path / "glue")
    test = folder / "test/data-00000-of-00001.arrow"
    with pa.memory_map(str(test)) as source:
        table = pa.ipc.open_stream(source).read_all()
    table = table.set_column(table.schema.get_field_index("label"), "label", pa.array([-1] * len(table), pa.int64()))
    with pa.OSFile(str(test), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    task = load_task(folder)
    assert "dropped 10 rows of test without a label (label = -1)" in task.notes
    assert "the file has no test split; drew 10% of train for test" in task.notes


def test_a_hub_name_says_to_save_to_disk_elsewhere(tmp_path, capsys):
    with pytest.raises(TaskError, match=r"task 'stanfordnlp/imdb' looks like a Hugging Face Hub dataset, and nothing "
                                        r"is downloaded here .*save_to_disk\('imdb'\).* pass it \(imdb/\)"):
        load_task("stanfordnlp/imdb")
    run = make_run(tmp_path / "run")
    assert main(["finetune", str(run), "--task", "stanfordnlp/imdb", "--out", str(tmp_path / "ft")]) == 2
    last = capsys.readouterr().err.rstrip("\n").splitlines()[-1]  # one line, no traceback
    assert last.startswith("error: task 'stanfordnlp/imdb' looks like a Hugging Face Hub dataset") and "pass it" in last
    with pytest.raises(CorpusError, match=r"'hf:wikitext' looks like a Hugging Face Hub dataset"):
        resolve_inputs(["hf:wikitext"])
    for local in ("imdb", "data/reviews.csv", str(tmp_path / "run" / "missing")):  # not Hub names
        with pytest.raises(TaskError, match="neither a file nor a built-in task"):
            load_task(local)


def test_without_pyarrow_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(TaskError, match=r"needs pyarrow; pip install 'pretrainlab\[hf-data\]'"):
        load_task(REVIEWS)
    with pytest.raises(CorpusError, match=r"needs pyarrow; pip install 'pretrainlab\[hf-data\]'"):
        list(read_documents(resolve_inputs([PARQUET])))


def test_save_to_disk_folders_and_parquet_are_corpora(tmp_path):
    """As a corpus a DatasetDict is its train split; documents are rows, dropped.jsonl names file and row."""
    train_texts = arrow_column(REVIEWS / "train/data-00000-of-00001.arrow", "text")
    assert list(read_documents(resolve_inputs([REVIEWS]))) == train_texts
    assert list(read_documents(resolve_inputs([PARQUET / "train-00000-of-00001.parquet"]))) == train_texts
    with pytest.raises(CorpusError, match=r"no column 'body' \(columns: 'text', 'label', 'stars'\); pass --set "
                                          r"data.text_field=NAME"):
        list(read_documents(resolve_inputs([PARQUET]), text_field="body"))
    cfg = DataConfig(vocab_size=120, min_chars=5, seq_len=8)
    tok = train_tokenizer_on_files([REVIEWS], tmp_path / "tok.json", cfg)
    report = prepare_corpus([REVIEWS, PARQUET / "test-00000-of-00001.parquet"], tmp_path / "out", cfg,
                            tokenizer_path=tok)
    assert (report.docs_read, report.n_docs) == (50, 50)
    parquet = PARQUET / "test-00000-of-00001.parquet"
    copy = tmp_path / "copy.parquet"  # the first test row again: an exact duplicate, named by file and row
    pa.parquet.write_table(pa.parquet.read_table(str(parquet)).slice(0, 1), str(copy))
    prepare_corpus([REVIEWS, parquet, copy], tmp_path / "dup", cfg, tokenizer_path=tok)
    dropped = [json.loads(x) for x in (tmp_path / "dup/dropped.jsonl").read_text().splitlines()]
    assert dropped == [{"source": str(copy.resolve()), "line": 1, "reason": "exact duplicate",
                        "of": {"source": str(parquet.resolve()), "line": 1}, "similarity": 1.0}]


def test_finetune_on_a_save_to_disk_folder(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    sets = ["train.precision=fp32", "train.progress=false", *FINETUNE, "finetune.epochs=1",
            "finetune.text_column=text", "finetune.label_column=stars"]
    assert main(["finetune", str(run), "--task", str(REVIEWS), "--out", str(tmp_path / "ft"), "--seeds", "0",
                 *sum((["--set", s] for s in sets), [])]) == 0
    assert "reviews: test accuracy" in capsys.readouterr().out
    saved = json.loads((tmp_path / "ft/classifier.json").read_text())
    assert saved["labels"] == [1, 5] and saved["task_source"] == str(REVIEWS.resolve())
