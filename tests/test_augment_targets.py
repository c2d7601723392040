"""distill.augment_targets: what an augmented copy learns. "teacher" (the default): the teacher's label of the copy
itself, as before the setting; "source": the teacher's label of the pool text it was made from (Noisy Student, UDA),
the teacher run on the originals only and nothing of a copy cached. The setting is saved only away from its default,
a resume with another is refused naming the --set, bad values are refused, and a curve's two rounds of self-training
hand each copy its source's label from each round's teacher (and the curve, resumed with the default, is refused)."""

import json
import re

import pytest
import torch

from pretrainlab import distill as D
from pretrainlab.config import ConfigError, load_config
from pretrainlab.curve import run_curve
from pretrainlab.distill.augment import augment, augmented_pool

from test_distill import counting, student_cfg, world  # noqa: F401  (world: a tiny teacher and unlabelled text)
from test_selftrain_rounds import ROW, SELF_TRAIN, TWO_ROUNDS, rounds_spy
from test_semisup import cfg as curve_cfg
from test_semisup import world as semi_world  # noqa: F401  (a tiny run and task with its own splits)

pytestmark = pytest.mark.usefixtures("one_thread")

SOURCE = "distill.augment_targets=source"


def prepared(world, out, *extra, resume=False):
    """Every check and the teacher's labels of a tiny distillation with two copies of each piece (nothing trains)."""
    cfg = student_cfg(world, "distill.augment=2", "distill.epochs=1", *extra)
    return D.prepare_distill(world / "teacher", "preset:tiny", [world / "unlabelled.txt"], out, cfg, resume=resume,
                             quiet=True)


def saved_distill(out):
    return json.loads((out / D.SETTINGS_FILE).read_text())["distill"]


# --------------------------------------------------------------------------- each copy's source


def test_each_copy_knows_the_text_it_was_made_from():
    texts = ["w1 w2 w3 w4 w5 w6 w7 w8", "x1 x2 x3 x4 x5 x6 x7 x8 x9"]  # every word unique: a copy's words say whose
    got = augment(texts, 6, 0.0, 0.0, 1.0, "[MASK]", 0)
    assert len(got.sources) == len(got.texts) > 2 and set(got.sources) == {0, 1}
    assert all(set(c.split()) <= set(texts[i].split()) for c, i in zip(got.texts, got.sources))
    # the copies of "good film" all equal held-out texts (dropped): those kept are "a dull plot"'s, index 1
    pool = augmented_pool(D.TextPool(["good film", "a dull plot"], 2, {"x": 2}), 20, 0.0, 0.0, 1.0, "[MASK]",
                          held_out=["good", "film"], labelled=[])
    assert pool.augmented > 0 and pool.copy_sources == [1] * pool.augmented


# --------------------------------------------------------------------------- the targets


def test_a_copy_learns_its_sources_label_and_the_teacher_reads_and_caches_the_originals_only(world, tmp_path,
                                                                                            monkeypatch):
    """source, then teacher, with one fresh cache: the teacher runs on the labelled texts and the pieces only, each
    copy's target row is its source's; the teacher's run then labels exactly the copies (the cache held none) and
    its targets are the teacher's logits on each text, as without the setting."""
    cache = f"distill.cache={tmp_path / 'cache'}"
    calls = counting(monkeypatch)
    source = prepared(world, tmp_path / "source", SOURCE, cache)
    pool, n = source.texts, len(source.task.train)
    originals = len(pool.texts) - pool.augmented
    assert pool.augmented > 0 and sum(calls) == source.labels.computed == n + originals
    assert source.targets.shape[0] == n + len(pool.texts)
    for j, i in enumerate(pool.copy_sources):
        assert pool.texts[originals + j] != pool.texts[i]
        assert torch.equal(source.targets[n + originals + j], source.targets[n + i])

    calls.clear()
    teacher = prepared(world, tmp_path / "teacher", cache)
    assert teacher.texts.texts == pool.texts and teacher.texts.copy_sources == pool.copy_sources  # the same copies
    assert sum(calls) == teacher.labels.computed == pool.augmented  # no copy was cached with its source's label
    torch.testing.assert_close(teacher.targets[:n + originals], source.targets[:n + originals], rtol=0, atol=0)
    before = D.label_texts(teacher.teacher, teacher.task.train.texts + pool.texts, tmp_path / "cache", quiet=True)
    torch.testing.assert_close(teacher.targets, before.logits, rtol=0, atol=0)  # what distill_setup did before
    assert not torch.equal(teacher.targets[n + originals:], source.targets[n + originals:])


# --------------------------------------------------------------------------- saved settings and resuming


def test_the_setting_is_saved_only_away_from_its_default_and_a_resume_with_another_is_refused(world, tmp_path):
    default = prepared(world, tmp_path / "default")
    explicit = prepared(world, tmp_path / "explicit", "distill.augment_targets=teacher")
    assert "augment_targets" not in saved_distill(default.out)  # as saved before the setting: those resume
    assert (explicit.out / D.SETTINGS_FILE).read_bytes() == (default.out / D.SETTINGS_FILE).read_bytes()
    torch.testing.assert_close(explicit.targets, default.targets, rtol=0, atol=0)
    source = prepared(world, tmp_path / "source", SOURCE)
    assert saved_distill(source.out)["augment_targets"] == "source"

    with pytest.raises(ConfigError, match=re.escape("distill.augment_targets: checkpoint 'teacher' vs now 'source'")) \
            as e:
        prepared(world, default.out, SOURCE, resume=True)
    assert str(e.value).endswith("(to continue it: --set distill.augment_targets=teacher)")
    with pytest.raises(ConfigError, match=re.escape("distill.augment_targets: checkpoint 'source' vs now 'teacher'")) \
            as e:
        prepared(world, source.out, resume=True)
    assert str(e.value).endswith("(to continue it: --set distill.augment_targets=source)")
    again = prepared(world, source.out, SOURCE, resume=True)
    torch.testing.assert_close(again.targets, source.targets, rtol=0, atol=0)


# --------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize("settings, message", [
    (["distill.augment=2", "distill.augment_targets=sauce"],
     "distill.augment_targets='sauce' is not one of teacher, source (did you mean 'source'?)"),
    ([SOURCE], "distill.augment_targets=source chooses what distill.augment's copies learn, and distill.augment=0 "
               "makes none; set distill.augment=N (copies of each pool text), or drop distill.augment_targets"),
])
def test_bad_augment_targets_are_refused_naming_the_setting(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, settings)


# --------------------------------------------------------------------------- a curve's self-training


def test_a_curves_two_self_training_rounds_give_each_copy_its_sources_label_from_that_rounds_teacher(
        semi_world, tmp_path, monkeypatch):
    root, run, _ = semi_world
    seen = rounds_spy(monkeypatch)
    out = tmp_path / "curve"
    run_curve(run, root / "great.csv", [30], [0], out, curve_cfg(*TWO_ROUNDS, "distill.augment=2", SOURCE),
              models=[ROW], extras=SELF_TRAIN)
    (_, _, texts1), (_, _, texts2) = seen["labelled"]
    first, second = (r["setup"] for r in seen["rounds"])
    pool, n = first.texts, len(first.task.train)
    originals = len(pool.texts) - pool.augmented
    assert pool.augmented > 0 and texts1 == texts2 == first.task.train.texts + pool.texts[:originals]
    for setup in (first, second):  # round 2's teacher (round 1's student) labels the sources again
        assert setup.texts is pool
        rows = [n + i for i in pool.copy_sources]
        torch.testing.assert_close(setup.targets[n + originals:], setup.targets[rows], rtol=0, atol=0)
    assert not torch.equal(first.targets, second.targets)
    saved = json.loads((out / "curve-settings.json").read_text())["unlabelled"]["augment"]
    assert saved["augment_targets"] == "source"
    with pytest.raises(ConfigError, match=re.escape("(to continue it: --set distill.augment_targets=source)")):
        run_curve(run, root / "great.csv", [30], [0], out, curve_cfg(*TWO_ROUNDS, "distill.augment=2"), models=[ROW],
                  extras=SELF_TRAIN)
