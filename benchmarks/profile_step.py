"""Where a pre-training step's time goes: torch.profiler on pretrainlab's own step (issue #19, item 2).

The step is the training loop's (loop.accumulate: forward + backward under autocast, then
loop.update: clip, AdamW (fused), zero_grad) on the model the recipe builds (runs.build_pretrain_model)
from the package defaults: style modern, MLM, vocabulary 8192, seq 64, batch 32, precision auto
(bf16 autocast where the CPU has fast bf16); only the size changes (model.preset). Batches come
from the real data path (train.batch_source: packed rows, then the MLM collator's masking) over
random documents held in memory; that path is timed per step on its own, outside the profiler.

After --warmup steps, --steps steps are timed without the profiler (the step time), then --steps
steps are profiled. Each operator's self CPU time (its time minus its children's) is put in one
category, found from its name and those of the operators it runs inside (`category_of`):
    matmul                  aten::mm / addmm / bmm / baddbmm / linear / matmul, SDPA, their backward nodes
    attention bias/masking  what backbones.transformer.visibility_bias runs (the explicit path's (B, H, T, T)
                            bias, built once per forward: zeros, masked_fill_): wrapped in a record_function range
    embedding backward      EmbeddingBackward0 / embedding_dense_backward and what they call
    optimizer               Optimizer.step / zero_grad (AdamW, fused or foreach), every aten::_foreach_* (clipping too)
                            and aten::_fused_adamw_*
    dtype casts             aten::to / _to_copy (and the copy_ they do), ToCopyBackward0: autocast's casts
    loss                    cross_entropy / log_softmax / nll_loss, forward and backward (objectives/losses.py's
                            SummedCrossEntropy's backward too)
    Python/other            everything else: norms, activations, softmax, views, and the Python between
                            operators (the self time of the "step" range that encloses each step)
An operator inside another category's operator belongs to the outermost one (aten::mm inside
aten::linear: matmul; aten::ne inside cross_entropy: loss), except that a cast is always a cast
(autocast's aten::_to_copy runs inside aten::linear).

It prints, per size: the categories (ms per step, share of profiled step + data path), the share
of the step that is matmul, the matmul FLOPs a step needs (throughput.needed_flops) and what that
achieves against the matmul peak measured before and after (throughput.peaks; NOISY when the two
differ by more than 10%), then the top operators by self CPU time. The profiler's own overhead
makes the profiled step longer than the timed one; both are printed.

    python benchmarks/profile_step.py                              # tiny and mini
    python benchmarks/profile_step.py --sizes mini --steps 20 --out benchmarks/results/profile_step.md
    python benchmarks/profile_step.py --sizes tiny --trace /tmp/trace   # + a chrome trace per size (chrome://tracing)
    python benchmarks/profile_step.py --quick                      # smoke run: tiny, 2 steps
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from pretrainlab.backbones import transformer
from pretrainlab.config import PRESETS, load_config
from pretrainlab.distributed import Dist
from pretrainlab.loop import accumulate, make_optimizer, pick_dtype, tune_allocator, update
from pretrainlab.runs import build_pretrain_model
from pretrainlab.train import batch_source, loop_settings
from throughput import SPECIAL, cpu_name, needed_flops, noted_peaks, peak_line, write_out

CPU = torch.device("cpu")
STEP = "step"  # the record_function range around each profiled step
BIAS_RANGE = "attention_bias"  # the range label_calls puts around backbones.transformer.visibility_bias

# --------------------------------------------------------------------------- operator -> category

MATMUL, BIAS, EMBEDDING, OPTIMIZER, CASTS, LOSS, OTHER = (
    "matmul", "attention bias / masking", "embedding backward", "optimizer (AdamW)", "dtype casts",
    "loss", "Python/other")
DATA = "data path (collation, masking)"
CATEGORIES = (MATMUL, BIAS, EMBEDDING, OPTIMIZER, CASTS, LOSS, OTHER)

RULES: dict[str, tuple[str, ...]] = {
    # category: operator names; a name ending in "*" is a prefix. Autograd nodes are named as
    # "autograd::engine::evaluate_function: MmBackward0" and as "MmBackward0": both match "MmBackward*".
    MATMUL: ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::linear", "aten::matmul",
             "aten::_addmm_activation", "aten::scaled_dot_product_attention", "aten::_scaled_dot_product*",
             "MmBackward*", "AddmmBackward*", "BmmBackward*", "BaddbmmBackward*", "ScaledDotProduct*"),
    BIAS: (BIAS_RANGE,),
    EMBEDDING: ("EmbeddingBackward*", "aten::embedding_backward", "aten::embedding_dense_backward"),
    OPTIMIZER: ("Optimizer.*", "aten::_foreach_*", "aten::_fused_adamw*"),
    CASTS: ("aten::to", "aten::_to_copy", "ToCopyBackward*"),
    LOSS: ("aten::cross_entropy_loss", "aten::log_softmax", "aten::_log_softmax*", "aten::nll_loss*",
           "LogSoftmaxBackward*", "NllLossBackward*", "SummedCrossEntropyBackward*"),  # objectives/losses.py's
}


def rule_of(name: str) -> str | None:
    """The category an operator's own name puts it in, or None."""
    name = name.rsplit("evaluate_function: ", 1)[-1]
    for category, patterns in RULES.items():
        for p in patterns:
            if name == p or (p.endswith("*") and name.startswith(p[:-1])):
                return category
    return None


def category_of(event) -> str:
    """A cast anywhere from the event up is a cast; else the outermost category on the way up; else other.

    event: anything with .name and .cpu_parent (a torch.profiler FunctionEvent).
    """
    found = None
    while event is not None:
        category = rule_of(event.name)
        if category == CASTS:
            return CASTS
        found = category or found
        event = event.cpu_parent
    return found or OTHER


def label_calls(module, name: str, label: str) -> None:
    """Make `module.name` run inside record_function(label): the profiler then shows what it runs under one
    parent. For a function the backbone calls by its module-global name (visibility_bias, once per forward)."""
    fn = getattr(module, name)

    @functools.wraps(fn)
    def labelled(*args, **kwargs):
        with record_function(label):
            return fn(*args, **kwargs)

    setattr(module, name, labelled)


# --------------------------------------------------------------------------- the step, on the real path


class RandomSplit:
    """Random documents held in memory, with the reader API of a corpus split (data.corpus)."""

    def __init__(self, n_tokens: int, vocab: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        lengths = []
        while sum(lengths) < n_tokens:
            lengths.append(int(rng.integers(8, 300)))  # sentences to paragraphs
        self.doc_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.tokens = rng.integers(5, vocab, size=int(self.doc_offsets[-1])).astype(np.int64)
        self.n_tokens = len(self.tokens)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.tokens[start:stop]


@dataclass
class Profiled:
    """One size's measurements, times in ms per step."""

    size: str
    dims: str
    step_ms: float
    """Median of the timed (unprofiled) steps."""
    profiled_ms: float
    data_ms: float
    categories: dict[str, float]
    ops: dict[tuple[str, str], tuple[float, float]]
    """(operator, category) -> (self CPU ms per step, calls per step)."""
    flops: float
    """Matmul FLOPs a step needs."""
    precision: str


def profile_size(size: str, args) -> tuple[Profiled, profile]:
    cfg = load_config(None, [f"model.preset={size}"])  # the package defaults otherwise
    m, seq, B, V = cfg.model, cfg.data.seq_len, cfg.train.batch_size, cfg.data.vocab_size
    dtype = pick_dtype(cfg.train.precision, CPU)  # what the training loop autocasts to
    settings = loop_settings(cfg.train)
    torch.manual_seed(0)
    model = build_pretrain_model(cfg, V, SPECIAL)
    opt = make_optimizer(model, cfg.train.lr, cfg.train.weight_decay, CPU)

    # the data path, timed per step, outside the profiler: packed rows -> the objectives' collators
    n_batches = (args.warmup + 2 * args.steps) * settings.grad_accum
    loader = batch_source(RandomSplit(int(1.2 * n_batches * B * seq), V), seq, B, SPECIAL, model.objectives)
    batches, data_s = [], []
    for i in range(n_batches):
        t = time.perf_counter()
        batches.append(model.prepare(loader.next_batch(), torch.Generator().manual_seed(i)))
        data_s.append(time.perf_counter() - t)
    next_batch = iter(batches).__next__

    def step_loss(mod, batch):
        out = mod(batch)
        return out.loss, out.metrics

    def train_step() -> None:  # loop.fit's step
        accumulate(model, next_batch, step_loss, settings.grad_accum, CPU, dtype,
                   lambda b: int((b["mask"] != 0).sum()), Dist())
        update(model, opt, settings.clip)

    model.train()
    for _ in range(args.warmup):
        train_step()
    timed = []
    for _ in range(args.steps):
        t = time.perf_counter()
        train_step()
        timed.append(time.perf_counter() - t)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            with record_function(STEP):
                train_step()
    events = prof.events()
    profiled_ms = sum(e.cpu_time_total for e in events if e.name == STEP) / 1e3 / args.steps

    categories = dict.fromkeys(CATEGORIES, 0.0)
    ops: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for e in events:
        category, ms = category_of(e), e.self_cpu_time_total / 1e3 / args.steps
        categories[category] += ms
        ops[(e.name, category)][0] += ms
        ops[(e.name, category)][1] += 1 / args.steps
    predicted = statistics.mean(len(b["mlm_positions"]) for b in batches)
    flops = needed_flops(m.style, m.n_layers, m.d_model, m.d_ff, seq, B, V, predicted)
    dims = (f"{m.style} {m.n_layers}L/{m.d_model}, MLM, V{V}, seq {seq}, batch {B}, "
            f"{'bf16 autocast' if dtype is not None else 'fp32'}")
    result = Profiled(size, dims, 1e3 * statistics.median(timed), profiled_ms,
                      1e3 * statistics.mean(data_s) * settings.grad_accum, categories,
                      {k: (v[0], v[1]) for k, v in ops.items()}, flops, "bf16" if dtype is not None else "fp32")
    return result, prof


# --------------------------------------------------------------------------- the tables


def report(p: Profiled, peak: float, top: int) -> list[str]:
    """One size's section: the summary lines, the categories, the top operators."""
    total = p.profiled_ms + p.data_ms
    achieved = p.flops / (p.step_ms / 1e3)
    lines = [
        f"## {p.size}: {p.dims}", "",
        f"Step {p.step_ms:.1f} ms (median of the timed steps), {p.profiled_ms:.1f} ms under the profiler; "
        f"data path {p.data_ms:.2f} ms per step (timed outside the profiler).",
        f"Matmul is {p.categories[MATMUL] / p.profiled_ms:.0%} of the profiled step. A step needs "
        f"{p.flops / 1e9:.2f} GFLOP of matmuls: {achieved / 1e9:.0f} GFLOP/s at the timed step, "
        f"{achieved / peak:.0%} of the {p.precision} matmul peak ({peak / 1e9:.0f} GFLOP/s).", "",
        "| category | ms/step | share of step + data |", "|---|---:|---:|",
    ]
    for category, ms in sorted(p.categories.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {category} | {ms:.2f} | {ms / total:.1%} |")
    lines += [f"| {DATA} | {p.data_ms:.2f} | {p.data_ms / total:.1%} |", "",
              f"Top {top} operators by self CPU time:", "",
              "| op | category | self CPU ms/step | share % | calls/step |", "|---|---|---:|---:|---:|"]
    for (name, category), (ms, calls) in sorted(p.ops.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"| `{name}` | {category} | {ms:.2f} | {ms / total:.1%} | {calls:g} |")
    return lines + [""]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["tiny", "mini"], choices=list(PRESETS), help="model.preset values")
    ap.add_argument("--steps", type=int, default=10, help="steps timed, then as many profiled")
    ap.add_argument("--warmup", type=int, default=3, help="steps run first, neither timed nor profiled")
    ap.add_argument("--top", type=int, default=15, help="operators listed")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--peak-n", type=int, default=2048, help="matmul size of the peak measurement")
    ap.add_argument("--out", help="also write the report to this Markdown file")
    ap.add_argument("--trace", help="write a chrome trace per size into this folder (chrome://tracing, Perfetto)")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny, 1 warm-up and 2 steps, a small peak matmul")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.steps, args.warmup, args.peak_n = ["tiny"], 2, 1, 512
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_allocator()  # as pretrain does
    label_calls(transformer, "visibility_bias", BIAS_RANGE)
    precision = "bf16" if pick_dtype("auto", CPU) is not None else "fp32"
    before = noted_peaks([precision], args, "before")
    results = []
    for size in args.sizes:
        result, prof = profile_size(size, args)
        results.append(result)
        print(f"{size}: step {result.step_ms:.1f} ms, profiled {result.profiled_ms:.1f} ms, "
              f"matmul {result.categories[MATMUL] / result.profiled_ms:.0%}", file=sys.stderr, flush=True)
        if args.trace:
            Path(args.trace).mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(Path(args.trace) / f"profile_step-{size}.json"))
    after = noted_peaks([precision], args, "after")
    peak = max(before[precision], after[precision])
    lines = [f"# Pre-training step profile: pretrainlab, package defaults ({time.strftime('%Y-%m-%d %H:%M')})", "",
             f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}; {args.warmup} warm-up, "
             f"{args.steps} timed and {args.steps} profiled steps per size.", peak_line(before, after), ""]
    for result in results:
        lines += report(result, peak, args.top)
    write_out("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
