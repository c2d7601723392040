"""Self-training over several rounds and the curve's other students: round r's student teaches round r + 1 (with
distill.augment's [MASK] copies too, made once for the row), the row is the round best on validation, a curve killed in round 2 resumes
to the same curve.csv; --student-backbone rnn and transformer give students of that backbone; the self-trained
student's noise is selftrain.dropout, else finetune.dropout."""

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from pretrainlab import curve as C
from pretrainlab import semisup as S
from pretrainlab.curve import run_curve
from pretrainlab.curve_rows import CurveExtras
from pretrainlab.distill import recipe, student_classifier
from pretrainlab.errors import Interrupted
from pretrainlab.runs import count_parameters
from pretrainlab.seeds import EpochBatches
from pretrainlab.semisup import selftrain_config

from test_semisup import cfg, record_students, world  # noqa: F401  (world: the tiny run and task, a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

ROW = "pretrained+self-train"
SELF_TRAIN = CurveExtras(self_train=True)
TWO_ROUNDS = ["selftrain.rounds=2", "selftrain.dropout=0.25"]


def rounds_spy(monkeypatch, force_winner=None):
    """Record each round's setup (its work directory), seed run and labelled texts with their teacher; with
    force_winner, that round's validation key is made the best."""
    seen = {"rounds": [], "labelled": [], "dropouts": [], "copies_made": 0}
    real_setup, real_seed, real_label, real_classifier = (S.distill_setup, S.distill_seed, recipe.label_texts,
                                                          recipe.student_classifier)
    real_copies = recipe.augmented_pool

    def setup(teacher, *a, **kw):
        got = real_setup(teacher, *a, **kw)
        seen["rounds"].append({"round": got.out.name, "teacher": teacher.path, "setup": got})
        return got

    def seed(setup, s):
        run = real_seed(setup, s)
        r = int(setup.out.name.split("-")[1])
        run = replace(run, key=(2.0, 0.0)) if r == force_winner else run
        seen["rounds"][-1]["run"] = run
        return run

    def label(teacher, texts, *a, **kw):
        seen["labelled"].append((teacher.path, {k: v.clone() for k, v in teacher.model.state_dict().items()},
                                 list(texts)))
        return real_label(teacher, texts, *a, **kw)

    def classifier(student, n_labels, pooling, dropout):
        model = real_classifier(student, n_labels, pooling, dropout)
        if dropout is not None:  # the one that trains (save_student builds one without dropout to load weights)
            seen["dropouts"].append({m.p for m in model.modules() if isinstance(m, nn.Dropout)})
        return model

    def copies(*a, **kw):
        seen["copies_made"] += 1
        return real_copies(*a, **kw)

    monkeypatch.setattr(S, "distill_setup", setup)
    monkeypatch.setattr(S, "distill_seed", seed)
    monkeypatch.setattr(recipe, "augmented_pool", copies)
    monkeypatch.setattr(recipe, "label_texts", label)
    monkeypatch.setattr(recipe, "student_classifier", classifier)
    return seen


@pytest.mark.parametrize("augment, winner", [(0, 1), (2, 2)], ids=["round-1-best", "augment-round-2-best"])
def test_each_round_is_taught_by_the_last_ones_student_and_the_best_on_validation_is_the_row(world, tmp_path,
                                                                                             monkeypatch, augment,
                                                                                             winner):
    root, run, _ = world
    seen = rounds_spy(monkeypatch, force_winner=winner)
    out = tmp_path / "curve"
    points = run_curve(run, root / "great.csv", [30], [0], out, cfg(*TWO_ROUNDS, f"distill.augment={augment}"),
                       models=[ROW], extras=SELF_TRAIN)
    assert [(p.labels, p.model) for p in points] == [(30, "pretrained"), (30, ROW)]
    # both rounds ran, each to its end: the fine-tuned pretrained row teaches round 1, round 1's student round 2
    first, second = seen["rounds"]
    work = out / "work" / f"30-{ROW}-seed0"
    assert (first["round"], second["round"]) == ("round-1", "round-2")
    assert first["teacher"] == out / "teachers" / "30-pretrained-seed0"
    assert second["teacher"] == work / "round-1" / "student"
    assert all(r["run"].result.steps > 0 for r in seen["rounds"])
    # the teacher of round 2 labels with round 1's best weights, the same texts (the same copies) as round 1's
    (t1, _, texts1), (t2, weights2, texts2) = seen["labelled"]
    assert (t1, t2) == (first["teacher"], second["teacher"])
    best1 = first["run"].best_weights()
    assert weights2.keys() == best1.keys()
    for name, w in best1.items():
        torch.testing.assert_close(weights2[name], w, rtol=0, atol=0)
    assert texts1 == texts2
    copies = [s["setup"].texts.augmented for s in seen["rounds"]]
    if augment:  # distill.augment's copies, masked with [MASK] in both rounds: round 2's teacher reads it as a mask
        assert copies[0] == copies[1] > 0 and sum("[MASK]" in t for t in texts2) > 0
        assert seen["copies_made"] == 1  # made once for the row, not again by each round's setup
        assert recipe.mask_token(second["setup"].teacher.tokenizer) == "[MASK]"
    else:
        assert copies == [0, 0] and not any("[MASK]" in t for t in texts2) and seen["copies_made"] == 0
    # the row is the round whose key won (its test scores, validation, steps and teacher)
    best = seen["rounds"][winner - 1]
    (point,) = [p for p in points if p.model == ROW]
    assert (point.accuracy, point.macro_f1) == (best["run"].result.accuracy, best["run"].result.macro_f1)
    details = C.read_details(out / C.DETAILS_FILE)[(30, ROW, 0)]
    assert details["teacher"] == str(best["teacher"])
    assert (details["val_accuracy"], details["steps"]) == (best["run"].result.val_accuracy, best["run"].result.steps)
    # the students trained with selftrain.dropout (the noise) in every round
    assert seen["dropouts"] == [{0.25}, {0.25}]
    assert not any((out / "work").iterdir())


def test_a_curve_killed_in_round_two_resumes_to_the_same_csv(world, tmp_path, monkeypatch):
    root, run, _ = world
    args = (run, root / "great.csv", [30], [0])
    settings = cfg(*TWO_ROUNDS, "distill.augment=2")
    run_curve(*args, tmp_path / "straight", settings, models=[ROW], extras=SELF_TRAIN)
    state = {"round": None, "calls": {"round-1": 0, "round-2": 0}, "kill": True}
    real_setup, real_call = S.distill_setup, EpochBatches.__call__

    def setup(teacher, task, student, pool, cfg, out, **kw):
        state["round"] = out.name
        return real_setup(teacher, task, student, pool, cfg, out, **kw)

    def dies_in_round_two(self):
        if state["round"] is not None:
            state["calls"][state["round"]] += 1
            if state["kill"] and state["calls"]["round-2"] == 3:
                raise KeyboardInterrupt
        return real_call(self)

    monkeypatch.setattr(S, "distill_setup", setup)
    monkeypatch.setattr(EpochBatches, "__call__", dies_in_round_two)
    killed = tmp_path / "killed"
    with pytest.raises(Interrupted):
        run_curve(*args, killed, settings, models=[ROW], extras=SELF_TRAIN)
    work = killed / "work" / f"30-{ROW}-seed0"
    assert (work / "round-1" / "seeds" / "seed-0" / "result.json").is_file()  # round 1 finished
    assert (work / "round-1" / "student" / "classifier.json").is_file()  # and teaches round 2
    assert list((work / "round-2" / "seeds" / "seed-0" / "checkpoints").glob("step_*"))
    assert [line.split(",")[1] for line in (killed / "curve.csv").read_text().splitlines()[1:]] == ["pretrained"]
    state.update(kill=False, calls={"round-1": 0, "round-2": 0})
    run_curve(*args, killed, settings, models=[ROW], extras=SELF_TRAIN)
    assert state["calls"]["round-1"] == 0 and state["calls"]["round-2"] > 0  # round 1 read, round 2 continued
    assert (killed / "curve.csv").read_text() == (tmp_path / "straight" / "curve.csv").read_text()


@pytest.mark.parametrize("backbone", ["rnn", "transformer"])
def test_a_preset_student_has_the_backbone_asked_for(world, tmp_path, monkeypatch, backbone):
    root, run, _ = world
    started = record_students(monkeypatch)
    out, row = tmp_path / "curve", "pretrained->student"
    extras = CurveExtras(student="preset:tiny", student_backbone=backbone)
    points = run_curve(run, root / "great.csv", [20], [0], out, cfg(), models=[row], extras=extras)
    assert [p.model for p in points] == ["pretrained", row]
    (student,) = started
    assert student.source == "preset:tiny" and student.backbone is None  # random init
    assert student.model_cfg.backbone == backbone and student.model_cfg.preset == "tiny"
    details = C.read_details(out / C.DETAILS_FILE)[(20, row, 0)]
    expected = count_parameters(student_classifier(student, 2, cfg().finetune.pooling, None))
    assert details["parameters"] == expected and details["texts_per_s"] > 0
    assert details["student"] == "preset:tiny"
    settings = json.loads((out / "curve-settings.json").read_text())["student"]
    assert (settings["student"], settings["backbone"]) == ("preset:tiny", backbone)
    assert f"| 20 | {row} |" in (out / "curve.md").read_text()


@pytest.mark.parametrize("given, expected", [(["selftrain.dropout=0.3", "finetune.dropout=0.2"], 0.3),
                                             (["finetune.dropout=0.2"], 0.2)], ids=["selftrain", "finetune"])
def test_the_self_trained_students_noise_is_selftrain_dropout_else_finetunes(given, expected):
    base = cfg(*given, "selftrain.temperature=2", "selftrain.alpha=0.5", "finetune.batch_size=8",
               "finetune.patience=3", "finetune.min_steps=5", "distill.hidden_weight=1.0", "distill.max_unk=0.1")
    got = selftrain_config(base, 42)
    assert got.finetune == replace(base.finetune, dropout=expected)
    assert got.distill == replace(base.distill, temperature=2.0, alpha=0.5, hidden_weight=0.0, budget="42",
                                  batch_size=8, lr=base.finetune.lr, patience=3, min_steps=5, eval_every=0,
                                  evals_per_epoch=1, max_unk=1.0)
    assert (got.model, got.data, got.train, got.selftrain) == (base.model, base.data, base.train, base.selftrain)
