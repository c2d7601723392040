"""Labelled downstream tasks: a built-in name, a user CSV/TSV/JSONL file, or Hugging Face data on disk
(a `save_to_disk` folder, Parquet files: data/hf_disk.py) -> train/validation/test.

    task = load_task("reviews.csv", text_column="review", label_column="stars")
    task.train.texts, task.train.labels        # labels are ids 0..K-1; task.label_names[i] is id i's label

Splits come from the file (a `split` column holding train / validation / test) or are drawn here:
stratified by label, or, when a group column is given, by group (no group in two splits).
Texts are deduplicated before splitting, so the same text never sits in train and test.
Every bad input stops with a TaskError naming the file, the column and the row (line).
"""

from __future__ import annotations

import csv
import difflib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TaskError
from . import hf_disk
from .readers import bom_codec

SPLIT_COLUMN = "split"
_SPLIT_NAMES = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "testing": "test",
}

# The columns of the file that data.sources writes for each built-in task.
BUILTIN_TASKS: dict[str, dict[str, str | None]] = {
    "mr": dict(text_column="text", text_pair_column=None, label_column="label", group_column=None),
    "tweets": dict(text_column="text", text_pair_column=None, label_column="label", group_column=None),
    "wordnet-supersense": dict(text_column="text", text_pair_column=None, label_column="label", group_column=None),
    "wordnet-pairs": dict(text_column="text", text_pair_column="text_pair", label_column="label", group_column="group"),
}
SUFFIXES = (".csv", ".tsv", ".jsonl")
COLUMNAR_SUFFIXES = (".parquet", ".arrow")


@dataclass(frozen=True)
class Columns:
    """The columns of a task file holding the text, a pair's second text and the label (the CLI's --text-column,
    --pair-column, --label-column); None: as the finetune settings (or the model's) say."""

    text: str | None = None
    pair: str | None = None
    label: str | None = None

    def settings(self) -> dict[str, str]:
        """The given ones, as FinetuneConfig fields and load_task keywords."""
        given = {"text_column": self.text, "text_pair_column": self.pair, "label_column": self.label}
        return {k: v for k, v in given.items() if v is not None}


@dataclass
class TaskSplit:
    """One split: parallel lists, one entry per example."""

    texts: list[str]
    labels: list[int]
    """Label ids (0..K-1), indexes into Task.label_names."""
    pairs: list[str] | None = None
    """Second texts of sentence pairs, or None for single texts."""
    groups: list[str] | None = None
    lines: list[int] = field(default_factory=list)
    """Line of the source file each example came from (for messages and predictions)."""

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: list[int] | np.ndarray) -> TaskSplit:
        take = [int(i) for i in idx]
        return TaskSplit(
            texts=[self.texts[i] for i in take], labels=[self.labels[i] for i in take],
            pairs=[self.pairs[i] for i in take] if self.pairs is not None else None,
            groups=[self.groups[i] for i in take] if self.groups is not None else None,
            lines=[self.lines[i] for i in take] if self.lines else [],
        )


@dataclass
class Task:
    name: str
    label_names: list[str | int]
    """Label of each id; string or integer labels, as the file gave them."""
    train: TaskSplit
    validation: TaskSplit
    test: TaskSplit
    source: str
    """The file the examples were read from."""
    split_kind: str
    """file (the task's own splits), stratified or grouped."""
    notes: list[str] = field(default_factory=list)
    """What was done to the data on the way (duplicates dropped, ...)."""

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    @property
    def has_pairs(self) -> bool:
        return self.train.pairs is not None

    @property
    def id2label(self) -> dict[int, str | int]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str | int, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    def split(self, name: str) -> TaskSplit:
        if name not in ("train", "validation", "test"):
            raise TaskError(f"unknown split {name!r}; choose train, validation or test")
        return getattr(self, name)

    def summary(self) -> str:
        counts = lambda s: "/".join(str(s.labels.count(i)) for i in range(self.n_labels))  # noqa: E731
        lines = [f"task {self.name} ({self.source}): {self.n_labels} labels {self.label_names}, "
                 f"{'pairs' if self.has_pairs else 'single texts'}, {self.split_kind} split"]
        for s in ("train", "validation", "test"):
            lines.append(f"  {s:<10} {len(self.split(s)):>7} examples (per label {counts(self.split(s))})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------- loading


def load_task(
    task: str | Path,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    group_column: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_train: int = 0,
    seed: int = 0,
    encoding: str = "utf-8",
) -> Task:
    """A built-in task name (mr, tweets, wordnet-supersense, wordnet-pairs), a CSV/TSV/JSONL file, or a
    Hugging Face save_to_disk folder / Parquet file(s) (its splits become the task's own)."""
    name, path = _task_source(task)
    if name in BUILTIN_TASKS:
        cols = BUILTIN_TASKS[name]
        text_column, label_column = str(cols["text_column"]), str(cols["label_column"])
        text_pair_column, group_column = cols["text_pair_column"], cols["group_column"]
    if not 0 <= val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise TaskError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be shares that leave "
                        "training examples (each in [0, 1), test > 0, together < 1)")

    suffix = path.suffix.lower()
    if suffix in COLUMNAR_SUFFIXES or (path.is_dir() and suffix not in SUFFIXES):
        columns, rows, notes = hf_disk.task_rows(path, label_column, TaskError)
    else:
        (columns, rows), notes = read_rows(path, encoding), []
    wanted = [c for c in (text_column, text_pair_column, label_column, group_column) if c]
    for col in wanted:
        if col not in columns:
            hint = difflib.get_close_matches(col, columns, n=1)
            raise TaskError(
                f"{path}: no column {col!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; the columns present are {', '.join(repr(c) for c in columns)}. "
                "Set finetune.text_column / text_pair_column / label_column / group_column to match"
            )
    if not rows:
        raise TaskError(f"{path}: no examples (only a header or blank lines)")

    texts = [_text(r.get(text_column)) for _, r in rows]
    pairs = [_text(r.get(text_pair_column)) for _, r in rows] if text_pair_column else None
    lines = [line for line, _ in rows]
    for col, values in ((text_column, texts), (text_pair_column, pairs)):
        if values is None:
            continue
        empty = [lines[i] for i, t in enumerate(values) if not t]
        if len(empty) == len(values):
            raise TaskError(f"{path}: column {col!r} is empty in every row; is it the right column? "
                            f"(columns present: {', '.join(columns)})")
        if empty:
            raise TaskError(f"{path}: column {col!r} is empty in {len(empty)} of {len(values)} rows "
                            f"(line {', line '.join(map(str, empty[:5]))}{', ...' if len(empty) > 5 else ''}); "
                            "remove those rows or fill in their text")
    raw_labels = _labels(path, label_column, [r.get(label_column) for _, r in rows], lines)
    groups = [_text(r.get(group_column)) for _, r in rows] if group_column else None
    file_splits = None
    if SPLIT_COLUMN in columns:  # the task's own splits
        file_splits = _file_splits(path, [r.get(SPLIT_COLUMN) for _, r in rows], lines)

    keep, note = deduplicate(texts, pairs, raw_labels, file_splits)
    notes += [note] if note else []
    label_names = sorted(set(raw_labels[i] for i in keep), key=lambda x: (isinstance(x, str), x))
    if len(label_names) < 2:
        raise TaskError(f"{path}: column {label_column!r} holds one class ({label_names[0]!r}) in all "
                        f"{len(keep)} rows; a classifier needs at least two; is it the label column?")
    label2id = {name: i for i, name in enumerate(label_names)}
    every = TaskSplit(
        texts=[texts[i] for i in keep], labels=[label2id[raw_labels[i]] for i in keep],
        pairs=[pairs[i] for i in keep] if pairs else None,
        groups=[groups[i] for i in keep] if groups else None, lines=[lines[i] for i in keep],
    )
    rng = np.random.default_rng(seed)

    if file_splits is not None:
        splits = _own_splits(path, every, [file_splits[i] for i in keep], label_names, label_column,
                             val_fraction, test_fraction, rng, notes)
        split_kind = "file"
    else:
        tr, va, te = _draw(every, val_fraction, test_fraction, rng)
        split_kind = "grouped" if every.groups is not None else "stratified"
        splits = {"train": every.subset(tr), "validation": every.subset(va), "test": every.subset(te)}

    if max_train and len(splits["train"]) > max_train:
        pick = np.sort(rng.permutation(len(splits["train"]))[:max_train])
        notes.append(f"kept {max_train} of {len(splits['train'])} training examples (finetune.max_train)")
        splits["train"] = splits["train"].subset(pick)
    if len({*splits["train"].labels}) < 2:
        raise TaskError(f"{path}: the training split holds a single class; give more examples of the others")
    return Task(name=name, label_names=label_names, source=str(Path(path).resolve()), split_kind=split_kind,
                notes=notes, **splits)


def _task_source(task: str | Path) -> tuple[str, Path]:
    """-> (the task's name, the file or folder its examples are read from)."""
    name = str(task)
    if name in BUILTIN_TASKS:
        return name, builtin_task_file(name)
    path = Path(task)
    if not path.exists():
        if hub := hf_disk.hub_hint(name):
            raise TaskError(f"task {hub}")
        hint = difflib.get_close_matches(name, list(BUILTIN_TASKS), n=1)
        raise TaskError(
            f"task {name!r} is neither a file nor a built-in task"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; give a .csv, .tsv, .jsonl or .parquet file, a Hugging Face save_to_disk folder, "
            f"or one of {', '.join(BUILTIN_TASKS)}"
        )
    return (path.stem if path.is_file() else path.resolve().name), path


def builtin_task_file(name: str) -> Path:
    """The cached file of a built-in task (fetched, verified and converted by data.sources)."""
    from .sources import get_source

    path = Path(get_source(name))
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
        if len(found) != 1:
            raise TaskError(f"built-in task {name!r}: expected one {'/'.join(SUFFIXES)} file in {path}, "
                            f"found {[p.name for p in found]}")
        path = found[0]
    return path


def read_rows(path: Path, encoding: str = "utf-8") -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """-> (column names, [(line number, row)]) of a .csv, .tsv or .jsonl file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise TaskError(f"{path}: unknown task file type {suffix!r}; use .csv, .tsv or .jsonl")
    if not path.is_file():
        raise TaskError(f"{path}: not a readable file")
    try:
        data = path.read_bytes()
        text = data.decode(bom_codec(data[:4]) or encoding)  # a UTF-16 / UTF-32 byte-order mark wins
        text = text[1:] if text.startswith("\ufeff") else text
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TaskError(f"{path}: line {line} is not {encoding} (byte 0x{e.object[e.start]:02x}); "
                        "convert the file to UTF-8 (or load it with the right encoding)") from None
    except OSError as e:
        raise TaskError(f"{path}: cannot read it ({e.strerror})") from None
    if "\x00" in text:
        raise TaskError(f"{path}: holds NUL bytes; it looks like a binary file, not {suffix[1:].upper()}")
    if suffix == ".jsonl":
        return _read_jsonl(path, text)
    return _read_delimited(path, text, "\t" if suffix == ".tsv" else ",")


def _read_delimited(path: Path, text: str, delimiter: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise TaskError(f"{path}: the file is empty") from None
    header = [h.strip() for h in header]
    if len(set(header)) < len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise TaskError(f"{path}: the header names column(s) {dup} twice; rename them")
    rows, repeats = [], []
    try:
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise TaskError(
                    f"{path}: line {line} has {len(fields)} fields but the header has {len(header)} "
                    f"({', '.join(header)}); quote fields that contain {'a tab' if delimiter == chr(9) else 'commas'}"
                )
            if [f.strip() for f in fields] == header:  # files concatenated with their headers
                repeats.append(line)
                continue
            rows.append((line, dict(zip(header, fields))))
    except csv.Error as e:
        kind = "TSV" if delimiter == "\t" else "CSV"
        raise TaskError(f"{path}: line {reader.line_num}: not valid {kind} ({e})") from None
    if repeats:
        shown = ", ".join(map(str, repeats[:10])) + (f" and {len(repeats) - 10} more" if len(repeats) > 10 else "")
        raise TaskError(f"{path}: the header line ({delimiter.join(header)}) is repeated at line(s) {shown} "
                        "(files concatenated with their headers?); remove those lines, keeping only the first")
    return header, rows


def jsonl_row(path: Path, line: int, raw: str) -> dict[str, Any] | None:
    """One line of a task's .jsonl file as a dict (None for a blank line); a clear error otherwise."""
    if not raw.strip():
        return None
    try:
        obj = json.loads(raw)
    except ValueError as e:
        raise TaskError(f"{path}: line {line} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise TaskError(f"{path}: line {line} is a JSON {type(obj).__name__}, expected an object with fields")
    return obj


def _read_jsonl(path: Path, text: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    columns: list[str] = []
    rows = []
    for line, raw in enumerate(text.splitlines(), start=1):
        obj = jsonl_row(path, line, raw)
        if obj is None:
            continue
        if not columns:
            columns = list(obj)
        elif set(obj) != set(columns):
            missing = [c for c in columns if c not in obj]
            extra = [c for c in obj if c not in columns]
            raise TaskError(f"{path}: line {line} has fields {list(obj)} but the first line has {columns}"
                            + (f" (missing {missing})" if missing else "") + (f" (extra {extra})" if extra else ""))
        rows.append((line, obj))
    return columns, rows


def _text(value: Any) -> str:
    if value is None:
        return ""
    return str(value).strip()


_INT = re.compile(r"^[+-]?\d+$")


def _labels(path: Path, column: str, values: list[Any], lines: list[int]) -> list[str | int]:
    """Raw labels -> str or int (all int when every one is an integer)."""
    out: list[Any] = []
    for v, line in zip(values, lines):
        if isinstance(v, bool) or isinstance(v, (list, dict)):
            raise TaskError(f"{path}: line {line}: label {v!r} in column {column!r} must be a string or an integer")
        if isinstance(v, float):
            if not v.is_integer():
                raise TaskError(f"{path}: line {line}: label {v!r} in column {column!r} is not a class "
                                "(a number with a fraction); classification needs string or integer labels")
            v = int(v)
        if v is None or (isinstance(v, str) and not v.strip()):
            raise TaskError(f"{path}: line {line}: the label column {column!r} is empty; give every row a label")
        out.append(v.strip() if isinstance(v, str) else v)
    if all(isinstance(v, int) or _INT.match(str(v)) for v in out):
        return [int(v) for v in out]
    return [str(v) for v in out]


def _file_splits(path: Path, values: list[Any], lines: list[int]) -> list[str]:
    out = []
    for v, line in zip(values, lines):
        s = _SPLIT_NAMES.get(_text(v).lower())
        if s is None:
            raise TaskError(f"{path}: line {line}: column {SPLIT_COLUMN!r} holds {v!r}; use train, validation or test")
        out.append(s)
    return out


# --------------------------------------------------------------------------- splitting


def deduplicate(texts: list[str], pairs: list[str] | None, labels: list[Any],
                file_splits: list[str] | None) -> tuple[list[int], str]:
    """Rows to keep (in file order): the first of equal texts (up to whitespace) wins; with the file's
    own splits, a copy in test beats one in validation beats one in train (no test text is trained on)."""
    order = list(range(len(texts)))
    if file_splits is not None:
        rank = {"test": 0, "validation": 1, "train": 2}
        order.sort(key=lambda i: rank[file_splits[i]])
    seen: dict[tuple[str, str], int] = {}
    keep, conflicts = [], 0
    for i in order:
        key = (" ".join(texts[i].split()), " ".join(pairs[i].split()) if pairs else "")
        if key in seen:
            conflicts += labels[seen[key]] != labels[i]
            continue
        seen[key] = i
        keep.append(i)
    if len(keep) == len(texts):
        return keep, ""
    clash = f" ({conflicts} of them with a different label; the first one's label was kept)" if conflicts else ""
    return sorted(keep), f"dropped {len(texts) - len(keep)} duplicate texts{clash}"


def _own_splits(path: Path, every: TaskSplit, split_of: list[str], label_names: list[Any], label_column: str,
                val_fraction: float, test_fraction: float, rng: np.random.Generator,
                notes: list[str]) -> dict[str, TaskSplit]:
    """The file's train/validation/test; a missing validation or test split is drawn from train."""
    idx = {s: [j for j, k in enumerate(split_of) if k == s] for s in ("train", "validation", "test")}
    if not idx["train"]:
        raise TaskError(f"{path}: the {SPLIT_COLUMN!r} column names no training rows "
                        "(values: train, validation, test)")
    train_labels = {every.labels[j] for j in idx["train"]}
    for s in ("test", "validation"):
        for j in idx[s]:
            if every.labels[j] not in train_labels:
                raise TaskError(
                    f"{path}: label {label_names[every.labels[j]]!r} in column {label_column!r} appears in the "
                    f"{s} split (line {every.lines[j]}) but never in train; the model could not learn it: "
                    "fix the label or add training examples of it"
                )
    missing = [s for s in ("validation", "test") if not idx[s]]
    if missing:
        frac = {"validation": val_fraction, "test": test_fraction}
        pos = idx["train"]  # positions in `every`
        tr, va, te = _draw(every.subset(pos), frac["validation"] if "validation" in missing else 0.0,
                           frac["test"] if "test" in missing else 0.0, rng)
        idx["train"] = [pos[j] for j in tr]
        if "validation" in missing:
            idx["validation"] = [pos[j] for j in va]
        if "test" in missing:
            idx["test"] = [pos[j] for j in te]
        notes.append(f"the file has no {' or '.join(missing)} split; drew "
                     + ", ".join(f"{frac[s]:.0%} of train for {s}" for s in missing))
    return {s: every.subset(idx[s]) for s in ("train", "validation", "test")}


def _draw(split: TaskSplit, val_fraction: float, test_fraction: float,
          rng: np.random.Generator) -> tuple[list[int], list[int], list[int]]:
    if split.groups is not None:
        return grouped_split(split.groups, val_fraction, test_fraction, rng)
    return stratified_split(split.labels, val_fraction, test_fraction, rng)


def stratified_split(labels: list[int], val_fraction: float, test_fraction: float,
                     rng: np.random.Generator) -> tuple[list[int], list[int], list[int]]:
    """Indices (train, validation, test); each label keeps its share in every split."""
    train, val, test = [], [], []
    labels_arr = np.asarray(labels)
    for c in np.unique(labels_arr):
        idx = rng.permutation(np.flatnonzero(labels_arr == c))
        n = len(idx)
        n_test = _share(n, test_fraction)
        n_val = _share(n - n_test, val_fraction / max(1e-9, 1 - test_fraction)) if val_fraction else 0
        test += idx[:n_test].tolist()
        val += idx[n_test:n_test + n_val].tolist()
        train += idx[n_test + n_val:].tolist()
    return sorted(train), sorted(val), sorted(test)


def _share(n: int, fraction: float) -> int:
    """round(n * fraction), at least 1 when fraction > 0 and at least one example remains for training."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(n * fraction)))


def grouped_split(groups: list[str], val_fraction: float, test_fraction: float,
                  rng: np.random.Generator) -> tuple[list[int], list[int], list[int]]:
    """Indices (train, validation, test); all examples of a group land in one split."""
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    names = list(members)
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if len(names) < needed:
        raise TaskError(f"a grouped split needs at least {needed} groups, the group column holds {len(names)}; "
                        "check finetune.group_column")
    order = [names[i] for i in rng.permutation(len(names))]
    n = len(groups)
    out: dict[str, list[int]] = {"test": [], "validation": [], "train": []}
    targets = (("test", test_fraction * n), ("validation", val_fraction * n))
    k = 0
    for split, target in targets:
        while target > 0 and len(out[split]) < target and k < len(order) - 1:
            out[split] += members[order[k]]
            k += 1
    for g in order[k:]:
        out["train"] += members[g]
    return sorted(out["train"]), sorted(out["validation"]), sorted(out["test"])


def task_from_config(ft, seed: int = 0) -> Task:
    """Unpack a FinetuneConfig (modules and loaders take plain values)."""
    return load_task(
        ft.task, text_column=ft.text_column, text_pair_column=ft.text_pair_column, label_column=ft.label_column,
        group_column=ft.group_column, val_fraction=ft.val_fraction, test_fraction=ft.test_fraction,
        max_train=ft.max_train, seed=seed,
    )


def as_task(task: str | Path | Task, ft) -> Task:
    """`task` as given, or read by name or file with the finetune section's columns and split settings."""
    if isinstance(task, Task):
        return task
    return task_from_config(replace(ft, task=str(task)))
