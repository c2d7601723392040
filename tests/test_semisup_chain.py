"""X+self-train->student: a student distilled from the self-trained X of the same label count and seed. The
self-trained row keeps its classifier as a teacher (a fine-tuned classifier directory) while that row is to come,
the row's details name it and its hash, a curve resumed without it kept trains it (and its own teacher) again, and
one resumed without the rows a kept teacher teaches removes that teacher."""

from dataclasses import replace

import pytest

from pretrainlab import curve as C
from pretrainlab import curve_rows as R
from pretrainlab.curve import run_curve
from pretrainlab.curve_rows import BASE_OF, CurveExtras, available_models, teacher_of
from pretrainlab.distill import load_teacher, teacher_hash
from pretrainlab.evaluate import evaluate
from pretrainlab.runs import load_classifier

from test_semisup import EXTRAS, cfg, world  # noqa: F401  (world: the tiny run and task, a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

CHAIN = "pretrained+self-train->student"


def test_the_self_trained_rows_students_have_their_teacher_and_base():
    for x in R.TEACHERS:
        assert teacher_of(f"{x}+self-train->student") == f"{x}+self-train"
        assert BASE_OF[f"{x}+self-train->student"] == f"{x}+self-train"
        assert teacher_of(f"{x}+self-train") == teacher_of(f"{x}->student") == x
    both = CurveExtras(self_train=True, student="preset:tiny", reference_dapt="1m")
    assert available_models(True, both) == [
        "pretrained", "pretrained+self-train", "pretrained->student", CHAIN, "random-init", "tfidf", "majority",
        "reference", "reference+self-train", "reference->student", "reference+self-train->student",
        "reference+dapt", "reference+dapt+self-train", "reference+dapt->student",
        "reference+dapt+self-train->student"]
    assert available_models(False, CurveExtras(self_train=True, student="preset:tiny")) == [
        "pretrained", "pretrained+self-train", "pretrained->student", CHAIN, "random-init", "tfidf", "majority"]
    assert available_models(False, CurveExtras(student="preset:tiny")) == [
        "pretrained", "pretrained->student", "random-init", "tfidf", "majority"]
    assert available_models(True, CurveExtras(self_train=True)) == [
        "pretrained", "pretrained+self-train", "random-init", "tfidf", "majority", "reference",
        "reference+self-train"]


def test_the_self_trained_rows_student_learns_from_its_saved_classifier(world, tmp_path, monkeypatch):  # noqa: F811
    """The teacher directory is the self-trained row's classifier (the same bytes as keep_models saves, its test
    accuracy the row's), named with its hash in the row's details, and gone once the curve is done."""
    root, run, _ = world
    taught = []
    real = R.distil_student

    def recording(teacher, *a, **kw):
        metrics = evaluate(teacher, out_dir=tmp_path / "eval", quiet=True)
        taught.append((teacher, teacher_hash(load_teacher(teacher)), metrics.accuracy))
        return real(teacher, *a, **kw)

    monkeypatch.setattr(R, "distil_student", recording)
    out = tmp_path / "curve"
    points = run_curve(run, root / "great.csv", [30], [0], out, cfg(), models=[CHAIN],
                       extras=replace(EXTRAS, keep_models=True))
    assert [p.model for p in points] == ["pretrained", "pretrained+self-train", CHAIN]  # its teachers, in order
    ((teacher, key, accuracy),) = taught
    assert teacher == out / "teachers" / "30-pretrained+self-train-seed0"
    details = C.read_details(out / C.DETAILS_FILE)[(30, CHAIN, 0)]
    assert details["teacher"] == str(teacher) and details["teacher_hash"] == key
    assert key == teacher_hash(load_classifier(out / "models" / "pretrained+self-train" / "seed-0"))
    assert accuracy == pytest.approx(points[1].accuracy, abs=1e-9)
    assert load_classifier(out / "models" / CHAIN / "seed-0").meta["teacher_hash"] == key
    assert not (out / "teachers").exists() or not any((out / "teachers").iterdir())
    assert f"| 30 | {CHAIN} |" in (out / "curve.md").read_text()
    assert f"| 30 | {CHAIN} | {points[2].accuracy:.4f} | pretrained+self-train | " \
           f"{points[2].accuracy - points[1].accuracy:+.4f} |" in (out / "curve.md").read_text()


def test_a_self_trained_teacher_not_kept_is_trained_again(world, tmp_path, monkeypatch):  # noqa: F811
    """The self-trained row scored before --student was given (no teacher kept): the curve resumed with it trains
    pretrained+self-train again, and pretrained first as its teacher, and gives the uninterrupted curve.csv."""
    root, run, _ = world
    args = (run, root / "great.csv", [30], [0])
    run_curve(*args, tmp_path / "straight", cfg(), run_name="run", models=[CHAIN], extras=EXTRAS)
    later = tmp_path / "later"
    run_curve(*args, later, cfg(), run_name="run", models=["pretrained+self-train"],
              extras=CurveExtras(self_train=True))
    assert not any((later / "teachers").iterdir())
    scored = []
    real = R.CurveRows.score

    def recording(self, n, seed, sub, picked, model, teaches):
        scored.append((model, teaches))
        return real(self, n, seed, sub, picked, model, teaches)

    monkeypatch.setattr(R.CurveRows, "score", recording)
    run_curve(*args, later, cfg(), run_name="run", models=[CHAIN], extras=EXTRAS)
    assert scored == [(CHAIN, False), ("pretrained+self-train", True), ("pretrained", True)]
    assert (later / "curve.csv").read_text() == (tmp_path / "straight" / "curve.csv").read_text()
    assert not any((later / "teachers").iterdir()) and not any((later / "work").iterdir())


def test_a_teacher_kept_for_rows_a_resumed_curve_no_longer_has_is_removed(world, tmp_path, monkeypatch):  # noqa: F811
    """Killed in pretrained+self-train (pretrained kept as its teacher), resumed with --models pretrained alone: no
    row to come learns from the teacher, so it goes."""
    root, run, _ = world
    args = (run, root / "great.csv", [20], [0], tmp_path / "curve", cfg())

    def killed(*a, **kw):
        raise RuntimeError("killed")

    with monkeypatch.context() as m:
        m.setattr(R, "self_train", killed)
        with pytest.raises(RuntimeError, match="killed"):
            run_curve(*args, models=["pretrained+self-train"], extras=CurveExtras(self_train=True))
    teacher = tmp_path / "curve" / "teachers" / "20-pretrained-seed0"
    assert (teacher / "classifier.json").is_file()
    run_curve(*args, models=["pretrained"], extras=CurveExtras(self_train=True))
    assert not teacher.exists()
