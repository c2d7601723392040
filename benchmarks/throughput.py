"""MLM training-step throughput: pretrainlab vs Hugging Face BertForMaskedLM, same run.

Both sides: the same dimensions, batch, sequence length, 15% masked positions, AdamW
(foreach), the same allocator settings (this process), and they alternate so that machine
noise hits both alike. Prints tokens/s for each, the ratio, and achieved FLOP/s (executed
matmul FLOPs) as a share of the matmul peak measured first.

    .venv/bin/python benchmarks/throughput.py                 # mini, vocab 30522 and 8192, bf16 and fp32
    .venv/bin/python benchmarks/throughput.py --sizes mini small --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pretrainlab.backbones import build_backbone
from pretrainlab.config import PRESETS
from pretrainlab.models import PretrainModel
from pretrainlab.objectives.mlm import MLM, mask_tokens
from pretrainlab.loop import autocast, make_optimizer, tune_allocator


def matmul_peak(dtype: torch.dtype, n: int = 2048, iters: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    return 2 * n**3 * iters / (time.perf_counter() - t)


def step_flops(L: int, d: int, ff: int, T: int, B: int, V: int, predicted: int) -> float:
    """Executed matmul FLOPs of one training step (forward x3 for forward + backward)."""
    per_token = L * (2 * 4 * d * d + 2 * 2 * d * ff + 2 * 2 * T * d)  # qkv+out, ffn, QK^T and AV
    head = predicted * (2 * d * d + 2 * d * V)
    return 3 * (B * T * per_token + head)


def make_batch(B, T, V, gen):
    ids = torch.randint(5, V, (B, T), generator=gen)
    ids[:, 0], ids[:, -1] = 2, 3
    mask = torch.ones(B, T, dtype=torch.long)
    masked, pos, labels = mask_tokens(ids, mask, (0, 1, 2, 3, 4), 4, V, 0.15, gen)
    hf_labels = torch.full((B * T,), -100)
    hf_labels[pos] = labels
    return masked, mask, pos, labels, hf_labels.view(B, T)


def ours(size: str, V: int, T: int):
    p = PRESETS[size]
    bb = build_backbone("transformer", vocab_size=V, d_model=p["d_model"], n_layers=p["n_layers"],
                        n_heads=p["n_heads"], d_ff=p["d_ff"], max_len=512, dropout=0.1, style="bert")
    mlm = MLM(p["d_model"], V, bb.get_input_embeddings(), (0, 1, 2, 3, 4), 4, 0.15)
    model = PretrainModel(bb, {"mlm": mlm}, {"mlm": 1.0})

    def step(batch):
        masked, mask, pos, labels, _ = batch
        return model({"input_ids": masked, "mask": mask, "mlm_positions": pos, "mlm_labels": labels}).loss

    return model, step


def peer(size: str, V: int, T: int):
    from transformers import BertConfig, BertForMaskedLM

    p = PRESETS[size]
    cfg = BertConfig(vocab_size=V, hidden_size=p["d_model"], num_hidden_layers=p["n_layers"],
                     num_attention_heads=p["n_heads"], intermediate_size=p["d_ff"], max_position_embeddings=512,
                     attn_implementation="sdpa")
    model = BertForMaskedLM(cfg)

    def step(batch):
        masked, mask, _, _, hf_labels = batch
        return model(input_ids=masked, attention_mask=mask, labels=hf_labels).loss

    return model, step


def timed_steps(model, step, opt, batches, dtype) -> float:
    dev = torch.device("cpu")
    t = time.perf_counter()
    for batch in batches:
        with autocast(dev, dtype):
            loss = step(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["mini"])
    ap.add_argument("--vocabs", nargs="+", type=int, default=[30522, 8192])
    ap.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per repeat and side")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tune_allocator()  # same allocator settings for both sides: this one process
    peaks = {"bf16": matmul_peak(torch.bfloat16), "fp32": matmul_peak(torch.float32)}
    print(f"matmul peak: bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s, fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s "
          f"({args.threads} threads)")
    B, T = args.batch, args.seq
    rows = []
    for size in args.sizes:
        for V in args.vocabs:
            for prec in args.precisions:
                dtype = torch.bfloat16 if prec == "bf16" else None
                torch.manual_seed(0)
                gen = torch.Generator().manual_seed(0)
                batches = [make_batch(B, T, V, gen) for _ in range(args.steps)]
                sides = {}
                for name, make in (("pretrainlab", ours), ("transformers", peer)):
                    model, step = make(size, V, T)
                    model.train()
                    opt = make_optimizer(model, 1e-4, 0.01, torch.device("cpu"))
                    timed_steps(model, step, opt, batches[:2], dtype)  # warm-up
                    sides[name] = (model, step, opt, [])
                for _ in range(args.repeats):  # alternate the two sides
                    for name, (model, step, opt, times) in sides.items():
                        times.append(timed_steps(model, step, opt, batches, dtype))
                tok = B * T * args.steps
                ours_tps = tok / statistics.median(sides["pretrainlab"][3])
                peer_tps = tok / statistics.median(sides["transformers"][3])
                p = PRESETS[size]
                pred = int(0.15 * B * T)
                f_ours = step_flops(p["n_layers"], p["d_model"], p["d_ff"], T, B, V, pred) * ours_tps / (B * T)
                f_peer = step_flops(p["n_layers"], p["d_model"], p["d_ff"], T, B, V, B * T) * peer_tps / (B * T)
                rows.append((size, V, prec, ours_tps, peer_tps, ours_tps / peer_tps,
                             f_ours / peaks[prec], f_peer / peaks[prec]))
                print(f"{size:6} V={V:<6} {prec}: pretrainlab {ours_tps:8,.0f} tok/s  transformers {peer_tps:8,.0f} tok/s"
                      f"  ratio {ours_tps / peer_tps:.2f}x  (peak share {f_ours / peaks[prec]:.0%} vs {f_peer / peaks[prec]:.0%})",
                      flush=True)
    print("\n| size | vocab | precision | pretrainlab tok/s | transformers tok/s | ratio | FLOP/s share ours | FLOP/s share HF |")
    print("|---|---|---|---|---|---|---|---|")
    for size, V, prec, o, h, r, fo, fh in rows:
        print(f"| {size} | {V} | {prec} | {o:,.0f} | {h:,.0f} | {r:.2f}x | {fo:.0%} | {fh:.0%} |")


if __name__ == "__main__":
    main()
