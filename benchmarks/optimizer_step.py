"""The optimizer candidates of issue #19, item 2: AdamW foreach (the training loop's on CPU until this was
measured; fused since) against fused AdamW and against one flat parameter buffer per group, timed inside
the real pre-training step.

profile_step.py put AdamW at 11% of the step at tiny and mini (4.2 and 17.4 ms). The flat buffer is the
candidate it names: every parameter (and its gradient) becomes a view into one contiguous tensor per
weight-decay group, so AdamW and clipping run one kernel per operation over one tensor instead of one per
parameter. Its cost: gradients are accumulated into the buffer (grad += new) instead of being handed over,
and zeroing is a pass over memory instead of setting None.

Each variant gets its own copy of the same model (the recipe's, package defaults, model.preset=SIZE) and
runs the same batches (the real data path, as profile_step.py builds them) in ABBA order over --repeats
rounds of --steps steps; it prints the median step and the median update (clip + AdamW + zero_grad) per
variant, each as a ratio to foreach, and how far each variant's final weights are from foreach's (the
same steps on the same batches: only rounding may differ).

    python benchmarks/optimizer_step.py                      # tiny and mini, ~2 minutes
    python benchmarks/optimizer_step.py --precision fp32     # the step without autocast
    python benchmarks/optimizer_step.py --quick              # smoke run
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from pretrainlab.config import PRESETS, load_config
from pretrainlab.distributed import Dist
from pretrainlab.loop import accumulate, make_optimizer, pick_dtype, tune_allocator
from pretrainlab.runs import build_pretrain_model
from pretrainlab.train import batch_source, loop_settings
from profile_step import CPU, RandomSplit
from throughput import SPECIAL, cpu_name, write_out

VARIANTS = ("foreach", "fused", "flat-foreach", "flat-fused")


def flatten(opt: torch.optim.Optimizer) -> None:
    """Make each group's parameters (and gradients) views into one buffer; the group then holds that buffer."""
    for group in opt.param_groups:
        params = group["params"]
        if not params:
            continue
        flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
        flat.grad = torch.zeros_like(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.data = flat.data[offset:offset + n].view_as(p)
            p.grad = flat.grad[offset:offset + n].view_as(p)
            offset += n
        group["params"] = [flat]
    opt.state.clear()


def build(variant: str, base: nn.Module, lr: float, weight_decay: float):
    model = copy.deepcopy(base)
    opt = make_optimizer(model, lr, weight_decay, CPU)  # the loop's groups and hyper-parameters
    for g in opt.param_groups:
        g["foreach"], g["fused"] = (None, True) if variant.endswith("fused") else (True, None)
    if variant.startswith("flat"):
        flatten(opt)
    params = [p for g in opt.param_groups for p in g["params"]]
    set_to_none = not variant.startswith("flat")  # the views must stay the gradients

    def update(clip: float) -> None:  # loop.update, over the optimizer's own tensors
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        opt.zero_grad(set_to_none=set_to_none)

    return model, update


def measure(size: str, args) -> list[str]:
    cfg = load_config(None, [f"model.preset={size}", f"train.precision={args.precision}"])
    seq, B, V = cfg.data.seq_len, cfg.train.batch_size, cfg.data.vocab_size
    dtype = pick_dtype(cfg.train.precision, CPU)
    settings = loop_settings(cfg.train)
    torch.manual_seed(0)
    base = build_pretrain_model(cfg, V, SPECIAL)
    n = (args.warmup + args.repeats * args.steps) * settings.grad_accum
    loader = batch_source(RandomSplit(int(1.2 * n * B * seq), V), seq, B, SPECIAL, base.objectives)
    batches = [base.prepare(loader.next_batch(), torch.Generator().manual_seed(i)) for i in range(n)]
    sides = {v: build(v, base, cfg.train.lr, cfg.train.weight_decay) for v in VARIANTS}
    position = dict.fromkeys(VARIANTS, 0)
    steps: dict[str, list[float]] = {v: [] for v in VARIANTS}
    updates: dict[str, list[float]] = {v: [] for v in VARIANTS}

    def step_loss(mod, batch):
        out = mod(batch)
        return out.loss, out.metrics

    def run(v: str, count: int, record: bool) -> None:
        model, update = sides[v]
        model.train()
        for _ in range(count):
            def next_batch():
                position[v] += 1
                return batches[position[v] - 1]

            t0 = time.perf_counter()
            accumulate(model, next_batch, step_loss, settings.grad_accum, CPU, dtype,
                       lambda b: int((b["mask"] != 0).sum()), Dist())
            t1 = time.perf_counter()
            update(settings.clip)
            t2 = time.perf_counter()
            if record:
                steps[v].append(t2 - t0)
                updates[v].append(t2 - t1)

    for v in VARIANTS:
        run(v, args.warmup, False)
    for r in range(args.repeats):
        for v in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            run(v, args.steps, True)
    reference = dict(sides["foreach"][0].named_parameters())
    m = cfg.model
    lines = [f"## {size}: {m.style} {m.n_layers}L/{m.d_model}, MLM, V{V}, seq {seq}, batch {B}, "
             f"{'bf16 autocast' if dtype is not None else 'fp32'}, "
             f"{sum(p.numel() for p in base.parameters()) / 1e6:.2f}M parameters", "",
             "| variant | step ms | vs foreach | update ms (clip + AdamW + zero) | vs foreach | max weight diff vs foreach |",
             "|---|---:|---:|---:|---:|---:|"]
    s0, u0 = (1e3 * statistics.median(x["foreach"]) for x in (steps, updates))
    for v in VARIANTS:
        s, u = 1e3 * statistics.median(steps[v]), 1e3 * statistics.median(updates[v])
        diff = max(float((p - reference[k]).abs().max()) for k, p in sides[v][0].named_parameters())
        lines.append(f"| {v} | {s:.1f} | {s / s0:.3f}x | {u:.2f} | {u / u0:.3f}x | {diff:.2e} |")
    return lines + [""]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["tiny", "mini"], choices=list(PRESETS))
    ap.add_argument("--steps", type=int, default=8, help="timed steps per round and variant")
    ap.add_argument("--repeats", type=int, default=4, help="rounds (ABBA order)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                    help="train.precision of the step (auto: bf16 autocast where the CPU has it)")
    ap.add_argument("--out", help="also write the table to this Markdown file")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny, 1 warm-up, 2 rounds of 1 step")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.steps, args.repeats, args.warmup = ["tiny"], 1, 2, 1
    torch.set_num_threads(args.threads)
    tune_allocator()
    lines = [f"# AdamW inside the pre-training step: foreach vs fused vs one flat buffer "
             f"({time.strftime('%Y-%m-%d %H:%M')})", "",
             f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}; {args.warmup} warm-up steps, then "
             f"{args.repeats} rounds of {args.steps} steps per variant (ABBA); medians over the timed steps.", ""]
    for size in args.sizes:
        lines += measure(size, args)
    write_out("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
