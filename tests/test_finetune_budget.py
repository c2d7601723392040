"""The fine-tuning budget (issue #26 item 6): units as train.budget, an auto budget with a step floor and a
time cap, validations whose number does not grow with the task, no early stopping by default, the time left."""

import json
import math

import pytest
import torch

from pretrainlab.cli import main
from pretrainlab.config import Budget, ConfigError, load_config
from pretrainlab.curve import BEFORE_BUDGETS, Eta, _resume
from pretrainlab.finetune import finetune, finetune_budget, validation_interval
from pretrainlab.loop import BudgetSchedule, ProgressBar

from conftest import FINETUNE, TINY, TRANSFORMER

SETTINGS = TINY + TRANSFORMER + FINETUNE
NEW_RULE = ["finetune.evals=20", "finetune.max_minutes=5", "finetune.patience=0"]
"""The package defaults, which conftest's TINY pins to the rule the older tests were written against."""

pytestmark = pytest.mark.usefixtures("one_thread")


def ft(*settings):
    return load_config(None, list(settings)).finetune


def test_the_budget_takes_train_budget_units_and_auto_scales_with_the_task():
    auto = ft()
    assert finetune_budget(auto, 25) == Budget(steps=500, seconds=300)  # 1,000 labels: 20 epochs of 25 steps
    assert finetune_budget(auto, 8) == Budget(steps=200, seconds=300)  # 300 labels: the 200-step floor
    assert finetune_budget(ft("finetune.max_minutes=0"), 250) == Budget(steps=5000)
    assert finetune_budget(ft("finetune.budget=2000"), 25) == Budget(steps=2000)
    assert finetune_budget(ft("finetune.budget=90s"), 25) == Budget(seconds=90)
    assert finetune_budget(ft("finetune.budget=3Mtok"), 25) == Budget(tokens=3_000_000)
    assert finetune_budget(ft("finetune.steps=7"), 25) == Budget(steps=7)  # the older spelling
    with pytest.raises(ConfigError, match=r"finetune.budget='ten' is not a budget; write e.g. 2000 \(steps\), 10m"):
        ft("finetune.budget=ten")
    with pytest.raises(ConfigError, match="finetune.steps=7 and finetune.budget=90s both set the budget"):
        ft("finetune.steps=7", "finetune.budget=90s")
    with pytest.raises(ConfigError, match="finetune.max_minutes=-1.0"):
        ft("finetune.max_minutes=-1")


def test_the_number_of_validations_does_not_grow_with_the_task():
    for per_epoch in (3, 8, 25, 250):
        b = finetune_budget(ft(), per_epoch)
        assert math.ceil(b.steps / validation_interval(ft(), b, per_epoch)) == 20
    assert validation_interval(ft("finetune.evals=0"), Budget(steps=500), 25) == 25  # once an epoch, as before
    assert validation_interval(ft(), Budget(seconds=60), 25) == 25  # steps unknown: once an epoch


def test_a_schedule_of_steps_and_seconds_ends_with_whichever_runs_out_first():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = BudgetSchedule(opt, Budget(steps=100, seconds=10.0), warmup=0.0, tokens_per_step=0)
    sched.step(0, 1.0)  # step 1 at 1 s: the time is the larger share
    assert sched.progress() == pytest.approx(0.1) and sched.apply() == pytest.approx(0.9)
    for _ in range(49):
        sched.step(0, 2.0)  # step 50 at 2 s: now the steps are
    assert sched.progress() == pytest.approx(0.5) and not sched.done()
    sched.step(0, 10.0)
    assert sched.done() and sched.apply() == 0.0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from test_finetune import make_run

    return make_run(tmp_path_factory.mktemp("budget") / "run")


def test_by_default_a_run_trains_its_whole_budget_with_twenty_validations(run, tmp_path):
    from test_finetune import great_csv

    task = great_csv(tmp_path / "great.csv")  # 128 training rows: 8 steps an epoch at batch 16
    cfg = load_config(None, SETTINGS + NEW_RULE + ["finetune.epochs=5", "finetune.min_steps=0"])
    seed = finetune(run, task, cfg, seeds=(0,), quiet=True).seeds[0]
    assert seed.steps == 40 and not seed.stopped_early
    vals = [h["step"] for h in seed.history if "val_acc" in h]
    assert vals == list(range(2, 41, 2))  # every 40 / 20 steps, the last at the budget's end

    capped = finetune(run, task, load_config(None, SETTINGS + NEW_RULE + ["finetune.epochs=10000",
                                                                           "finetune.max_minutes=0.002"]),
                      seeds=(0,), quiet=True).seeds[0]
    assert 0 < capped.steps < 80_000 and not capped.stopped_early  # 0.12 s, not 10,000 epochs


def test_finetune_says_its_budget_and_the_time_left(run, tmp_path, capsys):
    from test_finetune import great_csv

    task = great_csv(tmp_path / "great.csv")
    sets = [x for s in SETTINGS + NEW_RULE + ["finetune.epochs=5", "finetune.min_steps=0"] for x in ("--set", s)]
    assert main(["finetune", str(run), "--task", str(task), "--out", str(tmp_path / "ft"), "--seeds", "0", "1",
                 *sets]) == 0
    err = capsys.readouterr().err
    assert ("budget per seed: 40 steps (5.0 epochs of 8) or 5m 00s, whichever ends first; validation every 2 steps; "
            "no early stopping (the LR decays to 0; the best validation's weights are kept)") in err
    assert "left for 1 more seed(s)" in err


def test_the_progress_bar_says_the_time_left(capsys):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = BudgetSchedule(opt, Budget(steps=20), warmup=0.0, tokens_per_step=0)
    bar = ProgressBar(sched, "finetune great seed 0")
    for _ in range(10):
        sched.step(16, 0.0)
        bar.update(sched.step_count, sched, 0.5)
    bar.close()
    err = capsys.readouterr().err
    assert "finetune great seed 0  50%" in err and " elapsed, " in err and " left " in err


def test_the_curve_counts_down_from_the_fine_tunes_done():
    eta = Eta([None, Budget(steps=100, seconds=300), Budget(steps=300, seconds=20), None, Budget(seconds=60)])
    assert eta.left() is None  # nothing fine-tuned yet
    eta.done(0.5)  # a baseline
    assert eta.left() is None
    eta.done(10.0)  # 100 steps in 10 s
    assert eta.left() == pytest.approx(20 + 60)  # 300 steps would take 30 s: its 20 s cap; a 60 s budget


def test_a_curve_from_before_the_budget_settings_resumes_under_the_old_rule(tmp_path):
    cfg = lambda *x: load_config(None, list(x)).finetune  # noqa: E731
    from pretrainlab.curve import _jsonable

    old = _jsonable(cfg("finetune.patience=3"))
    for key in BEFORE_BUDGETS:
        del old[key]
    (tmp_path / "curve-settings.json").write_text(json.dumps({"run": "r", "finetune": old}))
    (tmp_path / "curve.csv").write_text("labels,model,seed,accuracy,macro_f1\n")
    with pytest.raises(ConfigError, match="holds a learning curve with other settings"):
        _resume(tmp_path, {"run": "r", "finetune": _jsonable(cfg())})  # the new rule: not the curve's
    assert _resume(tmp_path, {"run": "r", "finetune": _jsonable(
        cfg("finetune.patience=3", "finetune.evals=0", "finetune.max_minutes=0"))}) == []
