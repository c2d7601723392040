"""Self-training and distilled students inside the learning curve: the pool holds no validation, test or in-budget
text, every soft label comes from the teacher of the same label count and seed, no label outside the N is read
(corrupting them changes nothing), an interrupted curve resumes to the same curve.csv, and bad input is refused
before any work."""

import json
import os
import random
import re

import pytest
import torch

from pretrainlab import curve as C
from pretrainlab import curve_rows as R
from pretrainlab.cli import main
from pretrainlab.config import ConfigError, load_config
from pretrainlab.curve import picked_examples, run_curve, subsample
from pretrainlab.curve_rows import CurveExtras
from pretrainlab.data.tasks import as_task
from pretrainlab.data.text import normalize
from pretrainlab.distill import recipe
from pretrainlab.errors import CorpusError, Interrupted
from pretrainlab.runs import load_pretrained
from pretrainlab.seeds import EpochBatches
from pretrainlab.semisup import curve_pool, curve_student, unlabelled_inputs

from test_finetune import SETTINGS, WORDS, make_run

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["finetune.epochs=2", "finetune.min_steps=4", "finetune.patience=0", "selftrain.epochs=1", "distill.epochs=1",
        "distill.batch_size=16", "distill.throughput_texts=8", "distill.max_unk=0.5", "train.deterministic=true"]
"""Tiny and exact (the test run's tokenizer knows the words, not the numbered endings: max_unk raised)."""
EXTRAS = CurveExtras(self_train=True, student="preset:tiny")


def rows(n, seed, split=None):
    """(text, label, split): label pos exactly when 'great' appears; each text unique."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(6)]
        if i % 2:
            words[rng.randrange(6)] = "great"
        where = split or ("test" if i % 10 in (0, 5) else "validation" if i % 10 in (1, 6) else "train")
        out.append((" ".join(words) + f" s{seed}n{i}", "pos" if i % 2 else "neg", where))
    return out


def write_task(path, table):
    path.write_text("text,label,split\n" + "".join(f"{t},{y},{s}\n" for t, y, s in table), encoding="utf-8")
    return path


def cfg(*extra):
    return load_config(None, SETTINGS + FAST + list(extra))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny run, a task with its own splits (120 train, 40 validation, 40 test, both labels in each) and
    unlabelled text."""
    root = tmp_path_factory.mktemp("semi")
    run = make_run(root / "run")
    table = rows(200, seed=1)
    write_task(root / "great.csv", table)
    (root / "more.txt").write_text("\n\n".join(t + "." for t, _, _ in rows(40, seed=2)) + "\n", encoding="utf-8")
    return root, run, table


def norm(text):
    return normalize(text).lower()


# --------------------------------------------------------------------------- the pool


def test_the_pool_never_holds_a_validation_test_or_in_budget_text(world, tmp_path):
    root, _, table = world
    task = as_task(root / "great.csv", cfg().finetune)
    sub, picked = subsample(task, 40, 0), picked_examples(task, 40, 0)
    # an input holding in-budget texts, texts of the task's validation split and new ones: only the new ones join
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("\n\n".join(sub.train.texts[:3] + sub.validation.texts[:2] + task.validation.texts[:2]
                                 + [t for t, _, _ in rows(10, seed=3)]) + "\n", encoding="utf-8")
    inputs = unlabelled_inputs([str(mixed), str(root / "more.txt")], task, cfg().finetune, cfg().data, 0)
    pool = curve_pool(task.train.texts, picked, inputs, 7)
    forbidden = {norm(t) for t in sub.train.texts + sub.validation.texts + task.validation.texts + task.test.texts}
    assert not {norm(t) for t in pool.texts} & forbidden
    assert len(pool.texts) == (120 - 40) + 10 + 40  # the training split outside the N, then the new texts
    assert inputs.labelled_dropped == 5 and inputs.held_out_dropped == 2
    capped = curve_pool(task.train.texts, picked, inputs, 7, max_texts=50)  # distill.max_texts: a sample by hash
    assert len(capped.texts) == 50 and set(capped.texts) <= set(pool.texts) and capped.sampled_from == len(pool.texts)

    # a test text anywhere in an input, also in other case and spacing (exact match after normalisation): refused,
    # naming the input and the count
    leaky = tmp_path / "leaky.txt"
    words = task.test.texts[0].upper().split()
    disguised = "  " + "   ".join(words[:3]) + "\n" + " ".join(words[3:]) + " "  # one document over two lines
    leaky.write_text("\n\n".join([t for t, _, _ in rows(5, seed=4)] + [disguised, task.test.texts[1]]) + "\n",
                     encoding="utf-8")
    with pytest.raises(CorpusError, match=r"--unlabelled .*leaky.txt: it holds 2 of great's 40 test texts"):
        unlabelled_inputs([str(leaky)], task, cfg().finetune, cfg().data, 0)
    only_train = "\n\n".join(task.train.texts[:30])
    for bad, match in (("", "the file is empty"), (only_train, "no usable text: none of its 30")):
        path = tmp_path / "bad.txt"
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(CorpusError, match=rf"bad.txt: .*{match}"):
            unlabelled_inputs([str(path)], task, cfg().finetune, cfg().data, 0)


# --------------------------------------------------------------------------- the rows


def test_self_trained_and_distilled_rows_learn_from_the_teacher_of_their_count_and_seed(world, tmp_path, monkeypatch):
    root, run, _ = world
    seen = []
    real = recipe.label_texts

    def recording(teacher, texts, *a, **kw):
        seen.append((teacher.meta["curve"], list(texts)))
        return real(teacher, texts, *a, **kw)

    monkeypatch.setattr(recipe, "label_texts", recording)
    out = tmp_path / "curve"
    extras = CurveExtras(self_train=True, student="preset:tiny", unlabelled=(str(root / "more.txt"),))
    points = run_curve(run, root / "great.csv", [20, 40], [0, 1], out, cfg(), extras=extras)
    task = as_task(root / "great.csv", cfg().finetune)
    models = ["pretrained", "pretrained+self-train", "pretrained->student", "pretrained+self-train->student",
              "random-init", "tfidf", "majority"]
    assert sorted((p.labels, p.model, p.seed) for p in points) == sorted(
        (n, m, s) for n in (20, 40) for s in (0, 1) for m in models)
    # per count and seed one self-training and one student labelled by that count's and seed's fine-tuned teacher,
    # and one student by its self-trained one, on that subsample's training labels and the pool of that subsample
    assert len(seen) == 12
    for n in (20, 40):
        for s in (0, 1):
            sub, picked = subsample(task, n, s), picked_examples(task, n, s)
            texts = sub.train.texts + [t for i, t in enumerate(task.train.texts) if i not in set(picked)]
            for teacher, times in (("pretrained", 2), ("pretrained+self-train", 1)):
                mine = [t for who, t in seen if who == {"labels": n, "model": teacher, "seed": s}]
                assert len(mine) == times and all(t[:len(texts)] == texts and len(t) == len(texts) + 40 for t in mine)
    details = C.read_details(out / C.DETAILS_FILE)
    taught = details[(40, "pretrained+self-train", 1)]
    assert taught["teacher"].endswith("teachers/40-pretrained-seed1") and taught["pool"] == 80 + 40
    assert details[(40, "pretrained->student", 1)]["teacher_logits_reused"] == 32 + 120  # the self-training's labels
    student = details[(40, "pretrained->student", 0)]
    assert student["parameters"] > details[(40, "pretrained", 0)]["parameters"]  # a preset CNN vs the d=32 test model
    assert student["texts_per_s"] > 0 and 0 <= student["val_accuracy"] <= 1
    assert not (out / "teachers").exists() or not any((out / "teachers").iterdir())  # each went when its rows were done
    assert not any((out / "work").iterdir())
    md = (out / "curve.md").read_text()
    assert "| 40 | pretrained+self-train |" in md and "| pretrained |" in md and "texts/s" in md


def record_students(monkeypatch) -> list:
    """The students the curve's X->student rows start from, in order (a spy on curve_rows.distil_student)."""
    started = []
    real = R.distil_student

    def recording(teacher, student, *a, **kw):
        started.append(student)
        return real(teacher, student, *a, **kw)

    monkeypatch.setattr(R, "distil_student", recording)
    return started


def test_a_students_run_gives_its_pretrained_backbone_and_a_curve_keeps_to_one_student(world, tmp_path, monkeypatch):
    """--student RUN: the X->student row starts from the run's weights and tokenizer (a preset: random init);
    its details name the run; a curve resumed with another student is refused."""
    root, run, _ = world
    started = record_students(monkeypatch)
    out, args = tmp_path / "curve", (run, root / "great.csv", [20], [0])
    run_curve(*args, out, cfg(), models=["pretrained->student"], extras=CurveExtras(student=str(run)))
    (student,) = started
    pre = load_pretrained(run)
    assert student.source == str(run.resolve()) and student.tokenizer.get_vocab() == pre.tokenizer.get_vocab()
    weights = pre.backbone.state_dict()
    assert student.backbone.state_dict().keys() == weights.keys()
    for name, w in student.backbone.state_dict().items():
        torch.testing.assert_close(w, weights[name], rtol=0, atol=0)
    details = C.read_details(out / C.DETAILS_FILE)
    row = details[(20, "pretrained->student", 0)]
    assert row["student"] == str(run.resolve())
    assert row["parameters"] == details[(20, "pretrained", 0)]["parameters"]  # the run's backbone + the same head
    settings = json.loads((out / "curve-settings.json").read_text())["student"]
    assert (settings["student"], settings["backbone"]) == (str(run.resolve()), None)
    preset = curve_student("preset:tiny", None, cfg(), run / "tokenizer.json")
    assert preset.backbone is None and preset.model_cfg.backbone == "cnn"  # random init, another architecture

    relative = os.path.relpath(run)  # the same run by another name: the curve is done
    assert len(run_curve(*args, out, cfg(), models=["pretrained->student"], extras=CurveExtras(student=relative))) == 2
    with pytest.raises(ConfigError, match=r"holds a learning curve with other settings \(.*curve-settings.json: "
                       r"student\)"):
        run_curve(*args, out, cfg(), models=["pretrained->student"], extras=CurveExtras(student="preset:tiny"))
    assert len(started) == 1


def test_labels_outside_the_budget_are_never_read(world, tmp_path, monkeypatch):
    """Every label of the training split outside the N (and of the unused validation split) flipped: the same rows."""
    root, run, table = world
    task = as_task(root / "great.csv", cfg().finetune)
    order = {0: C.stratified_order(task.train.labels, 0)}
    monkeypatch.setattr(C, "stratified_order", lambda labels, seed: order[seed])  # the subsample of the clean labels
    kept = {task.train.texts[i] for i in picked_examples(task, 30, 0)}
    flip = {"pos": "neg", "neg": "pos"}
    corrupted = [(t, y if s == "test" or t in kept else flip[y], s) for t, y, s in table]
    assert sum(a[1] != b[1] for a, b in zip(table, corrupted)) == (120 - 30) + 40
    tasks = {"clean": root / "great.csv", "corrupted": write_task(tmp_path / "great.csv", corrupted)}
    out = {}
    for name, path in tasks.items():
        run_curve(run, path, [30], [0], tmp_path / name, cfg(), run_name="run", extras=EXTRAS)
        out[name] = (tmp_path / name / "curve.csv").read_text()
    assert out["clean"] == out["corrupted"] and out["clean"].count("\n") == 1 + 7  # pretrained+self-train->student too


KILLED_IN = {  # the row's trainer, its work directory's checkpoints, the rows scored before it, a setting of it
    "self_train": ("30-pretrained+self-train-seed0/round-1/seeds/seed-0/checkpoints/step_*", ["pretrained"],
                   ("selftrain.temperature=2", "self_train")),
    "distil_student": ("30-pretrained-student-seed0/seeds/seed-0/checkpoints/step_*",
                       ["pretrained", "pretrained+self-train"], ("distill.temperature=3", "student")),
}


@pytest.mark.parametrize("row", KILLED_IN)
def test_an_interrupted_curve_resumes_to_the_same_csv(world, tmp_path, monkeypatch, row):
    root, run, _ = world
    checkpoints, before, (other, section) = KILLED_IN[row]
    args = (run, root / "great.csv", [30], [0])
    run_curve(*args, tmp_path / "straight", cfg(), run_name="run", extras=EXTRAS)
    state = {"armed": False, "calls": 0}
    real_row, real_call = getattr(R, row), EpochBatches.__call__

    def armed(*a, **kw):
        state["armed"] = True
        try:
            return real_row(*a, **kw)
        finally:
            state["armed"] = False

    def dies_in_the_row(self):
        if state["armed"]:
            state["calls"] += 1
            if state["calls"] == 3:
                raise KeyboardInterrupt
        return real_call(self)

    monkeypatch.setattr(R, row, armed)
    monkeypatch.setattr(EpochBatches, "__call__", dies_in_the_row)
    with pytest.raises(Interrupted):
        run_curve(*args, tmp_path / "killed", cfg(), run_name="run", extras=EXTRAS)
    killed = tmp_path / "killed"
    assert (killed / "teachers" / "30-pretrained-seed0" / "classifier.json").is_file()  # kept for the rows to come
    kept_self_trained = (killed / "teachers" / "30-pretrained+self-train-seed0" / "classifier.json").is_file()
    assert kept_self_trained == (row == "distil_student")  # scored, and teaching pretrained+self-train->student
    assert list((killed / "work").glob(checkpoints))
    assert [line.split(",")[1] for line in (killed / "curve.csv").read_text().splitlines()[1:]] == before
    state["calls"] = -10**9  # no more kills
    run_curve(*args, killed, cfg(), run_name="run", extras=EXTRAS)
    assert (killed / "curve.csv").read_text() == (tmp_path / "straight" / "curve.csv").read_text()
    # a row computed with other settings is refused
    with pytest.raises(ConfigError, match=f"other settings .*{section}"):
        run_curve(*args, killed, cfg(other), run_name="run", extras=EXTRAS)
    if row == "distil_student":  # a curve from before distill.evals_per_epoch: its students validated once a pass
        meta = killed / "curve-settings.json"
        saved = json.loads(meta.read_text())
        del saved["student"]["distill"]["evals_per_epoch"]
        meta.write_text(json.dumps(saved))
        with pytest.raises(ConfigError, match=re.escape("(to continue it: --set distill.evals_per_epoch=1)")):
            run_curve(*args, killed, cfg(), run_name="run", extras=EXTRAS)
        run_curve(*args, killed, cfg("distill.evals_per_epoch=1"), run_name="run", extras=EXTRAS)
        assert (killed / "curve.csv").read_text() == (tmp_path / "straight" / "curve.csv").read_text()


# --------------------------------------------------------------------------- bad input, before any work


def test_bad_extra_rows_are_refused_before_any_work(world, tmp_path, capsys):
    root, run, _ = world

    def curve(*extra):
        out = tmp_path / "out"
        code = main(["curve", str(run), "--task", str(root / "great.csv"), "--labels", "20", "--seeds", "0",
                     "--out", str(out), *extra])
        assert not out.exists()  # nothing was trained or written
        return code, capsys.readouterr().err

    code, err = curve("--student", "preset:huge")
    assert code == 2 and "--student preset:huge: no such preset; a curve's student is preset:tiny, preset:mini" in err
    # a pre-training run fits, but not a path that is none, nor a run with a preset's backbone
    (tmp_path / "empty").mkdir()
    for path, why in ((tmp_path / "missing", ": no such run directory"),
                      (tmp_path / "empty", " is not a pretrainlab run directory (no config.yaml)")):
        code, err = curve("--student", str(path))
        assert code == 2 and f"--student {path}{why}" in err
        assert "a curve's student is preset:tiny" in err and "or a pre-training run directory" in err
    code, err = curve("--student", str(run), "--student-backbone", "rnn")
    assert code == 2 and (f"--student-backbone rnn goes with a random-init student (--student preset:NAME); the student "
                          f"{run} is a pre-training run, whose architecture is its own") in err
    code, err = curve("--student", "preset:base", "--student-backbone", "rnn")
    assert code == 2 and "model.preset=base has no RNN size matched to it" in err
    with pytest.raises(SystemExit):
        curve("--student", "preset:tiny", "--student-backbone", "decoder")
    assert "invalid choice: 'decoder' (choose from 'transformer', 'rnn', 'cnn')" in capsys.readouterr().err
    code, err = curve("--unlabelled", str(root / "more.txt"))
    assert code == 2 and "--unlabelled feeds the pool of the --self-train and --student rows" in err
    code, err = curve("--reference-dapt", "2m")
    assert code == 2 and "--reference-dapt BUDGET adapts the --reference checkpoint" in err
    code, err = curve("--self-train", "--unlabelled", str(tmp_path / "missing.txt"))
    assert code == 2 and "missing.txt" in err
    code, err = curve("--models", "pretrained+self-train")
    assert code == 2 and "--models pretrained+self-train needs --self-train" in err
    chained = "--models pretrained+self-train->student needs"
    for flags, needs in (((), "--self-train and --student preset:NAME (or a run directory)"),
                         (("--student", "preset:tiny"), "--self-train"),
                         (("--self-train",), "--student preset:NAME (or a run directory)")):
        code, err = curve("--models", "pretrained+self-train->student", *flags)
        assert code == 2 and f"{chained} {needs}\n" in err
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b,label\n" + "".join(f"x{i} y,z{i} w,{'pos' if i % 2 else 'neg'}\n" for i in range(60)))
    code = main(["curve", str(run), "--task", str(pairs), "--labels", "20", "--out", str(tmp_path / "out"),
                 "--self-train", "--pair-column", "b", "--text-column", "a"])
    assert code == 2 and "label single texts, and task pairs has text pairs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_run_student_is_loaded_once_before_any_work(world, monkeypatch):
    """--student RUN: the curve's checks load the run once (a model and its tokenizer), not once per check."""
    from pretrainlab import semisup

    root, run, _ = world
    loads = []
    real = semisup.load_pretrained
    monkeypatch.setattr(semisup, "load_pretrained", lambda path: loads.append(path) or real(path))
    c = cfg()
    C._check_extras(CurveExtras(student=str(run)), as_task(str(root / "great.csv"), c.finetune), c,
                    load_pretrained(run), None)
    assert len(loads) == 1
