"""Reading files the one way pretrainlab reads them.

    sha256_file(path)    # hex digest, read 1 MiB at a time (checkpoints, corpus sources, downloads)
    read_yaml(path)      # yaml.safe_load of a UTF-8 file: never a loader that builds objects
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml


def sha256_file(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes, read a chunk at a time (memory stays flat)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_yaml(path: str | Path) -> Any:
    """The YAML document in a UTF-8 file, through yaml.safe_load (None for an empty file).

    Raises OSError when the file cannot be read and yaml.YAMLError when it is not valid YAML."""
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
