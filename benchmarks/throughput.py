"""MLM training-step throughput: pretrainlab vs Hugging Face, same run, every shipped size.

Style `bert` is measured against `BertForMaskedLM`, style `modern` against `ModernBertForMaskedLM`
with every layer global (`global_attn_every_n_layers=1`, one rotary base: the config our export
writes, export/hf_names.hf_modernbert_config_kwargs). Both sides of a row have the same dimensions
(preset), vocabulary, batch, sequence length (one document per row), dropout, the same 15% masked
positions, the same AdamW (loop.make_optimizer), autocast dtype, thread count and allocator
settings (this one process), and they alternate within each row (ABBA order) so that machine noise
hits both alike. Each side's figure is the median over the repeats.

The matmul peak (square n x n matmuls in bf16 and fp32) is measured before the first row and after
the last; a run whose two peaks differ by more than 10% is marked NOISY: its figures are not to be
trusted. The share of peak counts the FLOPs a training step NEEDS (forward + backward = 3x the
forward matmuls; the vocabulary projection only at the masked positions, which is all MLM needs),
the same count for both sides, against the higher of the two peaks.

    python benchmarks/throughput.py                               # the whole grid (~30 min on 2 cores)
    python benchmarks/throughput.py --out benchmarks/results/throughput.md
    python benchmarks/throughput.py --sizes mini --vocabs 8192 --seqs 64 --styles modern --repeats 5
    python benchmarks/throughput.py --quick                       # smoke run: a few steps at tiny/8192/64/bf16

Both models are tied (decoder = input embedding), as the HF classes are; `--untied` gives ours the
recipe's own untied head (objective.tie_embeddings=false: more parameters for the optimizer).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from pretrainlab.config import PRESETS, load_config
from pretrainlab.loop import autocast, make_optimizer, tune_allocator
from pretrainlab.objectives.mlm import mask_tokens
from pretrainlab.runs import build_pretrain_model
from pretrainlab.tokenizer import SpecialIds

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
MASK_RATE = 0.15
DEFAULT_DROPOUT = {"bert": 0.1, "modern": 0.0}  # BertConfig's and ModernBertConfig's (and our recipe's) defaults
NOISY = 0.10


# --------------------------------------------------------------------------- the machine


def matmul_peak(dtype: torch.dtype, n: int = 2048, iters: int = 10, bursts: int = 3,
                device: torch.device = torch.device("cpu")) -> float:
    """FLOP/s of the best of `bursts` timed bursts of n x n matmuls."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(bursts):
        wait(device)
        t = time.perf_counter()
        for _ in range(iters):
            a @ b
        wait(device)
        best = max(best, 2 * n**3 * iters / (time.perf_counter() - t))
    return best


def wait(device: torch.device) -> None:
    """Until the device has done what was queued (a GPU runs behind the host; a CPU does not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peaks(precisions: list[str], n: int, iters: int) -> dict[str, float]:
    return {p: matmul_peak(torch.bfloat16 if p == "bf16" else torch.float32, n, iters) for p in precisions}


def noted_peaks(precisions: list[str], args, when: str) -> dict[str, float]:
    """peaks() at args.peak_n (fewer iterations in a --quick run), noted on stderr as the peak `when`."""
    measured = peaks(precisions, args.peak_n, 3 if args.quick else 10)
    print(f"matmul peak {when}: " + ", ".join(f"{p} {v / 1e9:.0f} GFLOP/s" for p, v in measured.items())
          + f" ({args.threads} threads)", file=sys.stderr, flush=True)
    return measured


def peak_line(before: dict[str, float], after: dict[str, float]) -> str:
    """The peaks measured before and after a run, and **NOISY** when two differ by more than NOISY."""
    spread = {p: abs(after[p] - before[p]) / max(before[p], after[p]) for p in before}
    noisy = [p for p, s in spread.items() if s > NOISY]
    return ("matmul peak (GFLOP/s) before / after: " + ", ".join(
        f"{p} {before[p] / 1e9:.0f} / {after[p] / 1e9:.0f} ({spread[p]:.0%} apart)" for p in before)
        + (f". **NOISY** ({', '.join(noisy)} peaks > {NOISY:.0%} apart): do not trust this run's figures."
           if noisy else "."))


def alternate(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each run (-> seconds) `repeats` times in ABBA order: each side goes first every other repeat."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for r in range(repeats):
        for name in order if r % 2 == 0 else order[::-1]:
            times[name].append(runs[name]())
    return times


def write_out(text: str, out: str | None) -> None:
    """Print the table; also write it to `out` (a Markdown file) when given."""
    print("\n" + text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
        print(f"written to {out}", file=sys.stderr)


def needed_flops(style: str, L: int, d: int, ff: int, T: int, B: int, V: int, predicted: float) -> float:
    """Matmul FLOPs a training step needs: 3 x forward (forward + backward), the MLM projection only where masked."""
    ffn = 2 * 3 * d * ff if style == "modern" else 2 * 2 * d * ff  # GeGLU: W_i has 2 * ff outputs
    per_token = L * (2 * 4 * d * d + ffn + 2 * 2 * T * d)  # qkv + out, feed-forward, QK^T and AV
    head = predicted * (2 * d * d + 2 * d * V)  # dense + decoder at the masked positions
    return 3 * (B * T * per_token + head)


# --------------------------------------------------------------------------- the two sides


@dataclass(frozen=True)
class Row:
    style: str
    size: str
    vocab: int
    seq: int
    precision: str


def make_batches(n: int, B: int, T: int, V: int, seed: int = 0, device: torch.device = torch.device("cpu")):
    """n batches of random ids, one document per row: (masked ids, mask, positions, labels, HF labels)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, V, (B, T), generator=gen)
        ids[:, 0], ids[:, -1] = SPECIAL.cls, SPECIAL.sep
        mask = torch.ones(B, T, dtype=torch.long)
        masked, pos, labels = mask_tokens(ids, mask, SPECIAL.all, SPECIAL.mask, V, MASK_RATE, gen)
        hf_labels = torch.full((B * T,), -100)
        hf_labels[pos] = labels
        out.append(tuple(t.to(device) for t in (masked, mask, pos, labels, hf_labels.view(B, T))))
    return out


def ours(row: Row, dropout: float, tied: bool):
    cfg = load_config(None, [f"model.preset={row.size}", f"model.style={row.style}", f"model.dropout={dropout}",
                             f"model.max_len={max(512, row.seq)}", f"data.seq_len={row.seq}",
                             f"objective.tie_embeddings={str(tied).lower()}", f"objective.mask_rate={MASK_RATE}"])
    model = build_pretrain_model(cfg, row.vocab, SPECIAL)

    def step(batch):
        masked, mask, pos, labels, _ = batch
        return model({"input_ids": masked, "mask": mask, "mlm_positions": pos, "mlm_labels": labels}).loss

    return model, step


def peer(row: Row, dropout: float, sparse: bool):
    from transformers import BertConfig, BertForMaskedLM, ModernBertConfig, ModernBertForMaskedLM

    from pretrainlab.export.hf_names import hf_bert_config_kwargs, hf_modernbert_config_kwargs

    p = PRESETS[row.size]
    dims = dict(vocab_size=row.vocab, d_model=p["d_model"], n_layers=p["n_layers"], n_heads=p["n_heads"],
                d_ff=p["d_ff"], max_len=max(512, row.seq), dropout=dropout, type_vocab_size=2, pad_id=SPECIAL.pad)
    if row.style == "bert":
        model = BertForMaskedLM(BertConfig(**hf_bert_config_kwargs(**dims), attn_implementation="sdpa"))
    else:
        cfg = ModernBertConfig(**hf_modernbert_config_kwargs(**dims), sparse_prediction=sparse,
                               attn_implementation="sdpa")
        assert set(cfg.layer_types) == {"full_attention"}, cfg.layer_types  # every layer global
        model = ModernBertForMaskedLM(cfg)

    def step(batch):
        masked, mask, _, _, hf_labels = batch
        return model(input_ids=masked, attention_mask=mask, labels=hf_labels).loss

    return model, step


def timed_steps(model, step, opt, batches, dtype, dev: torch.device = torch.device("cpu")) -> float:
    wait(dev)
    t = time.perf_counter()
    for batch in batches:
        with autocast(dev, dtype):
            loss = step(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    wait(dev)
    return time.perf_counter() - t


def measure(row: Row, args) -> tuple[float, float, float]:
    """-> (our tokens/s, the peer's tokens/s, masked positions per batch) for one row."""
    dtype = torch.bfloat16 if row.precision == "bf16" else None
    dropout = args.dropout if args.dropout is not None else DEFAULT_DROPOUT[row.style]
    dev = torch.device(args.device)
    batches = make_batches(args.steps, args.batch, row.seq, row.vocab, device=dev)
    sides = {}
    for name, make in (("pretrainlab", lambda: ours(row, dropout, not args.untied)),
                       ("transformers", lambda: peer(row, dropout, args.hf_sparse))):
        torch.manual_seed(0)
        model, step = make()
        model.to(dev).train()
        opt = make_optimizer(model, 1e-4, 0.01, dev)
        timed_steps(model, step, opt, batches[:2], dtype, dev)  # warm-up
        sides[name] = partial(timed_steps, model, step, opt, batches, dtype, dev)
    times = alternate(sides, args.repeats)
    tokens = args.batch * row.seq * args.steps
    ours_tps, peer_tps = (tokens / statistics.median(times[n]) for n in sides)
    predicted = statistics.mean(len(b[2]) for b in batches)
    return ours_tps, peer_tps, predicted


# --------------------------------------------------------------------------- the table


def table(results: list[tuple[Row, float, float, float]], args, before: dict, after: dict) -> str:
    import transformers

    ref = {p: max(before[p], after[p]) for p in before}
    lines = [
        f"# MLM training step: pretrainlab vs Hugging Face ({time.strftime('%Y-%m-%d %H:%M')})", "",
        f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}, "
        f"transformers {transformers.__version__}; batch {args.batch}, {args.steps} steps x {args.repeats} repeats "
        f"per side (median), heads {'untied' if args.untied else 'tied'}, "
        f"dropout {args.dropout if args.dropout is not None else 'bert 0.1 / modern 0.0'}"
        + (", ModernBERT sparse_prediction" if args.hf_sparse else "") + ".",
        peak_line(before, after), "",
        "| style | peer | size | vocab | seq | precision | pretrainlab tok/s | transformers tok/s | ratio "
        "| % of peak ours | % of peak HF |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row, o, h, predicted in results:
        p = PRESETS[row.size]
        flops = needed_flops(row.style, p["n_layers"], p["d_model"], p["d_ff"], row.seq, args.batch, row.vocab,
                             predicted)
        per_token = flops / (args.batch * row.seq)
        peer_name = "BertForMaskedLM" if row.style == "bert" else "ModernBertForMaskedLM"
        lines.append(f"| {row.style} | {peer_name} | {row.size} | {row.vocab} | {row.seq} | {row.precision} "
                     f"| {o:,.0f} | {h:,.0f} | {o / h:.2f}x | {o * per_token / ref[row.precision]:.0%} "
                     f"| {h * per_token / ref[row.precision]:.0%} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--styles", nargs="+", default=["bert", "modern"], choices=["bert", "modern"])
    ap.add_argument("--sizes", nargs="+", default=["tiny", "mini", "small"], choices=list(PRESETS))
    ap.add_argument("--vocabs", nargs="+", type=int, default=[8192, 30522])
    ap.add_argument("--seqs", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per repeat and side")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    ap.add_argument("--dropout", type=float, help="both sides (default: bert 0.1, modern 0.0, the HF configs' defaults)")
    ap.add_argument("--untied", action="store_true", help="ours with its own MLM decoder (the recipe's default)")
    ap.add_argument("--hf-sparse", action="store_true",
                    help="ModernBertForMaskedLM with sparse_prediction=True (projects only the masked positions)")
    ap.add_argument("--peak-n", type=int, default=2048, help="matmul size of the peak measurement")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (benchmarks/gpu_smoke.py measures a GPU with it)")
    ap.add_argument("--out", help="also write the table to this Markdown file (e.g. benchmarks/results/throughput.md)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: tiny, vocab 8192, seq 64, bf16, 2 steps x 1 repeat, a small peak matmul")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.vocabs, args.seqs, args.precisions = ["tiny"], [8192], [64], ["bf16"]
        args.steps, args.repeats, args.peak_n = 2, 1, 512
    if args.steps < 2:
        ap.error("--steps must be at least 2 (the warm-up runs the first two batches)")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_allocator()  # the same allocator settings for both sides: this one process
    before = noted_peaks(args.precisions, args, "before")
    results = []
    for style, size, vocab, seq, prec in itertools.product(args.styles, args.sizes, args.vocabs, args.seqs,
                                                           args.precisions):
        row = Row(style, size, vocab, seq, prec)
        o, h, predicted = measure(row, args)
        results.append((row, o, h, predicted))
        print(f"{style:6} {size:5} V={vocab:<6} T={seq:<4} {prec}: pretrainlab {o:9,.0f} tok/s  "
              f"transformers {h:9,.0f} tok/s  {o / h:.2f}x", file=sys.stderr, flush=True)
    after = noted_peaks(args.precisions, args, "after")
    write_out(table(results, args, before, after), args.out)


if __name__ == "__main__":
    main()
