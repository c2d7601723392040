"""Inference throughput: pretrainlab's predict vs the exported Hugging Face model, same texts, same run.

The fine-tuned model is exported with `pretrainlab export` (into a temporary folder) and loaded the way
the README's snippet loads it: AutoModelForSequenceClassification + AutoTokenizer. Both sides label
the same texts in the same chunks of B texts (B = 1 and 32), end to end from strings to class
probabilities: ours `evaluate.predict(model, chunk, precision=P)` (tokenize, sort by length, pad,
forward under inference_mode, softmax); theirs `tokenizer(chunk, padding=True, truncation=True)` +
`model(**inputs).logits.softmax(-1)` under torch.inference_mode (and torch.autocast for bf16). The two
alternate (ABBA) over the repeats, under the same thread count; each figure is the median. A last row
gives ours with the whole list in one call (predict sorts all of it by length), as `predict --file` does.

It also prints how often the labels agree: ours fp32 vs the HF model (the export is exact: 100%) and
ours bf16 vs ours fp32 (finetune.inference_precision=auto).

    python benchmarks/inference.py runs/mini/finetune-mr                 # the model's own test split, 512 texts
    python benchmarks/inference.py runs/mini/finetune-mr --n 1000 --out benchmarks/results/inference.md
    python benchmarks/inference.py /tmp/model --texts texts.txt --n 64 --repeats 1   # any texts, one per line
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from pretrainlab.evaluate import inference_dtype, predict
from pretrainlab.runs import load_classifier

CPU = torch.device("cpu")


def read_texts(ftm, path: str | None, n: int) -> list[str]:
    """The first n texts of a file (one per line), or of the model's own task's test split."""
    if path:
        texts = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        from pretrainlab.data.tasks import as_task

        if ftm.meta.get("pairs"):
            raise SystemExit("the model was fine-tuned on text pairs; this benchmark labels single texts")
        texts = list(as_task(ftm.meta["task_source"], ftm.config.finetune).split("test").texts)
    if not texts:
        raise SystemExit("no texts to label")
    return (texts * (n // len(texts) + 1))[:n]


def chunks(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i:i + size] for i in range(0, len(texts), size)]


def hf_side(ftm):
    """The exported folder loaded as transformers loads it; -> label(chunk, dtype) -> (B, n_labels) probs."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pretrainlab.export import export

    tmp = tempfile.mkdtemp(prefix="pretrainlab-inference-")
    folder = export(ftm.path, Path(tmp) / "hf")
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    shutil.rmtree(tmp)  # both are in memory now
    max_len = ftm.meta["max_len"]

    @torch.inference_mode()
    def label(chunk: list[str], dtype: torch.dtype | None) -> torch.Tensor:
        inputs = tok(chunk, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            return model(**inputs).logits.float().softmax(-1)

    return label


def timed(fn, parts) -> float:
    t = time.perf_counter()
    for part in parts:
        fn(part)
    return time.perf_counter() - t


def measure(ftm, hf_label, texts: list[str], batch: int, precision: str, repeats: int) -> tuple[float, float, float]:
    """-> examples/s of ours (chunks), the HF model (chunks), ours (the whole list in one predict call)."""
    dtype = inference_dtype(precision, CPU)
    parts = chunks(texts, batch)
    sides = {"ours": lambda c: predict(ftm, c, batch_size=batch, precision=precision),
             "hf": lambda c: hf_label(c, dtype),
             "ours-list": lambda c: predict(ftm, c, batch_size=batch, precision=precision)}
    inputs = {"ours": parts, "hf": parts, "ours-list": [texts]}
    for name, fn in sides.items():  # warm-up
        timed(fn, inputs[name][:2])
    times = {name: [] for name in sides}
    order = list(sides)
    for r in range(repeats):  # ABBA: each side goes first every other repeat
        for name in order if r % 2 == 0 else order[::-1]:
            times[name].append(timed(sides[name], inputs[name]))
    o, h, ol = (len(texts) / statistics.median(times[k]) for k in order)
    return o, h, ol


def agreement(ftm, hf_label, texts: list[str], bf16_ok: bool) -> str:
    ours32 = [label for label, _ in predict(ftm, texts, precision="fp32")]
    theirs = [ftm.label_names[int(i)] for part in chunks(texts, 32) for i in hf_label(part, None).argmax(-1)]
    same = sum(a == b for a, b in zip(ours32, theirs)) / len(texts)
    line = f"labels: ours fp32 vs the exported HF model agree on {same:.2%} of {len(texts)} texts"
    if bf16_ok:
        ours16 = [label for label, _ in predict(ftm, texts, precision="bf16")]
        line += f"; ours bf16 vs ours fp32 on {sum(a == b for a, b in zip(ours16, ours32)) / len(texts):.2%}"
    return line


def main(argv=None) -> None:
    import transformers

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="fine-tuned model directory (pretrainlab finetune --out)")
    ap.add_argument("--texts", help="a text file, one text per line (default: the model's task's test split)")
    ap.add_argument("--n", type=int, default=512, help="texts to label (repeated if there are fewer)")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    ap.add_argument("--out", help="also write the table to this Markdown file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ftm = load_classifier(args.model)
    texts = read_texts(ftm, args.texts, args.n)
    hf_label = hf_side(ftm)
    bf16_ok = inference_dtype("auto", CPU) is not None
    precisions = [p for p in args.precisions if p == "fp32" or bf16_ok]
    if precisions != args.precisions:
        print("this CPU has no fast bf16: bf16 skipped", file=sys.stderr)
    lines = [f"# Inference: pretrainlab predict vs the exported Hugging Face model ({time.strftime('%Y-%m-%d %H:%M')})",
             "", f"{args.model} ({ftm.config.model.style}, {ftm.config.model.d_model}x{ftm.config.model.n_layers}), "
             f"{len(texts)} texts, {args.threads} threads, torch {torch.__version__}, transformers "
             f"{transformers.__version__}, median of {args.repeats} repeats", "",
             "| precision | batch | pretrainlab ex/s | transformers ex/s | ratio | pretrainlab, whole list ex/s |",
             "|---|---:|---:|---:|---:|---:|"]
    for precision in precisions:
        for batch in args.batches:
            o, h, ol = measure(ftm, hf_label, texts, batch, precision, args.repeats)
            lines.append(f"| {precision} | {batch} | {o:,.0f} | {h:,.0f} | {o / h:.2f}x | {ol:,.0f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    lines += ["", agreement(ftm, hf_label, texts, bf16_ok)]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
