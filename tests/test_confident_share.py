"""distill.confident_share: the student learns the labelled texts and only the share of the pool whose soft labels
are surest, class by class (self-training's confidence selection). 1 (the default) leaves the texts, targets and
saved settings as before; the share is chosen after distill.tfidf_weight's mix; a resume with another share is
refused naming the --set; a curve's self-training rounds each pick again, and the curve records the share."""

import json
import re

import pytest
import torch

from pretrainlab import distill as D
from pretrainlab.config import ConfigError, load_config
from pretrainlab.curve import run_curve
from pretrainlab.semisup import selftrain_steps

from test_distill import student_cfg, world  # noqa: F401  (world: a tiny teacher and unlabelled text)
from test_selftrain_rounds import ROW, SELF_TRAIN, TWO_ROUNDS, rounds_spy
from test_semisup import cfg as curve_cfg
from test_semisup import world as semi_world  # noqa: F401  (a tiny run and task with its own splits)
from test_tfidf_teacher import prepared

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_rows_kept_are_the_labelled_then_the_surest_share_of_each_class_in_order():
    logits = torch.tensor([[0.0, 0.0],     # labelled: always kept, whatever their logits
                           [0.0, 0.0],
                           [3.0, 0.0],     # pool row 0: class 0, sure
                           [0.1, 0.0],     # 1: class 0, unsure
                           [0.0, 2.0],     # 2: class 1, sure
                           [1.0, 0.0],     # 3: class 0, middling
                           [0.0, 0.5],     # 4: class 1, unsure
                           [5.0, 0.0]])    # 5: class 0, surest
    assert D.confident_rows(logits, 2, 0.5) == [0, 1, 2, 4, 7]  # class 0: 2 of 4 (rows 5, 0); class 1: 1 of 2
    assert D.confident_rows(logits, 2, 0.75) == [0, 1, 2, 4, 5, 6, 7]  # 3 of 4; 2 x 0.75 = 1.5, half up: 2 of 2
    assert D.confident_rows(logits, 2, 0.01) == [0, 1, 4, 7]  # at least one of each class the labels pick
    assert [D.kept_count(0.5, n) for n in (0, 1, 2, 3, 5)] == [0, 1, 1, 2, 3]  # half up, none only of none
    assert D.kept_count(1.0, 0) == 0 and D.kept_count(1.0, 7) == 7
    assert D.confident_rows(logits, 2, 1.0) == list(range(8))
    assert D.confident_rows(logits[:2], 2, 0.5) == [0, 1]  # no pool: the labelled texts alone


def test_the_student_learns_the_surest_share_of_the_pool_with_the_teachers_own_targets(world, tmp_path):
    whole = prepared(world, tmp_path / "whole")
    half = prepared(world, tmp_path / "half", "distill.confident_share=0.5")
    n = len(whole.task.train)
    rows = D.confident_rows(whole.targets, n, 0.5)
    pool = len(whole.train) - n
    assert pool > 10 and len(half.train) == len(rows) and n < len(rows) < len(whole.train)
    assert half.labels.computed == 0  # the teacher's logits of every pool text came from the cache
    torch.testing.assert_close(half.targets, whole.targets[rows], rtol=0, atol=0)
    assert half.train.ids == [whole.train.ids[i] for i in rows]
    assert half.train.labels == [whole.train.labels[i] for i in rows]
    assert half.train.labels[:n] == whole.train.labels[:n] and set(half.train.labels[n:]) == {D.NO_LABEL}
    sure, picked = whole.targets[n:].softmax(-1).max(-1)
    kept = torch.zeros(pool, dtype=torch.bool)
    kept[[i - n for i in rows[n:]]] = True
    for c in picked.unique():  # within each class, every kept text is at least as sure as every dropped one
        mine = picked == c
        assert D.kept_count(0.5, int(mine.sum())) == int((kept & mine).sum())
        if (mine & ~kept).any():
            assert sure[kept & mine].min() >= sure[~kept & mine].max()
    assert half.steps_per_epoch < whole.steps_per_epoch  # its passes are over what it learns


def test_the_share_is_picked_from_the_mixed_soft_labels(world, tmp_path):
    mixed = prepared(world, tmp_path / "mixed", "distill.tfidf_weight=1.0")
    both = prepared(world, tmp_path / "both", "distill.tfidf_weight=1.0", "distill.confident_share=0.3")
    rows = D.confident_rows(mixed.targets, len(mixed.task.train), 0.3)
    torch.testing.assert_close(both.targets, mixed.targets[rows], rtol=0, atol=0)


@pytest.mark.parametrize(("setting", "value", "default"), [("confident_share", 0.5, 1.0), ("tfidf_weight", 0.5, 0.0)])
def test_a_pool_label_setting_is_saved_only_away_from_its_default_and_a_resume_with_another_is_refused(
        world, tmp_path, setting, value, default):
    plain = prepared(world, tmp_path / "plain")
    same = prepared(world, tmp_path / "same", f"distill.{setting}={default}")
    assert setting not in json.loads((plain.out / D.SETTINGS_FILE).read_text())["distill"]
    assert (same.out / D.SETTINGS_FILE).read_bytes() == (plain.out / D.SETTINGS_FILE).read_bytes()
    assert len(same.train) == len(plain.train)
    other = prepared(world, tmp_path / "other", f"distill.{setting}={value}")
    assert json.loads((other.out / D.SETTINGS_FILE).read_text())["distill"][setting] == value
    with pytest.raises(ConfigError, match=re.escape(f"(to continue it: --set distill.{setting}={value})")):
        prepared(world, other.out, resume=True)
    with pytest.raises(ConfigError, match=re.escape(f"(to continue it: --set distill.{setting}={default})")):
        prepared(world, plain.out, f"distill.{setting}={value}", resume=True)


@pytest.mark.parametrize("value", ["0", "-0.5", "1.5"])
def test_a_share_outside_0_1_is_refused_naming_the_setting(value):
    with pytest.raises(ConfigError, match=re.escape(
            "distill.confident_share is the share of the unlabelled pool kept, the texts the soft labels are surest "
            f"of, in (0, 1] (1: all of it), got {float(value)}")):
        load_config(None, [f"distill.confident_share={value}"])


def test_each_self_training_round_picks_its_own_share_and_the_curve_records_it(semi_world, tmp_path, monkeypatch):
    root, run, _ = semi_world
    seen = rounds_spy(monkeypatch)
    labels = []  # each round's teacher's logits (the curve deletes its teacher's files after the row)
    spied = D.recipe.label_texts
    monkeypatch.setattr(D.recipe, "label_texts", lambda *a, **kw: labels.append(spied(*a, **kw)) or labels[-1])
    out = tmp_path / "curve"
    cfg = curve_cfg(*TWO_ROUNDS, "distill.confident_share=0.4")
    run_curve(run, root / "great.csv", [30], [0], out, cfg, models=[ROW], extras=SELF_TRAIN)
    assert len(seen["rounds"]) == 2
    for r, own in zip(seen["rounds"], labels, strict=True):  # round 2's teacher (round 1's student) picks again
        setup = r["setup"]
        n = len(setup.task.train)
        torch.testing.assert_close(setup.targets, own.logits[D.confident_rows(own.logits, n, 0.4)], rtol=0, atol=0)
        pool = len(own.logits) - n
        assert len(setup.train) - n < pool
        assert setup.budget.steps == selftrain_steps(cfg, n + D.kept_count(0.4, pool))  # 3 passes over what it learns
    first, second = (r["setup"] for r in seen["rounds"])
    assert not torch.equal(first.targets, second.targets)
    assert json.loads((out / "curve-settings.json").read_text())["unlabelled"]["confident_share"] == 0.4
    details = [json.loads(line) for line in (out / "curve-details.jsonl").read_text().splitlines()]
    (row,) = [d for d in details if d["model"] == ROW]
    assert row["learnt"] < row["pool"]
    with pytest.raises(ConfigError, match=re.escape("(to continue it: --set distill.confident_share=0.4)")):
        run_curve(run, root / "great.csv", [30], [0], out, curve_cfg(*TWO_ROUNDS), models=[ROW], extras=SELF_TRAIN)


def test_the_distillation_report_says_how_much_of_the_pool_the_student_learnt(world, tmp_path):
    cfg = student_cfg(world, "distill.epochs=1", "distill.confident_share=0.5")
    result = D.distill(world / "teacher", "preset:tiny", [world / "unlabelled.txt"], tmp_path / "s", cfg, seeds=(0,),
                       quiet=True)
    kept = result.texts["kept"]
    assert 0 < kept < result.texts["unlabelled"]
    assert (f"the student learns {kept:,} of these pieces, those the soft labels are surest of "
            "(distill.confident_share=0.5, class by class)") in (tmp_path / "s" / "report.md").read_text()
