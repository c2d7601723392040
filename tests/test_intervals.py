"""Accuracy intervals: a seeded percentile bootstrap over the test examples, and the small-test warning."""

import math

import numpy as np
import pytest

from pretrainlab.metrics import SMALL_TEST, bootstrap_interval, score, small_test_warning


def test_the_interval_holds_the_mean_has_the_binomial_width_and_is_seeded():
    right = np.array([1] * 300 + [0] * 100)  # accuracy 0.75 on 400 examples
    ci = bootstrap_interval(right)
    assert ci.n == 400 and ci.low < 0.75 < ci.high
    normal = 2 * 1.96 * math.sqrt(0.75 * 0.25 / 400)  # the textbook width, 0.085
    assert abs(ci.width - normal) < 0.15 * normal
    assert bootstrap_interval(right) == ci  # the same predictions, the same interval
    assert bootstrap_interval(np.array([1] * 30 + [0] * 10)).width > 2.5 * ci.width  # 10x fewer examples: ~3.2x wider


def test_shares_of_seeds_resample_examples_like_right_and_wrong_do():
    right = np.array([1] * 300 + [0] * 100)
    # 0/1 values take the Binomial shortcut, other values resample indices: the same distribution
    shifted = bootstrap_interval(0.5 + 0.5 * right)  # values 0.5 and 1.0
    ci = bootstrap_interval(right)
    assert shifted.low == pytest.approx(0.5 + 0.5 * ci.low, abs=0.01)
    assert shifted.high == pytest.approx(0.5 + 0.5 * ci.high, abs=0.01)


def test_score_carries_the_interval():
    m = score([0, 1, 1, 0] * 10, [0, 1, 0, 0] * 10, ["a", "b"])
    assert m.accuracy == 0.75 and m.accuracy_ci == bootstrap_interval(np.array([1, 1, 0, 1] * 10))
    assert m.to_dict()["accuracy_ci"]["n"] == 40


def test_a_small_test_split_is_warned_with_its_width():
    assert small_test_warning(SMALL_TEST) is None
    text = small_test_warning(50)
    width = bootstrap_interval(np.arange(50) % 2).width
    assert f"only 50 examples: an accuracy's 95% interval is up to {100 * width:.0f} points wide" in text
    assert 24 <= 100 * width <= 32  # 2 x 1.96 x sqrt(0.25 / 50) = 0.277
    assert "validation split has only 20" in small_test_warning(20, "validation")
