"""The teacher: a fine-tuned classifier directory, the task it labels, and its logits on texts.

    teacher = load_teacher("runs/minilm/finetune-mr")
    task, remap = teacher_task(teacher)             # its own task; remap[task label id] = the teacher's id
    logits, pooled = run_teacher(teacher, texts, 64, device, dtype, with_pooled=False)
    mask_token(teacher.tokenizer)                   # "[MASK]" if it reads that string as its mask token, else None
    logits = with_tfidf(logits, task, remap, texts, 0.5)   # half TF-IDF + LR's probabilities (distill.tfidf_weight)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..baselines import tfidf_model
from ..data.encoding import collate, encode
from ..data.tasks import Task, as_task
from ..errors import CheckpointError, TaskError
from ..loop import autocast
from ..models import pool
from ..runs import FineTuned, is_classifier_dir, load_classifier

log = logging.getLogger(__name__)


def load_teacher(path: str | Path) -> FineTuned:
    """The teacher: a fine-tuned classifier directory (ours, or fine-tuned from an imported model)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"teacher {path}: no such directory; give the --out of `pretrainlab finetune`")
    if not is_classifier_dir(path):
        what = " (it is a pre-training run: fine-tune it first)" if (path / "config.yaml").is_file() else ""
        raise CheckpointError(
            f"teacher {path} is not a fine-tuned classifier (no classifier.json){what}; give the --out of "
            "`pretrainlab finetune` (for a Hugging Face model: `pretrainlab import`, then `pretrainlab finetune`)")
    teacher = load_classifier(path)
    if teacher.meta.get("pairs"):
        raise TaskError(f"teacher {path} was fine-tuned on text pairs; distill labels single texts, "
                        "so it needs a teacher of a single-text task")
    return teacher


def teacher_task(teacher: FineTuned, task: str | Path | Task | None = None) -> tuple[Task, list[int]]:
    """The task (default: the teacher's own, read with its settings) and each task label id's teacher id."""
    task = as_task(task if task is not None else teacher.meta["task_source"], teacher.config.finetune)
    ours, theirs = sorted(map(str, teacher.label_names)), sorted(map(str, task.label_names))
    if ours != theirs:
        raise TaskError(f"the teacher {teacher.path} knows the labels {list(teacher.label_names)}, but task "
                        f"{task.name} ({task.source}) has the labels {list(task.label_names)}; distil on the "
                        "teacher's own task (drop --task), or fine-tune a teacher on this one")
    if task.has_pairs:
        raise TaskError(f"task {task.name} has text pairs; distill labels single texts")
    index = {str(x): i for i, x in enumerate(teacher.label_names)}
    return task, [index[str(x)] for x in task.label_names]


MASK = "[MASK]"


def mask_token(tokenizer) -> str | None:
    """The literal "[MASK]" when the tokenizer reads that string as its mask token (MiniLM's WordPiece and
    pretrainlab's own tokenizers do): what distill.augment's copies mask words with; else None (they swap them)."""
    i = tokenizer.token_to_id(MASK)
    return MASK if i is not None and tokenizer.encode(MASK, add_special_tokens=False).ids == [i] else None


@torch.no_grad()
def run_teacher(teacher: FineTuned, texts: Sequence[str], batch_size: int, device: torch.device,
                dtype: torch.dtype | None, with_pooled: bool) -> tuple[Tensor, Tensor | None]:
    """The teacher's logits (and pooled representations) on texts: (N, K), (N, D) float32."""
    enc = encode(teacher.tokenizer, texts, None, teacher.meta["max_len"])
    model, segments, pooling = teacher.model.eval(), teacher.meta["segments"], teacher.meta["pooling"]
    logits = torch.empty(len(enc), len(teacher.label_names))
    pooled = torch.empty(len(enc), model.backbone.d_model) if with_pooled else None
    order = sorted(range(len(enc)), key=lambda i: len(enc.ids[i]))  # batches of like length: little padding
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        b = {k: v.to(device) for k, v in collate(enc, idx, teacher.special.pad, segments).items()}
        with autocast(device, dtype):
            out = model(b["input_ids"], b["mask"], b.get("segment_ids"))
        logits[idx] = out.logits.float().cpu()
        if pooled is not None:
            pooled[idx] = pool(out.hidden, b["mask"], pooling).float().cpu()
    return logits, pooled


def with_tfidf(logits: Tensor, task: Task, remap: Sequence[int], texts: Sequence[str], weight: float,
               quiet: bool = False) -> Tensor:
    """The teacher's logits on texts as the log of (1 - weight) x its probabilities + weight x those of TF-IDF + LR
    fitted on the task's training split (its C picked on validation): a co-teacher whose errors differ. remap[task
    label id] = the teacher's id (teacher_task). At temperature 1, the soft labels are exactly the mixture."""
    model = tfidf_model(task)
    theirs = torch.zeros_like(logits, dtype=torch.float32)
    theirs[:, list(remap)] = torch.from_numpy(model.probabilities(texts)).float()
    mixed = (1 - weight) * logits.float().softmax(-1) + weight * theirs
    if not quiet:
        log.info(f"distill.tfidf_weight={weight}: TF-IDF + LR (validation accuracy {model.val_acc:.3f}, fitted on the "
                 f"{len(task.train):,} labelled training texts) mixed into the teacher's soft labels")
    return mixed.clamp_min(1e-12).log()  # a class neither gives any chance (weight 1) stays finite
