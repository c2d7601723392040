"""Hugging Face data on disk: `save_to_disk` folders and Parquet files, read with pyarrow.

    files = corpus_files(Path("wikitext/"))                 # the Arrow files a corpus input stands for
    for row, text in column_values(files[0], "text", CorpusError):   # batch by batch: flat memory
        ...
    columns, rows, notes = task_rows(Path("imdb/"), "label")         # a task's examples, a `split` column added

Nothing here imports the `datasets` package or reaches a hub: pyarrow (the `hf-data` extra) reads
the files that `datasets` writes.
  - A Dataset's `save_to_disk` folder: Arrow IPC stream files (data-00000-of-00001.arrow, in the order
    its state.json lists them), dataset_info.json (the features: a ClassLabel's names) and state.json.
  - A DatasetDict's folder: dataset_dict.json and one such folder per split (train, validation, test).
  - Parquet: a .parquet file, or a folder of them named after their split as on the Hub
    (train-00000-of-00002.parquet, test.parquet); its features are in the schema's metadata.
As a corpus, a DatasetDict gives its train split (pass a split's own folder for another one). As a
task, its splits become the task's own train / validation / test (others are skipped, with a note),
a ClassLabel column's ids become its names, and rows labelled -1 (no label) are dropped, with a note.
Rows are numbered from 1 (split after split, in a task) where files have lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXTRA = "pip install 'pretrainlab[hf-data]'"
SPLITS = {"train": "train", "validation": "validation", "valid": "validation", "dev": "validation", "test": "test"}
"""Split names of Hugging Face datasets -> the task's splits."""
_SPLIT_PREFIX = re.compile(r"^([a-z]+)(?=[-_.])")
_FILE_SUFFIXES = {".txt", ".text", ".md", ".jsonl", ".json", ".csv", ".tsv", ".parquet", ".arrow", ".gz", ".bz2", ".xz"}


def pyarrow(what: str, error: type[Exception]):
    """The pyarrow module, or `error` saying which extra to install."""
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise error(f"{what}: reading Hugging Face datasets and Parquet files needs pyarrow; {EXTRA}") from None
    return pa


def hub_hint(name: str) -> str | None:
    """For a name that is no local path but looks like a Hub dataset (owner/name, or hf:NAME): what to do."""
    text = str(name)
    bare = text[3:] if text.startswith("hf:") else text
    if not (text.startswith("hf:") or re.fullmatch(r"[\w.-]+/[\w.-]+", text)) or Path(text).exists():
        return None
    if not text.startswith("hf:") and (Path(text).suffix.lower() in _FILE_SUFFIXES or Path(text).parent.exists()):
        return None  # a local path with a typo (data/train.csv, runs/x): "no such file" says it better
    folder = bare.split(":")[0].split("/")[-1]
    return (f"{text!r} looks like a Hugging Face Hub dataset, and nothing is downloaded here (there is no hub "
            f"offline). On a machine with access run: python -c \"import datasets; datasets.load_dataset("
            f"'{bare}').save_to_disk('{folder}')\", copy the folder here and pass it ({folder}/), or pass Parquet files")


def is_dataset_dir(path: Path) -> bool:
    """A folder that Dataset.save_to_disk or DatasetDict.save_to_disk wrote."""
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def _dict_splits(path: Path) -> list[str]:
    listed = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
    return [s for s in listed if (path / s / "state.json").is_file()]


def _arrow_files(folder: Path) -> list[Path]:
    """A Dataset folder's data files, in the order its state.json lists them."""
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    names = [f["filename"] for f in state.get("_data_files", [])]
    return [folder / n for n in names] if names else sorted(folder.glob("data-*.arrow"))


def corpus_files(path: Path) -> list[Path]:
    """The Arrow files of a save_to_disk folder as one corpus input: a DatasetDict's train split (all its
    splits when it has none of that name)."""
    if (path / "state.json").is_file():
        return _arrow_files(path)
    splits = _dict_splits(path)
    chosen = ["train"] if "train" in splits else splits
    return [f for s in chosen for f in _arrow_files(path / s)]


def _batches(path: Path, columns: list[str] | None, error: type[Exception]):
    """(schema, iterator of record batches) of an .arrow (IPC stream or file) or .parquet file."""
    pa = pyarrow(str(path), error)
    try:
        if path.suffix.lower() == ".parquet":
            f = pa.parquet.ParquetFile(str(path))
            return f.schema_arrow, f.iter_batches(batch_size=8192, columns=columns)
        source = pa.memory_map(str(path))
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            source.seek(0)
            file = pa.ipc.open_file(source)
            return file.schema, (file.get_batch(i) for i in range(file.num_record_batches))
        return reader.schema, iter(reader)
    except (pa.ArrowException, OSError) as e:
        raise error(f"{path}: not a readable {'Parquet' if path.suffix.lower() == '.parquet' else 'Arrow'} "
                    f"file ({e}); is it complete?") from None


def column_values(path: Path, column: str, error: type[Exception]) -> Iterator[tuple[int, Any]]:
    """(row number from 1, value) of one column of an Arrow or Parquet file, a batch at a time."""
    schema, _ = _batches(path, None, error)
    if column not in schema.names:
        raise error(f"{path}: no column {column!r} (columns: {', '.join(map(repr, schema.names))}); "
                    "pass --set data.text_field=NAME")
    _, batches = _batches(path, [column], error)
    row = 0
    for batch in batches:
        for value in batch.column(batch.schema.get_field_index(column)).to_pylist():
            row += 1
            yield row, value


def _features(path: Path, schema) -> dict[str, Any]:
    """The `datasets` features (dataset_info.json beside the file, or the schema's metadata); {} if none."""
    info = path.parent / "dataset_info.json"
    if path.suffix == ".arrow" and info.is_file():
        return json.loads(info.read_text(encoding="utf-8")).get("features") or {}
    meta = (schema.metadata or {}).get(b"huggingface")
    return (json.loads(meta).get("info", {}).get("features") or {}) if meta else {}


def _task_files(path: Path, error: type[Exception]) -> dict[str | None, list[Path]]:
    """split name (None: no splits) -> its files."""
    if path.is_file():
        return {None: [path]}
    if (path / "state.json").is_file():
        return {None: _arrow_files(path)}
    if (path / "dataset_dict.json").is_file():
        return {s: _arrow_files(path / s) for s in _dict_splits(path)}
    parquet = sorted(path.glob("**/*.parquet"))
    if not parquet:
        raise error(f"{path}: a folder, but neither a save_to_disk folder (state.json / dataset_dict.json) nor "
                    "one holding .parquet files")
    by_split: dict[str | None, list[Path]] = {}
    for f in parquet:
        m = _SPLIT_PREFIX.match(f.name)
        by_split.setdefault(m.group(1) if m else None, []).append(f)
    return by_split if None not in by_split else {None: parquet}


def task_rows(path: Path, label_column: str,
              error: type[Exception]) -> tuple[list[str], list[tuple[int, dict[str, Any]]], list[str]]:
    """-> (column names, [(row number, row)], notes) of a save_to_disk folder or Parquet file(s) as a task;
    with splits, each row's `split` column says which."""
    columns: list[str] = []
    rows: list[tuple[int, dict[str, Any]]] = []
    notes: list[str] = []
    number = 0
    for split, files in _task_files(path, error).items():
        if split is not None and split not in SPLITS:
            notes.append(f"skipped split {split!r} (not train, validation or test)")
            continue
        unlabelled = 0
        for f in files:
            schema, batches = _batches(f, None, error)
            columns = columns or list(schema.names) + (["split"] if split and "split" not in schema.names else [])
            names = _features(f, schema).get(label_column, {}).get("names")  # a ClassLabel's
            for batch in batches:
                for row in batch.to_pylist():
                    number += 1
                    label = row.get(label_column)
                    if names is not None and isinstance(label, int):
                        if label < 0:
                            unlabelled += 1
                            continue
                        if label >= len(names):
                            raise error(f"{f}: row {number}: {label_column} = {label}, but its ClassLabel "
                                        f"names only {len(names)} classes ({', '.join(map(str, names))})")
                        row[label_column] = names[label]
                    if split is not None:
                        row["split"] = SPLITS[split]
                    rows.append((number, row))
        if unlabelled:
            notes.append(f"dropped {unlabelled} rows of {split or 'the data'} without a label ({label_column} = -1)")
    return columns, rows, notes
