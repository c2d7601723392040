"""The learning curve: stratified, nested subsamples shared by every model; the CSV schema; bad input."""

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from pretrainlab.cli import main
from pretrainlab.config import ConfigError
from pretrainlab.curve import (
    CSV_COLUMNS,
    MODELS,
    OLD_CSV_COLUMNS,
    CurvePoint,
    default_label_counts,
    markdown_table,
    parse_label_counts,
    read_csv,
    stratified_order,
    subsample,
)
from pretrainlab.data.tasks import Task, TaskSplit


def toy_task(n_per_class=(60, 30, 10), seed=0):
    rng = random.Random(seed)
    texts, labels = [], []
    for c, n in enumerate(n_per_class):
        for i in range(n):
            texts.append(f"class{c} text {i} " + " ".join(rng.choice("abcdef") for _ in range(3)))
            labels.append(c)
    order = list(range(len(texts)))
    rng.shuffle(order)
    train = TaskSplit([texts[i] for i in order], [labels[i] for i in order], lines=list(range(len(order))))
    test = TaskSplit(["class0 x", "class1 y", "class2 z"], [0, 1, 2], lines=[1, 2, 3])
    return Task(name="toy", label_names=["a", "b", "c"], train=train, validation=test, test=test,
                source="toy.csv", split_kind="stratified")


def test_every_prefix_is_stratified_and_prefixes_are_nested():
    task = toy_task()
    labels = np.asarray(task.train.labels)
    shares = np.bincount(labels) / len(labels)
    order = stratified_order(task.train.labels, seed=3)
    assert sorted(order) == list(range(len(labels)))  # a permutation
    for n in range(1, len(order) + 1):
        counts = np.bincount(labels[order[:n]], minlength=3)
        assert np.all(np.abs(counts - n * shares) <= 1.0 + 1e-9), (n, counts)
    assert stratified_order(task.train.labels, seed=3) == order  # the same for every model of a seed
    assert stratified_order(task.train.labels, seed=4) != order


def test_subsamples_are_nested_and_a_fifth_is_validation():
    task = toy_task()
    key = lambda s: set(zip(s.texts, s.labels))  # noqa: E731
    small, large = subsample(task, 20, seed=1), subsample(task, 50, seed=1)
    assert len(small.train) == 16 and len(small.validation) == 4
    assert len(large.train) == 40 and len(large.validation) == 10
    assert key(small.train) <= key(large.train) and key(small.validation) <= key(large.validation)
    assert not key(large.train) & key(large.validation)
    assert key(large.train) | key(large.validation) <= key(task.train)
    assert large.test is task.test  # every model is scored on the whole test split
    again = subsample(task, 50, seed=1)
    assert again.train.texts == large.train.texts and again.validation.texts == large.validation.texts


def test_label_counts_are_checked_against_the_task():
    task = toy_task()
    assert parse_label_counts(["20", "all", "50", "20"], task) == [20, 50, 100]
    with pytest.raises(ConfigError, match=r"--labels 101: the training split of toy has only 100 examples; use at "
                       r"most 100 \(or 'all'\), or leave --labels out for counts that fit \(100\)"):
        parse_label_counts(["101"], task)
    # the smallest class holds 10% of the examples: at least 20 labels give it 2 (train + validation)
    with pytest.raises(ConfigError, match=r"--labels 2: too small to stratify .*use at least 20"):
        parse_label_counts(["2"], task)
    with pytest.raises(ConfigError, match="whole numbers"):
        parse_label_counts(["many"], task)


def test_default_label_counts_fit_the_training_split():
    assert default_label_counts(toy_task((200, 100, 100))) == [100, 300, 400]  # the 400 training examples of a 500-row CSV
    assert parse_label_counts(None, toy_task((200, 100, 100))) == [100, 300, 400]
    assert default_label_counts(toy_task((2500, 2000, 500))) == [100, 300, 1000, 3000, 5000]
    assert default_label_counts(toy_task((1000, 500, 500))) == [100, 300, 1000, 2000]
    assert default_label_counts(toy_task((30, 20, 10))) == [60]  # below 100: all of it
    assert default_label_counts(toy_task((600, 390, 10))) == [300, 1000]  # 1% of one class: 100 cannot give it 2


def test_csv_schema_is_exact(tmp_path):
    path = tmp_path / "curve.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        w.writerow([100, "tfidf", 0, "0.5", "0.4", "0.45", "0.55"])
    (p,) = read_csv(path)
    assert (p.labels, p.model, p.seed, p.ci_low, p.ci_high) == (100, "tfidf", 0, 0.45, 0.55)
    assert CSV_COLUMNS == ("labels", "model", "seed", "accuracy", "macro_f1", "ci_low", "ci_high")
    assert MODELS == ("pretrained", "random-init", "tfidf", "majority", "reference")


def test_a_curve_csv_from_before_the_intervals_is_read_and_resumed(tmp_path):
    from pretrainlab.curve import _resume

    out = tmp_path / "c"
    out.mkdir()
    with open(out / "curve.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(OLD_CSV_COLUMNS)
        w.writerow([100, "tfidf", 0, "0.5", "0.4"])
    (p,) = read_csv(out / "curve.csv")  # benchmarks/scaling/table.py reads old directories
    assert (p.labels, p.accuracy, p.ci_low, p.ci_high) == (100, 0.5, None, None)
    (out / "curve-settings.json").write_text('{"run": "r"}')
    assert _resume(out, {"run": "r"}) == [p]
    with open(out / "curve.csv", newline="") as f:  # new rows can follow: the header has the new columns
        assert list(csv.reader(f)) == [list(CSV_COLUMNS), ["100", "tfidf", "0", "0.500000", "0.400000", "", ""]]
    assert "| 0.5000 |" in markdown_table([p])  # no interval where none was measured


def test_the_reference_rows_self_train_with_the_settings_the_curve_records(tmp_path):
    """Without reference settings (a library call) the reference's rows self-train with its run's own selftrain
    section, and the curve records that section (it recorded None before); a curve from before resumes."""
    from types import SimpleNamespace

    from pretrainlab.config import load_config
    from pretrainlab.curve import _extra_settings, _jsonable, _resume
    from pretrainlab.curve_rows import CurveExtras, CurveRows

    cfg, extras = load_config(None, []), CurveExtras(self_train=True)
    ref = SimpleNamespace(config=load_config(None, ["selftrain.rounds=2"]))
    dapt = SimpleNamespace(config=load_config(None, ["selftrain.rounds=3", "train.lr=1e-4"]))
    rows = CurveRows(SimpleNamespace(config=cfg), ref, dapt, SimpleNamespace(test=SimpleNamespace(texts=[])), cfg,
                     None, tmp_path, extras, None, 1)
    recorded = _extra_settings(extras, cfg, None, None, ref=ref)["self_train"]["reference_selftrain"]
    assert recorded == _jsonable(ref.config.selftrain) and recorded["rounds"] == 2
    for model in ("reference", "reference+dapt"):  # one source: the rows self-train as recorded
        assert _jsonable(rows.source(model)[1].selftrain) == recorded, model
    assert rows.source("reference+dapt")[1].train.lr == 1e-4  # the rest of the adapted run's config, as before
    assert _extra_settings(extras, cfg, None, None)["self_train"]["reference_selftrain"] is None  # no reference rows
    rounds_4 = load_config(None, ["selftrain.rounds=4"])  # reference settings without a reference: recorded as before
    assert _extra_settings(extras, cfg, rounds_4, None)["self_train"]["reference_selftrain"]["rounds"] == 4

    out = tmp_path / "c"
    out.mkdir()
    now = {"run": "r", "reference": "ref", **_extra_settings(extras, cfg, None, None, ref=ref)}
    before = {**now, "self_train": {"selftrain": _jsonable(cfg.selftrain), "reference_selftrain": None}}  # the old code's
    (out / "curve-settings.json").write_text(json.dumps(before))
    (out / "curve.csv").write_text(",".join(CSV_COLUMNS) + "\n")
    assert _resume(out, now, ref_own_selftrain=_jsonable(ref.config.selftrain)) == []
    other = {"run": "r", "reference": "ref",  # reference settings of another selftrain: not the rows it holds
             **_extra_settings(extras, cfg, rounds_4, None, ref=ref)}
    with pytest.raises(ConfigError, match=r"other settings \(.*: self_train\)"):
        _resume(out, other, ref_own_selftrain=_jsonable(ref.config.selftrain))
    assert json.loads((out / "curve-settings.json").read_text()) == before


def test_the_reference_dapt_record_names_the_head_warmup_the_adaptation_uses(tmp_path):
    """Without reference settings (a library call) the reference is adapted with its run's own train.head_warmup
    (reference_settings), and the curve records that one (it recorded the curve's own before); a curve from before
    resumes when nothing changed."""
    from types import SimpleNamespace

    from pretrainlab.config import load_config
    from pretrainlab.curve import _extra_settings, _resume
    from pretrainlab.curve_rows import CurveExtras, reference_settings

    cfg, extras = load_config(None, ["train.head_warmup=0.1"]), CurveExtras(reference_dapt="4")
    ref = SimpleNamespace(config=load_config(None, ["train.head_warmup=0.2"]))
    recorded = _extra_settings(extras, cfg, None, None, ref=ref)["reference_dapt"]["head_warmup"]
    assert recorded == reference_settings(None, ref).train.head_warmup == 0.2  # what adapt_reference gets
    given = load_config(None, ["train.head_warmup=0.3"])  # reference settings (the CLI's): theirs, as before
    assert _extra_settings(extras, cfg, given, None, ref=ref)["reference_dapt"]["head_warmup"] == 0.3

    out = tmp_path / "c"
    out.mkdir()
    now = {"run": "r", "reference": "ref", **_extra_settings(extras, cfg, None, None, ref=ref)}
    before = {**now, "reference_dapt": {**now["reference_dapt"], "head_warmup": 0.1}}  # the old code's record
    (out / "curve-settings.json").write_text(json.dumps(before))
    (out / "curve.csv").write_text(",".join(CSV_COLUMNS) + "\n")
    assert _resume(out, now, dapt_warmup_before=0.1) == []
    with pytest.raises(ConfigError, match=r"other settings \(.*: reference_dapt\)"):  # the curve's value changed
        _resume(out, now, dapt_warmup_before=0.05)
    assert json.loads((out / "curve-settings.json").read_text()) == before


def test_a_cell_shows_the_seeds_intervals():
    points = [CurvePoint(100, "tfidf", s, acc, 0.5, acc - 0.1, acc + 0.1) for s, acc in ((0, 0.6), (1, 0.7))]
    assert "| 0.6500 ± 0.0707 [0.550, 0.750] |" in markdown_table(points)
    assert "[" not in markdown_table(points, "macro_f1")


# --------------------------------------------------------------------------- end to end, tiny


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from test_finetune import make_run

    return make_run(tmp_path_factory.mktemp("curve") / "run")


def test_curve_writes_the_exact_schema_for_every_model_and_resumes(tiny_run, tmp_path, capsys):
    from test_finetune import SETTINGS as TINY, great_csv

    task = great_csv(tmp_path / "great.csv", n=200)
    out = tmp_path / "curve"
    sets = [x for s in TINY + ["finetune.epochs=1", "finetune.min_steps=4"] for x in ("--set", s)]
    assert main(["curve", str(tiny_run), "--task", str(task), "--labels", "20", "all", "--seeds", "0", "1",
                 "--out", str(out), *sets]) == 0
    with open(out / "curve.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    n_all = 160  # 200 rows, 10% validation and 10% test held out by the task's own split
    got = {(int(r[0]), r[1], int(r[2])) for r in rows[1:]}
    assert got == {(n, m, s) for n in (20, n_all) for m in MODELS[:4] for s in (0, 1)}
    assert all(0.0 <= float(r[3]) <= 1.0 and 0.0 <= float(r[4]) <= 1.0 for r in rows[1:])
    assert all(float(r[5]) <= float(r[3]) <= float(r[6]) for r in rows[1:])
    assert (out / "curve.png").stat().st_size > 0 and "| 20 |" in (out / "curve.md").read_text()
    printed = capsys.readouterr()
    assert "pretrained - random-init" in printed.out
    assert "curve: great: 160 training examples, label counts 20 160 (a fifth of each for validation); " \
           "20 test examples score every model" in printed.err
    assert "warning: the test split has only 20 examples" in printed.err
    main(["curve", str(tiny_run), "--task", str(task), "--labels", "20", "all", "--seeds", "0", "1",
          "--out", str(out), *sets])  # everything done: nothing is added twice
    with open(out / "curve.csv", newline="") as f:
        assert len(list(csv.reader(f))) == len(rows)


@pytest.mark.usefixtures("one_thread")  # the workers get threads // jobs = 1 too: the very same arithmetic
def test_curve_jobs_gives_the_same_curve_in_the_same_order_and_resumes_with_any_jobs(tiny_run, tmp_path, capsys):
    """curve --jobs 2: the fine-tuning fits run in two worker processes; curve.csv and the details hold the same rows
    in the same order as one job gives, and a curve stopped part way (by either) continues with the other value."""
    from test_finetune import SETTINGS as TINY, great_csv

    task = great_csv(tmp_path / "great.csv", n=200)
    sets = [x for s in TINY + ["finetune.epochs=1", "finetune.min_steps=4"] for x in ("--set", s)]

    def curve(out, jobs):
        return main(["curve", str(tiny_run), "--task", str(task), "--labels", "20", "all", "--seeds", "0", "1",
                     "--out", str(out), "--jobs", str(jobs), *sets])

    def rows(out):  # details without the seconds and the speed, which are timings
        details = [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "texts_per_s")}
                   for line in (out / "curve-details.jsonl").read_text().splitlines()]
        return (out / "curve.csv").read_text(), details

    one, two = tmp_path / "one", tmp_path / "two"
    assert curve(one, 1) == 0 and "worker processes" not in capsys.readouterr().err
    assert curve(two, 2) == 0
    assert "curve: 2 fine-tuning fits at once, in worker processes of 1 torch thread each" in capsys.readouterr().err
    assert rows(two) == rows(one)
    assert len(rows(one)[1]) == 16 and not list(two.glob("work/*"))  # every row, and no fit's work left behind
    # stopped after 3 rows (the others' fits lost): run again with 2 jobs, the same curve
    csv_text, _ = rows(one)
    (one / "curve.csv").write_text("".join(csv_text.splitlines(keepends=True)[:4]))
    details = (one / "curve-details.jsonl").read_text().splitlines(keepends=True)
    (one / "curve-details.jsonl").write_text("".join(details[:3]))
    assert curve(one, 2) == 0
    assert rows(one) == rows(two)


def test_a_fit_that_fails_in_a_worker_gives_the_error_of_one_job(tiny_run, tmp_path, capsys):
    from test_finetune import SETTINGS as TINY, great_csv

    task = great_csv(tmp_path / "great.csv", n=200)
    sets = [x for s in TINY + ["finetune.epochs=1", "finetune.min_steps=2"] for x in ("--set", s)]
    errors = []
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        broken = out / "work" / "20-random-init-seed0" / "result.json"  # a finished fit's result, unreadable
        broken.parent.mkdir(parents=True)
        broken.write_text("{not json")
        assert main(["curve", str(tiny_run), "--task", str(task), "--labels", "20", "--seeds", "0", "--out", str(out),
                     "--models", "pretrained", "random-init", "--jobs", str(jobs), *sets]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        errors.append(err.splitlines()[-1].replace(str(out), "OUT"))
    assert errors[0] == errors[1]
    assert errors[0].startswith("error: OUT/work/20-random-init-seed0/result.json is unreadable (")
    assert errors[0].endswith("); delete OUT/work/20-random-init-seed0 to train this seed again")


def test_a_failing_curve_signals_its_live_workers_and_a_pool_without_processes_gets_none(monkeypatch, caplog):
    """_signal_workers reads ProcessPoolExecutor's private _processes (no public way before Python 3.14): the live
    workers get the signal; a Python whose pool lacks the attribute sends nothing, says so, and raises nothing."""
    import signal
    from concurrent.futures import ProcessPoolExecutor
    from types import SimpleNamespace

    from pretrainlab import curve_jobs

    sent = []
    monkeypatch.setattr(curve_jobs.os, "kill", lambda pid, signum: sent.append((pid, signum)))
    pool = ProcessPoolExecutor(1)  # no worker starts before a submit
    live, gone = SimpleNamespace(pid=11, is_alive=lambda: True), SimpleNamespace(pid=12, is_alive=lambda: False)
    monkeypatch.setattr(pool, "_processes", {11: live, 12: gone})
    curve_jobs._signal_workers(pool, signal.SIGTERM)
    assert sent == [(11, signal.SIGTERM)]
    monkeypatch.delattr(pool, "_processes")
    with caplog.at_level("WARNING", logger="pretrainlab.curve_jobs"):
        curve_jobs._signal_workers(pool, signal.SIGTERM)
    assert sent == [(11, signal.SIGTERM)]
    assert "worker pool hides its processes; waiting for the running fits to finish" in caplog.text
    pool.shutdown()


def test_curve_jobs_below_one_is_refused_and_a_gpu_runs_one_fit_at_a_time(tiny_run, tmp_path, monkeypatch, capsys,
                                                                         caplog):
    import torch

    from pretrainlab.curve_jobs import check_jobs
    from test_finetune import great_csv

    task = great_csv(tmp_path / "great.csv", n=200)
    assert main(["curve", str(tiny_run), "--task", str(task), "--out", str(tmp_path / "c"), "--jobs", "0"]) == 2
    assert "error: --jobs 0: give the number of fine-tuning fits to run at once, 1 or more" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # refused before any work
    assert check_jobs(2, ["auto", "cpu"]) == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with caplog.at_level("WARNING"):
        assert check_jobs(2, ["auto"]) == 1
    assert "curve --jobs 2: the fits would share one GPU; running them one at a time" in caplog.text


def test_curve_models_selects_what_is_trained(tiny_run, tmp_path, capsys):
    from test_finetune import SETTINGS as TINY, great_csv

    task = great_csv(tmp_path / "great.csv", n=200)
    sets = [x for s in TINY + ["finetune.epochs=1", "finetune.min_steps=4"] for x in ("--set", s)]
    out = tmp_path / "c"
    assert main(["curve", str(tiny_run), "--task", str(task), "--labels", "20", "--seeds", "0", "--out", str(out),
                 "--models", "pretrained", "majority", *sets]) == 0
    with open(out / "curve.csv", newline="") as f:
        assert [(r[1], r[2]) for r in list(csv.reader(f))[1:]] == [("pretrained", "0"), ("majority", "0")]
    assert main(["curve", str(tiny_run), "--task", str(task), "--labels", "20", "--out", str(tmp_path / "d"),
                 "--models", "pretrained", "bert", *sets]) == 2
    assert "--models pretrained bert: choose among pretrained, random-init" in capsys.readouterr().err
    assert main(["curve", str(tiny_run), "--task", str(task), "--labels", "20", "--out", str(tmp_path / "e"),
                 "--models", "reference", *sets]) == 2
    assert "--models reference needs --reference RUN" in capsys.readouterr().err


def test_the_reference_fine_tunes_at_its_own_rate_and_its_rows_keep_it(tiny_run, tmp_path, monkeypatch, capsys):
    """curve --reference-lr: the reference (an imported checkpoint wants a trained model's rate) fine-tunes at it while
    the run keeps finetune.lr; a curve's reference rows of one rate are not continued at another."""
    from pretrainlab import curve_rows
    from test_finetune import SETTINGS as TINY, great_csv

    rates = []
    real = curve_rows.prepare_finetune

    def recording(pre, sub, cfg, *a, **kw):
        rates.append((str(pre.run_dir), cfg.finetune.lr))
        return real(pre, sub, cfg, *a, **kw)

    monkeypatch.setattr(curve_rows, "prepare_finetune", recording)
    task = great_csv(tmp_path / "great.csv", n=200)
    sets = [x for s in TINY + ["finetune.epochs=1", "finetune.min_steps=2", "finetune.lr=0.005"] for x in ("--set", s)]
    out = tmp_path / "c"

    def curve(*extra):
        return main(["curve", str(tiny_run), "--task", str(task), "--labels", "20", "--seeds", "0", "--out", str(out),
                     "--reference", str(tiny_run), "--models", "pretrained", "reference", *extra, *sets])

    assert curve("--reference-lr", "1e-4") == 0
    assert rates == [(str(tiny_run), 0.005), (str(tiny_run), 1e-4)]  # the run, then the reference (the same dir here)
    meta = out / "curve-settings.json"  # a curve from before the setting resumes (and records it)
    meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "reference_lr"}))
    assert curve("--reference-lr", "1e-4") == 0 and len(rates) == 2 and json.loads(meta.read_text())["reference_lr"]
    assert curve("--reference-lr", "3e-4") == 2
    assert "other settings" in capsys.readouterr().err and "reference_lr" in (out / "curve-settings.json").read_text()
    assert curve() == 2  # without it: the run's rate, which its rows were not trained at
    capsys.readouterr()
    assert main(["curve", str(tiny_run), "--task", str(task), "--out", str(tmp_path / "d"), "--reference-lr", "1e-4",
                 *sets]) == 2
    assert "--reference-lr is the --reference's fine-tuning rate; give --reference DIR" in capsys.readouterr().err


def test_curve_refuses_label_counts_the_task_cannot_give(tiny_run, tmp_path, capsys):
    from test_finetune import SETTINGS as TINY, great_csv

    task = great_csv(tmp_path / "great.csv", n=200)
    sets = [x for s in TINY for x in ("--set", s)]
    assert main(["curve", str(tiny_run), "--task", str(task), "--labels", "5000", "--out", str(tmp_path / "c"), *sets]) == 2
    assert "--labels 5000: the training split of great has only 160 examples" in capsys.readouterr().err


# --------------------------------------------------------------------------- task text as a corpus


def test_task_corpus_holds_the_training_texts_only(tmp_path):
    from test_finetune import great_csv

    from pretrainlab.config import load_config
    from pretrainlab.data.prepare import prepare_corpus
    from pretrainlab.data.tasks import task_from_config
    from pretrainlab.data.task_text import resolve_task_inputs

    task_file = great_csv(tmp_path / "great.csv", n=200)
    cfg = load_config(None, ["data.vocab_size=100", "data.min_chars=1", f"finetune.task={task_file}"])
    task = task_from_config(cfg.finetune)
    (path,) = resolve_task_inputs([f"task:{task_file}"], cfg.finetune, cache_dir=tmp_path / "cache")
    lines = {line for line in Path(path).read_text().splitlines() if line}
    assert lines == set(task.train.texts)
    assert not lines & (set(task.validation.texts) | set(task.test.texts))
    report = prepare_corpus([f"task:{task_file}"], tmp_path / "prepared", cfg.data, finetune_cfg=cfg.finetune)
    assert ": 8 documents" in report.summary()  # 160 training texts, 20 to a document


def test_task_inputs_fail_clearly():
    from pretrainlab.config import load_config
    from pretrainlab.data.task_text import resolve_task_inputs
    from pretrainlab.errors import CorpusError

    ft = load_config(None, []).finetune
    with pytest.raises(CorpusError, match=r"input 'task:nosuchtask': task 'nosuchtask' is neither a file nor"):
        resolve_task_inputs(["task:nosuchtask"], ft)
    with pytest.raises(CorpusError, match="name a task after 'task:'"):
        resolve_task_inputs(["task:"], ft)


def test_missing_text_column_is_named(tmp_path):
    from test_finetune import great_csv

    from pretrainlab.config import load_config
    from pretrainlab.data.task_text import resolve_task_inputs
    from pretrainlab.errors import CorpusError

    task_file = great_csv(tmp_path / "great.csv")
    ft = load_config(None, ["finetune.text_column=review"]).finetune
    with pytest.raises(CorpusError, match=r"no column 'review'"):
        resolve_task_inputs([f"task:{task_file}"], ft, cache_dir=tmp_path)


# --------------------------------------------------------------------------- the defaults are the measured recipe


def test_defaults_build_the_measured_cpu_recipe():
    from pretrainlab.config import Budget, load_config

    c = load_config(None, [])
    assert (c.model.preset, c.model.style, c.model.dropout) == ("auto", "modern", 0.0)  # auto: tiny at 5 minutes
    assert (c.data.seq_len, c.data.vocab_size, c.objective.tie_embeddings, c.objective.mask_rate) == (64, 0, False, 0.15)
    assert c.train.lr == 2e-3 and Budget.parse(c.train.budget).seconds == 300
    f = c.finetune
    assert (f.pooling, f.dropout, f.lr, f.epochs, f.min_steps, f.steps) == ("mean", 0.1, 1e-3, 20, 200, 0)
    assert (f.budget, f.max_minutes, f.evals, f.patience) == ("auto", 5.0, 20, 0)  # docs/finetuning.md


def test_fine_tuning_budget_has_a_floor_for_small_tasks(tiny_run, tmp_path):
    from test_finetune import SETTINGS as TINY, great_csv

    from pretrainlab.config import load_config
    from pretrainlab.finetune import finetune

    task = great_csv(tmp_path / "great.csv", n=60)  # 48 training rows: 3 steps an epoch at batch 16
    cfg = lambda *x: load_config(None, TINY + ["finetune.patience=0", *x])  # noqa: E731
    assert finetune(tiny_run, task, cfg("finetune.epochs=2", "finetune.min_steps=10"), seeds=(0,)).seeds[0].steps == 10
    assert finetune(tiny_run, task, cfg("finetune.epochs=5", "finetune.min_steps=10"), seeds=(0,)).seeds[0].steps == 15
    assert finetune(tiny_run, task, cfg("finetune.steps=7", "finetune.min_steps=10"), seeds=(0,)).seeds[0].steps == 7


def test_a_tokenizer_that_does_not_fit_the_task_is_named(tiny_run, tmp_path, capsys):
    from test_finetune import SETTINGS as TINY

    from pretrainlab.config import load_config
    from pretrainlab.finetune import finetune

    lines = ["text,label"] + [f"今天天气很好{i},{'a' if i % 2 else 'b'}" for i in range(40)]
    (tmp_path / "zh.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    finetune(tiny_run, tmp_path / "zh.csv", load_config(None, TINY + ["finetune.steps=1"]), seeds=(0,), quiet=True)
    err = capsys.readouterr().err
    assert "warning: the run's tokenizer maps" in err and "[UNK]" in err
