"""Weight EMA: an exponential moving average of a model's parameters (Polyak averaging), `train.ema`.

    ema = WeightEMA(model, decay=0.999)
    ...; optimizer.step(); ema.update()              # in loop.update, after each optimizer step
    with ema.applied(): evaluate(model)               # the average in the model's parameters, then back

The average is what a run's checkpoint calls its model (model.safetensors: what `finetune`, `export`,
`curve` and `--init` read); the weights being trained are saved beside it (checkpoint.TRAINING_WEIGHTS),
for --resume. GPT-BERT (Charpentier & Samuel 2024) evaluates its EMA weights, decay 0.999.

The decay warms up as TensorFlow's ExponentialMovingAverage(num_updates) does: min(decay, (1 + t) / (10 + t))
at step t, so that a short run's average is not dominated by the random initialisation (at decay 0.999,
0.999^2000 = 14% of the initial weights would remain after 2,000 steps; with the warm-up the average covers
roughly the last tenth of the steps until t reaches ~9,000). A function of the step alone: resume is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def unique_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The model's parameters in named_parameters() order, a tied one once."""
    seen: set[int] = set()
    out = []
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


class WeightEMA:
    """The average of `model`'s parameters, kept beside them (same dtype and device)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.params = unique_parameters(model)
        self.shadow: list[Tensor] = [p.detach().clone() for p in self.params]
        self.steps = 0
        """Updates made: the optimizer steps of the run."""

    def decay_at(self, step: int) -> float:
        """The decay of the update after optimizer step `step` (1, 2, ...): warmed up, then `decay`."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self) -> None:
        """shadow <- d * shadow + (1 - d) * param, for every parameter at once (no host sync)."""
        self.steps += 1
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - self.decay_at(self.steps))

    @torch.no_grad()
    def take_from_model(self, steps: int) -> None:
        """Make the model's current parameters the average after `steps` updates (resume: the checkpoint's
        average was loaded into the model)."""
        torch._foreach_copy_(self.shadow, [p.detach() for p in self.params])
        self.steps = steps

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The average in the model's parameters inside the block; the trained weights back after it."""
        with torch.no_grad():
            trained = [p.detach().clone() for p in self.params]
            torch._foreach_copy_([p.detach() for p in self.params], self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.detach() for p in self.params], trained)
