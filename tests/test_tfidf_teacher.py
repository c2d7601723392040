"""distill.tfidf_weight: TF-IDF + LR, fitted on the same labelled texts, as a second teacher. Each text's soft label is
(1 - w) x the teacher's probabilities + w x TF-IDF + LR's, in the teacher's label order; 0 (the default) leaves the
targets and the saved settings as before; the cache keeps the teacher's own logits; a resume with another weight is
refused naming the --set (test_confident_share.py, with distill.confident_share); a curve's self-training rounds
learn the mixture and record it."""

import json
import re

import numpy as np
import pytest
import torch

from pretrainlab import distill as D
from pretrainlab.baselines import tfidf_model, tfidf_scores
from pretrainlab.config import ConfigError, load_config
from pretrainlab.curve import run_curve
from pretrainlab.distill import recipe
from pretrainlab.distill.teacher import with_tfidf

from test_distill import student_cfg, world  # noqa: F401  (world: a tiny teacher and unlabelled text)
from test_selftrain_rounds import ROW, SELF_TRAIN, TWO_ROUNDS, rounds_spy
from test_semisup import cfg as curve_cfg
from test_semisup import world as semi_world  # noqa: F401  (a tiny run and task with its own splits)

pytestmark = pytest.mark.usefixtures("one_thread")


def prepared(world, out, *extra, resume=False):
    """Every check and the teacher's labels of a tiny distillation (nothing trains)."""
    cfg = student_cfg(world, "distill.epochs=1", *extra)
    return D.prepare_distill(world / "teacher", "preset:tiny", [world / "unlabelled.txt"], out, cfg, resume=resume,
                             quiet=True)


def tfidf_probabilities(setup, texts):
    """TF-IDF + LR's probabilities on texts in the teacher's label order, computed here from the task's labels."""
    _, remap = D.teacher_task(setup.teacher, setup.task)
    got = tfidf_model(setup.task).probabilities(texts)
    out = np.zeros_like(got)
    for task_id, teacher_id in enumerate(remap):
        out[:, teacher_id] = got[:, task_id]
    return torch.from_numpy(out).float()


def test_the_soft_labels_are_the_mixture_of_the_teachers_and_tfidfs_probabilities(world, tmp_path):
    alone = prepared(world, tmp_path / "alone")
    texts = alone.task.train.texts + alone.texts.texts
    theirs = tfidf_probabilities(alone, texts)
    assert theirs.shape == alone.targets.shape and not torch.allclose(theirs, alone.targets.softmax(-1), atol=0.05)
    for w in (0.5, 1.0):
        mixed = prepared(world, tmp_path / f"w{w}", f"distill.tfidf_weight={w}")
        assert mixed.labels.computed == 0  # the teacher's logits came from the cache: it holds them unmixed
        want = (1 - w) * alone.targets.softmax(-1) + w * theirs
        torch.testing.assert_close(mixed.targets.softmax(-1), want, rtol=0, atol=1e-6)
    again = D.label_texts(alone.teacher, texts, world / "cache", quiet=True)
    torch.testing.assert_close(again.logits, alone.targets, rtol=0, atol=0)


def test_tfidfs_columns_follow_the_teachers_label_order(world):
    setup_task = D.teacher_task(D.load_teacher(world / "teacher"))[0]
    texts = setup_task.test.texts[:7]
    p = torch.from_numpy(tfidf_model(setup_task).probabilities(texts)).float()
    logits = torch.zeros(len(texts), 2)
    torch.testing.assert_close(with_tfidf(logits, setup_task, [0, 1], texts, 1.0, quiet=True).exp(), p)
    torch.testing.assert_close(with_tfidf(logits, setup_task, [1, 0], texts, 1.0, quiet=True).exp(), p.flip(1))
    half = with_tfidf(logits, setup_task, [1, 0], texts, 0.5, quiet=True).exp()
    torch.testing.assert_close(half, 0.25 + 0.5 * p.flip(1))


def test_the_tfidf_model_is_the_tfidf_rows(world):
    task = D.teacher_task(D.load_teacher(world / "teacher"))[0]
    model = tfidf_model(task)
    metrics, val = tfidf_scores(task)
    p = model.probabilities(task.test.texts)
    assert val == model.val_acc and np.allclose(p.sum(1), 1)
    assert metrics.accuracy == pytest.approx(np.mean(p.argmax(1) == np.asarray(task.test.labels)))


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_a_weight_outside_0_1_is_refused_naming_the_setting(value):
    with pytest.raises(ConfigError, match=re.escape(f"distill.tfidf_weight is TF-IDF + LR's share of the soft "
                                                    f"labels, in [0, 1] (0: the teacher alone), got {float(value)}")):
        load_config(None, [f"distill.tfidf_weight={value}"])


def test_a_curves_self_training_rounds_learn_the_mixture_and_the_curve_records_it(semi_world, tmp_path,
                                                                                   monkeypatch):
    root, run, _ = semi_world
    seen = rounds_spy(monkeypatch)
    labels = []  # each round's teacher's own logits (the curve deletes its teacher's files after the row)
    spied = recipe.label_texts
    monkeypatch.setattr(recipe, "label_texts", lambda *a, **kw: labels.append(spied(*a, **kw)) or labels[-1])
    out = tmp_path / "curve"
    run_curve(run, root / "great.csv", [30], [0], out, curve_cfg(*TWO_ROUNDS, "distill.tfidf_weight=0.5"),
              models=[ROW, "tfidf"], extras=SELF_TRAIN)
    for r, own in zip(seen["rounds"], labels, strict=True):  # round 2's teacher (round 1's student) is mixed too
        setup = r["setup"]
        texts = setup.task.train.texts + setup.texts.texts
        want = 0.5 * own.logits.softmax(-1) + 0.5 * tfidf_probabilities(setup, texts)
        torch.testing.assert_close(setup.targets.softmax(-1), want, rtol=0, atol=1e-6)
    assert len(seen["rounds"]) == 2
    assert json.loads((out / "curve-settings.json").read_text())["unlabelled"]["tfidf_weight"] == 0.5
    with pytest.raises(ConfigError, match=re.escape("(to continue it: --set distill.tfidf_weight=0.5)")):
        run_curve(run, root / "great.csv", [30], [0], out, curve_cfg(*TWO_ROUNDS), models=[ROW, "tfidf"],
                  extras=SELF_TRAIN)


def test_the_teacher_mix_benchmark_scores_the_curves_pretrained_row_and_tfidf_at_its_ends(semi_world, tmp_path):
    """benchmarks/teacher_mix.py: w=0 is the curve's own pretrained row, w=1 TF-IDF + LR on the same labels."""
    import importlib.util
    from pathlib import Path

    from pretrainlab.curve import picked_examples, read_csv, subsample
    from pretrainlab.data.tasks import as_task

    path = Path(__file__).parents[1] / "benchmarks" / "teacher_mix.py"
    spec = importlib.util.spec_from_file_location("teacher_mix", path)
    mix = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mix)
    root, run, _ = semi_world
    cfg = curve_cfg()
    got = mix.scores(run, str(root / "great.csv"), 30, 0, tmp_path, cfg)
    (row,) = read_csv(tmp_path / "seed0" / "curve.csv")
    assert got["test"]["w=0.0"] == pytest.approx(row.accuracy)
    task = as_task(root / "great.csv", cfg.finetune)
    p = tfidf_model(subsample(task, 30, 0)).probabilities(task.test.texts)
    assert got["test"]["w=1.0"] == pytest.approx(np.mean(p.argmax(1) == np.asarray(task.test.labels)))
    assert set(got) == {"validation", "test", "pool", mix.KEPT}
    assert all(0 <= v <= 1 for s in got.values() for v in s.values())
    w1 = got[mix.KEPT]["w=1.0"]  # TF-IDF's surest half of the pool, scored here from its probabilities
    picked = set(picked_examples(task, 30, 0))
    pool = [i for i in range(len(task.train)) if i not in picked]
    q = tfidf_model(subsample(task, 30, 0)).probabilities([task.train.texts[i] for i in pool])
    kept = D.confident_rows(torch.from_numpy(q).log(), 0, 0.5)
    assert w1 == pytest.approx(np.mean(q.argmax(1)[kept] == np.asarray([task.train.labels[pool[i]] for i in kept])))


def test_the_distillation_report_says_what_the_soft_labels_mix(world, tmp_path):
    cfg = student_cfg(world, "distill.epochs=1", "distill.tfidf_weight=0.25")
    result = D.distill(world / "teacher", "preset:tiny", [world / "unlabelled.txt"], tmp_path / "s", cfg, seeds=(0,),
                       quiet=True)
    assert result.settings["tfidf_weight"] == 0.25
    assert ("(soft labels: 0.75 x the teacher's + 0.25 x TF-IDF + LR's on the same labels: distill.tfidf_weight)"
            in (tmp_path / "s" / "report.md").read_text())
    plain = D.distill(world / "teacher", "preset:tiny", [world / "unlabelled.txt"], tmp_path / "p",
                      student_cfg(world, "distill.epochs=1"), seeds=(0,), quiet=True)
    assert "tfidf_weight" not in plain.settings and "TF-IDF" not in (tmp_path / "p" / "report.md").read_text()
