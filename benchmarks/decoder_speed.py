"""Causal decoder speed: pretrainlab vs the Hugging Face class it exports to, same run (issue #19, item 5).

Style `llama` is measured against `LlamaForCausalLM`, style `gpt2` against `GPT2LMHeadModel`, each
built offline from the config our export writes (export/hf_decoder_names.hf_decoder_config_kwargs,
`attn_implementation="sdpa"`) and holding our model's weights (to_hf_decoder_state_dict): the same
dimensions (preset), vocabulary, tied LM head, no dropout.

1. Training step, tokens/s: forward + backward + clip + AdamW step (throughput.timed_steps, the same
   loop.make_optimizer on both sides) on the same batches of full rows (packed, no padding, one
   document per row, so both sides predict the same T - 1 next tokens of a row): ours is the
   pre-training model (clm) fed what the clm collator prepares, theirs `model(input_ids,
   attention_mask, labels=input_ids)`. Sizes tiny and mini, seq 64 and 128, bf16 autocast and fp32.
2. Generation, new tokens/s with the KV cache: ours `generate.generate(temperature=0)` against
   `model.generate(do_sample=False, use_cache=True, min_new_tokens = max_new_tokens)`, the same
   random prompts (batch 1 and 8, equal lengths: no padding), fp32 (what `pretrainlab generate`
   runs in). The table says whether the two greedy continuations are the same tokens.

Both sides alternate within each row (ABBA), under the same thread count and allocator settings
(this one process); each figure is the median over the repeats. The matmul peak is measured before
the first row and after the last (throughput.py's): a run whose two peaks differ by more than 10%
is marked NOISY.

    python benchmarks/decoder_speed.py                        # everything (see the report for the time it takes)
    python benchmarks/decoder_speed.py --out benchmarks/results/decoder_speed.md
    python benchmarks/decoder_speed.py --styles llama --sizes mini --parts train --repeats 5
    python benchmarks/decoder_speed.py --quick                # smoke run: tiny, seq 64, bf16, a few steps and tokens
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from dataclasses import dataclass
from functools import partial

import torch

from pretrainlab.config import PRESETS, load_config
from pretrainlab.export.hf_decoder_names import HF_DECODER_CLASSES, hf_decoder_config_kwargs, to_hf_decoder_state_dict
from pretrainlab.generate import generate
from pretrainlab.loop import make_optimizer, tune_allocator
from pretrainlab.models import CausalLM
from pretrainlab.runs import build_pretrain_model
from throughput import SPECIAL, alternate, cpu_name, noted_peaks, peak_line, timed_steps, write_out

CPU = torch.device("cpu")


# --------------------------------------------------------------------------- the two sides


def ours(style: str, size: str, vocab: int, max_len: int):
    """The pre-training model (decoder + clm head, tied), freshly initialised with seed 0."""
    cfg = load_config(None, ["model.backbone=decoder", f"model.style={style}", f"model.preset={size}",
                             "model.dropout=0.0", f"model.max_len={max_len}", "objective.weights={clm: 1.0}",
                             "objective.tie_embeddings=true"])
    torch.manual_seed(0)
    return build_pretrain_model(cfg, vocab, SPECIAL)


def hf_twin(model):
    """The Hugging Face causal LM of the decoder's style, holding the same weights."""
    import transformers

    backbone = model.backbone
    config_cls, model_cls = (getattr(transformers, n) for n in HF_DECODER_CLASSES[backbone.style])
    config = config_cls(**hf_decoder_config_kwargs(backbone, tie_embeddings=True), attn_implementation="sdpa")
    hf = model_cls(config)
    hf.load_state_dict(to_hf_decoder_state_dict(backbone.style, backbone.state_dict()), strict=True)
    return hf


def full_rows(n: int, B: int, T: int, V: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n batches of (ids, mask) (B, T): random tokens, every position real, one document per row."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, V, (B, T), generator=gen)
        ids[:, 0] = SPECIAL.cls  # as a packed chunk begins
        out.append((ids, torch.ones(B, T, dtype=torch.long)))
    return out


# --------------------------------------------------------------------------- 1. the training step


@dataclass(frozen=True)
class TrainRow:
    style: str
    size: str
    seq: int
    precision: str


def measure_train(row: TrainRow, args) -> tuple[float, float]:
    """-> (our tokens/s, theirs) for one training row."""
    dtype = torch.bfloat16 if row.precision == "bf16" else None
    rows = full_rows(args.steps, args.batch, row.seq, args.vocab)
    model = ours(row.style, row.size, args.vocab, args.max_len)
    hf = hf_twin(model)
    gen = torch.Generator().manual_seed(0)
    batches = [model.prepare({"input_ids": ids, "mask": mask}, gen) for ids, mask in rows]  # the clm collator

    def our_step(batch):
        return model(batch).loss

    def hf_step(batch):
        return hf(input_ids=batch["input_ids"], attention_mask=batch["mask"], labels=batch["input_ids"]).loss

    sides = {}
    for name, m, step in (("pretrainlab", model, our_step), ("transformers", hf, hf_step)):
        m.train()
        opt = make_optimizer(m, 1e-4, 0.01, CPU)
        timed_steps(m, step, opt, batches[:2], dtype)  # warm-up
        sides[name] = partial(timed_steps, m, step, opt, batches, dtype)
    times = alternate(sides, args.repeats)
    tokens = args.batch * row.seq * args.steps
    o, h = (tokens / statistics.median(times[n]) for n in sides)
    return o, h


# --------------------------------------------------------------------------- 2. generation


@dataclass(frozen=True)
class GenRow:
    style: str
    size: str
    batch: int


def measure_generation(row: GenRow, args) -> tuple[float, float, bool]:
    """-> (our new tokens/s, theirs, whether the greedy tokens are the same) for one generation row."""
    model = ours(row.style, row.size, args.vocab, args.max_len)
    lm = CausalLM(model.backbone, model.lm_head).eval()
    hf = hf_twin(model).eval()
    prompts, mask = full_rows(1, row.batch, args.prompt_len, args.vocab, seed=1)[0]
    n = args.max_new_tokens

    def our_generate():
        return generate(lm, prompts, n, temperature=0.0, mask=mask, pad_id=SPECIAL.pad)

    def hf_generate():
        return hf.generate(input_ids=prompts, attention_mask=mask, do_sample=False, use_cache=True,
                           max_new_tokens=n, min_new_tokens=n, pad_token_id=SPECIAL.pad, eos_token_id=None)

    def timed(fn) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    a, b = our_generate(), hf_generate()  # warm-up, and the tokens to compare
    same = a.shape == b.shape and torch.equal(a, b)
    times = alternate({"pretrainlab": partial(timed, our_generate), "transformers": partial(timed, hf_generate)},
                      args.repeats)
    o, h = (row.batch * n / statistics.median(times[k]) for k in times)
    return o, h, same


# --------------------------------------------------------------------------- the table


def table(train: list[tuple[TrainRow, float, float]], gen: list[tuple[GenRow, float, float, bool]], args,
          before: dict, after: dict) -> str:
    import transformers

    lines = [
        f"# Causal decoder: pretrainlab vs Hugging Face ({time.strftime('%Y-%m-%d %H:%M')})", "",
        f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}, transformers {transformers.__version__}; "
        f"vocab {args.vocab}, tied LM head, no dropout, HF attn sdpa, median of {args.repeats} repeats per side. "
        f"Training: batch {args.batch}, {args.steps} steps per repeat. Generation: fp32, prompts of "
        f"{args.prompt_len} tokens, {args.max_new_tokens} new tokens.",
        peak_line(before, after), "",
        "| part | style | peer | size | seq / batch | precision | pretrainlab tok/s | transformers tok/s | ratio "
        "| greedy tokens equal |",
        "|---|---|---|---|---|---|---:|---:|---:|---|",
    ]
    for r, o, h in train:
        lines.append(f"| train step | {r.style} | {HF_DECODER_CLASSES[r.style][1]} | {r.size} | seq {r.seq} "
                     f"| {r.precision} | {o:,.0f} | {h:,.0f} | {o / h:.2f}x | - |")
    for r, o, h, same in gen:
        lines.append(f"| generate | {r.style} | {HF_DECODER_CLASSES[r.style][1]} | {r.size} | batch {r.batch} "
                     f"| fp32 | {o:,.0f} | {h:,.0f} | {o / h:.2f}x | {'yes' if same else '**no**'} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=["train", "generate"], choices=["train", "generate"])
    ap.add_argument("--styles", nargs="+", default=["llama", "gpt2"], choices=["llama", "gpt2"])
    ap.add_argument("--sizes", nargs="+", default=["tiny", "mini"], choices=list(PRESETS))
    ap.add_argument("--vocab", type=int, default=8192, help="vocabulary size (the package default)")
    ap.add_argument("--seqs", nargs="+", type=int, default=[64, 128], help="training sequence lengths")
    ap.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"],
                    help="of the training step (generation runs in fp32)")
    ap.add_argument("--batch", type=int, default=32, help="training rows per step")
    ap.add_argument("--steps", type=int, default=4, help="timed training steps per repeat and side")
    ap.add_argument("--gen-batches", nargs="+", type=int, default=[1, 8], help="prompts per generate call")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=512, help="the decoder's context (model.max_len)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    ap.add_argument("--peak-n", type=int, default=2048, help="matmul size of the peak measurement")
    ap.add_argument("--out", help="also write the table to this Markdown file (benchmarks/results/decoder_speed.md)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: tiny, seq 64, bf16, 2 steps x 1 repeat, 8 new tokens, a small peak matmul")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.seqs, args.precisions = ["tiny"], [64], ["bf16"]
        args.steps, args.repeats, args.max_new_tokens, args.peak_n = 2, 1, 8, 512
    if args.steps < 2:
        ap.error("--steps must be at least 2 (the warm-up runs the first two batches)")
    if args.prompt_len + args.max_new_tokens > args.max_len:
        ap.error(f"--prompt-len + --max-new-tokens must fit the context --max-len {args.max_len}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_allocator()  # the same allocator settings for both sides: this one process
    precisions = sorted(set(args.precisions) | {"fp32"}) if "generate" in args.parts else args.precisions
    before = noted_peaks(precisions, args, "before")
    train, gen = [], []
    if "train" in args.parts:
        for style, size, seq, prec in itertools.product(args.styles, args.sizes, args.seqs, args.precisions):
            row = TrainRow(style, size, seq, prec)
            o, h = measure_train(row, args)
            train.append((row, o, h))
            print(f"train    {style:5} {size:5} T={seq:<4} {prec}: pretrainlab {o:9,.0f} tok/s  "
                  f"transformers {h:9,.0f} tok/s  {o / h:.2f}x", file=sys.stderr, flush=True)
    if "generate" in args.parts:
        for style, size, batch in itertools.product(args.styles, args.sizes, args.gen_batches):
            row = GenRow(style, size, batch)
            o, h, same = measure_generation(row, args)
            gen.append((row, o, h, same))
            print(f"generate {style:5} {size:5} B={batch:<4} fp32: pretrainlab {o:9,.0f} tok/s  "
                  f"transformers {h:9,.0f} tok/s  {o / h:.2f}x  greedy equal: {same}", file=sys.stderr, flush=True)
    after = noted_peaks(precisions, args, "after")
    write_out(table(train, gen, args, before, after), args.out)


if __name__ == "__main__":
    main()
