"""Time to accuracy: pretrainlab's default recipe vs the Hugging Face Trainer recipe, same run.

Both sides pre-train on the same prepared corpus (its train split), with the same tokenizer and
the same model dimensions, for each wall-clock budget (default 5, 10, 20 minutes), then get the
same fine-tuning on the same task (default MR, seeds 0 1 2) through pretrainlab's finetune recipe.

    ours  `pretrainlab pretrain` with nothing set but the budget (the default recipe: a tiny modern
          Transformer, lr 2e-3, 64-token packed rows, ...).
    peer  what a user writes from transformers' own example (examples/pytorch/language-modeling/run_mlm.py)
          with the same model dimensions: BertForMaskedLM(BertConfig(...)) from scratch +
          DataCollatorForLanguageModeling(mlm_probability=0.15) + Trainer with run_mlm's defaults
          (TrainingArguments' defaults: AdamW, lr 5e-5, batch 8, linear decay, no warm-up, no weight
          decay, seed 42; texts tokenized with [CLS]/[SEP], concatenated and cut into max_seq_length
          blocks, max_seq_length = our data.seq_len), bf16 where the machine has it. Only the budget
          differs: a wall-clock TrainerCallback stops it, and max_steps (which the linear schedule
          spans) is the budget times the steps/s measured in a short calibration run first.
          The trained folder is brought into pretrainlab with `pretrainlab import` (export/hf_import.py).

Both are scored alike: validation MLM loss on the same masked rows of the corpus's val split (each
chunk of at most seq_len - 2 tokens of a document as `[CLS] chunk [SEP]`, one per row, fp32), and
test accuracy after fine-tuning. The headline: the minutes each side needs to reach the other's
reference-budget (10-minute) figures, interpolated between budgets (log-minutes).

    python benchmarks/time_to_accuracy.py --corpus prepared/ --out runs/tta       # ~70 min + fine-tuning
    python benchmarks/time_to_accuracy.py --corpus /tmp/c --task /tmp/t.csv --minutes 0.1 0.2 --seeds 0 \\
        --calibrate 3 --set finetune.epochs=1 --out /tmp/tta                        # a smoke run

The corpus: e.g. `pretrainlab prepare sotu/ task:mr --out prepared/` (the demo's). Finished cells are
kept in OUT/cells.jsonl and not run again; the table goes to OUT/time_to_accuracy.md.
Needs accelerate (the Trainer's dependency): pip install 'pretrainlab[bench]'.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pretrainlab.config import load_config
from pretrainlab.data.corpus import open_corpus
from pretrainlab.objectives.mlm import mask_tokens
from pretrainlab.tokenizer import load_tokenizer, special_ids

HF_SEED = 42  # TrainingArguments' default seed


# --------------------------------------------------------------------------- the peer: run_mlm's recipe


def run_mlm_blocks(split, seq_len: int, cls: int, sep: int) -> np.ndarray:
    """(n_blocks, seq_len) int32: run_mlm's group_texts. Every document as the tokenizer encodes it
    ([CLS] ids [SEP]), all concatenated and cut into seq_len blocks; the remainder dropped."""
    offsets = split.doc_offsets
    ids = split.read(0, split.n_tokens).astype(np.int32)
    lens = np.diff(offsets)
    out = np.empty(len(ids) + 2 * len(lens), dtype=np.int32)
    starts = offsets[:-1] + 2 * np.arange(len(lens))  # where each [CLS] lands
    out[starts] = cls
    out[starts + lens + 1] = sep
    body = np.ones(len(out), dtype=bool)
    body[starts] = body[starts + lens + 1] = False
    out[body] = ids
    n = len(out) // seq_len
    return out[: n * seq_len].reshape(n, seq_len)


class Blocks(torch.utils.data.Dataset):
    """The Trainer's dataset: one block a row, as run_mlm's tokenized dataset holds it."""

    def __init__(self, blocks: np.ndarray, special: set[int]):
        self.blocks, self.special = blocks, special

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        ids = self.blocks[i].tolist()
        return {"input_ids": ids, "attention_mask": [1] * len(ids),
                "special_tokens_mask": [int(t in self.special) for t in ids]}


def wall_clock_callback(seconds: float):
    from transformers import TrainerCallback

    class WallClock(TrainerCallback):
        """Stops training once `seconds` have passed since the first step began."""

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if time.perf_counter() - self.t0 >= seconds:
                control.should_training_stop = True

    return WallClock()


@dataclass
class Peer:
    """What every Trainer run of the peer shares: the corpus as run_mlm's blocks, the tokenizer, the dims."""

    blocks: Blocks
    tok: Any
    """Our tokenizer as a PreTrainedTokenizerFast (what DataCollatorForLanguageModeling needs)."""
    vocab: int
    pad: int
    dims: dict[str, int]
    seq_len: int
    bf16: bool

    @staticmethod
    def of(corpus: Path, cfg, bf16: bool) -> Peer:
        from pretrainlab.tokenizer import hf_tokenizer

        corp = open_corpus(corpus)
        tokenizer = load_tokenizer(corp.tokenizer_path)
        special = special_ids(tokenizer)
        seq_len = cfg.data.seq_len
        blocks = Blocks(run_mlm_blocks(corp.split("train"), seq_len, special.cls, special.sep), set(special.all))
        dims = {k: getattr(cfg.model, k) for k in ("d_model", "n_layers", "n_heads", "d_ff")}
        return Peer(blocks, hf_tokenizer(tokenizer, model_max_length=seq_len), tokenizer.get_vocab_size(),
                    special.pad, dims, seq_len, bf16)

    def trainer(self, work: Path, max_steps: int, seconds: float):
        """BertForMaskedLM from scratch + DataCollatorForLanguageModeling + Trainer, run_mlm's defaults."""
        from transformers import (BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling, Trainer,
                                  TrainingArguments, set_seed)

        set_seed(HF_SEED)  # run_mlm seeds before it builds the model
        d = self.dims
        config = BertConfig(vocab_size=self.vocab, hidden_size=d["d_model"], num_hidden_layers=d["n_layers"],
                            num_attention_heads=d["n_heads"], intermediate_size=d["d_ff"], pad_token_id=self.pad)
        args = TrainingArguments(output_dir=str(work / "trainer"), max_steps=max_steps, bf16=self.bf16,
                                 use_cpu=not torch.cuda.is_available(), save_strategy="no", report_to="none",
                                 disable_tqdm=True, seed=HF_SEED)
        collator = DataCollatorForLanguageModeling(tokenizer=self.tok, mlm_probability=0.15)
        return Trainer(model=BertForMaskedLM(config), args=args, train_dataset=self.blocks, data_collator=collator,
                       callbacks=[wall_clock_callback(seconds)])

    def calibrate(self, work: Path, seconds: float) -> float:
        """Optimizer steps per second, from a throw-away run of `seconds` (its first 3 steps not counted)."""
        from transformers import TrainerCallback

        times: list[float] = []

        class Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                times.append(time.perf_counter())

        trainer = self.trainer(work / "calibration", 10**9, seconds)
        trainer.add_callback(Clock())
        trainer.train()
        shutil.rmtree(work / "calibration", ignore_errors=True)
        if len(times) < 5:
            raise SystemExit(f"calibration made only {len(times)} steps in {seconds}s; give --calibrate more seconds")
        return (len(times) - 4) / (times[-1] - times[3])

    def pretrain(self, minutes: float, rate: float, out: Path) -> dict:
        """Train for `minutes`, save the Hugging Face folder, import it as a pretrainlab run (pretrainlab import)."""
        from pretrainlab.export.hf_import import import_hf

        seconds = minutes * 60
        max_steps = max(1, math.ceil(rate * seconds))
        trainer = self.trainer(out, max_steps, seconds)
        took = trainer.train().metrics["train_runtime"]  # the training loop's own time, as ours reports it
        steps = trainer.state.global_step
        hf_dir = out / "hf"
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Writing model shards" bar
        trainer.save_model(str(hf_dir))
        self.tok.save_pretrained(str(hf_dir))
        shutil.rmtree(out / "trainer", ignore_errors=True)
        import_hf(hf_dir, out / "run", overwrite=True, seq_len=self.seq_len, quiet=True)
        return {"run": str(out / "run"), "steps": steps, "max_steps": max_steps, "seconds": round(took, 1),
                "tokens": steps * trainer.args.per_device_train_batch_size * self.seq_len}


def pretrain_ours(corpus: Path, minutes: float, overrides: list[str], out: Path) -> dict:
    from pretrainlab.train import pretrain

    if out.exists():
        shutil.rmtree(out)  # an unfinished cell starts again
    cfg = load_config(None, [*overrides, f"train.budget={minutes}m", "train.progress=false"])
    pretrain(cfg, corpus, out)
    summary = json.loads((out / "summary.json").read_text())
    return {"run": str(out), "steps": summary["steps"], "seconds": summary["seconds"], "tokens": summary["tokens"]}


# --------------------------------------------------------------------------- scoring both alike


def val_rows(split, seq_len: int, special, vocab: int, batch_size: int = 32, max_rows: int = 4096,
             seed: int = 0) -> list[dict]:
    """Masked batches of the val split: each chunk of <= seq_len - 2 tokens of a document as one
    `[CLS] chunk [SEP]` row (padded), 15% masked as both recipes mask; the same for every model."""
    rows = []
    for i in range(split.n_docs):
        doc = split.doc(i)
        for a in range(0, len(doc), seq_len - 2):
            rows.append([special.cls, *doc[a : a + seq_len - 2].tolist(), special.sep])
        if len(rows) >= max_rows:
            break
    rows = rows[:max_rows]
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for b in range(0, len(rows), batch_size):
        part = rows[b : b + batch_size]
        T = max(map(len, part))
        ids = torch.tensor([r + [special.pad] * (T - len(r)) for r in part])
        mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in part])
        masked, pos, labels = mask_tokens(ids, mask, special.all, special.mask, vocab, 0.15, gen)
        batches.append({"input_ids": masked, "mask": mask, "mlm_positions": pos, "mlm_labels": labels})
    return batches


@torch.inference_mode()
def val_mlm_loss(run: str, batches: list[dict]) -> float:
    """Mean cross-entropy over all masked tokens of `batches` (fp32)."""
    from pretrainlab.runs import load_pretrained

    model = load_pretrained(run).model.eval()
    total, n = 0.0, 0
    for batch in batches:
        k = len(batch["mlm_labels"])
        total += float(model(batch).metrics["mlm_loss"]) * k
        n += k
    return total / n


def finetune_accuracy(run: str, task: str, seeds: list[int], overrides: list[str]) -> list[float]:
    from pretrainlab.finetune import finetune

    cfg = load_config(None, [*overrides, "train.progress=false"])
    result = finetune(run, task, cfg, seeds=seeds, quiet=True)
    return [s.accuracy for s in result.seeds]


# --------------------------------------------------------------------------- the table


def minutes_to_reach(points: list[tuple[float, float]], target: float, higher_better: bool) -> str:
    """The budget at which a side's curve first reaches `target`, linear in log-minutes between its budgets."""
    good = (lambda v: v >= target) if higher_better else (lambda v: v <= target)
    points = sorted(points)
    if good(points[0][1]):
        return f"<= {points[0][0]:g}"
    for (m0, v0), (m1, v1) in zip(points, points[1:]):
        if good(v1):
            frac = (target - v0) / (v1 - v0)
            return f"{math.exp(math.log(m0) + frac * (math.log(m1) - math.log(m0))):.1f}"
    return f"> {points[-1][0]:g}"


def ratio(text: str, ref: float) -> str:
    if text.startswith("<="):
        return f"<= {float(text[3:]) / ref:.2f}x"
    if text.startswith(">"):
        return f"> {float(text[2:]) / ref:.2f}x"
    return f"{float(text) / ref:.2f}x"


def report(cells: dict, minutes: list[float], ref: float, task: str) -> str:
    def acc(c):
        v = c["accuracy"]
        return f"{statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0:.4f}"

    lines = ["| minutes | ours val MLM loss | HF val MLM loss | ours " + f"{Path(task).stem} accuracy | HF "
             f"{Path(task).stem} accuracy | ours tokens (steps) | HF tokens (steps of max_steps) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for m in minutes:
        o, h = cells[f"ours@{m:g}"], cells[f"hf@{m:g}"]
        lines.append(f"| {m:g} | {o['val_mlm_loss']:.4f} | {h['val_mlm_loss']:.4f} | {acc(o)} | {acc(h)} "
                     f"| {o['tokens']:,} ({o['steps']}) | {h['tokens']:,} ({h['steps']} of {h['max_steps']}) |")
    lines.append("")
    for metric, higher, name in (("accuracy", True, f"{Path(task).stem} accuracy"), ("val_mlm_loss", False,
                                                                                  "val MLM loss")):
        value = {s: {m: (statistics.mean(cells[f"{s}@{m:g}"][metric]) if metric == "accuracy"
                         else cells[f"{s}@{m:g}"][metric]) for m in minutes} for s in ("ours", "hf")}
        for side, other, who, whom in (("hf", "ours", "the HF Trainer recipe", "pretrainlab"),
                                       ("ours", "hf", "pretrainlab", "the HF Trainer recipe")):
            reach = minutes_to_reach(list(value[side].items()), value[other][ref], higher)
            lines.append(f"- {who} needs {reach} min to reach {whom}'s {ref:g}-minute {name} "
                         f"({value[other][ref]:.4f}): {ratio(reach, ref)} the time")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True, help="prepared corpus directory (pretrainlab prepare)")
    ap.add_argument("--task", default="mr", help="fine-tuning task: built-in name or .csv/.tsv/.jsonl (default mr)")
    ap.add_argument("--minutes", nargs="+", type=float, default=[5, 10, 20], help="pre-training budgets")
    ap.add_argument("--reference", type=float, help="the budget whose figures the other side must reach "
                    "(default: 10 if among --minutes, else the middle one)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="fine-tuning seeds")
    ap.add_argument("--calibrate", type=float, default=30, help="seconds of the Trainer's steps/s calibration")
    ap.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a pretrainlab setting for both sides (model dims, finetune.*); default: none")
    ap.add_argument("--out", required=True, help="work directory (resumable)")
    args = ap.parse_args(argv)
    args.minutes = sorted(args.minutes)
    if args.reference is None:
        args.reference = 10.0 if 10.0 in args.minutes else args.minutes[len(args.minutes) // 2]
    if args.reference not in args.minutes:
        ap.error(f"--reference {args.reference:g} is not among --minutes")
    return args


def main(argv=None) -> None:
    from pretrainlab.loop import pick_dtype

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(None, args.overrides)
    bf16 = pick_dtype("auto", torch.device("cpu")) is not None
    cells_file = out / "cells.jsonl"
    cells = {}
    if cells_file.exists():
        cells = {c["cell"]: c for c in map(json.loads, filter(str.strip, cells_file.read_text().splitlines()))}
    corp = open_corpus(args.corpus)
    tokenizer = load_tokenizer(corp.tokenizer_path)
    special = special_ids(tokenizer)
    batches = val_rows(corp.split("val"), cfg.data.seq_len, special, tokenizer.get_vocab_size())
    peer, rate = None, None
    for i, m in enumerate(args.minutes):
        for side in (("ours", "hf") if i % 2 == 0 else ("hf", "ours")):  # alternate who goes first
            name = f"{side}@{m:g}"
            if name in cells:
                continue
            print(f"{name}: pre-training {m:g} min", file=sys.stderr, flush=True)
            if side == "ours":
                cell = pretrain_ours(Path(args.corpus), m, args.overrides, out / f"ours-{m:g}m")
            else:
                if peer is None:
                    peer = Peer.of(Path(args.corpus), cfg, bf16)
                    rate = peer.calibrate(out, args.calibrate)
                    print(f"the Trainer recipe runs {rate:.2f} steps/s here: max_steps = {rate:.2f} x the budget's "
                          "seconds", file=sys.stderr, flush=True)
                cell = peer.pretrain(m, rate, out / f"hf-{m:g}m")
            cell["val_mlm_loss"] = val_mlm_loss(cell["run"], batches)
            cell["accuracy"] = finetune_accuracy(cell["run"], args.task, args.seeds, args.overrides)
            cell["cell"] = name
            cells[name] = cell
            with cells_file.open("a") as f:
                f.write(json.dumps(cell) + "\n")
            print(f"{name}: {json.dumps(cell)}", file=sys.stderr, flush=True)
    text = (f"# Time to accuracy: pretrainlab vs the Hugging Face Trainer recipe ({time.strftime('%Y-%m-%d %H:%M')})\n\n"
            f"corpus {args.corpus}, task {args.task}, seeds {args.seeds}, {args.threads} threads, HF bf16 {bf16}"
            + (f", settings {args.overrides}" if args.overrides else "") + "\n\n"
            + report(cells, args.minutes, args.reference, args.task))
    print("\n" + text)
    (out / "time_to_accuracy.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
