"""A curve's fine-tuning fits in worker processes (`curve --jobs N`): tiny models use a second CPU thread badly, so two
fits side by side, one thread each, finish sooner than the same fits one after the other on two threads.

    with FitPool(rows, jobs) as fits:
        fits.submit(n, seed, "pretrained", sub, teaches=True)   # started at once, in the order submitted
        row = fits.result(n, "pretrained", seed)                # waits for it (the same Row as rows.score's)

Only the plain fine-tuned rows (pretrained, random-init, reference, reference+dapt: curve_rows.CurveRows.finetuned)
go to the workers: each is independent of every other row. The curve writes them, scores the baselines and trains
the taught rows (which read a fine-tuned teacher) in the main process, in the same order as one job does.
A fit checkpoints into its work directory as it does in one job, and a finished fit leaves its result there
until the curve has written its row: an interrupted curve, run again with any --jobs, continues from them.

Workers start with `spawn` (a fresh interpreter: no copy of the parent's threads or locks), each with
`threads // jobs` torch threads (at least one) and, on Linux with as many jobs as usable cores, pinned to one core.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor, wait
from typing import Any, Sequence

import torch

from .config import ConfigError
from .curve_rows import CurveRows, Row
from .data.tasks import Task

log = logging.getLogger(__name__)


def check_jobs(jobs: int, devices: Sequence[str]) -> int:
    """The fits to run at once: `jobs`, or 1 where they would share a GPU (with a notice). devices: the device
    setting (train.device) of each fine-tuned row's recipe."""
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give the number of fine-tuning fits to run at once, 1 or more "
                          "(e.g. --jobs 2 on a CPU with 2 cores)")
    if jobs > 1:
        from .loop import pick_device

        if any(pick_device(d).type != "cpu" for d in devices):
            log.warning(f"curve --jobs {jobs}: the fits would share one GPU; running them one at a time")
            return 1
    return jobs


def usable_cores() -> list[int]:
    """The CPU cores this process may run on (its affinity on Linux; every core elsewhere)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


class FitPool:
    """Fine-tuning fits in `jobs` worker processes; with one job, none (`active` is False: the curve scores every
    row itself)."""

    def __init__(self, rows: CurveRows, jobs: int):
        self.rows, self.jobs = rows, jobs
        self.futures: dict[tuple[int, str, int], Future] = {}
        self.pool: ProcessPoolExecutor | None = None

    @property
    def active(self) -> bool:
        return self.jobs > 1

    def __enter__(self) -> FitPool:
        if self.active:
            ctx = multiprocessing.get_context("spawn")
            cores = usable_cores()
            pinned = cores if len(cores) == self.jobs and hasattr(os, "sched_setaffinity") else []
            threads = max(1, torch.get_num_threads() // self.jobs)
            log.info(f"curve: {self.jobs} fine-tuning fits at once, in worker processes of {threads} torch "
                     f"thread{'s' if threads > 1 else ''} each" + (", one core each" if pinned else ""))
            self.pool = ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_start_worker,
                                            initargs=(self.rows, threads, pinned, ctx.Value("i", 0)))
        return self

    def submit(self, n: int, seed: int, model: str, sub: Task, teaches: bool) -> None:
        assert self.pool is not None
        self.futures[(n, model, seed)] = self.pool.submit(_fit, n, seed, model, sub, teaches)

    def __contains__(self, key: tuple[int, str, int]) -> bool:
        return key in self.futures

    def result(self, n: int, model: str, seed: int) -> Row:
        """The row's scores, once its fit is done; a worker's error is raised here as it was raised there (the
        same PretrainlabError and message as one job gives)."""
        return self.futures.pop((n, model, seed)).result()

    def drain(self) -> None:
        """Wait until every fit submitted is done (before the main process trains a row itself: no two at once)."""
        wait(list(self.futures.values()))

    def __exit__(self, kind, error, tb) -> None:
        if self.pool is None:
            return
        if error is not None:  # stop the fits: a fit in training saves a checkpoint (loop.fit takes the signal)
            for future in self.futures.values():
                future.cancel()
            if not (kind is KeyboardInterrupt):  # Ctrl-C reached the workers too; anything else did not
                _signal_workers(self.pool, signal.SIGTERM)
        self.pool.shutdown(wait=True, cancel_futures=True)


def _signal_workers(pool: ProcessPoolExecutor, signum: int) -> None:
    """Send `signum` to the pool's live workers. concurrent.futures gives no public way to reach them before Python
    3.14 (its terminate_workers): 3.11.7, 3.12.1 and 3.13.0 checked, whose ProcessPoolExecutor has submit, map and
    shutdown only. So this reads the private `_processes` ({pid: Process}; None once shut down), and a Python without
    it sends nothing: the running fits then finish before the curve stops (said)."""
    if not hasattr(pool, "_processes"):
        log.warning("curve: this Python's worker pool hides its processes; waiting for the running fits to finish")
        return
    for process in list((pool._processes or {}).values()):
        if process.is_alive():
            try:
                os.kill(process.pid, signum)
            except ProcessLookupError:
                pass


# --------------------------------------------------------------------------- in a worker

_rows: CurveRows | None = None


def _start_worker(rows: CurveRows, threads: int, pinned: list[int], counter: Any) -> None:
    global _rows
    _rows = rows
    torch.set_num_threads(threads)
    # Ctrl-C goes to the whole process group: a worker between fits ignores it (the main process stops the pool),
    # one in training takes it in loop.fit and saves a checkpoint.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if pinned:
        with counter.get_lock():
            k, counter.value = counter.value, counter.value + 1
        os.sched_setaffinity(0, {pinned[k % len(pinned)]})


def _fit(n: int, seed: int, model: str, sub: Task, teaches: bool) -> Row:
    assert _rows is not None
    return _rows.finetuned(n, seed, sub, model, teaches)
