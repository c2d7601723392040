"""The benchmark grid on tiny everything: runs end to end, resumes without re-running finished
cells, puts every baseline on the same splits, and says how to get the reference when it is missing."""

import csv
import random

import pytest
import torch
import yaml

from pretrainlab import grid as grid_mod
from pretrainlab.baselines import majority_baseline
from pretrainlab.cli import main
from pretrainlab.data.tasks import load_task
from pretrainlab.grid import load_grid, run_grid, split_fingerprint
from pretrainlab.tokenizer import hf_tokenizer, train_tokenizer

from conftest import FAST, FINETUNE, TINY, TRANSFORMER, review_csv, review_docs

WORDS = "the a film movie story actor plot scene was is very good bad great awful dull fun long short".split()
SETTINGS = TINY + TRANSFORMER + FAST + FINETUNE + ["data.vocab_size=120", "data.min_chars=5", "train.eval_every=0",
                                                  "finetune.epochs=1"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid-data")
    rng = random.Random(0)
    (root / "corpus.txt").write_text(review_docs(rng, 200, WORDS), encoding="utf-8")
    (root / "task.csv").write_text(review_csv(rng, 80, words=WORDS), encoding="utf-8")
    return root


def _write_grid(path, files, out, **extra):
    grid = {"out": str(out), "corpus": [str(files / "corpus.txt")], "settings": SETTINGS,
            "cells": {"transformer-mlm": ["model.backbone=transformer"], "cnn-mlm": ["model.backbone=cnn"]},
            "budgets": [3], "tasks": [str(files / "task.csv")], "seeds": [0, 1], "random_init": True,
            "reference": False, **extra}
    path.write_text(yaml.safe_dump(grid), encoding="utf-8")
    return path


def test_tiny_grid_runs_and_resumes(files, tmp_path, monkeypatch):
    cont = [{"name": "tf+task", "init": "transformer-mlm@3", "corpus": f"task:{files / 'task.csv'}", "budget": 2}]
    config = _write_grid(tmp_path / "grid.yaml", files, tmp_path / "out", continued=cont,
                         settings=SETTINGS + ["finetune.max_train=40"])  # the continued corpus: still all of train
    result = run_grid(config)
    kinds = sorted(r.kind for r in result.rows)
    assert kinds == ["continued", "majority", "pretrained", "pretrained", "random-init", "random-init", "tfidf"]
    assert (tmp_path / "out" / "results.md").is_file() and (tmp_path / "out" / "plots" / "task.png").is_file()
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 7
    assert "| transformer-mlm, 3 pre-training | pretrained |" in result.markdown
    assert "Command: `pretrainlab benchmark --config" in result.markdown
    # the continued run's corpus is the task's training split only
    task = load_task(files / "task.csv")
    seen = (tmp_path / "out" / "continued" / "tf-task" / "task-train.txt").read_text().splitlines()
    assert sorted(seen) == sorted(task.train.texts) and not set(seen) & set(task.test.texts)

    # same splits everywhere: one fingerprint, the one of the task as fine-tuning loads it
    assert {r.split for r in result.rows} == {split_fingerprint(load_task(files / "task.csv", max_train=40))}
    majority = next(r for r in result.rows if r.kind == "majority")
    assert majority.accuracy == pytest.approx(majority_baseline(load_task(files / "task.csv", max_train=40)).accuracy)
    random_rows = [r for r in result.rows if r.kind == "random-init"]
    assert sorted(r.name for r in random_rows) == ["cnn 2L/32, random init", "transformer-bert 2L/32, random init"]

    # a second call: nothing is trained again, the same table comes back
    def boom(*a, **k):
        raise AssertionError("a finished cell was run again")

    for name in ("pretrain", "finetune", "majority_baseline", "tfidf_baseline"):
        monkeypatch.setattr(grid_mod, name, boom)
    again = run_grid(config)
    assert again.markdown == result.markdown

    # a new budget only runs the new cells
    calls = []
    monkeypatch.undo()
    real_pretrain = grid_mod.pretrain
    monkeypatch.setattr(grid_mod, "pretrain", lambda cfg, corpus, out, **k: calls.append(out.name) or
                        real_pretrain(cfg, corpus, out, **k))
    _write_grid(config, files, tmp_path / "out", continued=cont, budgets=[3, 4], settings=SETTINGS + ["finetune.max_train=40"])
    more = run_grid(config)
    assert sorted(calls) == ["cnn-mlm@4", "transformer-mlm@4"]
    assert len([r for r in more.rows if r.kind == "pretrained"]) == 4


def test_reference_imported_and_continued(files, tmp_path, monkeypatch):
    import transformers

    rng = random.Random(1)
    tok = train_tokenizer([" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(200)], vocab_size=80)
    hf = transformers.BertModel(transformers.BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64))
    ref = tmp_path / "fake-minilm"
    hf.save_pretrained(str(ref))
    hf_tokenizer(tok).save_pretrained(str(ref))
    monkeypatch.setattr(grid_mod, "_reference_path", lambda: ref)
    cont = [{"name": "ref+task", "init": "reference", "corpus": f"task:{files / 'task.csv'}", "budget": 2}]
    config = _write_grid(tmp_path / "grid.yaml", files, tmp_path / "out", cells={"t": ["model.backbone=transformer"]},
                         random_init=True, reference=True, seeds=[0], continued=cont,
                         reference_settings=["finetune.lr=0.002"],
                         order=["baselines", "random_init", "reference", "continued", "cells"])
    result = run_grid(config)
    kinds = ["continued", "majority", "pretrained", "random-init", "reference", "tfidf"]
    assert sorted(r.kind for r in result.rows) == kinds
    assert len({r.split for r in result.rows}) == 1
    assert (tmp_path / "out" / "reference" / "all-MiniLM-L6-v2" / "imported.json").is_file()


def test_missing_reference_says_how_to_install(files, tmp_path, monkeypatch):
    monkeypatch.setattr(grid_mod, "_reference_path", lambda: None)
    config = _write_grid(tmp_path / "grid.yaml", files, tmp_path / "out", cells={"t": []}, reference=True,
                         random_init=False, seeds=[0])
    assert main(["benchmark", "--config", str(config)]) == 0
    text = (tmp_path / "out" / "results.md").read_text()
    assert "pip install '.[reference]'" in text


def test_grid_config_errors(tmp_path, files):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"cells": {"a": []}}))
    with pytest.raises(grid_mod.ConfigError, match="budgets"):
        load_grid(bad)
    bad.write_text(yaml.safe_dump({"cells": {"a": ["model.backbone=lstm"]}, "budgets": [1]}))
    with pytest.raises(grid_mod.ConfigError, match="model.backbone"):
        load_grid(bad)
    bad.write_text(yaml.safe_dump({"cells": {"a": []}, "budgets": [1], "typo": 1}))
    with pytest.raises(grid_mod.ConfigError, match="unknown key"):
        load_grid(bad)
    for order in (["cells", "cells"], ["cells", "distill"]):
        bad.write_text(yaml.safe_dump({"cells": {"a": []}, "budgets": [1], "order": order}))
        with pytest.raises(grid_mod.ConfigError, match="order"):
            load_grid(bad)
    bad.write_text(yaml.safe_dump({"cells": {"a": []}, "budgets": [1], "order": ["cells", "baselines"]}))
    assert load_grid(bad).order == ("cells", "baselines", "random_init", "reference", "continued", "distilled")
    bad.write_text(yaml.safe_dump({"distilled": [{"name": "s", "teacher": "reference"}]}))  # distillation alone
    assert load_grid(bad).cells == {} and load_grid(bad).distilled[0].student == "preset:tiny"
    bad.write_text(yaml.safe_dump({"budgets": [1], "cells": {}}))
    with pytest.raises(grid_mod.ConfigError, match="cells"):
        load_grid(bad)
    # read as run configs are (config.from_mapping): the field's type, the closest key, GridConfig's own defaults
    bad.write_text(yaml.safe_dump({"cells": {"a": []}, "budgets": [1], "seeds": ["x"]}))
    with pytest.raises(grid_mod.ConfigError, match=r"seeds expects a list of int, got \['x'\]; e.g. seeds: \[0\]"):
        load_grid(bad)
    cont = {"name": "c", "init": "a@1", "corpus": "task:mr", "budget": 1, "setings": []}
    bad.write_text(yaml.safe_dump({"cells": {"a": []}, "budgets": [1], "continued": [cont]}))
    with pytest.raises(grid_mod.ConfigError, match=r"continued\[0\]: unknown key setings; did you mean settings"):
        load_grid(bad)
    bad.write_text(yaml.safe_dump({"cells": {"a": []}, "budgets": [1], "settings": None,
                                   "continued": [{**cont, "setings": None}]}).replace("setings", "settings"))
    grid = load_grid(bad)
    assert grid.settings == () and grid.continued[0].corpus == ("task:mr",) and grid.continued[0].budget == "1"
    assert (grid.corpus, grid.tasks, grid.seeds, grid.out) == (("sotu",), ("mr",), (0,), "runs/grid")
    for entry, match in (({"name": "s"}, "lacks teacher"), ({"name": "s", "teacher": "a@1", "tokeniser": "x"}, "tokeniser"),
                         ({"name": "s", "teacher": "a@1", "settings": ["distill.temperature=0"]}, "temperature"),
                         ({"name": "s", "teacher": "a@1", "student": "a@1", "settings": ["model.backbone=rnn"]},
                          "architecture is its own")):
        bad.write_text(yaml.safe_dump({"cells": {"a": []}, "budgets": [1], "distilled": [entry]}))
        with pytest.raises(grid_mod.ConfigError, match=match):
            load_grid(bad)


def test_a_failing_cell_does_not_stop_the_grid(files, tmp_path, monkeypatch):
    from pretrainlab.errors import TrainingError

    real = grid_mod.pretrain

    def fails_for_cnn(cfg, corpus, out, **k):
        if cfg.model.backbone == "cnn":
            raise TrainingError("loss became nan at step 2")
        return real(cfg, corpus, out, **k)

    monkeypatch.setattr(grid_mod, "pretrain", fails_for_cnn)
    config = _write_grid(tmp_path / "grid.yaml", files, tmp_path / "out", random_init=False, seeds=[0])
    result = run_grid(config)
    assert [r.cell for r in result.rows if r.kind == "pretrained"] == ["transformer-mlm"]
    assert "cnn-mlm@3 failed and is missing from the table: loss became nan at step 2" in result.markdown


def test_distilled_students_get_rows(files, tmp_path, monkeypatch):
    """A cell's fine-tuned twin teaches a random-init RNN and the cell's own pretrained backbone; each gets a
    row on the grid's splits, with the teacher and the agreement in the table's notes; a rerun runs nothing."""
    student = TINY + ["model.backbone=rnn", "distill.budget=6", "distill.batch_size=16", "distill.max_texts=60",
                      "distill.throughput_texts=8"]
    distilled = [{"name": "tiny-rnn", "teacher": "t@3", "settings": student},
                 {"name": "t-student", "teacher": "t@3", "student": "t@3", "texts": [str(files / "corpus.txt")],
                  "settings": ["distill.budget=4", "distill.throughput_texts=8"]}]
    config = _write_grid(tmp_path / "grid.yaml", files, tmp_path / "out", cells={"t": ["model.backbone=transformer"]},
                         random_init=False, seeds=[0, 1], distilled=distilled,
                         settings=SETTINGS + ["finetune.max_train=40"])
    result = run_grid(config)
    rows = {r.name: r for r in result.rows if r.kind == "distilled"}
    assert sorted(rows) == ["t-student (distilled from t@3)", "tiny-rnn (distilled from t@3)"]
    assert {r.split for r in result.rows} == {split_fingerprint(load_task(files / "task.csv", max_train=40))}
    rnn = rows["tiny-rnn (distilled from t@3)"]
    assert rnn.seeds == [0, 1] and len(rnn.accuracy_values) == 2 and rnn.parameters > 0
    assert "- distilled: tiny-rnn on" in result.markdown and "agreement" in result.markdown
    teacher = tmp_path / "out" / "teachers" / "t@3--task"
    assert (teacher / "model.safetensors").is_file()
    report = (tmp_path / "out" / "distilled" / "tiny-rnn" / "task" / "report.json").read_text()
    assert '"student_backbone": "rnn"' in report
    assert list((tmp_path / "out" / "teacher-logits").iterdir())  # the grid's own logits cache

    def boom(*a, **k):
        raise AssertionError("a finished distillation was run again")

    monkeypatch.setattr("pretrainlab.distill.distill", boom)
    monkeypatch.setattr(grid_mod, "finetune", boom)
    assert run_grid(config).markdown == result.markdown
