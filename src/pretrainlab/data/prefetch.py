"""Batches built ahead on a background thread, so that packing and masking overlap the training step.

    batches = Prefetcher(make, start=step * grad_accum, depth=2, pin=device.type == "cuda")
    batch = batches()            # micro-batch `start`, then start + 1, ... in order
    batches.state                # the data position after the last batch handed out (for checkpoints)

`make(i)` builds micro-batch i and returns it with the data position after it. Every batch must be a pure
function of i and the position before it (the recipe seeds its masking by (seed, i)), so batches built ahead
are bit for bit those built one at a time, and a resumed run continues exactly. The loader is touched by the
worker thread alone; the training thread reads only the queue.

With `pin`, tensors are copied into page-locked memory on the worker, so that `.to(cuda, non_blocking=True)`
copies while the GPU computes instead of making the host wait. depth 0 builds each batch when it is asked
for, on the calling thread (no thread at all).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import torch

Batch = dict[str, Any]


class Prefetcher:
    def __init__(self, make: Callable[[int], tuple[Batch, dict[str, Any]]], start: int, state: dict[str, Any],
                 depth: int = 2, pin: bool = False):
        """make(i) -> (micro-batch i, the data position after it); `state`: the position before `start`."""
        self.make, self.next_index, self.state, self.depth, self.pin = make, start, state, depth, pin
        self.queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        if depth > 0:
            self.thread = threading.Thread(target=self._work, name="pretrainlab-batches", daemon=True)
            self.thread.start()

    def __call__(self) -> Batch:
        if self.thread is None:
            batch, self.state = self._build(self.next_index)
        else:
            item = self.queue.get()
            if isinstance(item, BaseException):
                self.close()
                raise item
            batch, self.state = item
        self.next_index += 1
        return batch

    def _build(self, i: int) -> tuple[Batch, dict[str, Any]]:
        batch, state = self.make(i)
        if self.pin:
            batch = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
        return batch, state

    def _work(self) -> None:
        i = self.next_index
        while not self.stop.is_set():
            try:
                item: Any = self._build(i)
            except BaseException as e:  # handed to the training thread, which raises it
                item = e
            while not self.stop.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return
            i += 1

    def close(self) -> None:
        """Stop the worker (it may be blocked on a full queue, or mid-batch: it ends after that batch)."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
            self.thread = None

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
