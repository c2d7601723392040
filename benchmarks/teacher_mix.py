"""How right is the teacher of a curve's self-training, alone and mixed with TF-IDF + LR (distill.tfidf_weight)?

For each seed: the curve's pretrained row (the same subsample and fit as `pretrainlab curve RUN --labels N`,
through run_curve, kept), TF-IDF + LR on the same labels, and their mixtures at several weights, scored on the
validation fifth (what a choice may use), the test split, and the pool: the training texts outside the N labels,
whose labels this benchmark reads to say how often the soft labels a student learns are wrong (the curve never
does), and on the pool texts that distill.confident_share (--share, 0.5) keeps of each mix: how often the labels a
student learns are wrong once the unsure ones are dropped. The rows `w=0` and `w=1` are the teacher and TF-IDF + LR
alone.

    python benchmarks/teacher_mix.py RUN --task mr --labels 300 --seeds 0 1 2 --out WORK/mix \
        --set finetune.max_len=64 --set train.progress=false --set finetune.max_minutes=0 [--share 0.5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pretrainlab.baselines import tfidf_model
from pretrainlab.config import load_config
from pretrainlab.curve import picked_examples, run_curve, subsample
from pretrainlab.curve_rows import CurveExtras
from pretrainlab.data.tasks import as_task
from pretrainlab.distill import confident_rows, load_teacher, run_teacher, teacher_task
from pretrainlab.runs import load_pretrained

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
KEPT = "pool, kept"


def scores(run: Path, task_spec: str, n: int, seed: int, out: Path, cfg, share: float = 0.5
           ) -> dict[str, dict[str, float]]:
    """Accuracy by weight on validation, test, the pool and the share of the pool confident_rows keeps, one seed."""
    task = as_task(task_spec, cfg.finetune)
    run_curve(run, task_spec, [n], [seed], out / f"seed{seed}", cfg, models=["pretrained"],
              extras=CurveExtras(keep_models=True))
    teacher = load_teacher(out / f"seed{seed}" / "models" / "pretrained" / f"seed-{seed}")
    sub = subsample(task, n, seed)
    _, remap = teacher_task(teacher, sub)
    chosen = set(picked_examples(task, n, seed))
    pool = [i for i in range(len(task.train)) if i not in chosen]
    splits = {"validation": (sub.validation.texts, sub.validation.labels), "test": (task.test.texts, task.test.labels),
              "pool": ([task.train.texts[i] for i in pool], [task.train.labels[i] for i in pool])}
    tfidf = tfidf_model(sub)
    got: dict[str, dict[str, float]] = {}
    for name, (texts, labels) in splits.items():
        logits, _ = run_teacher(teacher, texts, 64, torch.device("cpu"), None, False)
        ours = logits.softmax(-1).numpy()[:, remap]  # by the task's label ids
        theirs = tfidf.probabilities(texts)
        mixes = {f"w={w}": (1 - w) * ours + w * theirs for w in WEIGHTS}
        right = {k: m.argmax(1) == np.asarray(labels) for k, m in mixes.items()}
        got[name] = {k: float(np.mean(r)) for k, r in right.items()}
        if name == "pool":
            got[KEPT] = {k: float(np.mean(right[k][confident_rows(torch.from_numpy(m).log(), 0, share)]))
                         for k, m in mixes.items()}
    return got


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--task", required=True)
    p.add_argument("--labels", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--set", action="append", default=[], dest="sets")
    p.add_argument("--share", type=float, default=0.5, help="distill.confident_share for the row 'pool, kept'")
    a = p.parse_args()
    if not 0 < a.share <= 1:  # as distill.confident_share's own check
        p.error(f"--share is the share of the pool kept, in (0, 1], got {a.share}")
    cfg = load_config(None, a.sets, base=load_pretrained(a.run).config, base_sections=("finetune",))  # as curve
    task_spec = a.task
    per_seed = {s: scores(Path(a.run), task_spec, a.labels, s, a.out, cfg, a.share) for s in a.seeds}
    (a.out / "teacher-mix.json").write_text(json.dumps(per_seed, indent=1))
    print(f"| split | {' | '.join(f'w={w}' for w in WEIGHTS)} |\n|---|{'---:|' * len(WEIGHTS)}")
    for split in ("validation", "test", "pool", KEPT):
        means = [np.mean([per_seed[s][split][f"w={w}"] for s in a.seeds]) for w in WEIGHTS]
        print(f"| {split} | {' | '.join(f'{m:.4f}' for m in means)} |")
    print(f"(mean of seeds {a.seeds}; w = TF-IDF + LR's share; w=0: the fine-tuned {a.run} alone, w=1: TF-IDF alone; "
          f"'{KEPT}': the pool texts distill.confident_share={a.share} keeps of each mix)")


if __name__ == "__main__":
    main()
