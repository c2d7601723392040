"""distill.augment: copies of the pool's texts for the teacher to label (Tang et al. 2019): each rule exact on a
hand-made list, the same seed the same copies, no copy equal to a held-out text, a tiny distillation that trains on
them and records how many, a resumed one with other augment settings refused, and a curve whose every row (the
reference's too) learns from the copies its settings record."""

import json
import math
import re

import pytest
from tokenizers import Tokenizer, models

from pretrainlab import curve as C
from pretrainlab import curve_rows as R
from pretrainlab import distill as D
from pretrainlab.config import ConfigError, load_config
from pretrainlab.curve import run_curve
from pretrainlab.curve_rows import CurveExtras
from pretrainlab.distill import recipe
from pretrainlab.distill.augment import augment, augmented_pool
from pretrainlab.tokenizer import train_tokenizer

from test_distill import student_cfg, world  # noqa: F401  (world: a tiny teacher and unlabelled text, a fixture)
from test_finetune import make_run
from test_semisup import EXTRAS, rows, write_task
from test_semisup import cfg as curve_cfg

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["a good film", "the plot was dull", "fun"]
LONG = ["w1 w2 w3 w4 w5 w6 w7 w8", "x1 x2 x3 x4 x5 x6 x7 x8 x9"]
"""Every word unique: a copy's words say where each came from."""


def copies_of(texts, copies=4, p_mask=0.0, p_swap=0.0, p_ngram=0.0, mask="[MASK]", seed=0):
    return augment(texts, copies, p_mask, p_swap, p_ngram, mask, seed).texts


# --------------------------------------------------------------------------- the rules


def test_every_word_masked():
    assert copies_of(TEXTS, p_mask=1) == ["[MASK] [MASK] [MASK]", "[MASK] [MASK] [MASK] [MASK]", "[MASK]"]


def test_without_a_mask_token_a_masked_word_is_swapped():
    vocab = {w for t in TEXTS for w in t.split()}
    got = copies_of(TEXTS, p_mask=1, mask=None)
    assert got and all(set(c.split()) <= vocab for c in got)


def test_every_word_swapped_for_a_word_of_the_pool():
    vocab = {w for t in LONG for w in t.split()}
    got = copies_of(LONG, copies=5, p_swap=1)
    assert got and all(set(c.split()) <= vocab for c in got)
    assert {len(c.split()) for c in got} <= {8, 9}  # no n-grams: one word for one word
    assert not set(got) & set(LONG)


def test_each_ngram_copy_is_a_contiguous_run_of_one_to_five_words_of_its_source():
    got = copies_of(LONG, copies=10, p_ngram=1)
    assert got and len(got) == len(set(got))
    for c in got:
        words = c.split()
        source = next(t.split() for t in LONG if words[0] in t.split())
        i = source.index(words[0])
        assert 1 <= len(words) <= 5 and source[i:i + len(words)] == words, c
    assert len({len(c.split()) for c in got}) > 1


def test_no_copies_no_texts():
    assert copies_of(TEXTS, copies=0, p_mask=1) == []
    assert copies_of([], copies=3, p_mask=1) == []
    assert copies_of(TEXTS, p_mask=0, p_swap=0, p_ngram=0) == []  # every copy equals its source: dropped


def test_the_same_seed_gives_the_same_copies_and_more_copies_keep_the_first():
    args = dict(copies=5, p_mask=0.3, p_swap=0.3, p_ngram=0.5)
    first = copies_of(LONG, **args, seed=1)
    assert first == copies_of(LONG, **args, seed=1)
    assert first != copies_of(LONG, **args, seed=2)
    assert set(first) <= set(copies_of(LONG, **{**args, "copies": 8}, seed=1))  # the cache's labels stay good


def test_a_copy_equal_to_a_held_out_text_is_dropped():
    """Every copy of 'good film' is 'good' or 'film' (or itself, a duplicate): both are held-out texts (up to case
    and spaces); 'a dull plot' has copies of its own; the pool given is left as it is."""
    pool = D.TextPool(["good film", "a dull plot"], 2, {"x": 2})
    got = augmented_pool(pool, 20, 0.0, 0.0, 1.0, "[MASK]", held_out=[" Good", "FILM "], labelled=["dull plot"])
    copies = got.texts[2:]
    assert got.texts[:2] == pool.texts and pool.texts == ["good film", "a dull plot"] and pool.augmented == 0
    assert got.augmented == len(copies) > 0 and got.augment_held_out_dropped == 2
    assert not {"good", "film", "dull plot", "good film", "a dull plot"} & set(copies)
    assert set(copies) <= {"a", "dull", "plot", "a dull"}


def test_the_mask_token_is_the_teachers_only_when_it_reads_it_as_one():
    assert D.mask_token(train_tokenizer(TEXTS * 4, vocab_size=60)) == "[MASK]"
    assert D.mask_token(Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))) is None


# --------------------------------------------------------------------------- a distillation with copies


def test_a_tiny_distillation_trains_on_copies_records_them_and_refuses_other_augment_settings(world, tmp_path):
    args = (world / "teacher", "preset:tiny", [world / "unlabelled.txt"], tmp_path / "student")
    result = D.distill(*args, student_cfg(world, "distill.augment=2", "distill.epochs=1"), seeds=(0,), quiet=True)
    added = result.texts["augmented"]
    assert 240 < added <= 2 * 240 and result.texts["unlabelled"] == 240 and result.texts["labelled"] == 128
    assert result.cache["computed"] + result.cache["reused"] == 128 + 240 + added  # the teacher labels the copies
    saved = json.loads((tmp_path / "student" / D.SETTINGS_FILE).read_text())
    assert saved["augmented"] == added and saved["n_texts"] == 128 + 240 + added
    assert saved["distill"]["augment"] == 2 and saved["distill"]["augment_ngram"] == 0.25
    assert f"plus {added:,} augmented copies" in (tmp_path / "student" / "report.md").read_text()

    with pytest.raises(ConfigError, match=re.escape("distill.augment: checkpoint 2 vs now 3")) as e:
        D.distill(*args, student_cfg(world, "distill.augment=3", "distill.epochs=1"), seeds=(0,), resume=True,
                  quiet=True)
    assert "(to continue it: --set distill.augment=2)" in str(e.value)
    with pytest.raises(ConfigError, match="--set distill.augment=2 --set distill.augment_mask=0.1"):
        D.distill(*args, student_cfg(world, "distill.epochs=1"), seeds=(0,), resume=True, quiet=True)
    again = D.distill(*args, student_cfg(world, "distill.augment=2", "distill.epochs=1"), seeds=(0,), resume=True,
                      quiet=True)
    assert again.texts["augmented"] == added and again.cache["computed"] == 0  # the same copies, from the cache


def test_a_curves_self_trained_and_distilled_rows_learn_from_the_same_copies_of_their_pool(tmp_path, monkeypatch):
    """20 labels (16 to train on), the 100 other training texts as the pool, plus their copies: the teacher labels
    the same texts for both rows, the self-training's passes count the copies, and the curve records them."""
    run, task = make_run(tmp_path / "run"), write_task(tmp_path / "great.csv", rows(200, seed=1))
    seen, real = [], recipe.label_texts

    def recording(teacher, texts, *a, **kw):
        seen.append(list(texts))
        return real(teacher, texts, *a, **kw)

    monkeypatch.setattr(recipe, "label_texts", recording)
    out, models = tmp_path / "curve", ["pretrained+self-train", "pretrained->student"]
    run_curve(run, task, [20], [0], out, curve_cfg("distill.augment=2"), extras=EXTRAS, models=models)
    assert len(seen) == 2 and seen[0] == seen[1] and len(seen[0]) > 16 + 100
    details = C.read_details(out / C.DETAILS_FILE)
    for m in models:
        assert details[(20, m, 0)]["pool"] == 100 and details[(20, m, 0)]["augmented"] == len(seen[0]) - 116
    steps = max(math.ceil(len(seen[0]) / curve_cfg().finetune.batch_size), curve_cfg().finetune.min_steps)
    assert details[(20, "pretrained+self-train", 0)]["steps"] == steps  # selftrain.epochs=1 pass, copies included
    with pytest.raises(ConfigError, match="other settings .*unlabelled"):
        run_curve(run, task, [20], [0], out, curve_cfg("distill.augment=3"), extras=EXTRAS, models=models)


def test_a_curves_reference_rows_learn_from_the_copies_its_settings_record(tmp_path, monkeypatch):
    """reference_cfg (the reference's fine-tuning) with other distill settings: the reference's self-trained row still
    uses the curve's distill.* (its copies, recorded under 'unlabelled'; the curve's teacher-logits cache)."""
    run, task = make_run(tmp_path / "run"), write_task(tmp_path / "great.csv", rows(200, seed=1))
    used, real = [], R.self_train

    def recording(teacher, student, sub, pool, cfg, *a, **kw):
        used.append(cfg.distill)
        return real(teacher, student, sub, pool, cfg, *a, **kw)

    monkeypatch.setattr(R, "self_train", recording)
    out, row = tmp_path / "curve", "reference+self-train"
    run_curve(run, task, [20], [0], out, curve_cfg("distill.augment=2"), reference=run,
              reference_cfg=curve_cfg("distill.augment=0", "distill.teacher_batch_size=8"),
              extras=CurveExtras(self_train=True), models=[row])
    (dc,) = used
    assert (dc.augment, dc.teacher_batch_size, dc.cache) == (2, curve_cfg().distill.teacher_batch_size,
                                                              str(out / "teacher-logits"))
    assert C.read_details(out / C.DETAILS_FILE)[(20, row, 0)]["augmented"] > 0
    assert json.loads((out / "curve-settings.json").read_text())["unlabelled"]["augment"]["augment"] == 2


# --------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize("setting, message", [
    ("distill.augment=-1", "distill.augment must be >= 0, got -1"),
    ("distill.augment_mask=1.5", "distill.augment_mask is a probability in [0, 1], got 1.5"),
    ("distill.augment_swap=-0.1", "distill.augment_swap is a probability in [0, 1], got -0.1"),
    ("distill.augment_ngram=2", "distill.augment_ngram is a probability in [0, 1], got 2.0"),
    ("distill.augment_mask=0.6", "distill.augment_mask + distill.augment_swap is the share of a copy's words replaced, "
                                 "at most 1; got 0.6 + 0.6"),
])
def test_bad_augment_settings_are_config_errors_naming_the_setting(setting, message):
    extra = ["distill.augment_swap=0.6"] if setting == "distill.augment_mask=0.6" else []
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [setting, *extra])


# --------------------------------------------------------------------------- refusals that say what to do


def test_a_distillation_without_copies_resumed_with_them_is_refused_naming_the_set(world, tmp_path):
    """distill.augment=0 saves no augment settings: the refusal still names the --set that continues it."""
    args = (world / "teacher", "preset:tiny", [world / "unlabelled.txt"], tmp_path / "student")
    D.distill(*args, student_cfg(world, "distill.epochs=1"), seeds=(0,), quiet=True)
    with pytest.raises(ConfigError, match=re.escape("(to continue it: --set distill.augment=0)")):
        D.distill(*args, student_cfg(world, "distill.augment=2", "distill.epochs=1"), seeds=(0,), resume=True,
                  quiet=True)


def test_a_curve_resumed_with_other_augment_settings_names_the_set_that_continues_it(tmp_path):
    """The pool's copies are recorded under 'unlabelled': the refusal says which --set gives them back."""
    run, task = make_run(tmp_path / "run"), write_task(tmp_path / "great.csv", rows(200, seed=1))
    args = (run, task, [20], [0])
    run_curve(*args, tmp_path / "none", curve_cfg(), extras=EXTRAS, models=["tfidf"])
    with pytest.raises(ConfigError, match=re.escape("(to continue it: --set distill.augment=0)")):
        run_curve(*args, tmp_path / "none", curve_cfg("distill.augment=2"), extras=EXTRAS, models=["tfidf"])
    run_curve(*args, tmp_path / "two", curve_cfg("distill.augment=2"), extras=EXTRAS, models=["tfidf"])
    with pytest.raises(ConfigError, match=re.escape("(to continue it: --set distill.augment=2)")):
        run_curve(*args, tmp_path / "two", curve_cfg("distill.augment=3"), extras=EXTRAS, models=["tfidf"])
    with pytest.raises(ConfigError, match=re.escape("--set distill.augment=2 --set distill.augment_mask=0.1")):
        run_curve(*args, tmp_path / "two", curve_cfg(), extras=EXTRAS, models=["tfidf"])


def test_copies_asked_for_of_an_empty_pool_are_warned_about(world, tmp_path, caplog):
    """--texts task:FILE of the teacher's own task adds no unlabelled text, so distill.augment copies nothing: said."""
    args = (world / "teacher", "preset:tiny", [f"task:{world / 'great.csv'}"], tmp_path / "student")
    with caplog.at_level("WARNING"):
        result = D.distill(*args, student_cfg(world, "distill.augment=2", "distill.epochs=1"), seeds=(0,))
    assert result.texts["augmented"] == 0
    assert "distill.augment=2 made no copies" in caplog.text
