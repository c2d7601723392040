"""A task's training texts as unlabelled pre-training text (`pretrainlab prepare task:mr ...`).

Task-adaptive pre-training (Gururangan et al. 2020) and self-pre-training (Krishna et al. 2023):
the texts of the task's *training* split join the corpus, unlabelled. Validation and test texts
never do. The split is the one `finetune` and `curve` draw from the same `finetune.*` settings
(columns, group_column, fractions, seed), so all three agree on what is training text.

An input `task:NAME` (a built-in task) or `task:FILE` (.csv/.tsv/.jsonl, its text column from
finetune.text_column) is written once to a cached .txt file, one text per line, PER_DOC lines to a
document, and that file is what preparation reads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from ..errors import CorpusError, TaskError

PREFIX = "task:"
PER_DOC = 20
"""Texts per document: short texts (sentences, tweets) grouped so that packing sees documents."""


def is_task_input(item: str | Path) -> bool:
    return str(item).startswith(PREFIX)


def write_task_text(texts: list[str], path: Path, per_doc: int = PER_DOC) -> Path:
    """Texts as a .txt corpus: one per line, `per_doc` to a document (blank lines between)."""
    lines = [" ".join(t.split()) for t in texts]
    docs = ["\n".join(lines[i: i + per_doc]) for i in range(0, len(lines), per_doc)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def training_texts(spec: str, finetune_cfg) -> tuple[str, list[str]]:
    """(task name, the training split's texts, pairs' second texts included) of `task:NAME|FILE`."""
    from .tasks import task_from_config

    target = spec[len(PREFIX):].strip()
    if not target:
        raise CorpusError(f"input {spec!r}: name a task after 'task:', e.g. task:mr or task:reviews.csv")
    try:
        task = task_from_config(replace(finetune_cfg, task=target, max_train=0))
    except TaskError as e:
        raise CorpusError(f"input {spec!r}: {e}") from None
    return task.name, task.train.texts + (task.train.pairs or [])


def resolve_task_inputs(inputs: Iterable[str | Path], finetune_cfg, cache_dir: Path | None = None) -> list[str]:
    """Replace every `task:` input by a cached .txt file of that task's training texts."""
    resolved = []
    for item in inputs:
        if not is_task_input(item):
            resolved.append(str(item))
            continue
        name, texts = training_texts(str(item), finetune_cfg)
        key = hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]  # the texts themselves: any split change shows
        path = (cache_dir or _cache_dir()) / f"{name}-train-{key}.txt"
        if not path.exists():
            write_task_text(texts, path)
        resolved.append(str(path))
    return resolved


def _cache_dir() -> Path:
    from .sources import cache_root

    return cache_root() / "task-text"  # $PRETRAINLAB_CACHE, else the user cache directory, as the built-in sources
