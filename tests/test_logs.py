"""Messages through `logging`: the command line shows them on stderr (-q: warnings only, -v: debug too); a
library call left unconfigured prints warnings only, and no progress bar; metrics.csv beside metrics.jsonl."""

import csv
import json
import logging

import pytest

from pretrainlab.cli import main
from pretrainlab.config import load_config
from pretrainlab.logs import LOGGER, messages_shown
from pretrainlab.train import pretrain

from conftest import TINY, TRANSFORMER

SETTINGS = TINY + TRANSFORMER + ["train.budget=2", "train.batch_size=4", "train.eval_every=0", "train.eval_batches=1"]


@pytest.fixture
def unconfigured():
    """The pretrainlab logger as a library user finds it: no handler, no level (the root's WARNING applies)."""
    logger = logging.getLogger(LOGGER)
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:], logger.propagate = [], True
    logger.setLevel(logging.NOTSET)
    yield
    logger.handlers[:], logger.propagate = saved[0], saved[2]
    logger.setLevel(saved[1])


def test_a_library_call_prints_no_notes_and_no_progress_bar(tiny_corpus, tmp_path, capsys, caplog, unconfigured):
    pretrain(load_config(None, SETTINGS + ["train.progress=true"]), tiny_corpus, tmp_path / "quiet")
    assert capsys.readouterr().err == "" and caplog.records == []
    log = logging.getLogger(LOGGER + ".finetune")
    log.info("a note")
    log.warning("warning: something to know")  # reaches the root logger's handlers (Python's last resort: stderr)
    assert [r.getMessage() for r in caplog.records] == ["warning: something to know"]
    with messages_shown():  # what pretrainlab.logs.show_messages() gives a notebook
        pretrain(load_config(None, SETTINGS + ["train.progress=true"]), tiny_corpus, tmp_path / "shown")
    err = capsys.readouterr().err
    assert "model: transformer" in err and "pretrained 2 steps" in err and "\rpretrain " in err  # + the tqdm bar


def test_quiet_and_verbose_on_the_command_line(tiny_corpus, tmp_path, capsys):
    argv = ["pretrain", "--corpus", str(tiny_corpus)] + [a for s in SETTINGS for a in ("--set", s)]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "model: transformer" in err and "pretrainlab 0.1.0, Python" not in err
    assert main(["-q", *argv, "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().err == ""
    assert main([*argv, "--out", str(tmp_path / "c"), "-v"]) == 0
    assert "pretrainlab 0.1.0, Python" in capsys.readouterr().err  # the debug line a bug report wants
    # a renamed flag's notice is a warning: -q keeps it
    assert main(["-q", "perplexity", str(tmp_path / "a"), "--text-file", str(tmp_path / "nowhere.txt")]) == 2
    assert "note: --text-file is now --file" in capsys.readouterr().err
    logger = logging.getLogger(LOGGER)
    ours = [h for h in logger.handlers if type(h).__name__ == "_CurrentStderr"]
    assert logger.level == logging.INFO and len(ours) == 1  # main left the logger as it found it (conftest's)


def test_metrics_csv_holds_what_metrics_jsonl_holds(tiny_corpus, tmp_path):
    run = pretrain(load_config(None, SETTINGS + ["train.budget=6", "train.log_every=2", "train.eval_every=3"]),
                   tiny_corpus, tmp_path / "run")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = [(r["step"], k, float(v)) for r in records for k, v in r.items()
                if k != "step" and isinstance(v, (int, float))]
    assert [(int(r["step"]), r["metric"], float(r["value"])) for r in rows] == expected
    assert {"loss", "lr", "val_loss"} <= {r["metric"] for r in rows}


def test_library_modules_log_instead_of_printing_to_stderr():
    """Messages go through logging (so -q, -v and a notebook's configuration reach them); only the command line
    prints, its results on stdout and its errors on stderr."""
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "pretrainlab"
    found = []
    for path in sorted(src.rglob("*.py")):
        if path.name == "cli.py" or "remote" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
                    and any(k.arg == "file" and ast.unparse(k.value) == "sys.stderr" for k in node.keywords)):
                found.append(f"{path.relative_to(src)}:{node.lineno}")
    assert not found, f"print(..., file=sys.stderr) in {found}: use logging.getLogger(__name__).info / .warning"
