"""The teacher's logits on every text, computed once: a cache of safetensors shards keyed by the teacher's files.

    got = label_texts(teacher, texts, cache_root)   # from the cache where it has them, else the teacher runs
    got.logits, got.computed, got.reused
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..files import sha256_file
from ..runs import FineTuned
from . import teacher as _teacher

log = logging.getLogger(__name__)

CACHE_FORMAT = "1"


def text_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def teacher_hash(teacher: FineTuned) -> str:
    """The teacher's identity for the cache: its weights and tokenizer files and its input convention."""
    h = hashlib.sha256()
    for name in ("model.safetensors", "tokenizer.json"):
        h.update(sha256_file(teacher.path / name).encode())
    convention = {k: teacher.meta.get(k) for k in ("max_len", "segments", "pooling", "head", "labels")}
    h.update(json.dumps(convention, sort_keys=True, default=str).encode())
    return h.hexdigest()


def default_cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pretrainlab")) / "teacher-logits"


@dataclass
class TeacherLabels:
    """The teacher's outputs on a list of texts, in their order, and how the cache served them."""

    logits: Tensor
    """(N, n_labels) float32 (bf16 values: what the cache holds)."""
    pooled: Tensor | None
    """(N, d_teacher) float32 pooled representations, when asked for."""
    computed: int
    reused: int
    refused: list[str]
    """Damaged shards refused (deleted, their texts labelled again): 'name: why'."""
    cache_dir: Path
    seconds: float = 0.0
    """Wall clock of the labelling, cache reads included."""


class LogitsCache:
    """One teacher's shards: `<cache>/teacher-<hash[:16]>/<sha256[:32]>.safetensors`, each holding `keys`
    (n, 16) uint8 text hashes, `logits` (n, K) bf16 and optionally `pooled` (n, D) bf16, with the cache
    format and the full teacher hash in its metadata. A shard is written under a temporary name and renamed when complete."""

    def __init__(self, root: Path, teacher_key: str, n_labels: int):
        self.dir = Path(root) / f"teacher-{teacher_key[:16]}"
        self.key, self.n_labels = teacher_key, n_labels

    def read(self) -> tuple[dict[bytes, tuple[Tensor, Tensor | None]], list[str]]:
        """text hash -> (logits row, pooled row or None) of every sound shard; damaged shards are deleted."""
        found: dict[bytes, tuple[Tensor, Tensor | None]] = {}
        refused = []
        if not self.dir.is_dir():
            return found, refused
        for tmp in self.dir.glob(".tmp-*"):  # a labelling killed mid-write (or one still writing: keep those)
            if time.time() - tmp.stat().st_mtime > 3600:
                tmp.unlink(missing_ok=True)
        for f in sorted(self.dir.glob("*.safetensors")):
            shard, problem = self._load(f)
            if problem:
                refused.append(f"{f.name}: {problem}")
                log.warning(f"warning: teacher-logits cache shard {f} refused ({problem}); deleted, its texts are "
                            "labelled again")
                f.unlink(missing_ok=True)
                continue
            pooled = shard.get("pooled")
            for i, k in enumerate(shard["keys"]):
                found[bytes(k.tolist())] = (shard["logits"][i], pooled[i] if pooled is not None else None)
        return found, refused

    def _load(self, f: Path) -> tuple[dict[str, Tensor], str | None]:
        if sha256_file(f)[:32] != f.stem:
            return {}, "its sha256 does not match its name: damaged or truncated"
        try:
            from safetensors import safe_open

            with safe_open(str(f), framework="pt") as h:
                meta = h.metadata() or {}
            shard = load_file(str(f))
        except (SafetensorError, OSError) as e:
            return {}, f"not a readable safetensors file ({e})"
        if meta.get("teacher_logits") != f"{CACHE_FORMAT}:{self.key}":
            return {}, "written for another teacher or cache format"
        keys, logits = shard.get("keys"), shard.get("logits")
        if keys is None or logits is None or keys.shape[1:] != (16,) or logits.shape != (len(keys), self.n_labels):
            return {}, f"holds no keys/logits of {self.n_labels} labels"
        return shard, None

    def write(self, keys: list[bytes], logits: Tensor, pooled: Tensor | None) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        tensors = {"keys": torch.tensor([list(k) for k in keys], dtype=torch.uint8),
                   "logits": logits.to(torch.bfloat16).contiguous()}
        if pooled is not None:
            tensors["pooled"] = pooled.to(torch.bfloat16).contiguous()
        tmp = self.dir / f".tmp-{os.getpid()}-{time.time_ns()}"
        try:
            # one metadata entry: safetensors writes several in no fixed order, and the same shard should be
            # the same bytes (a rebuilt shard gets its old name back)
            save_file(tensors, str(tmp), metadata={"teacher_logits": f"{CACHE_FORMAT}:{self.key}"})
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            final = self.dir / f"{sha256_file(tmp)[:32]}.safetensors"
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final



def label_texts(teacher: FineTuned, texts: Sequence[str], cache_root: str | Path, *, shard_texts: int = 4096,
                batch_size: int = 64, device: torch.device = torch.device("cpu"), dtype: torch.dtype | None = None,
                with_pooled: bool = False, quiet: bool = False) -> TeacherLabels:
    """The teacher's logits on every text: from the cache where it has them, else computed (run_teacher),
    a shard of shard_texts at a time, each written to the cache as soon as it is done."""
    t0 = time.perf_counter()
    key = teacher_hash(teacher)
    cache = LogitsCache(Path(cache_root), key, len(teacher.label_names))
    have, refused = cache.read()
    keys = [text_hash(t) for t in texts]
    missing = [i for i, k in enumerate(keys) if k not in have or (with_pooled and have[k][1] is None)]
    if missing and not quiet:
        log.info(f"teacher: labelling {len(missing):,} of {len(texts):,} texts ({len(texts) - len(missing):,} from the "
                 f"cache {cache.dir})")
    for start in range(0, len(missing), shard_texts):
        chunk = missing[start:start + shard_texts]
        logits, pooled = _teacher.run_teacher(teacher, [texts[i] for i in chunk], batch_size, device, dtype, with_pooled)
        cache.write([keys[i] for i in chunk], logits, pooled)
        logits = logits.to(torch.bfloat16)  # what the cache holds: a later run reads the same values
        pooled = pooled.to(torch.bfloat16) if pooled is not None else None
        for j, i in enumerate(chunk):
            have[keys[i]] = (logits[j], pooled[j] if pooled is not None else None)
        if not quiet:
            done = min(start + shard_texts, len(missing))
            log.info(f"teacher: {done:,} / {len(missing):,} texts labelled ({time.perf_counter() - t0:.0f} s)")
    rows = [have[k] for k in keys]
    logits = torch.stack([r[0] for r in rows]).float() if rows else torch.empty(0, len(teacher.label_names))
    pooled = torch.stack([r[1] for r in rows]).float() if with_pooled and rows else None
    return TeacherLabels(logits, pooled, len(missing), len(texts) - len(missing), refused, cache.dir,
                         round(time.perf_counter() - t0, 2))

