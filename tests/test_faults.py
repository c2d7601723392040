"""Faults: kill -9 while training or preparing, a crash inside a checkpoint write, a full disk,
truncated and corrupt checkpoints.

After every fault: `latest` names a complete checkpoint whose files match their sha256, at most
the steps since that checkpoint are lost, and a resumed run ends with exactly the weights of an
uninterrupted one (deterministic mode). A killed preparation, run again, writes exactly the shards
and manifest of an uninterrupted one.

Nothing in src/ helps: the tests kill real processes at moments they observe from outside (a
`step_*.tmp` directory appearing, a metrics line being written) or patch library functions.
The fast tests do one of each kind; the @slow ones kill many times at random moments.
"""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from pretrainlab import checkpoint as ckpt_mod
from pretrainlab.checkpoint import read_state
from pretrainlab.config import load_config
from pretrainlab.data import prepare as prep
from pretrainlab.data.prepare import prepare_corpus
from pretrainlab.errors import CheckpointError
from pretrainlab.tokenizer import save_tokenizer, train_tokenizer
from pretrainlab.train import pretrain

from conftest import TINY, TRANSFORMER

SETTINGS = TINY + TRANSFORMER + ["model.dropout=0", "train.batch_size=4", "train.lr=3e-3", "train.eval_every=0",
                              "train.eval_batches=1", "train.log_every=1", "train.deterministic=true",
                              "train.checkpoint_every=2"]
EVERY = 2  # train.checkpoint_every above
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cfg(*extra):
    return load_config(None, SETTINGS + list(extra))


# --------------------------------------------------------------------------- checks


def checkpoint_step(run: Path) -> int | None:
    """Step of the checkpoint `latest` names, after checking it completely; None before the first one."""
    ckpts = run / "checkpoints"
    pointer = ckpts / "latest"
    if not pointer.exists():
        return None
    name = pointer.read_text()
    assert name.endswith("\n") and name.strip(), f"latest is half-written: {name!r}"
    ckpt = ckpts / name.strip()
    assert ckpt.is_dir(), f"latest names {name.strip()}, which does not exist"
    state = read_state(ckpt)  # every file against its recorded sha256
    assert set(state["files"]) == {"model.safetensors", "optimizer.pt", "rng.safetensors"}
    load_file(str(ckpt / "model.safetensors"))
    torch.load(ckpt / "optimizer.pt", weights_only=True)
    return state["step"]


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    return load_file(str(ckpt / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=k)


def leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp"))


def logged_step(run: Path) -> int:
    """The furthest step any attempt logged (metrics.jsonl is flushed after every line)."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return 0
    steps = [json.loads(x)["step"] for x in path.read_text().splitlines() if x.endswith("}")]
    return max(steps, default=0)


# --------------------------------------------------------------------------- training in a subprocess


def start_pretrain(corpus: Path, run: Path, budget: int, resume: bool, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pretrainlab.cli", "pretrain", "--corpus", str(corpus), "--out", str(run)]
    for s in SETTINGS + [f"train.budget={budget}"]:
        cmd += ["--set", s]
    if resume:
        cmd.append("--resume")
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV)


def run_pretrain(corpus: Path, run: Path, budget: int, resume: bool, log: Path) -> None:
    proc = start_pretrain(corpus, run, budget, resume, log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]


def kill_when(proc: subprocess.Popen, run: Path, moment: str, rng: random.Random, after_first: bool = False,
              sig: int = signal.SIGKILL, span: float = 0.6) -> bool:
    """Send `sig` (SIGKILL) to the training process at `moment` and wait for it; False when it finished first.

    checkpoint: as soon as a step_*.tmp directory (a checkpoint being written) appears, after 0-2 ms
                (with after_first: only once a first checkpoint is complete)
    step:       0-10 ms after a new metrics line (the next step is running)
    random:     0-`span` seconds after this attempt's first metrics line
    """
    ckpts, metrics = run / "checkpoints", run / "metrics.jsonl"
    size = metrics.stat().st_size if metrics.exists() else 0
    started = None
    deadline = time.monotonic() + 600  # a loaded machine may take minutes to start a run
    while proc.poll() is None and time.monotonic() < deadline:
        if moment == "checkpoint":
            try:
                names = os.listdir(ckpts)
                writing = any(n.endswith(".tmp") and n.startswith("step_") for n in names)
                writing = writing and (not after_first or "latest" in names)
            except FileNotFoundError:
                writing = False
            if writing:
                time.sleep(rng.uniform(0, 0.002))
                break
        else:
            now = metrics.stat().st_size if metrics.exists() else 0
            if moment == "step" and now > size:
                time.sleep(rng.uniform(0, 0.010))
                break
            if moment == "random" and now > size:
                started = started or time.monotonic() + rng.uniform(0, span)
                if time.monotonic() >= started:
                    break
        time.sleep(0.0002)
    if proc.poll() is not None:
        return False
    proc.send_signal(sig)
    proc.wait(timeout=300)
    return True


def after_kill(run: Path, previous: int | None) -> int | None:
    """The invariants after a kill; -> the step of the newest complete checkpoint."""
    step = checkpoint_step(run)
    if previous is not None:
        assert step is not None and step >= previous, f"the checkpoint went back from {previous} to {step}"
    lost = logged_step(run) - (step or 0)
    assert lost <= EVERY, f"{lost} steps lost, more than checkpoint_every={EVERY}"
    return step


@pytest.fixture(scope="module")
def reference(tiny_corpus, tmp_path_factory):
    """Uninterrupted runs of each budget, in a subprocess like the killed ones (same threads)."""
    made: dict[int, Path] = {}

    def get(budget: int) -> Path:
        if budget not in made:
            run = tmp_path_factory.mktemp("ref") / "run"
            run_pretrain(tiny_corpus, run, budget, False, run.parent / "log.txt")
            made[budget] = run
        return made[budget]

    return get


def test_kill_9_while_a_checkpoint_is_written_then_resume(tiny_corpus, tmp_path, reference):
    """One real kill -9 inside a checkpoint write (seen from outside as step_*.tmp), then --resume."""
    rng = random.Random(0)
    run, log = tmp_path / "run", tmp_path / "log.txt"
    budget = 10
    hit = False
    step = None
    for attempt in range(4):  # the write may finish between seeing it and the kill: try again
        proc = start_pretrain(tiny_corpus, run, budget, resume=attempt > 0, log=log)
        if not kill_when(proc, run, "checkpoint", rng, after_first=True):
            assert proc.returncode == 0, log.read_text()[-3000:]
            break
        hit = hit or bool(leftovers(run))
        step = after_kill(run, step)
        if hit:
            break
    assert hit, "no kill landed inside a checkpoint write"
    run_pretrain(tiny_corpus, run, budget, True, log)
    assert checkpoint_step(run) == budget
    assert leftovers(run) == []
    assert_same_weights(run, reference(budget))


@pytest.mark.slow
def test_kill_9_at_random_moments_many_times(tiny_corpus, tmp_path, reference):
    """Kill -9 about 15 times (inside checkpoint writes, inside steps, anywhere), resuming each time."""
    rng = random.Random(1)
    run, log = tmp_path / "run", tmp_path / "log.txt"
    budget = 40
    step, kills, in_write = None, 0, 0
    for attempt in range(40):
        moment = ("checkpoint", "step", "random")[attempt % 3]
        proc = start_pretrain(tiny_corpus, run, budget, resume=attempt > 0, log=log)
        if not kill_when(proc, run, moment, rng):
            assert proc.returncode == 0, log.read_text()[-3000:]
            break
        kills += 1
        in_write += bool(leftovers(run))
        step = after_kill(run, step)
        if kills >= 15:
            run_pretrain(tiny_corpus, run, budget, True, log)
            break
    print(f"{kills} kills, {in_write} inside a checkpoint write")
    assert kills >= 10 and in_write >= 1
    assert checkpoint_step(run) == budget and leftovers(run) == []
    assert_same_weights(run, reference(budget))


# --------------------------------------------------------------------------- Ctrl-C and SIGTERM


def after_signal(proc: subprocess.Popen, run: Path, log: Path, sig: int) -> int:
    """The invariants after SIGINT / SIGTERM mid-run: the exit status says which, and the checkpoint is
    at the last step logged (the step under way completes, none is lost); -> that step."""
    text = log.read_text()
    assert proc.returncode == 128 + sig, text[-3000:]
    step = checkpoint_step(run)
    assert step == logged_step(run), f"checkpoint at step {step}, the run had logged step {logged_step(run)}"
    assert f"interrupted ({signal.Signals(sig).name}) at step {step}; checkpoint saved" in text, text[-3000:]
    return step


def test_sigint_then_sigterm_mid_run_then_resume(tiny_corpus, tmp_path, reference):
    """A real Ctrl-C, --resume, a real SIGTERM, --resume: no step lost, the uninterrupted run's weights."""
    rng = random.Random(3)
    run, log = tmp_path / "run", tmp_path / "log.txt"
    budget = 10
    for attempt, sig in enumerate((signal.SIGINT, signal.SIGTERM)):
        proc = start_pretrain(tiny_corpus, run, budget, resume=attempt > 0, log=log)
        assert kill_when(proc, run, "step", rng, sig=sig), "the run finished before the signal"
        after_signal(proc, run, log, sig)
    run_pretrain(tiny_corpus, run, budget, True, log)
    assert checkpoint_step(run) == budget
    assert_same_weights(run, reference(budget))


@pytest.mark.slow
def test_signals_at_ten_random_moments_then_resume(tiny_corpus, tmp_path, reference):
    """SIGINT or SIGTERM at 10 random moments of one run (each resumed), spread by how long an
    uninterrupted run trains here: the resumed run ends at its weights exactly."""
    rng = random.Random(4)
    run, log = tmp_path / "run", tmp_path / "log.txt"
    budget = 60
    ref = reference(budget)
    seconds = [json.loads(x) for x in (ref / "metrics.jsonl").read_text().splitlines()][-1]["elapsed"]
    steps = []
    for attempt in range(30):
        sig = (signal.SIGINT, signal.SIGTERM)[attempt % 2]
        proc = start_pretrain(tiny_corpus, run, budget, resume=attempt > 0, log=log)
        if not kill_when(proc, run, "random", rng, sig=sig, span=seconds / 8):
            assert proc.returncode == 0, log.read_text()[-3000:]
            break
        steps.append(after_signal(proc, run, log, sig))
        if len(steps) == 10:
            run_pretrain(tiny_corpus, run, budget, True, log)
            break
    print(f"interrupted at steps {steps} (an uninterrupted run trains {seconds:.1f} s)")
    assert len(steps) == 10
    assert checkpoint_step(run) == budget
    assert_same_weights(run, ref)


# --------------------------------------------------------------------------- crashes inside a checkpoint write (in-process)


class Crash(Exception):
    """Stands for the process dying at this point."""


@pytest.fixture(scope="module")
def straight(tiny_corpus, tmp_path_factory):
    """An uninterrupted in-process run of 6 steps (checkpoints at 2, 4, 6)."""
    return pretrain(cfg("train.budget=6"), tiny_corpus, tmp_path_factory.mktemp("straight") / "run")


def _half_then_crash(real):
    """A writer that writes half of its file, then crashes (as a kill or a full disk would leave it)."""

    def write(obj, path, *a, **kw):
        real(obj, path, *a, **kw)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
        raise Crash(f"crashed while writing {path}")

    return write


@pytest.mark.parametrize("where", ["model.safetensors", pytest.param("optimizer.pt", marks=pytest.mark.slow),
                                   pytest.param("rng.safetensors", marks=pytest.mark.slow), "rename", "latest"])
def test_crash_inside_the_second_checkpoint_write_keeps_the_first(tiny_corpus, tmp_path, monkeypatch, straight, where):
    saves = {"n": 0}
    real_save = ckpt_mod.save_checkpoint

    def counting_save(*a, **kw):
        saves["n"] += 1
        return real_save(*a, **kw)

    monkeypatch.setattr("pretrainlab.loop.save_checkpoint", counting_save)
    targets = {"model.safetensors": ("save_model", ckpt_mod.save_model), "optimizer.pt": ("torch.save", torch.save),
               "rng.safetensors": ("save_file", ckpt_mod.save_file)}
    if where in targets:
        name, real = targets[where]
        broken = _half_then_crash(real)
        if name == "torch.save":
            monkeypatch.setattr(ckpt_mod.torch, "save", lambda *a, **kw: (broken if saves["n"] == 2 else real)(*a, **kw))
        else:
            monkeypatch.setattr(ckpt_mod, name, lambda *a, **kw: (broken if saves["n"] == 2 else real)(*a, **kw))
    else:
        real_replace = os.replace

        def replace(src, dst, *a, **kw):
            is_target = Path(dst).name == "latest" if where == "latest" else Path(dst).name.startswith("step_")
            if saves["n"] == 2 and is_target:
                raise Crash(f"crashed renaming {src} to {dst}")
            return real_replace(src, dst, *a, **kw)

        monkeypatch.setattr(ckpt_mod.os, "replace", replace)

    run = tmp_path / "run"
    with pytest.raises(Crash):
        pretrain(cfg("train.budget=6"), tiny_corpus, run)
    monkeypatch.undo()
    assert checkpoint_step(run) == 2  # the first checkpoint, intact and still the one `latest` names
    assert leftovers(run) == []
    pretrain(cfg("train.budget=6"), tiny_corpus, run, resume=True)
    assert checkpoint_step(run) == 6
    assert_same_weights(run, straight)


def test_what_a_killed_writer_leaves_behind_does_not_stop_resume(tiny_corpus, tmp_path, straight):
    """A kill leaves step_N.tmp/ with half a file and a half-written latest.tmp: resume ignores both."""
    run = pretrain(cfg("train.budget=6"), tiny_corpus, tmp_path / "run")
    ckpts = run / "checkpoints"
    shutil.rmtree(ckpts / "step_0000006")
    (ckpts / "latest").write_text("step_0000004\n")
    half = ckpts / "step_0000006.tmp"
    half.mkdir()
    (half / "model.safetensors").write_bytes((ckpts / "step_0000004" / "model.safetensors").read_bytes()[:100])
    (ckpts / "latest.tmp").write_text("step_00")
    assert checkpoint_step(run) == 4
    pretrain(cfg("train.budget=6"), tiny_corpus, run, resume=True)
    assert checkpoint_step(run) == 6 and leftovers(run) == []
    assert_same_weights(run, straight)


def test_the_same_step_saved_twice_never_leaves_latest_dangling(tiny_corpus, tmp_path, monkeypatch, straight):
    """The end of a run saves again the step it has just saved (budget 6, checkpoint_every 2): a crash
    while the older copy is removed must not leave `latest` naming a half-deleted directory."""
    saves = {"n": 0}
    real_save, real_rmtree = ckpt_mod.save_checkpoint, shutil.rmtree

    def counting_save(*a, **kw):
        saves["n"] += 1
        return real_save(*a, **kw)

    def rmtree_one_file_then_crash(path, *a, **kw):
        files = sorted(Path(path).iterdir()) if Path(path).is_dir() else []
        if saves["n"] == 4 and files and not kw.get("ignore_errors"):
            files[0].unlink()
            raise Crash(f"crashed while removing {path}")
        return real_rmtree(path, *a, **kw)

    monkeypatch.setattr("pretrainlab.loop.save_checkpoint", counting_save)
    monkeypatch.setattr(ckpt_mod.shutil, "rmtree", rmtree_one_file_then_crash)
    run = tmp_path / "run"
    try:
        pretrain(cfg("train.budget=6"), tiny_corpus, run)
    except Crash:
        pass
    monkeypatch.undo()
    assert saves["n"] == 4  # steps 2, 4, 6 and the end of the run (6 again)
    assert checkpoint_step(run) == 6
    pretrain(cfg("train.budget=6"), tiny_corpus, run, resume=True)  # nothing left to train: saves 6 again
    assert checkpoint_step(run) == 6 and leftovers(run) == []
    assert_same_weights(run, straight)


def test_killed_before_the_first_checkpoint_resume_starts_again(tiny_corpus, tmp_path, straight):
    """A run killed before its first checkpoint (config written, no checkpoint) is started again by --resume."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model:\n  backbone: transf")  # cut short by the kill
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 5.0}\n')
    pretrain(cfg("train.budget=6"), tiny_corpus, run, resume=True)
    assert checkpoint_step(run) == 6
    assert_same_weights(run, straight)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert steps == [1, 2, 3, 4, 5, 6]  # the killed attempt's lines are gone


# --------------------------------------------------------------------------- a full disk


def _tmpfs_available() -> bool:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || mount -t tmpfs -o size=64k tmpfs /tmp"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _tmpfs_available(), reason="needs unshare and a user + mount namespace to mount a small tmpfs")
@pytest.mark.parametrize("room", ["none", pytest.param("weights only", marks=pytest.mark.slow)])
def test_disk_full_during_a_checkpoint_write(two_step_run, tiny_corpus, tmp_path, room):
    """A real full disk: the run lives on a small tmpfs (mounted in a private namespace), filled up
    after the first checkpoint so that the next one cannot be written."""
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    run = mnt / "run"
    sets = " ".join(f"--set {s}" for s in SETTINGS)
    py = sys.executable
    script = f"""
set -u
mount -t tmpfs -o size=8m tmpfs {mnt}
cp -a {two_step_run} {run} || exit 11
{py} - <<'EOF'
import os
from pathlib import Path
ckpt = Path("{run}/checkpoints/step_0000002")
weights = (ckpt / "model.safetensors").stat().st_size
leave = 8192 + (weights if "{room}" == "weights only" else 0)
st = os.statvfs("{mnt}")
free = st.f_bavail * st.f_frsize
with open("{mnt}/filler", "wb") as f:
    f.write(b"x" * max(0, free - leave))
EOF
{py} -m pretrainlab.cli pretrain --corpus {tiny_corpus} --out {run} {sets} --set train.budget=6 --resume > {out}/full.txt 2>&1
echo $? > {out}/rc.txt
cp -a {run} {out}/run
rm {mnt}/filler
{py} -m pretrainlab.cli pretrain --corpus {tiny_corpus} --out {run} {sets} --set train.budget=6 --resume > {out}/after.txt 2>&1
echo $? > {out}/rc_after.txt
cp -a {run} {out}/run_after
"""
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    message = _read(out / "full.txt")
    assert _read(out / "rc.txt").strip() == "2", message
    assert "Traceback" not in message
    assert f"error: cannot write checkpoint {run}/checkpoints/step_0000004: the disk is full" in message, message
    assert f"the last complete checkpoint, {run}/checkpoints/step_0000002, is intact" in message
    copy = out / "run"
    assert checkpoint_step(copy) == 2  # the old checkpoint is intact and still named by latest
    assert leftovers(copy) == []
    assert not (copy / "checkpoints" / "step_0000004").exists()
    # with space again, --resume finishes the run
    assert _read(out / "rc_after.txt").strip() == "0", _read(out / "after.txt")
    assert checkpoint_step(out / "run_after") == 6


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


WRITERS = {  # how each writer reports ENOSPC (as measured on a full tmpfs)
    "save_model": lambda path: SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
    "torch.save": lambda path: RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),
    "save_file": lambda path: OSError(errno.ENOSPC, "No space left on device", str(path)),
}


@pytest.mark.parametrize("writer", [pytest.param("save_model", marks=pytest.mark.slow), "torch.save", pytest.param("save_file", marks=pytest.mark.slow)])
def test_disk_full_message_from_any_writer(two_step_run, tiny_corpus, tmp_path, monkeypatch, capsys, writer):
    """ENOSPC as each writer reports it (torch's says only "unexpected pos": then the free space tells)."""
    from pretrainlab.cli import main

    run = tmp_path / "run"
    shutil.copytree(two_step_run, run)

    def full(obj, path, *a, **kw):
        Path(path).write_bytes(b"partial")
        raise WRITERS[writer](path)

    if writer == "torch.save":
        monkeypatch.setattr(ckpt_mod.torch, "save", full)
        monkeypatch.setattr(ckpt_mod.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    else:
        monkeypatch.setattr(ckpt_mod, writer, full)
    argv = ["pretrain", "--corpus", str(tiny_corpus), "--out", str(run), "--resume"]
    for s in SETTINGS + ["train.budget=4"]:
        argv += ["--set", s]
    assert main(argv) == 2
    err = capsys.readouterr().err
    ckpts = run / "checkpoints"
    assert (f"error: cannot write checkpoint {ckpts / 'step_0000004'}: the disk is full (no space left on device); "
            f"the last complete checkpoint, {ckpts / 'step_0000002'}, is intact. Free some space, then continue "
            "with --resume") in err
    monkeypatch.undo()
    assert checkpoint_step(run) == 2 and leftovers(run) == []


# --------------------------------------------------------------------------- truncated, missing, garbage


@pytest.fixture(scope="module")
def two_step_run(tiny_corpus, tmp_path_factory):
    return pretrain(cfg("train.budget=2"), tiny_corpus, tmp_path_factory.mktemp("two") / "run")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "truncated weights": (lambda c: _truncate(c / "model.safetensors"),
                          "model.safetensors does not match its recorded sha256 (corrupt or truncated)"),
    "truncated optimizer": (lambda c: _truncate(c / "optimizer.pt"),
                            "optimizer.pt does not match its recorded sha256 (corrupt or truncated)"),
    "missing rng file": (lambda c: (c / "rng.safetensors").unlink(),
                         "rng.safetensors is missing; the checkpoint is incomplete"),
    "missing weights": (lambda c: (c / "model.safetensors").unlink(),
                        "model.safetensors is missing; the checkpoint is incomplete"),
    "garbage state.json": (lambda c: (c / "state.json").write_bytes(b"\x00\x13garbage{{"),
                           "state.json is missing or unreadable"),
    "empty state.json": (lambda c: (c / "state.json").write_text(""), "state.json is missing or unreadable"),
    "state.json not an object": (lambda c: (c / "state.json").write_text("[1, 2]"),
                                 "state.json is not a checkpoint description"),
    "state.json without hashes": (lambda c: (c / "state.json").write_text('{"step": 2}'),
                                  "state.json lists no sha256 for model.safetensors"),
    "missing state.json": (lambda c: (c / "state.json").unlink(), "state.json is missing or unreadable"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_is_refused_with_a_message(two_step_run, tiny_corpus, tmp_path, damage):
    run = tmp_path / "run"
    shutil.copytree(two_step_run, run)
    ckpt = run / "checkpoints" / "step_0000002"
    harm, message = DAMAGE[damage]
    harm(ckpt)
    with pytest.raises(CheckpointError) as e:
        pretrain(cfg("train.budget=4"), tiny_corpus, run, resume=True)
    assert str(e.value).startswith(f"{ckpt}: ") and message in str(e.value)


def test_latest_naming_a_missing_checkpoint_is_refused(two_step_run, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_step_run, run)
    shutil.rmtree(run / "checkpoints" / "step_0000002")
    with pytest.raises(CheckpointError, match="names step_0000002, which is missing"):
        pretrain(cfg("train.budget=4"), tiny_corpus, run, resume=True)


# --------------------------------------------------------------------------- preparation


WORDS = ("alpha beta gamma delta river stone cloud light north winter garden paper market silver morning table "
         "window engine letter summer harbour valley copper lantern meadow").split()


def _raw_corpus(path: Path, n_docs: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for d in range(n_docs):
            sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))).capitalize() + "."
                     for _ in range(rng.randint(1, 8))]
            f.write(f"Record {d}. " + " ".join(sents) + "\n\n")
            if d % 97 == 0:  # exact duplicates: dropped, counted once
                f.write(f"Record {d}. " + " ".join(sents) + "\n\n")
    return path


def _same_preparation(a: Path, b: Path) -> None:
    """Equal shards (byte for byte) and manifest (but its creation time); no leftovers."""
    names = sorted(p.name for p in a.iterdir())
    assert sorted(p.name for p in b.iterdir()) == names
    assert not any(n.endswith(".tmp") or n == "progress.json" for n in names)
    for name in names:
        if name != "manifest.json":
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    ma.pop("created"), mb.pop("created")
    assert ma == mb
    for split in mb["splits"].values():  # each document is in exactly one shard
        assert split["docs"] == sum(s["docs"] for s in split["shards"]) == sum(
            len(np.load(b / s["file"].replace(".bin", ".docs.npy"))) - 1 for s in split["shards"])


PREP_SETTINGS = ["data.vocab_size=200", "data.min_chars=5", "data.val_fraction=0.05", "data.shard_tokens=4000"]


@pytest.fixture(scope="module")
def prep_inputs(tmp_path_factory):
    """A ~1 MB corpus, a tokenizer trained on it, and its uninterrupted preparation."""
    root = tmp_path_factory.mktemp("prep")
    raw = _raw_corpus(root / "raw.txt", 4000)
    data = load_config(None, PREP_SETTINGS).data
    texts = (t for t in raw.read_text().split("\n\n") if t.strip())
    tok = save_tokenizer(train_tokenizer(texts, "wordpiece", 200), root / "tokenizer.json")
    full = root / "full"
    prepare_corpus([raw], full, data, tokenizer_path=tok)
    return raw, tok, data, full


@pytest.mark.parametrize("where", ["between batches", "shard index renamed, ids not yet", "progress.json half-written"])
def test_preparation_crashed_mid_shard_reruns_to_the_same_result(prep_inputs, tmp_path, monkeypatch, where):
    raw, tok, data, full = prep_inputs
    monkeypatch.setattr(prep, "BATCH_CHARS", 50_000)  # several batches (the output does not depend on it)
    calls = {"n": 0}
    if where == "between batches":
        real = prep._write_batch

        def write_batch(*a, **kw):
            calls["n"] += 1
            if calls["n"] == 4:
                raise Crash("between batches")  # the open shard holds part of its documents
            return real(*a, **kw)

        monkeypatch.setattr(prep, "_write_batch", write_batch)
    elif where == "shard index renamed, ids not yet":
        real = Path.replace

        def replace(self, target):
            if str(target).endswith(".bin"):
                calls["n"] += 1
                if calls["n"] == 5:
                    raise Crash("before the ids of shard 5 were renamed")
            return real(self, target)

        monkeypatch.setattr(Path, "replace", replace)
    else:
        real = prep._write_atomic

        def write_atomic(path, data_):
            if path.name == "progress.json":
                calls["n"] += 1
                if calls["n"] == 6:
                    path.with_name(path.name + ".tmp").write_bytes(data_[: len(data_) // 2])
                    raise Crash("while saving progress.json")
            return real(path, data_)

        monkeypatch.setattr(prep, "_write_atomic", write_atomic)
    out = tmp_path / "out"
    with pytest.raises(Crash):
        prepare_corpus([raw], out, data, tokenizer_path=tok)
    monkeypatch.undo()
    report = prepare_corpus([raw], out, data, tokenizer_path=tok)
    assert report.status == "resumed"
    _same_preparation(full, out)


def start_prepare(raw: Path, out: Path, tok: Path | None, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pretrainlab.cli", "prepare", str(raw), "--out", str(out)]
    if tok is not None:
        cmd += ["--tokenizer", str(tok)]
    for s in PREP_SETTINGS:
        cmd += ["--set", s]
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV)


def kill_prepare_when(proc: subprocess.Popen, out: Path, moment: str, rng: random.Random,
                      seconds: float = 3.0) -> bool:
    """shard: once progress.json lists a shard and a *.bin.tmp is open (mid-shard); random: any time in
    the first half of `seconds` (how long an uninterrupted run takes on this machine)."""
    deadline = time.monotonic() + (rng.uniform(0.05, 0.5) * seconds if moment == "random" else 120)
    while proc.poll() is None and time.monotonic() < deadline:
        if moment == "shard":
            try:
                names = os.listdir(out)
            except FileNotFoundError:
                names = []
            if "progress.json" in names and any(n.endswith(".bin.tmp") for n in names):
                progress = prep._read_json(out / "progress.json") or {}
                if progress.get("shards", {}).get("train"):
                    time.sleep(rng.uniform(0, 0.05))
                    break
        time.sleep(0.001)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def test_kill_9_while_preparing_then_rerun(prep_inputs, tmp_path):
    """One real kill -9 of `pretrainlab prepare` while a shard is open (some shards complete), then a rerun."""
    raw, tok, data, full = prep_inputs
    out, log = tmp_path / "out", tmp_path / "log.txt"
    killed = kill_prepare_when(start_prepare(raw, out, tok, log), out, "shard", random.Random(0))
    assert killed, "the preparation finished before it could be killed"
    assert (out / "progress.json").exists() and not (out / "manifest.json").exists()
    proc = start_prepare(raw, out, tok, log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert "resumed" in log.read_text()
    _same_preparation(full, out)


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", ["given", "trained"])
def test_kill_9_while_preparing_many_times(tmp_path, tokenizer):
    """A ~8 MB corpus, killed ~10 times (mid-shard and at random), rerun each time.

    given:   --tokenizer: the result equals an uninterrupted run's byte for byte.
    trained: prepare trains the tokenizer, and a kill before it is saved makes the rerun train it
             again. Hugging Face's WordPiece/BPE training is not deterministic (hash-map order breaks
             count ties: huggingface/tokenizers#1794), so the ids may differ from the reference run's;
             the documents, sentences and counts of what was read may not, and the corpus must open.
    """
    from pretrainlab.data.corpus import open_corpus

    rng = random.Random(2)
    raw = _raw_corpus(tmp_path / "raw.txt", 32000, seed=3)
    tok = None
    if tokenizer == "given":
        texts = (t for t in raw.read_text().split("\n\n") if t.strip())
        tok = save_tokenizer(train_tokenizer(texts, "wordpiece", 200), tmp_path / "tokenizer.json")
    ref, out, log = tmp_path / "ref", tmp_path / "out", tmp_path / "log.txt"
    assert start_prepare(raw, ref, tok, log).wait(timeout=600) == 0, log.read_text()[-3000:]
    # how long a run takes once the tokenizer exists (what every rerun after the first kill does):
    # random kills fall inside a run, however fast this machine is
    t0 = time.monotonic()
    assert start_prepare(raw, tmp_path / "timed", ref / "tokenizer.json", log).wait(timeout=600) == 0
    seconds = time.monotonic() - t0
    kills = 0
    for attempt in range(30):
        proc = start_prepare(raw, out, tok, log)
        if not kill_prepare_when(proc, out, ("shard", "random")[attempt % 2], rng, seconds):
            assert proc.returncode == 0, log.read_text()[-3000:]
            break
        kills += 1
        if kills >= 10:
            assert start_prepare(raw, out, tok, log).wait(timeout=600) == 0, log.read_text()[-3000:]
            break
    print(f"{kills} kills (an uninterrupted run: {seconds:.1f} s)")
    assert kills >= 5
    if tokenizer == "given":
        _same_preparation(ref, out)
        return
    corpus = open_corpus(out)  # ids, boundaries and tokenizer hash all consistent
    a, b = (json.loads((d / "manifest.json").read_text())["counts"] for d in (ref, out))
    for key in ("docs_read", "duplicates_dropped", "short_dropped", "docs", "sentences"):
        assert a[key] == b[key], key
    assert sum(corpus.split(sp).n_docs for sp in corpus.splits) == b["docs"]


@pytest.mark.parametrize("err, expect", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/out/train-00003.bin"),
     "no space left on the device (/data/out/train-00003.bin). Finished files are intact"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/out"),
     "not allowed to write or read (/data/out): Permission denied"),
])
def test_file_system_errors_anywhere_end_in_a_clear_message(monkeypatch, tmp_path, capsys, err, expect):
    """A full disk or a refused write outside the checkpoint writer (shards, logs, plots, exports)
    still ends with `error: ...` naming the file and what to do, exit code 2, no traceback."""
    import pretrainlab.data.prepare as prepare_mod
    from pretrainlab.cli import main

    def full(*a, **k):
        raise err

    monkeypatch.setattr(prepare_mod, "prepare_corpus", full)
    (tmp_path / "a.txt").write_text("some text here.\n", encoding="utf-8")
    assert main(["prepare", str(tmp_path / "a.txt"), "--out", str(tmp_path / "out")]) == 2
    msg = capsys.readouterr().err
    assert msg.startswith("error: ") and expect in msg and "Traceback" not in msg
