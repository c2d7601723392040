"""The one training loop, used by pre-training and fine-tuning alike.

    batch = next_batch(); loss = step_loss(model, batch); loss.backward()
    clip_grad_norm_(...); optimizer.step(); scheduler.step()

Everything else here sets that loop up: device and precision, the optimizer, and the budget
(steps, tokens or wall-clock time, with the learning-rate schedule stretched over it). `fit` takes
plain values (`LoopSettings`), not a config: the recipes (train.py, finetune.py) decide them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import (gather_full_state, gather_rng_states, rank_rng_states, restore_rng, rng_state,
                         save_checkpoint)
from .config import Budget, ConfigError
from .distributed import Dist, is_sharded
from .ema import WeightEMA
from .errors import Interrupted, TrainingError
from .logs import shows_progress

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- device & precision


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA GPU is visible; use train.device=cpu or auto")
    return torch.device(name)


def pick_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32.

    auto: bf16 where the device computes it natively (a CPU with AVX512-BF16 or AMX, a GPU of compute
    capability 8.0 or newer: Ampere, Hopper), else fp16 on a GPU with tensor cores (7.x: V100, T4; with a
    gradient scaler, `grad_scaler`), else fp32. bf16 that a GPU only emulates is never picked.
    """
    if precision == "fp32":
        return None
    bf16 = native_bf16(device)
    if precision == "bf16" and not bf16:
        raise ConfigError(f"train.precision=bf16 but this {device.type} has no native bf16 (it would be emulated, "
                          "slower than fp32); use train.precision=auto" +
                          (" or fp16" if device.type == "cuda" else ""))
    if precision == "fp16":
        return torch.float16
    if bf16:
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 7:
        return torch.float16
    return None


def native_bf16(device: torch.device) -> bool:
    """bf16 arithmetic in hardware: AVX512-BF16 or AMX on a CPU, compute capability >= 8.0 on a GPU
    (torch.cuda.is_bf16_supported() alone also says yes where it is emulated: V100, T4)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def grad_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 training needs its loss scaled (small gradients underflow in fp16); bf16 and fp32 do not."""
    return torch.amp.GradScaler(device.type) if dtype == torch.float16 else None


def enable_tf32(device: torch.device) -> None:
    """fp32 matmuls and convolutions on TF32 tensor cores on a GPU of compute capability >= 8.0 (10-bit
    mantissa products, fp32 sums: what Ampere and newer are fast at); nothing elsewhere. For training
    only: inference in fp32 stays exactly what the exported Hugging Face model computes."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def tune_allocator() -> None:
    """Keep large activation buffers on the heap instead of mmap/munmap every step (glibc).

    Measured on the project's 2-core CPU (../shared/PERF.md): ~1.5x for a bf16 training step. For runs
    that train on the CPU (a GPU's activations are not on this heap). Opt out with PRETRAINLAB_MALLOC=0.
    """
    if os.environ.get("PRETRAINLAB_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except OSError:
        pass


def set_seed(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


# --------------------------------------------------------------------------- optimizer & schedule


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; no decay on biases, norms and embeddings. Fused (one kernel over every parameter per step) on GPU
    and CPU: on this project's 2-core CPU the update (clip + AdamW + zero_grad) takes 0.60x foreach's time at
    tiny and 0.52x at mini, 8% of the whole step (benchmarks/results/optimizer_step.md); foreach elsewhere."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if p.ndim < 2 or "norm" in name or id(p) in embeddings else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if device.type in ("cuda", "cpu"):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6, foreach=True)


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first `warmup` share of the budget, then linear decay to 0."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return progress / warmup
    return max(0.0, (1.0 - progress) / max(1e-9, 1.0 - warmup))


class BudgetSchedule:
    """LR schedule stretched over a budget of steps, tokens or seconds (as Cramming does).

    `progress()` is the share of the budget spent; for a time budget it is elapsed / total,
    so the schedule ends exactly when the time does. A budget of several limits (steps and seconds)
    takes the largest share: the schedule ends with whichever runs out first.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, budget: Budget, warmup: float, tokens_per_step: int):
        self.optimizer, self.budget, self.warmup = optimizer, budget, warmup
        self.tokens_per_step = tokens_per_step
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.step_count = 0
        self.tokens = 0
        self.elapsed = 0.0

    def progress(self) -> float:
        b = self.budget
        shares = [done / limit for done, limit in ((self.step_count, b.steps), (self.tokens, b.tokens),
                                                   (self.elapsed, b.seconds)) if limit is not None]
        return max(shares)

    def done(self) -> bool:
        return self.progress() >= 1.0

    def apply(self) -> float:
        f = lr_factor(self.progress(), self.warmup)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f
        return self.base_lrs[0] * f

    def step(self, tokens: int, elapsed: float) -> None:
        self.step_count += 1
        self.tokens += tokens
        self.elapsed = elapsed

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "tokens": self.tokens, "elapsed": self.elapsed}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.step_count, self.tokens, self.elapsed = s["step_count"], s["tokens"], s["elapsed"]


# --------------------------------------------------------------------------- the loop


@dataclass
class LoopResult:
    steps: int
    tokens: int
    seconds: float
    last_checkpoint: Path | None
    nan_skipped: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


@dataclass(frozen=True)
class LoopSettings:
    """How `fit` steps, logs, validates and checkpoints (plain values, chosen by the recipe)."""

    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    clip: float = 1.0
    """Gradient-norm clipping; 0 disables it."""
    on_nan: str = "stop"
    """A NaN/inf loss: stop with an error, or skip the batch (at most 100 times)."""
    log_every: int = 0
    """Record the training loss every N steps; 0 never."""
    eval_every: int = 0
    """Call `evaluate` every N steps (and once at the end); 0 only at the end."""
    checkpoint_every: int = 0
    """Checkpoint every N steps; 0 off."""
    checkpoint_minutes: float = 0.0
    """Checkpoint every N minutes; 0 off."""
    progress: bool = False
    """Show a progress bar."""


@dataclass
class _Accumulated:
    """One optimizer step's micro-batches, forward and backward: still on the device, nothing read yet."""

    losses: torch.Tensor
    """(grad_accum,) each micro-batch's loss, fp32."""
    metrics: dict[str, torch.Tensor]
    """Of the last micro-batch (detached scalars)."""
    tokens: int


def accumulate(model: nn.Module, next_batch, step_loss, grad_accum: int, device: torch.device,
               dtype: torch.dtype | None, count_tokens, dist: Dist,
               scaler: torch.amp.GradScaler | None = None) -> _Accumulated:
    """Forward and backward over grad_accum micro-batches. Nothing here waits for the device (`settle`
    reads the losses once per step), and under DDP / FSDP the gradients are reduced across ranks after
    the last micro-batch only. A non-finite loss is found by `settle`; its gradients are then dropped."""
    tokens = 0
    losses: list[torch.Tensor] = []
    metrics: dict[str, torch.Tensor] = {}
    for i in range(grad_accum):
        batch = next_batch()
        tokens += count_tokens(batch)
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        with gradient_sync(model, i == grad_accum - 1):
            with autocast(device, dtype):
                loss, metrics = step_loss(model, batch)
            scaled = loss / grad_accum
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        losses.append(loss.detach().float())
    return _Accumulated(torch.stack(losses), metrics, tokens)


def gradient_sync(model: nn.Module, last: bool):
    """Around one micro-batch's forward and backward: DDP / FSDP reduce the gradients across ranks only on
    the last micro-batch of a step (the others accumulate locally: DDP's no_sync)."""
    if last:
        if hasattr(model, "set_requires_gradient_sync"):  # FSDP2: on again for the step's last micro-batch
            model.set_requires_gradient_sync(True)
        return contextlib.nullcontext()
    if hasattr(model, "no_sync"):  # DDP
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(False)
    return contextlib.nullcontext()


@dataclass
class _Agreed:
    """What every rank knows after a step's one read of the device (`settle`)."""

    loss: float
    """This rank's mean loss over the micro-batches."""
    metrics: dict[str, float]
    tokens: int
    """Summed over the ranks."""
    elapsed: float
    """The largest over the ranks."""
    stop: int
    """A signal received by any rank (0: none)."""
    bad_loss: float | None
    """The first non-finite loss on any rank; None when all were finite."""


def settle(acc: _Accumulated, dist: Dist, signal_received: int, elapsed: float) -> _Agreed:
    """The step's one host sync: read the losses and metrics; under data parallelism agree on tokens, time,
    signals and non-finite losses in the same single collective (every rank's values gathered)."""
    names = list(acc.metrics)
    on_device = torch.cat([acc.losses.double(), *(acc.metrics[k].detach().double().reshape(1) for k in names)])
    host = [float(acc.tokens), elapsed, float(signal_received)]
    if dist.enabled:
        mine = torch.cat((on_device.to(dist.device), torch.tensor(host, dtype=torch.float64).to(dist.device)))
        rows = dist.gather(mine).tolist()  # (world, n): the one sync, after the one collective
    else:
        rows = [on_device.tolist() + host]  # the one sync
    n = len(acc.losses)
    mine = rows[dist.rank]
    bad = [x for row in rows for x in row[:n] if not math.isfinite(x)]
    return _Agreed(loss=sum(x / n for x in mine[:n]), metrics=dict(zip(names, mine[n:n + len(names)])),
                   tokens=int(sum(row[-3] for row in rows)), elapsed=max(row[-2] for row in rows),
                   stop=int(max(row[-1] for row in rows)), bad_loss=bad[0] if bad else None)


def update(model: nn.Module, optimizer: torch.optim.Optimizer, clip: float, ema: WeightEMA | None = None,
           scaler: torch.amp.GradScaler | None = None) -> None:
    """One optimizer step on the accumulated gradients: clip (0: not), step, zero; then the weight average
    (train.ema), which the checkpoints save as the model. With a gradient scaler (fp16) the gradients are
    unscaled first, and the step is skipped where they overflowed (the fused optimizer reads the scaler's
    flag on the device: no sync)."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if ema is not None:
        ema.update()
    optimizer.zero_grad(set_to_none=True)


def skip_or_stop(on_nan: str, bad_loss: float, step: int, nan_skipped: int, last_ckpt: Path | None) -> int:
    """The policy for a non-finite loss at step+1: raise TrainingError, or count one more skipped batch."""
    where = f"; last good checkpoint: {last_ckpt}" if last_ckpt else "; no checkpoint was written yet"
    if on_nan == "stop":
        raise TrainingError(
            f"loss became {bad_loss} at step {step + 1}{where}. "
            "Lower train.lr, raise train.warmup, or pass --set train.on_nan=skip to drop such batches"
        )
    nan_skipped += 1
    if nan_skipped > 100:
        raise TrainingError(f"{nan_skipped} batches had a NaN/inf loss; stopping at step {step}{where}")
    return nan_skipped


class _Checkpoints:
    """When `fit` saves a checkpoint, and what goes into it.

    The data position and RNG state saved must be those of the step count saved. `phase` says how
    they relate while a step runs: "between" steps the current ones are; while a step "draws" its
    batches the ones noted before the draw are (the loader has advanced, the step is not counted);
    while the optimizer is "updating" the weights neither are, and nothing can be saved.
    """

    def __init__(self, model: nn.Module, engine: Engine, hooks: Hooks, run_dir: Path | None, settings: LoopSettings):
        self.model, self.run_dir, self.settings = model, run_dir, settings
        self.optimizer, self.schedule, self.device = engine.optimizer, engine.schedule, engine.device
        self.dist, self.ema, self.scaler = engine.dist, engine.ema, engine.scaler
        self.data_state, self.extra_state = hooks.data_state or dict, hooks.extra_state
        self.sharded = is_sharded(model)
        # every rank takes part: gathering a sharded model's state, and every rank's RNG states
        self.joins = run_dir is not None or self.sharded or self.dist.enabled
        self.last: Path | None = None
        self.last_elapsed = self.schedule.elapsed
        self.phase = "between"
        self.before: tuple[dict[str, Any], dict[str, torch.Tensor]] = ({}, rng_state(self.device))

    def drawing(self) -> None:
        """A step begins: note the data position and RNG states it starts from (a few numbers and 5 kB)."""
        self.before = (self.data_state(), rng_state(self.device))
        self.phase = "drawing"

    def due(self, step: int) -> bool:
        # schedule.elapsed is agreed on by all ranks, so they all find a checkpoint due at the same step
        s, elapsed = self.settings, self.schedule.elapsed
        due_time = s.checkpoint_minutes > 0 and elapsed - self.last_elapsed >= s.checkpoint_minutes * 60
        due_step = s.checkpoint_every > 0 and step % s.checkpoint_every == 0
        return self.joins and (due_time or due_step)

    def save(self, elapsed: Callable[[], float], nan_skipped: int, data: dict[str, Any] | None = None,
             rng: dict[str, torch.Tensor] | None = None, together: bool = True) -> Path | None:
        """Every rank calls this at the same point (`together`); only the one with a run_dir writes. Alone
        (a rank stopped by a second signal), only its own RNG states are saved, and a sharded model cannot be."""
        full = gather_full_state(self.model, self.optimizer) if self.sharded else None  # a collective
        rng = rng if rng is not None else rng_state(self.device)
        states = gather_rng_states(rng, self.dist) if together else rank_rng_states(rng, self.dist.rank)
        if self.run_dir is None:
            return None
        sc = self.schedule
        state = {"step": sc.step_count, "tokens": sc.tokens, "elapsed": elapsed(),
                 "schedule": sc.state_dict(), "data": self.data_state() if data is None else data,
                 "nan_skipped": nan_skipped, **(self.extra_state or {})}
        self.last = save_checkpoint(self.run_dir, self.model, self.optimizer, None, state, full=full, ema=self.ema,
                                    rng=states, scaler=self.scaler)
        return self.last

    def interrupted(self, signum: int, elapsed: Callable[[], float], nan_skipped: int, together: bool) -> Interrupted:
        """Save the state at the last step boundary and say so. `together`: every rank stopped at this same
        point (a signal agreed on between steps), so a sharded model's state can be gathered."""
        how = f"interrupted ({signal.Signals(signum).name}) at step {self.schedule.step_count}"
        if self.phase == "updating" or (self.sharded and not together):
            why = "inside an optimizer step" if self.phase == "updating" else "with the ranks at different points"
            where = f"; --resume continues from the last checkpoint, {self.last}" if self.last else ""
            return Interrupted(f"{how}, {why}: no checkpoint saved{where}", signum)
        data, rng = None, None
        if self.phase == "drawing":  # the step had drawn its batches but is not counted: undo the draws
            data, rng = self.before
            restore_rng(rng, self.device)  # the CPU generator (dropout, masks) and the GPU's
        path = self.save(elapsed, nan_skipped, data, rng, together)
        return Interrupted(f"{how}; checkpoint saved at {path}; continue with --resume" if path else how, signum)


class _Signals:
    """SIGINT (Ctrl-C) and SIGTERM (what schedulers send) while `fit` runs: the first is noted and the
    loop stops at the next step boundary, so the checkpoint's weights, step and data position agree.
    A second SIGINT or SIGTERM raises KeyboardInterrupt at once. Outside the main thread (where Python
    cannot take signals) it does nothing."""

    def __init__(self):
        self.received = 0
        self.previous: dict[int, Any] = {}

    def _note(self, signum: int, frame) -> None:
        if self.received:
            raise KeyboardInterrupt
        self.received = signum
        log.warning(f"\n{signal.Signals(signum).name}: stopping after this step to save a checkpoint "
                    "(send it again to stop at once)")

    def __enter__(self) -> _Signals:
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                self.previous[s] = signal.signal(s, self._note)
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


@dataclass(frozen=True)
class Engine:
    """How `fit`'s steps run: where, in what precision, with which optimizer, for which budget."""

    device: torch.device
    dtype: torch.dtype | None
    """The autocast dtype (None: full fp32)."""
    optimizer: torch.optim.Optimizer
    schedule: BudgetSchedule
    dist: Dist = Dist()
    """Data parallelism: this rank and the world (one process by default)."""
    ema: WeightEMA | None = None
    """A weight EMA updated after every optimizer step, saved in the checkpoints."""
    scaler: torch.amp.GradScaler | None = None
    """fp16's gradient scaler (`grad_scaler`), saved in the checkpoints."""


@dataclass(frozen=True)
class Hooks:
    """What `fit` calls back, and what it adds to its checkpoints; all optional."""

    evaluate: Callable[[nn.Module], dict[str, float]] | None = None
    """Validation every `eval_every` steps and at the end; its metrics go to the log and the history."""
    should_stop: Callable[[dict[str, float]], bool] | None = None
    """Given an evaluation's metrics: True stops the run early."""
    data_state: Callable[[], dict[str, Any]] | None = None
    """The data position, saved in every checkpoint (resumed runs draw the same batches)."""
    extra_state: dict[str, Any] | None = None
    """Further entries saved in every checkpoint."""
    log: Callable[[dict[str, Any]], None] | None = None
    """Called with every logged record (training steps, evaluations)."""
    count_tokens: Callable[[dict[str, torch.Tensor]], int] | None = None
    """A batch's tokens for a token budget and tok/s (default: the nonzero entries of its "mask")."""


def fit(
    model: nn.Module,
    next_batch: Callable[[], dict[str, torch.Tensor]],
    step_loss: Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]],
    settings: LoopSettings,
    *,
    engine: Engine,
    hooks: Hooks = Hooks(),
    run_dir: Path | None = None,
    desc: str = "train",
) -> LoopResult:
    """Run optimizer steps until the budget is spent (or `hooks.should_stop` after an evaluation).

    `engine` says how the steps run (device, precision, optimizer, budget schedule, data parallelism, weight
    EMA, fp16's gradient scaler); `hooks` what the loop calls back (evaluation, early stopping, logging, token
    counting) and what it adds to its checkpoints (the data position, extra entries).

    Each step reads the device once (`settle`: the losses, whether they are finite); nothing else in it
    waits for a GPU. Under data parallelism (`engine.dist`), every rank takes the same decisions: a NaN
    anywhere skips or stops the step everywhere, and tokens and elapsed time are agreed on before the budget
    is checked, in that same read. Only the rank given a run_dir writes checkpoints; every rank takes part in
    saving them (its RNG states; a sharded (FSDP) model's state), at the same steps.

    Ctrl-C or SIGTERM stops at the next step boundary (agreed by all ranks), saves and raises `Interrupted`;
    an interrupt inside a step saves the state from before it (`_Checkpoints.phase`): resumed runs are exact.
    """
    s, optimizer, schedule, dist = settings, engine.optimizer, engine.schedule, engine.dist
    count_tokens = hooks.count_tokens or (lambda b: int((b["mask"] != 0).sum()) if "mask" in b else 0)
    start_elapsed = schedule.elapsed
    t0 = time.perf_counter()

    def elapsed() -> float:
        return start_elapsed + time.perf_counter() - t0

    ckpts = _Checkpoints(model, engine, hooks, run_dir, s)
    bar = ProgressBar(schedule, desc) if s.progress and dist.main and shows_progress() else None
    run = _Run(s, schedule, ckpts, elapsed, hooks, bar)
    model.train()
    with _Signals() as signals:
        try:
            while not schedule.done():
                ckpts.drawing()
                lr = schedule.apply()
                acc = accumulate(model, next_batch, step_loss, s.grad_accum, engine.device, engine.dtype, count_tokens,
                                 dist, engine.scaler)
                agreed = settle(acc, dist, signals.received, elapsed())
                if agreed.bad_loss is not None:
                    optimizer.zero_grad(set_to_none=True)
                    run.nan_skipped = skip_or_stop(s.on_nan, agreed.bad_loss, schedule.step_count, run.nan_skipped,
                                                   ckpts.last)
                    ckpts.phase = "between"  # the batch is consumed and counted as skipped
                else:
                    ckpts.phase = "updating"
                    update(model, optimizer, s.clip, engine.ema, engine.scaler)
                    schedule.step(agreed.tokens, agreed.elapsed if dist.enabled else elapsed())
                    ckpts.phase = "between"
                    if run.after_step(agreed, lr, model):
                        break
                # every rank stops at the same step boundary: a signal any rank had by `settle` (one process:
                # any signal so far)
                if stop := agreed.stop if dist.enabled else signals.received:
                    raise ckpts.interrupted(stop, elapsed, run.nan_skipped, together=True)
            if hooks.evaluate:
                result = hooks.evaluate(model)
                run.emit({"step": schedule.step_count, "tokens": schedule.tokens, "elapsed": round(elapsed(), 2),
                          "final": True, **result})
        except KeyboardInterrupt:  # a second signal, or raised by the code itself: at any point of a step
            raise ckpts.interrupted(signal.SIGINT, elapsed, run.nan_skipped, together=False) from None
        finally:
            if run.bar is not None:
                run.bar.close()
        if ckpts.joins:
            ckpts.save(elapsed, run.nan_skipped)
    return LoopResult(schedule.step_count, schedule.tokens, elapsed(), ckpts.last, run.nan_skipped, run.history,
                      run.stopped_early)


class _Run:
    """What `fit` does between optimizer steps: count, log, show progress, evaluate, checkpoint."""

    def __init__(self, settings: LoopSettings, schedule: BudgetSchedule, ckpts: _Checkpoints,
                 elapsed: Callable[[], float], hooks: Hooks, bar: ProgressBar | None):
        self.s, self.schedule, self.ckpts, self.elapsed = settings, schedule, ckpts, elapsed
        self.hooks, self.bar = hooks, bar
        self.history: list[dict[str, Any]] = []
        self.nan_skipped = 0
        self.stopped_early = False
        self.window_tokens, self.window_t = 0, time.perf_counter()

    def emit(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.hooks.log:
            self.hooks.log(record)

    def after_step(self, agreed: _Agreed, lr: float, model: nn.Module) -> bool:
        """-> True when an evaluation says to stop early."""
        s, schedule, evaluate, should_stop = self.s, self.schedule, self.hooks.evaluate, self.hooks.should_stop
        self.window_tokens += agreed.tokens
        step = schedule.step_count
        if self.bar is not None:
            self.bar.update(step, schedule, agreed.loss)
        if s.log_every and step % s.log_every == 0:
            now = time.perf_counter()
            self.emit({"step": step, "tokens": schedule.tokens, "elapsed": round(self.elapsed(), 2), "lr": lr,
                       "loss": agreed.loss, **agreed.metrics,
                       "tok_per_s": round(self.window_tokens / max(now - self.window_t, 1e-9), 1)})
            self.window_tokens, self.window_t = 0, now
        if evaluate and s.eval_every and step % s.eval_every == 0 and not schedule.done():
            result = evaluate(model)
            model.train()
            self.emit({"step": step, "tokens": schedule.tokens, "elapsed": round(self.elapsed(), 2), **result})
            if should_stop and should_stop(result):
                self.stopped_early = True
                return True
        if self.ckpts.due(step):
            self.ckpts.save(self.elapsed, self.nan_skipped)
            self.ckpts.last_elapsed = schedule.elapsed
        return False


class ProgressBar:
    """tqdm over the budget's share (works for steps, tokens and time alike), with the time left at the
    rate so far (at most that when early stopping may end the run sooner)."""

    def __init__(self, schedule: BudgetSchedule, desc: str):
        from tqdm import tqdm

        self.bar = tqdm(total=1000, desc=desc, dynamic_ncols=True, mininterval=1.0, file=sys.stderr,
                        bar_format="{desc} {percentage:3.0f}%|{bar:20}| {elapsed} elapsed, {remaining} left {postfix}")
        self.bar.n = int(1000 * min(schedule.progress(), 1.0))
        self.t0, self.tok0 = time.perf_counter(), schedule.tokens

    def update(self, step: int, schedule: BudgetSchedule, loss: float) -> None:
        self.bar.n = int(1000 * min(schedule.progress(), 1.0))
        rate = (schedule.tokens - self.tok0) / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"step {step} loss {loss:.3f} {rate:,.0f} tok/s", refresh=False)
        if step % 10 == 0:
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
