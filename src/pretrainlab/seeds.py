"""One seed of a classifier's training: the routine that fine-tuning, distillation and self-training share.

    run = train_seed(seed, build, step_loss, batches, settings, scoring, seed_dir=out / "seeds" / "seed-0")
    run.result.accuracy, run.key, run.test_logits      # the best-validation weights, scored on the test split

`build()` makes the model to train after the seed is set (a classifier, or a wrapper around one:
`SeedScoring.classifier` picks it out); `batches` yields the training batches and can say where it is
(`EpochBatches`); `step_loss` is the recipe's loss. The seed trains in the one loop (`loop.fit`), is
validated every `eval_every` steps and stopped early (`EarlyStopping`), its best-validation weights are
restored and the test split scored. Given a `seed_dir`, the seed survives a kill: checkpoints go there
with the early-stopping state and its best weights (`BestSoFar`), a second call continues from the last
checkpoint, and a finished seed leaves its result and weights (`result.json`, `model.safetensors`) that a
later call reads instead of training again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .checkpoint import latest_checkpoint, load_training_state
from .config import Budget
from .data.encoding import Encoded, collate
from .errors import CheckpointError
from .evaluate import predict_logits
from .loop import (BudgetSchedule, Engine, Hooks, LoopSettings, enable_tf32, fit, grad_scaler, make_optimizer,
                   set_seed)
from .metrics import Interval, Metrics, SeedResult, score

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- early stopping


@dataclass
class EarlyStopping:
    """The best validation so far: highest accuracy, ties broken by lower loss (so a plateau in
    accuracy while the loss still falls does not count against the patience), and its weights."""

    patience: int
    """Stop after this many evaluations without a better one; 0 never stops early."""
    min_steps: int = 0
    """Evaluations before this step never count against the patience: a pretrained model can sit on a
    validation plateau for its first steps before it improves (finetune.min_steps)."""
    key: tuple[float, float] | None = None
    """(accuracy, -loss) of the best evaluation."""
    accuracy: float = 0.0
    macro_f1: float = 0.0
    step: int = 0
    weights: dict[str, Tensor] | None = None
    since: int = 0
    """Evaluations since the best one."""

    @property
    def loss(self) -> float:
        return -self.key[1]

    def update(self, metrics: Metrics, loss: float, step: int, model: nn.Module) -> None:
        key = (metrics.accuracy, -loss)
        if self.key is None or key > self.key:
            self.key, self.step, self.since = key, step, 0
            self.accuracy, self.macro_f1 = metrics.accuracy, metrics.macro_f1
            self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif step >= self.min_steps:
            self.since += 1

    def should_stop(self, _: dict[str, float] | None = None) -> bool:
        return self.patience > 0 and self.since >= self.patience


def save_weights(weights: dict[str, Tensor], path: Path) -> None:
    """safetensors, written under a temporary name and renamed: never half-written."""
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp))
    os.replace(tmp, path)


class BestSoFar:
    """Early stopping that survives a kill: its counters go into every checkpoint's state and its best
    weights beside the checkpoints (best-STEP.safetensors, written with the checkpoint), so that a resumed
    seed restores the best it had."""

    def __init__(self, seed_dir: Path, best: EarlyStopping):
        self.dir, self.best = seed_dir, best
        self.kept: str | None = None
        """The best weights the previous checkpoint names (kept until a newer checkpoint is complete)."""

    def _file(self, step: int) -> Path:
        return self.dir / f"best-{step:07d}.safetensors"

    def state(self) -> dict[str, Any]:
        """Called by the loop as it writes a checkpoint."""
        b = self.best
        if b.weights is not None and not self._file(b.step).exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            save_weights(b.weights, self._file(b.step))
        current = self._file(b.step).name if b.weights is not None else None
        for old in self.dir.glob("best-*.safetensors"):
            if old.name not in (current, self.kept):
                old.unlink()
        self.kept = current
        return {"key": list(b.key) if b.key else None, "accuracy": b.accuracy, "macro_f1": b.macro_f1,
                "step": b.step, "since": b.since}

    def restore(self, state: dict[str, Any]) -> None:
        b = self.best
        b.key = tuple(state["key"]) if state["key"] else None
        b.accuracy, b.macro_f1, b.step, b.since = state["accuracy"], state["macro_f1"], state["step"], state["since"]
        if b.key is not None:
            f = self._file(b.step)
            try:
                b.weights = load_file(str(f))
            except (SafetensorError, OSError) as e:
                raise CheckpointError(f"{f}: the best weights of the checkpoint are missing or unreadable ({e}); "
                                      f"delete {self.dir} to start this seed again") from None
            self.kept = f.name


# --------------------------------------------------------------------------- batches


class ReplayedShuffles:
    """Epoch e's order is the (e+1)-th randperm of one generator seeded with `seed` (fine-tuning's order):
    drawn one after the other while training, replayed from the seed when a resumed seed asks for epoch e."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self.gen, self.drawn = torch.Generator().manual_seed(seed), 0

    def __call__(self, epoch: int) -> list[int]:
        if epoch < self.drawn:
            self.gen, self.drawn = torch.Generator().manual_seed(self.seed), 0
        while True:
            order = torch.randperm(self.n, generator=self.gen).tolist()
            self.drawn += 1
            if self.drawn > epoch:
                return order


def hashed_shuffles(n: int, seed: int) -> Callable[[int], list[int]]:
    """Epoch e's order is a function of (seed, e) alone (distillation's order)."""
    return lambda epoch: torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


class EpochBatches:
    """Batches of an encoded split (plus per-example tensors such as a teacher's logits, under their names),
    in a new order every epoch. Its position (epoch, place in the epoch) goes into checkpoints."""

    def __init__(self, enc: Encoded, batch_size: int, pad_id: int, segments: bool,
                 order: Callable[[int], list[int]], extras: dict[str, Tensor] | None = None):
        self.enc, self.batch_size, self.pad_id, self.segments = enc, batch_size, pad_id, segments
        self.order_of, self.extras = order, {k: v for k, v in (extras or {}).items() if v is not None}
        self.epoch, self.pos = 0, 0
        self.order = order(0)

    def __call__(self) -> dict[str, Tensor]:
        if self.pos >= len(self.order):  # a new epoch: a new order
            self.epoch, self.pos = self.epoch + 1, 0
            self.order = self.order_of(self.epoch)
        idx = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        batch = collate(self.enc, idx, self.pad_id, self.segments)
        for name, values in self.extras.items():
            batch[name] = values[idx]
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self.order = self.order_of(self.epoch)


# --------------------------------------------------------------------------- one seed


@dataclass(frozen=True)
class SeedSettings:
    """How one seed trains (plain values, chosen by the recipe)."""

    lr: float
    budget: Budget
    patience: int
    min_steps: int
    eval_every: int
    log_every: int
    weight_decay: float
    warmup: float
    clip: float
    on_nan: str = "stop"
    deterministic: bool = False
    checkpoint_every: int = 0
    checkpoint_minutes: float = 0.0
    progress: bool = False


@dataclass
class SeedScoring:
    """What a seed is validated and tested on, and how its classifier reads the texts."""

    validation: Encoded
    test: Encoded
    label_names: list[Any]
    pad_id: int
    segments: bool
    device: torch.device
    dtype: torch.dtype | None
    classifier: Callable[[nn.Module], nn.Module] = lambda model: model
    """The classifier inside the trained model (the model itself, or e.g. a distillation wrapper's student)."""

    def logits(self, model: nn.Module, enc: Encoded) -> Tensor:
        return predict_logits(self.classifier(model), enc, self.pad_id, self.segments, self.device, self.dtype)


@dataclass
class SeedRun:
    """One seed's outcome; its best-validation weights in memory (`weights`) or in seed_dir/model.safetensors."""

    result: SeedResult
    key: tuple[float, float]
    """(validation accuracy, -loss) of its best evaluation: the best seed is the one saved."""
    test_logits: Tensor
    weights: dict[str, Tensor] | None = None
    seed_dir: Path | None = None

    def best_weights(self) -> dict[str, Tensor]:
        if self.weights is not None:
            return self.weights
        assert self.seed_dir is not None
        f = self.seed_dir / WEIGHTS_FILE
        return load_file(str(f if f.is_file() else self.seed_dir / "student.safetensors"))  # (a distillation's, before)


WEIGHTS_FILE = "model.safetensors"
RESULT_FILE = "result.json"


def train_seed(seed: int, build: Callable[[], nn.Module], step_loss, batches: EpochBatches, settings: SeedSettings,
               scoring: SeedScoring, *, seed_dir: Path | None = None, desc: str = "train",
               quiet: bool = False) -> SeedRun:
    """Train `build()` with this seed (or continue seed_dir's checkpoint, or read its finished result); the
    best-validation weights restored and scored on the test split."""
    if seed_dir is not None and (finished := read_finished(seed_dir)) is not None:
        return finished
    s, device = settings, scoring.device
    set_seed(seed, s.deterministic)
    enable_tf32(device)
    scaler = grad_scaler(scoring.dtype, device)
    model = build().to(device)
    optimizer = make_optimizer(model, s.lr, s.weight_decay, device)
    schedule = BudgetSchedule(optimizer, s.budget, s.warmup, tokens_per_step=0)
    best = EarlyStopping(s.patience, s.min_steps)
    kept = BestSoFar(seed_dir, best) if seed_dir is not None else None
    ckpt = latest_checkpoint(seed_dir) if seed_dir is not None else None
    if ckpt is not None:
        state = load_training_state(ckpt, model, optimizer, None, device=device, scaler=scaler)
        schedule.load_state_dict(state["schedule"])
        batches.load_state_dict(state["data"]["batches"])
        kept.restore(state["data"]["best"])
        if not quiet:
            log.info(f"seed {seed}: resuming from {ckpt} (step {state['step']})")

    def validate(m: nn.Module) -> dict[str, float]:
        enc = scoring.validation
        logits = scoring.logits(m, enc)
        metrics = score(enc.labels, logits.argmax(-1).tolist(), scoring.label_names)
        loss = float(F.cross_entropy(logits, torch.tensor(enc.labels)))
        best.update(metrics, loss, schedule.step_count, scoring.classifier(m))
        return {"val_loss": loss, "val_acc": metrics.accuracy, "val_macro_f1": metrics.macro_f1}

    loop_settings = LoopSettings(grad_accum=1, clip=s.clip, on_nan=s.on_nan, log_every=s.log_every,
                                 eval_every=s.eval_every, checkpoint_every=s.checkpoint_every,
                                 checkpoint_minutes=s.checkpoint_minutes, progress=s.progress and not quiet)
    data_state = (lambda: {"batches": batches.state_dict(), "best": kept.state()}) if kept is not None else None
    loop = fit(model, batches, step_loss, loop_settings,
               engine=Engine(device, scoring.dtype, optimizer, schedule, scaler=scaler),
               hooks=Hooks(evaluate=validate, should_stop=best.should_stop, data_state=data_state),
               run_dir=seed_dir, desc=desc)
    classifier = scoring.classifier(model)
    classifier.load_state_dict(best.weights)  # the best-validation weights
    test_logits = scoring.logits(model, scoring.test)
    on_test = score(scoring.test.labels, test_logits.argmax(-1).tolist(), scoring.label_names)
    result = SeedResult(seed, on_test.accuracy, on_test.macro_f1, best.accuracy, best.macro_f1, best.loss, loop.steps,
                        best.step, loop.stopped_early, round(loop.seconds, 2), loop.history, on_test.accuracy_ci)
    run = SeedRun(result, best.key, test_logits, {k: v.cpu() for k, v in best.weights.items()}, seed_dir)
    if seed_dir is not None:
        write_finished(run)
    if not quiet:
        log.info(f"seed {seed}: test accuracy {on_test.accuracy:.4f} {on_test.accuracy_ci}, "
                 f"macro-F1 {on_test.macro_f1:.4f} (best validation accuracy {best.accuracy:.4f} at step {best.step} "
                 f"of {loop.steps})")
    return run


def best_seed(runs: list[SeedRun]) -> SeedRun:
    """The seed with the best validation accuracy, then loss (the first of equals)."""
    best = runs[0]
    for r in runs[1:]:
        if r.key > best.key:
            best = r
    return best


def write_finished(run: SeedRun) -> None:
    """The seed's best weights and result; its checkpoints go (result.json, written last, marks it done)."""
    d = run.seed_dir
    save_weights(run.weights, d / WEIGHTS_FILE)
    info = {"result": asdict(run.result), "key": list(run.key), "test_logits": run.test_logits.tolist()}
    tmp = d / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    os.replace(tmp, d / RESULT_FILE)
    shutil.rmtree(d / "checkpoints", ignore_errors=True)
    for f in d.glob("best-*.safetensors"):
        f.unlink()


def read_finished(seed_dir: Path) -> SeedRun | None:
    """A finished seed's run (its weights stay on disk), or None when it has not finished."""
    f = seed_dir / RESULT_FILE
    if not f.is_file():
        return None
    try:
        info = json.loads(f.read_text(encoding="utf-8"))
        result = SeedResult(**info["result"])
        if result.accuracy_ci is not None:
            result.accuracy_ci = Interval(**result.accuracy_ci)
        return SeedRun(result, tuple(info["key"]), torch.tensor(info["test_logits"]), None, seed_dir)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{f} is unreadable ({e}); delete {seed_dir} to train this seed again") from None
