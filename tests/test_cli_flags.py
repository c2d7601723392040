"""One flag vocabulary: --out for every output, --file for input files, --text-column / --pair-column /
--label-column on every command that reads a task; the old names still work with a one-line notice; finetune
and curve run the same seeds by default."""

import csv
import random

import pytest

from pretrainlab.cli import build_parser, main
from pretrainlab.config import load_config
from pretrainlab.train import pretrain

from conftest import FINETUNE, TINY, TRANSFORMER

SETTINGS = TINY + TRANSFORMER + ["train.batch_size=4", "train.eval_every=0", "train.eval_batches=1"]
FT = SETTINGS + FINETUNE + ["finetune.epochs=1"]
COLUMNS = ["--text-column", "review", "--label-column", "sentiment"]


def sets(settings):
    return [a for s in settings for a in ("--set", s)]


@pytest.fixture(scope="module")
def world(tiny_corpus, tmp_path_factory):
    """A 2-step pre-training run, a task file whose columns are not named text / label, and a model fine-tuned on
    it by naming them (--text-column / --label-column)."""
    root = tmp_path_factory.mktemp("flags")
    run = pretrain(load_config(None, SETTINGS + ["train.budget=2"]), tiny_corpus, root / "run")
    rng = random.Random(0)
    words = "the film was good bad dull fun long great awful story plot".split()
    with open(root / "reviews.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        w.writerows([f"{' '.join(rng.choice(words) for _ in range(6))} {i}", ("neg", "pos")[i % 2]] for i in range(60))
    model = root / "ft"
    assert main(["finetune", str(run), "--task", str(root / "reviews.csv"), *COLUMNS, "--out", str(model), "--seeds",
                 "0", *sets(FT)]) == 0
    return root, run, model


def test_every_command_writes_to_out_and_reads_file():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    reads_files = {"predict", "generate", "explain", "perplexity"}
    for name, p in sub.choices.items():
        options = {o for a in p._actions for o in a.option_strings}
        assert not options & {"--to", "--task-file", "--text-file"} or name in ("export", "explain", "perplexity")
        if name in reads_files:
            assert "--file" in options, name
    for name in ("finetune", "curve", "evaluate", "probe", "explain", "predict"):
        options = {o for a in sub.choices[name]._actions for o in a.option_strings}
        assert {"--text-column", "--pair-column"} <= options, name
        assert "--label-column" in options or name == "predict", name


def test_the_same_column_flags_on_every_command_that_reads_a_task(world, tmp_path, capsys):
    root, run, model = world  # fine-tuned with the flags
    task = str(root / "reviews.csv")
    cols = COLUMNS
    assert main(["evaluate", str(model), "--task", task, *cols, "--out", str(tmp_path / "eval")]) == 0
    assert main(["predict", str(model), "--file", task, "--text-column", "review", "--out", str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "p.csv").read_text().splitlines()[0].startswith("review,label,p_")
    assert main(["probe", str(run), "--task", task, *cols]) == 0
    assert main(["explain", str(model), "--file", task, *cols, "--steps", "2", "--max-examples", "4",
                 "--out", str(tmp_path / "r.html")]) == 0
    assert main(["curve", str(run), "--task", task, *cols, "--labels", "all", "--seeds", "0", "--models", "majority",
                 "--out", str(tmp_path / "curve"), *sets(FT)]) == 0
    assert "note: --" not in capsys.readouterr().err  # the current names: no notice
    # without them the file's columns are named in the error, with the flags to use
    assert main(["finetune", str(run), "--task", task, "--out", str(tmp_path / "x"), "--seeds", "0", *sets(FT)]) == 2
    assert "no column 'text'" in capsys.readouterr().err


def test_old_names_still_work_with_a_notice(world, tmp_path, capsys):
    root, run, model = world
    assert main(["export", str(model), "--to", str(tmp_path / "hf"), "--no-check"]) == 0
    err = capsys.readouterr().err
    assert "note: --to is now --out; the old name will go in a later release" in err and len(err.splitlines()) == 1
    assert (tmp_path / "hf" / "config.json").is_file()
    assert main(["explain", str(model), "--task-file", str(root / "reviews.csv"), "--text-column", "review",
                 "--label-column", "sentiment", "--steps", "2", "--max-examples", "4", "--out", str(tmp_path / "r.html")]) == 0
    assert "note: --task-file is now --file" in capsys.readouterr().err
    (tmp_path / "held.txt").write_text("the cat sat on the mat\nthe dog ran to the house\n")
    assert main(["perplexity", str(run), "--text-file", str(tmp_path / "held.txt")]) == 0
    assert "note: --text-file is now --file" in capsys.readouterr().err
    assert main(["predict", str(model), "--file", str(root / "reviews.csv"), "--text-column", "review",
                 "--text-pair-column", "sentiment", "--out", str(tmp_path / "p.csv")]) == 0
    assert "note: --text-pair-column is now --pair-column" in capsys.readouterr().err


def test_finetune_and_curve_default_to_the_same_seeds(world, capsys):
    """Both read finetune.seeds (0 1 2 unless the run or --set says otherwise), and their help says so."""
    _, run, _ = world
    assert load_config().finetune.seeds == (0, 1, 2)
    parser = build_parser()
    for command in ("finetune", "curve"):
        args = parser.parse_args([command, str(run), "--task", "t.csv", "--out", "o"])
        assert args.seeds is None  # -> finetune.seeds
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "default: finetune.seeds, 0 1 2" in " ".join(capsys.readouterr().out.split())
