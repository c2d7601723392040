"""Score and predict with a fine-tuned model; baselines.py and reports.py sit beside it.

    evaluate("runs/mini/finetune-mr", "mr")           # -> Metrics, plus JSON/Markdown/PNG reports
    predict("runs/mini/finetune-mr", ["a gripping, funny film"])   # -> [("pos", 0.93)]
    predict(model, texts, precision="fp32")   # exact; default: the model's finetune.inference_precision (auto)

A fine-tuned model directory (runs.load_classifier) carries its input convention: the maximum
length, whether it takes segment ids, whether it was trained on text pairs. Fine-tuning itself is
in finetune.py.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import ConfigError
from .data.encoding import Encoded, collate, encode
from .data.tasks import Columns, Task, as_task, jsonl_row
from .errors import TaskError
from .loop import autocast, pick_dtype
from .metrics import Metrics, score, small_test_warning
from .reports import metrics_markdown, plot_confusion
from .runs import FineTuned, load_classifier

log = logging.getLogger(__name__)

CPU = torch.device("cpu")
"""Where predict / evaluate run (the classifier is loaded there)."""
PRECISIONS = ("auto", "bf16", "fp32")


@torch.inference_mode()
def predict_logits(model: nn.Module, enc: Encoded, pad_id: int, segments: bool, device: torch.device,
                   dtype: torch.dtype | None, batch_size: int = 64) -> Tensor:
    """(N, n_labels) float logits, in the examples' order.

    Batched by length (sorted, so that a batch pads little; each row's logits are written back to its
    own place), without autograd (inference_mode), under autocast when `dtype` is given. In fp32 every
    row equals what it gives alone (float rounding aside, ~1e-7).
    """
    model.eval()
    order = sorted(range(len(enc)), key=lambda i: len(enc.ids[i]))
    out = torch.empty(len(enc), model.head.out_features)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        b = collate(enc, idx, pad_id, segments)
        with autocast(device, dtype):
            logits = model(b["input_ids"].to(device), b["mask"].to(device),
                           b["segment_ids"].to(device) if segments else None).logits
        out[idx] = logits.float().cpu()
    return out


def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of predict / evaluate (None: fp32) for finetune.inference_precision / --precision."""
    if precision not in PRECISIONS:
        raise ConfigError(f"inference precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    try:
        return pick_dtype(precision, device)
    except ConfigError:
        raise ConfigError(f"inference precision bf16 (--precision / finetune.inference_precision), but this "
                          f"{device.type} has no fast bf16; use auto or fp32") from None


def _as_finetuned(model: str | Path | FineTuned) -> FineTuned:
    return model if isinstance(model, FineTuned) else load_classifier(model)


def _dtype(ftm: FineTuned, precision: str | None) -> torch.dtype | None:
    return inference_dtype(precision or ftm.config.finetune.inference_precision, CPU)


def predict(model: str | Path | FineTuned, texts: Sequence[str], pairs: Sequence[str] | None = None,
            batch_size: int = 64, precision: str | None = None) -> list[tuple[Any, float]]:
    """(label, probability) of the most likely class for each text (or text pair), in their order.

    precision: auto, bf16 or fp32; None takes the model's finetune.inference_precision.
    """
    ftm = _as_finetuned(model)
    if isinstance(texts, str):
        texts = [texts]
    if pairs is not None and len(pairs) != len(texts):
        raise TaskError(f"got {len(texts)} texts but {len(pairs)} pair texts; give one --pair per text")
    if pairs is None and ftm.meta.get("pairs"):
        raise TaskError("this model was fine-tuned on text pairs; give the second text of each pair (--pair)")
    enc = encode(ftm.tokenizer, texts, pairs, ftm.meta["max_len"])
    probs = predict_logits(ftm.model, enc, ftm.special.pad, ftm.meta["segments"], CPU, _dtype(ftm, precision),
                           batch_size).softmax(-1)
    p, i = probs.max(-1)
    return [(ftm.label_names[int(k)], float(v)) for k, v in zip(i, p)]


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of a .csv (header line first) or .jsonl file, read one row at a time."""
    if path.suffix.lower() == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                row = jsonl_row(path, line_no, line)
                if row is not None:
                    yield line_no, row
    elif path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for row in reader:
                yield reader.line_num, row
    else:
        raise TaskError(f"{path}: predict --file reads .csv (with a header line) or .jsonl files")


def predict_file(model: str | Path | FineTuned, path: str | Path, out: str | Path, text_column: str = "text",
                 text_pair_column: str | None = None, batch_size: int = 256, precision: str | None = None) -> int:
    """Label every row of a .csv / .jsonl file, streaming; -> the number of rows written to `out` (CSV).

    Each output row holds the input text (and pair text), the predicted label and one probability column
    per class (p_<label>), in the input's order. Rows are read and scored batch_size at a time (each
    such block batched by length, as predict does). precision: as for predict.
    """
    ftm = _as_finetuned(model)
    dtype = _dtype(ftm, precision)
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise TaskError(f"--file {path}: no such file")
    if text_pair_column is None and ftm.meta.get("pairs"):
        raise TaskError("this model was fine-tuned on text pairs; name the second text's column (--pair-column)")
    columns = [text_column] + ([text_pair_column] if text_pair_column else [])
    n = 0

    def flush(batch: list[dict[str, Any]], writer) -> None:
        texts = [str(r[text_column]) for r in batch]
        pairs = [str(r[text_pair_column]) for r in batch] if text_pair_column else None
        enc = encode(ftm.tokenizer, texts, pairs, ftm.meta["max_len"])
        probs = predict_logits(ftm.model, enc, ftm.special.pad, ftm.meta["segments"], CPU, dtype, 64).softmax(-1)
        for r, p in zip(batch, probs.tolist()):
            writer.writerow([r[c] for c in columns] + [ftm.label_names[max(range(len(p)), key=p.__getitem__)]]
                            + [f"{x:.6f}" for x in p])

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns + ["label"] + [f"p_{name}" for name in ftm.label_names])
        batch: list[dict[str, Any]] = []
        for line_no, row in _rows(path):
            missing = [c for c in columns if row.get(c) is None]
            if missing:
                raise TaskError(f"{path}: line {line_no} has no column {missing[0]!r} (it has {sorted(map(str, row))}); "
                                "choose one with --text-column / --pair-column")
            batch.append(row)
            if len(batch) == batch_size:
                flush(batch, writer)
                n, batch = n + len(batch), []
        if batch:
            flush(batch, writer)
            n += len(batch)
    return n


def evaluate(model: str | Path | FineTuned, task: str | Path | Task | None = None, out_dir: str | Path | None = None,
             split: str = "test", precision: str | None = None, columns: Columns | None = None,
             quiet: bool = False) -> Metrics:
    """Accuracy, macro-F1, per-class report and confusion matrix of a fine-tuned model on a task's split.

    A task given by name or file is read with the columns and split settings the model was
    fine-tuned with; its labels are matched to the model's by name. Reports go to out_dir
    (default: <model>/eval-<task>). precision: as for predict. columns: a file's columns, where they differ from
    the ones the model was fine-tuned with. quiet: no line on the split's size (and no warning when it is small).
    """
    ftm = _as_finetuned(model)
    dtype = _dtype(ftm, precision)
    settings = replace(ftm.config.finetune, **(columns.settings() if columns else {}))
    task = as_task(task if task is not None else ftm.meta["task_source"], settings)
    known = {str(x): i for i, x in enumerate(ftm.label_names)}
    remap = []
    for name in task.label_names:
        if str(name) not in known:
            raise TaskError(f"task {task.name} ({task.source}) has label {name!r}, which the model at {ftm.path} "
                            f"does not know (its labels: {ftm.label_names})")
        remap.append(known[str(name)])
    data = task.split(split)
    if not quiet:
        log.info(f"{task.name}: scoring {len(data)} {split} examples")
        if warning := small_test_warning(len(data), split):
            log.warning(warning)
    enc = encode(ftm.tokenizer, data.texts, data.pairs, ftm.meta["max_len"], [remap[y] for y in data.labels])
    logits = predict_logits(ftm.model, enc, ftm.special.pad, ftm.meta["segments"], CPU, dtype)
    metrics = score(enc.labels, logits.argmax(-1).tolist(), ftm.label_names)
    out = Path(out_dir) if out_dir is not None else ftm.path / f"eval-{task.name}"
    out.mkdir(parents=True, exist_ok=True)
    report = {"task": task.name, "source": task.source, "split": split, "model": str(ftm.path), **metrics.to_dict()}
    (out / "metrics.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (out / "metrics.md").write_text(f"# {ftm.path.name} on {task.name} ({split})\n\n" + metrics_markdown(metrics),
                                    encoding="utf-8")
    plot_confusion(metrics, out / "confusion.png", f"{task.name} ({split}): {ftm.path.name}")
    return metrics
