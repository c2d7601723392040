"""model.preset=auto: the model's size chosen from the budget, the corpus and this machine's speed.

    cfg, sizing = auto_size(cfg, corpus_tokens=3_561_321, world=1, measure=...)   # in train.pretrain, at its start
    print(sizing.line())   # 60m on 3.6M tokens: preset mini (5.2M parameters), ~13 passes, ~9 tokens/parameter

A model too small for its budget re-reads the same text many times (the tiny preset saw the 3.6M-token corpus
38 times in an hour, 86 tokens per parameter), and repeated text is worth little after a few passes
(Muennighoff et al. 2023: about as much as fresh text for ~4 passes, almost nothing past ~16); a model too large
for its budget sees too few tokens per parameter to train (Chinchilla's compute-optimal point is ~20). The rule:

    tokens(p)     the tokens preset p would train on in the budget: a token or step budget gives them directly;
                  a time budget times the tokens/s p reaches here, measured in a short timed probe of p
                  (RULE.probe_seconds of training steps on the run's own batches, device and precision)
    passes(p)     tokens(p) / the corpus's training tokens
    tpp(p)        tokens(p) / p's backbone parameters (embeddings included)

    the preset is the largest candidate with tpp(p) >= RULE.min_tokens_per_parameter (the smallest if none is);
    a warning when it still re-reads the corpus more than RULE.warn_passes times.

Candidates are tried from the smallest up and the probe stops at the first one below the threshold (a larger
one sees fewer tokens and has more parameters), so a run probes at most one preset beyond the one it takes.
The constants live in `RULE`, set from the measurements in benchmarks/results/ (sizes x budgets on the demo's
corpus); `choose` is a pure function of the candidates' figures, so the rule is tested without a clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from .config import AUTO, PRESETS, SIZE_FIELDS, Budget, RunConfig, build_section, preset_sizes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SizingRule:
    """The constants of model.preset=auto, in one place."""

    min_tokens_per_parameter: float = 5.0
    """The largest preset that trains on at least this many tokens per backbone parameter in the budget wins.
    The race (issue #28, benchmarks/results/race.md) at its machine's rates (2 cores, fp32: tiny ~17k tok/s, mini
    ~3.9k) has it keep tiny at 5, 15 and 60 minutes (mini would see ~0.2, ~0.6 and ~2.2 tokens/parameter), and tiny
    won there: mini at 15 minutes was below tiny in every column. Where mini runs 2.2x faster or more (bf16 on a
    GPU, perhaps a CPU with AVX-512 BF16) the rule takes mini at 60 minutes (5 or more tokens/parameter; tiny would
    read the corpus ~40 times at ~90): a choice no race has measured yet."""
    warn_passes: float = 100.0
    """A warning when the chosen preset would still read the corpus more than this many times."""
    probe_seconds: float = 1.5
    """Timed training per candidate preset (after one untimed warm-up step), for a time budget."""
    candidates: tuple[str, ...] = tuple(PRESETS)
    """Presets considered, smallest first (a backbone without a size for one skips it: backbones/spec.py)."""


RULE = SizingRule()

@dataclass(frozen=True)
class Candidate:
    """One preset's figures for this run."""

    preset: str
    parameters: int
    """Backbone parameters, embeddings included (what `pretrain` prints)."""
    tokens: float
    """Tokens it would train on in the budget."""
    tok_per_s: float | None = None
    """Measured training throughput (all processes together); None for a token or step budget."""


@dataclass(frozen=True)
class Sizing:
    """What model.preset=auto chose and why: printed at the start, recorded in summary.json."""

    preset: str
    budget: str
    corpus_tokens: int
    candidates: tuple[Candidate, ...]
    rule: SizingRule = field(default_factory=SizingRule)
    probe_seconds: float = 0.0
    """Wall clock the throughput probe took (before training; not counted in the budget)."""

    @property
    def chosen(self) -> Candidate:
        return next(c for c in self.candidates if c.preset == self.preset)

    def passes(self, c: Candidate) -> float:
        return c.tokens / max(self.corpus_tokens, 1)

    def line(self) -> str:
        c = self.chosen
        return (f"{_budget_name(self.budget)} on {_count(self.corpus_tokens)} tokens: preset {self.preset} "
                f"({c.parameters / 1e6:.1f}M parameters), ~{self.passes(c):,.0f} passes, "
                f"~{c.tokens / c.parameters:,.0f} tokens/parameter")

    def why(self) -> str:
        """Every candidate's figures against the threshold."""
        parts = []
        for c in self.candidates:
            speed = f", {c.tok_per_s:,.0f} tok/s" if c.tok_per_s else ""
            parts.append(f"{c.preset} {c.parameters / 1e6:.1f}M: {c.tokens / c.parameters:,.1f} tokens/parameter, "
                         f"{self.passes(c):,.1f} passes{speed}")
        return (f"model.preset=auto takes the largest preset with >= {self.rule.min_tokens_per_parameter:g} "
                f"tokens/parameter in the budget ({'; '.join(parts)})")

    def warning(self) -> str | None:
        passes = self.passes(self.chosen)
        if passes <= self.rule.warn_passes:
            return None
        return (f"warning: the corpus has only {self.corpus_tokens:,} training tokens, and preset {self.preset} would "
                f"read it ~{passes:,.0f} times in {_budget_name(self.budget)} (more than ~{self.rule.warn_passes:g} passes add almost "
                "nothing: repeated text soon stops teaching). Add text (more files to `prepare`; `pretrainlab data "
                "list` shows free corpora) or shorten train.budget")

    def to_dict(self) -> dict[str, Any]:
        c = self.chosen
        return {"preset": self.preset, "budget": self.budget, "corpus_tokens": self.corpus_tokens,
                "parameters": c.parameters, "tokens": round(c.tokens), "passes": round(self.passes(c), 2),
                "tokens_per_parameter": round(c.tokens / c.parameters, 2), "probe_seconds": round(self.probe_seconds, 1),
                "rule": asdict(self.rule), "candidates": [asdict(x) for x in self.candidates]}


def _budget_name(text: str) -> str:
    """'60m' as given; a step budget '2,000 steps'; a token budget '40M tokens'."""
    b = Budget.parse(text)
    if b.steps is not None:
        return f"{b.steps:,} steps"
    return f"{_count(b.tokens)} tokens" if b.tokens is not None else text


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


def choose(candidates: Iterator[Candidate], rule: SizingRule | None = None) -> tuple[str, tuple[Candidate, ...]]:
    """-> (the preset, the candidates looked at). `candidates` come smallest first and are consumed only up to
    the first one below rule.min_tokens_per_parameter (each is a probe for a time budget). rule: RULE by default."""
    rule = rule or RULE
    seen: list[Candidate] = []
    preset = None
    for c in candidates:
        seen.append(c)
        if c.tokens / c.parameters < rule.min_tokens_per_parameter:
            break
        preset = c.preset
    if not seen:
        raise ValueError("no candidate preset to choose from")
    return preset or seen[0].preset, tuple(seen)


def is_auto(cfg: RunConfig) -> bool:
    return cfg.model.preset == AUTO


def with_preset(cfg: RunConfig, preset: str) -> RunConfig:
    """cfg with its model sized by `preset` (auto never comes with explicit sizes: config.build_section)."""
    values = {k: v for k, v in asdict(cfg.model).items() if k not in SIZE_FIELDS}
    return replace(cfg, model=build_section("model", {**values, "preset": preset}))


def candidate_presets(backbone: str, rule: SizingRule) -> list[str]:
    """The rule's candidates that this backbone has a size for."""
    out = []
    for name in rule.candidates:
        try:
            preset_sizes(backbone, name, {})
        except ValueError:
            continue
        out.append(name)
    return out


Measure = Callable[[RunConfig], tuple[int, float | None]]
"""cfg (sized by one preset) -> (backbone parameters, training tokens/s per process; None: no probe needed)."""


def auto_size(cfg: RunConfig, corpus_tokens: int, measure: Measure, world: int = 1,
              rule: SizingRule | None = None) -> tuple[RunConfig, Sizing]:
    """Resolve model.preset=auto for this budget and corpus: -> (cfg sized by the chosen preset, the choice).
    rule: RULE by default."""
    rule = rule or RULE
    tc = cfg.train
    budget = Budget.parse(tc.budget)
    per_step = tc.batch_size * tc.grad_accum * cfg.data.seq_len * world
    t0 = time.perf_counter()

    def candidates() -> Iterator[Candidate]:
        for name in candidate_presets(cfg.model.backbone, rule):
            params, tok_per_s = measure(with_preset(cfg, name))
            if budget.seconds is not None:
                total = tok_per_s * world
                yield Candidate(name, params, total * budget.seconds, total)
            else:
                yield Candidate(name, params, budget.tokens if budget.tokens is not None else budget.steps * per_step)

    preset, seen = choose(candidates(), rule)
    sizing = Sizing(preset, tc.budget, corpus_tokens, seen, rule, time.perf_counter() - t0)
    return with_preset(cfg, preset), sizing


# --------------------------------------------------------------------------- the throughput probe


def probe_throughput(model: nn.Module, next_batch: Callable[[], dict[str, torch.Tensor]], *, device: torch.device,
                     dtype: torch.dtype | None, lr: float, seconds: float) -> float:
    """Training tokens/s of `model` on these batches: one untimed warm-up step, then whole steps (forward,
    backward, optimizer) for at least `seconds` (and two steps). The weights it trains are thrown away; the
    global RNG is left as it was (the run's model is built after it from the same seed)."""
    from .loop import accumulate, make_optimizer, update
    from .distributed import Dist

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def count(b: dict[str, torch.Tensor]) -> int:
        return int((b["mask"] != 0).sum())

    def step_loss(m, batch):
        out = m(batch)
        return out.loss, out.metrics

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # dropout's draws
        model.to(device).train()
        optimizer = make_optimizer(model, lr, 0.0, device)
        accumulate(model, next_batch, step_loss, 1, device, dtype, count, Dist())
        update(model, optimizer, 1.0)
        sync()
        tokens, steps, t0 = 0, 0, time.perf_counter()
        while steps < 2 or time.perf_counter() - t0 < seconds:
            tokens += accumulate(model, next_batch, step_loss, 1, device, dtype, count, Dist()).tokens
            update(model, optimizer, 1.0)
            steps += 1
        sync()
        return tokens / (time.perf_counter() - t0)


def say(sizing: Sizing) -> None:
    log.info(sizing.line())
    log.info(f"  {sizing.why()}")
    if sizing.warning():
        log.warning(sizing.warning())
