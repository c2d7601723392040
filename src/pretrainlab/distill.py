"""Distillation: a small, fast student trained on a fine-tuned teacher's soft labels over unlabelled text.

    result = distill("runs/minilm/finetune-mr", "preset:tiny", ["task:mr", "sotu/"], "runs/distill-mr", cfg,
                     seeds=(0, 1, 2))
    result.student.accuracy.mean, result.teacher.texts_per_s_batch32, result.agreement.mean

1. The texts. The task is the teacher's own (read with its columns and split settings). Its labelled
   training split is always used; the unlabelled inputs (text files, prepared corpora, `task:NAME` for
   a task's training texts) are cut into pieces of the task's typical length (`pieces`: whole sentences
   while they fit, the median word count of the training texts). Pieces equal (up to case and spaces) to
   a validation or test text of the task are dropped: the student never learns from the texts it is
   scored on.
2. The teacher runs once (`label_texts`). Its logits on every text are cached on disk in bf16,
   safetensors shards under `teacher-<hash of its files>/`, each shard named by its own sha256 and
   holding the texts' hashes beside the logits; later runs (another student, another seed, a resumed
   run) look texts up there. A shard is written atomically, so a killed labelling resumes at the first
   missing shard; a shard whose bytes do not match its name is refused, deleted and relabelled.
3. The loss (`distill_loss`), per text: T^2 KL(softmax(t/T) || softmax(s/T)) (T = distill.temperature,
   Hinton et al. 2015), plus distill.alpha x cross-entropy on the gold label for the labelled training
   examples, plus (distill.hidden_weight > 0) the MSE between a learned projection of the student's pooled
   representation and the teacher's (TinyBERT's hidden-state loss on the sentence representation; the two
   tokenizers need not agree). It trains in the one loop (`loop.fit`) with a budget (distill.budget, or
   distill.epochs passes), early stopping on the task's validation split, checkpoints and `--resume`.
4. The output directory is a fine-tuned classifier (runs.save_classifier): `evaluate`, `predict`,
   `explain` and `export` take it. report.md / report.json set teacher against student: test accuracy and
   macro-F1 (over seeds), parameters, size on disk, CPU throughput at batch 1 and 32 (the same test
   texts, one after the other in the same process) and how often the student agrees with the teacher.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .checkpoint import latest_checkpoint, load_training_state
from .config import PRESETS, Budget, ConfigError, ModelConfig, RunConfig, load_config
from .data.encoding import Encoded, collate, encode
from .data.tasks import Task, as_task
from .errors import CheckpointError, CorpusError, TaskError
from .evaluate import predict_logits
from .files import sha256_file
from .finetune import unknown_token_rate
from .seeds import EarlyStopping
from .loop import BudgetSchedule, LoopSettings, autocast, fit, make_optimizer, pick_device, pick_dtype, set_seed
from .metrics import Metrics, SeedResult, Summary, score
from .models import Classifier, build_classifier, head_kind, pool
from .runs import FineTuned, count_parameters, is_classifier_dir, load_classifier, load_pretrained, save_classifier
from .tokenizer import TokenizerError, load_tokenizer, special_ids

PRESET_PREFIX = "preset:"
NO_LABEL = -100
"""The label of an unlabelled text (it gets the KL term only)."""

# --------------------------------------------------------------------------- teacher, task and student


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


@dataclass
class Student:
    """What the student starts from: an architecture, a tokenizer and, from a run, pretrained weights."""

    source: str
    """preset:NAME or the run directory."""
    model_cfg: ModelConfig
    tokenizer: Any
    special: Any
    tokenizer_source: str
    """Where the tokenizer came from (for messages and the report)."""
    backbone: nn.Module | None = None
    """The run's pretrained backbone; None: random init."""
    run_config: RunConfig | None = None


def student_config(student: str, config_path: str | Path | None, overrides: Sequence[str]) -> RunConfig:
    """The settings of a distillation: for preset:NAME, model.preset=NAME, then --config, then --set
    (e.g. model.backbone=rnn); for a run, whose architecture is its own, no model.* setting may be given."""
    if student.startswith(PRESET_PREFIX):
        return load_config(config_path, [f"model.preset={student[len(PRESET_PREFIX):]}", *overrides])
    given = [o for o in overrides if o.strip().startswith("model.")]
    if given:
        raise ConfigError(f"--set {given[0]}: the student {student} is a pre-training run, whose architecture is "
                          "its own; model.* settings go with a random-init student (--student preset:tiny)")
    return load_config(config_path, overrides)


def load_student(spec: str | Path, cfg: RunConfig, teacher: FineTuned, tokenizer: str | Path | None = None) -> Student:
    """preset:NAME (random init, cfg.model's architecture, the teacher's tokenizer or `tokenizer`), a run, or
    a fine-tuned model directory (its backbone: e.g. a student distilled before)."""
    spec = str(spec)
    if spec.startswith(PRESET_PREFIX):
        name = spec[len(PRESET_PREFIX):]
        if name not in PRESETS:
            raise ConfigError(f"--student {spec}: no preset {name!r}; choose "
                              f"{', '.join(PRESET_PREFIX + p for p in PRESETS)} or a pre-training run directory")
        if cfg.model.preset != name:
            raise ConfigError(f"--student {spec} but model.preset={cfg.model.preset}; build the settings with "
                              "distill.student_config (the CLI does)")
        if tokenizer is not None:
            tok, where = load_tokenizer(tokenizer), str(tokenizer)
        else:
            tok, where = teacher.tokenizer, f"the teacher's tokenizer, {teacher.path / 'tokenizer.json'}"
        return Student(spec, cfg.model, tok, special_ids(tok, where), where)
    if tokenizer is not None:
        raise ConfigError("--tokenizer goes with a random-init student (--student preset:NAME); "
                          f"the run {spec} brings its own tokenizer")
    path = Path(spec)
    pre = load_pretrained(path)  # a run, or a fine-tuned model's backbone
    return Student(spec, pre.config.model, pre.tokenizer, pre.special, str(path / "tokenizer.json"),
                   pre.backbone, pre.config)


def student_classifier(student: Student, n_labels: int, pooling: str, dropout: float | None) -> Classifier:
    """A fresh classifier on a copy of the student's backbone (or a random one), with the fine-tuning dropout."""
    from .backbones import backbone_from_config

    model_cfg = student.model_cfg if dropout is None else replace(student.model_cfg, dropout=dropout)
    backbone = backbone_from_config(model_cfg, student.tokenizer.get_vocab_size(), pad_id=student.special.pad)
    if student.backbone is not None:
        backbone.load_state_dict(copy.deepcopy(student.backbone.state_dict()))
    return build_classifier(backbone, n_labels, pooling, head_kind(student.model_cfg), model_cfg.dropout)


# --------------------------------------------------------------------------- the unlabelled texts


@dataclass
class TextPool:
    """The unlabelled pieces and what became of the input on the way."""

    texts: list[str]
    piece_words: int
    """The typical length: the median word count of the task's training texts."""
    sources: dict[str, int]
    """Each input -> the pieces cut from it (before duplicates and held-out texts were dropped)."""
    held_out_dropped: int = 0
    """Pieces equal to a validation or test text of the task: never trained on."""
    labelled_dropped: int = 0
    """Pieces equal to a labelled training text (which is in the pool with its label)."""
    duplicates_dropped: int = 0
    sampled_from: int = 0
    """Pieces before distill.max_texts took a sample (0: no sample was taken)."""


def typical_words(task: Task) -> int:
    """The median word count of the task's training texts (at least 1)."""
    return max(1, round(statistics.median(len(t.split()) for t in task.train.texts)))


def pieces(sentences: Sequence[str], words: int) -> list[str]:
    """Sentences of one document joined into pieces of about `words` words: whole sentences while they
    fit; a sentence of more than twice `words` is cut into runs of `words`; pieces under a quarter of
    `words` are dropped (a stray heading, the tail of a cut)."""
    out, current = [], []
    for sentence in sentences:
        w = sentence.split()
        if len(w) > 2 * words:
            out += [" ".join(current)] if current else []
            out += [" ".join(w[i:i + words]) for i in range(0, len(w), words)]
            current = []
            continue
        if current and len(current) + len(w) > words:
            out.append(" ".join(current))
            current = []
        current += w
    if current:
        out.append(" ".join(current))
    least = max(1, words // 4)
    return [p for p in out if len(p.split()) >= least]


def input_documents(item: str, finetune_cfg, data_cfg) -> Iterator[list[str]]:
    """The documents of one unlabelled input, each as its sentences: a task's training texts
    (`task:NAME|FILE`, split as finetune_cfg splits it), a prepared corpus (decoded by its tokenizer) or text
    files (files, directories, globs: data.readers, with data_cfg's reader settings)."""
    from .data.prepare import split_sentences
    from .data.readers import read_documents, resolve_inputs
    from .data.shards import MANIFEST
    from .data.task_text import is_task_input, training_texts
    from .data.text import normalize

    if is_task_input(item):
        for text in training_texts(item, finetune_cfg)[1]:
            yield [normalize(text)]
    elif Path(item).is_dir() and (Path(item) / MANIFEST).is_file():
        yield from _corpus_documents(Path(item))
    else:
        paths = resolve_inputs([item])
        for doc in read_documents(paths, data_cfg.text_field, data_cfg.one_doc_per_line, data_cfg.errors,
                                  data_cfg.encoding):
            yield split_sentences(normalize(doc))


def _corpus_documents(path: Path) -> Iterator[list[str]]:
    """Every document of a prepared corpus (all its splits), its sentences decoded back to text."""
    import numpy as np

    from .data.corpus import open_corpus

    corpus = open_corpus(path)
    tok = load_tokenizer(corpus.tokenizer_path)
    for name in corpus.splits:
        split = corpus.split(name)
        docs, sents = split.doc_offsets, split.sent_offsets
        for d in range(split.n_docs):
            lo, hi = int(docs[d]), int(docs[d + 1])
            bounds = sents[np.searchsorted(sents, lo):np.searchsorted(sents, hi) + 1] - lo
            ids = split.read(lo, hi).tolist()
            yield tok.decode_batch([ids[a:b] for a, b in zip(bounds[:-1], bounds[1:])], skip_special_tokens=True)


def read_unlabelled(inputs: Sequence[str | Path], task: Task, finetune_cfg, data_cfg, max_texts: int = 0) -> TextPool:
    """The unlabelled pieces of every input, deduplicated, without the task's validation/test texts and
    its labelled training texts (equal up to case and spaces); a CorpusError for an input with no text in
    it, and for inputs whose every piece is one of the task's held-out texts."""
    from .data.text import normalize

    if not inputs:
        raise CorpusError("no unlabelled input given; pass --texts FILE|DIR|CORPUS|task:NAME")
    words = typical_words(task)
    held_out = {normalize(t).lower() for t in task.validation.texts + task.test.texts}  # equal up to case and spaces
    labelled = {normalize(t).lower() for t in task.train.texts}
    pool = TextPool([], words, {})
    seen: set[str] = set()
    for item in map(str, inputs):
        n = 0
        for sentences in input_documents(item, finetune_cfg, data_cfg):
            for p in pieces(sentences, words):
                n += 1
                if p.lower() in held_out:
                    pool.held_out_dropped += 1
                elif p.lower() in labelled:
                    pool.labelled_dropped += 1
                elif p in seen:
                    pool.duplicates_dropped += 1
                else:
                    seen.add(p)
                    pool.texts.append(p)
        if n == 0:
            raise CorpusError(f"--texts {item}: no text in it (no piece of at least {max(1, words // 4)} words, "
                              f"a quarter of {task.name}'s typical {words}); give files with text in them")
        pool.sources[item] = n
    if not pool.texts and pool.held_out_dropped:
        raise CorpusError(f"--texts {' '.join(map(str, inputs))}: every piece is a text of {task.name} itself "
                          f"({pool.labelled_dropped} training, {pool.held_out_dropped} validation/test texts, which "
                          "are never trained on); give unlabelled text beyond the task's own")
    if not pool.texts:  # e.g. task:NAME of the teacher's own task: its training split, labelled already
        print(f"note: --texts {' '.join(map(str, inputs))} add no text to {task.name}'s labelled training split; the "
              "student learns the teacher's soft labels on those texts alone", file=sys.stderr)
    if max_texts and len(pool.texts) > max_texts:
        keep = set(sorted(pool.texts, key=lambda t: _text_hash(t))[:max_texts])
        pool.sampled_from, pool.texts = len(pool.texts), [t for t in pool.texts if t in keep]
    return pool


def check_unknown_tokens(enc: Encoded, texts: Sequence[str], student: Student, max_unk: float) -> float:
    """The share of the texts' tokens the student's tokenizer maps to [UNK]; a TokenizerError above max_unk."""
    rate = unknown_token_rate(enc, student.special.unk)
    if rate > max_unk:
        worst = max(range(len(enc)), key=lambda i: enc.ids[i].count(student.special.unk))
        raise TokenizerError(
            f"the student's tokenizer ({student.tokenizer_source}) maps {rate:.1%} of the texts' tokens to [UNK] "
            f"(more than distill.max_unk={max_unk:.0%}; e.g. {texts[worst][:80]!r}): it cannot encode these texts. "
            "Give a tokenizer trained on such text (--tokenizer FILE for a preset student; for a run: one "
            "prepared and pre-trained on such text)")
    return rate


# --------------------------------------------------------------------------- the teacher's logits, cached

CACHE_FORMAT = "1"


def _text_hash(text: str) -> bytes:
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
                print(f"warning: teacher-logits cache shard {f} refused ({problem}); deleted, its texts are "
                      "labelled again", file=sys.stderr)
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


def label_texts(teacher: FineTuned, texts: Sequence[str], cache_root: str | Path, *, shard_texts: int = 4096,
                batch_size: int = 64, device: torch.device = torch.device("cpu"), dtype: torch.dtype | None = None,
                with_pooled: bool = False, quiet: bool = False) -> TeacherLabels:
    """The teacher's logits on every text: from the cache where it has them, else computed (run_teacher),
    a shard of shard_texts at a time, each written to the cache as soon as it is done."""
    t0 = time.perf_counter()
    key = teacher_hash(teacher)
    cache = LogitsCache(Path(cache_root), key, len(teacher.label_names))
    have, refused = cache.read()
    keys = [_text_hash(t) for t in texts]
    missing = [i for i, k in enumerate(keys) if k not in have or (with_pooled and have[k][1] is None)]
    if missing and not quiet:
        print(f"teacher: labelling {len(missing):,} of {len(texts):,} texts ({len(texts) - len(missing):,} from the "
              f"cache {cache.dir})", file=sys.stderr, flush=True)
    for start in range(0, len(missing), shard_texts):
        chunk = missing[start:start + shard_texts]
        logits, pooled = run_teacher(teacher, [texts[i] for i in chunk], batch_size, device, dtype, with_pooled)
        cache.write([keys[i] for i in chunk], logits, pooled)
        logits = logits.to(torch.bfloat16)  # what the cache holds: a later run reads the same values
        pooled = pooled.to(torch.bfloat16) if pooled is not None else None
        for j, i in enumerate(chunk):
            have[keys[i]] = (logits[j], pooled[j] if pooled is not None else None)
        if not quiet:
            done = min(start + shard_texts, len(missing))
            print(f"teacher: {done:,} / {len(missing):,} texts labelled ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    rows = [have[k] for k in keys]
    logits = torch.stack([r[0] for r in rows]).float() if rows else torch.empty(0, len(teacher.label_names))
    pooled = torch.stack([r[1] for r in rows]).float() if with_pooled and rows else None
    return TeacherLabels(logits, pooled, len(missing), len(texts) - len(missing), refused, cache.dir,
                         round(time.perf_counter() - t0, 2))


# --------------------------------------------------------------------------- the loss


@dataclass
class DistillLoss:
    total: Tensor
    """Mean over the batch of T^2 KL + alpha CE (labelled texts) + hidden_weight MSE."""
    kl: Tensor
    """Mean T^2-scaled KL(teacher || student) per text."""
    ce: Tensor
    """Mean cross-entropy per labelled text (0 when the batch has none)."""
    hidden: Tensor | None = None


def distill_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, temperature: float, alpha: float,
                 projected: Tensor | None = None, teacher_pooled: Tensor | None = None,
                 hidden_weight: float = 0.0) -> DistillLoss:
    """Per text: T^2 KL(softmax(t / T) || softmax(s / T)) + alpha CE(s, y) where it has a label (y >= 0)
    [+ hidden_weight mean((projected - teacher_pooled)^2)]; the batch mean of that sum."""
    T = temperature
    log_s = F.log_softmax(student_logits.float() / T, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / T, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1) * T * T  # (B,)
    labelled = labels >= 0
    ce = F.cross_entropy(student_logits.float(), labels.clamp_min(0), reduction="none") * labelled  # (B,)
    per_text = kl + alpha * ce
    hidden = None
    if projected is not None and teacher_pooled is not None:
        hidden = ((projected.float() - teacher_pooled.float()) ** 2).mean(-1)  # (B,)
        per_text = per_text + hidden_weight * hidden
        hidden = hidden.mean()
    return DistillLoss(per_text.mean(), kl.mean(), ce.sum() / labelled.sum().clamp_min(1), hidden)


class DistillModel(nn.Module):
    """What the loop trains: the student classifier and, for the hidden-state loss, a projection of its
    pooled representation onto the teacher's (dropped when the student is saved)."""

    def __init__(self, student: Classifier, teacher_dim: int | None):
        super().__init__()
        self.student = student
        self.project = nn.Linear(student.backbone.d_model, teacher_dim) if teacher_dim else None


# --------------------------------------------------------------------------- setting up


@dataclass
class DistillSetup:
    """What every seed of one distillation shares."""

    teacher: FineTuned
    task: Task
    student: Student
    cfg: RunConfig
    out: Path
    head: str
    segments: bool
    max_len: int
    device: torch.device
    dtype: torch.dtype | None
    texts: TextPool
    train: Encoded
    """The student's encodings of the labelled training texts, then the unlabelled pieces (label NO_LABEL)."""
    targets: Tensor
    """(N, K) the teacher's logits on each of them."""
    teacher_pooled: Tensor | None
    enc: dict[str, Encoded]
    """validation and test, for the student (labels in the teacher's ids)."""
    labels: TeacherLabels
    unk_rate: float
    budget: Budget
    eval_every: int
    settings: dict[str, Any]
    quiet: bool = False

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.cfg.distill.batch_size)


def prepare_distill(teacher: str | Path | FineTuned, student: str | Path, inputs: Sequence[str | Path],
                    out: str | Path, cfg: RunConfig, *, task: str | Path | Task | None = None,
                    tokenizer: str | Path | None = None, resume: bool = False, quiet: bool = False) -> DistillSetup:
    """Every check first (teacher, task labels, student, texts, [UNK] rate), then the teacher's labels."""
    teacher = teacher if isinstance(teacher, FineTuned) else load_teacher(teacher)
    task, remap = teacher_task(teacher, task)
    stud = load_student(student, cfg, teacher, tokenizer)
    pool = read_unlabelled(inputs, task, teacher.config.finetune, cfg.data, cfg.distill.max_texts)
    ft, dc = cfg.finetune, cfg.distill
    max_len = ft.max_len if stud.model_cfg.backbone != "transformer" else min(ft.max_len, stud.model_cfg.max_len)
    head = head_kind(stud.model_cfg)
    texts = task.train.texts + pool.texts
    labels = [remap[y] for y in task.train.labels] + [NO_LABEL] * len(pool.texts)
    train = encode(stud.tokenizer, texts, None, max_len, labels)
    unk_rate = check_unknown_tokens(train, texts, stud, dc.max_unk)
    enc = {s: encode(stud.tokenizer, task.split(s).texts, None, max_len, [remap[y] for y in task.split(s).labels])
           for s in ("validation", "test")}
    if len(enc["validation"]) == 0:
        raise TaskError(f"task {task.name}: the validation split is empty; early stopping needs it "
                        "(raise finetune.val_fraction and fine-tune the teacher with it)")
    device = pick_device(cfg.train.device)
    dtype = pick_dtype(cfg.train.precision, device)
    key = teacher_hash(teacher)
    settings = _settings(teacher, key, stud, task, texts, cfg)
    out = _check_out(Path(out), settings, resume)  # before the teacher's work: a wrong --out costs nothing
    teacher.model.to(device)
    got = label_texts(teacher, texts, Path(dc.cache) if dc.cache else default_cache_dir(),
                      shard_texts=dc.shard_texts, batch_size=dc.teacher_batch_size, device=device, dtype=dtype,
                      with_pooled=dc.hidden_weight > 0, quiet=quiet)
    teacher.model.cpu()
    budget = Budget.parse(dc.budget) if dc.budget else None
    setup = DistillSetup(teacher, task, stud, cfg, out, head, head == "bert", max_len, device, dtype, pool, train,
                         got.logits, got.pooled, enc, got, unk_rate, Budget(steps=1), 1, settings, quiet)
    setup.budget = budget or Budget(steps=dc.epochs * setup.steps_per_epoch)
    setup.eval_every = dc.eval_every or setup.steps_per_epoch
    return setup


RESUMABLE = ("budget", "cache", "shard_texts", "teacher_batch_size", "throughput_texts", "seeds")
"""distill settings that may change when a distillation is resumed."""


def _settings(teacher: FineTuned, key: str, student: Student, task: Task, texts: list[str], cfg: RunConfig) -> dict:
    """What a resumed distillation must share with the one it continues (the texts by their hash)."""
    tc = cfg.train
    return {"teacher": str(teacher.path), "teacher_hash": key, "student": student.source,
            "student_model": asdict(student.model_cfg), "tokenizer": student.tokenizer_source, "task": task.name,
            "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest(), "n_texts": len(texts),
            "distill": {k: v for k, v in asdict(cfg.distill).items() if k not in RESUMABLE},
            "finetune": {k: getattr(cfg.finetune, k) for k in ("pooling", "dropout", "max_len")},
            "train": {k: getattr(tc, k) for k in ("precision", "deterministic", "warmup", "weight_decay", "clip")}}


SETTINGS_FILE = "distill-settings.json"


def _check_out(out: Path, settings: dict, resume: bool) -> Path:
    """A new --out, or with resume the same distillation's (its seeds' checkpoints continue)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory for the student and its report")
    saved_file = out / SETTINGS_FILE
    if saved_file.is_file():
        from .runs import config_diff

        if not resume:
            raise ConfigError(f"{out} already holds a distillation; pass --resume to continue it (or to redo its "
                              "report), or choose another --out")
        saved = json.loads(saved_file.read_text(encoding="utf-8"))
        diff = config_diff(saved, json.loads(json.dumps(settings, default=str)))
        if diff:
            raise ConfigError(f"cannot resume {out}: it holds a distillation with other settings; give another "
                              "--out, or the same settings:\n  " + "\n  ".join(diff))
    elif out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty and holds no distillation; choose another directory")
    out.mkdir(parents=True, exist_ok=True)
    saved_file.write_text(json.dumps(settings, indent=1, default=str), encoding="utf-8")
    return out


# --------------------------------------------------------------------------- training one seed


class PoolBatches:
    """Batches of the texts with the teacher's logits, reshuffled every pass. A pass's order is a function
    of (seed, pass), so that a resumed seed continues the same sequence from (pass, position)."""

    def __init__(self, setup: DistillSetup, seed: int):
        self.enc, self.targets, self.pooled = setup.train, setup.targets, setup.teacher_pooled
        self.batch_size, self.pad_id, self.segments = setup.cfg.distill.batch_size, setup.student.special.pad, setup.segments
        self.seed, self.epoch, self.pos = seed, 0, 0
        self.order = self._order()

    def _order(self) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.enc), generator=gen).tolist()

    def __call__(self) -> dict[str, Tensor]:
        if self.pos >= len(self.order):  # a new pass: a new order
            self.epoch, self.pos = self.epoch + 1, 0
            self.order = self._order()
        idx = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        batch = collate(self.enc, idx, self.pad_id, self.segments)
        batch["teacher_logits"] = self.targets[idx]
        if self.pooled is not None:
            batch["teacher_pooled"] = self.pooled[idx]
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self.order = self._order()


def _save_weights(weights: dict[str, Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp))
    os.replace(tmp, path)


class BestSoFar:
    """Early stopping that survives a kill: its counters go into every checkpoint's state and its best
    weights beside the checkpoints (best-STEP.safetensors, written with the checkpoint), so that a resumed
    seed restores the best it had."""

    def __init__(self, seed_dir: Path, best: EarlyStopping):
        self.dir, self.best = seed_dir, best
        self.kept: str | None = None
        """The best weights the previous checkpoint names (kept until a newer checkpoint is complete)."""

    def _file(self, step: int) -> Path:
        return self.dir / f"best-{step:07d}.safetensors"

    def state(self) -> dict[str, Any]:
        """Called by the loop as it writes a checkpoint."""
        b = self.best
        if b.weights is not None and not self._file(b.step).exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            _save_weights(b.weights, self._file(b.step))
        current = self._file(b.step).name if b.weights is not None else None
        for old in self.dir.glob("best-*.safetensors"):
            if old.name not in (current, self.kept):
                old.unlink()
        self.kept = current
        return {"key": list(b.key) if b.key else None, "accuracy": b.accuracy, "macro_f1": b.macro_f1,
                "step": b.step, "since": b.since}

    def restore(self, state: dict[str, Any]) -> None:
        b = self.best
        b.key = tuple(state["key"]) if state["key"] else None
        b.accuracy, b.macro_f1, b.step, b.since = state["accuracy"], state["macro_f1"], state["step"], state["since"]
        if b.key is not None:
            f = self._file(b.step)
            try:
                b.weights = load_file(str(f))
            except (SafetensorError, OSError) as e:
                raise CheckpointError(f"{f}: the best weights of the checkpoint are missing or unreadable ({e}); "
                                      f"delete {self.dir} to start this seed again") from None
            self.kept = f.name


@dataclass
class SeedRun:
    """One seed's outcome; its student's weights are in seed_dir/student.safetensors."""

    result: SeedResult
    key: tuple[float, float]
    """(validation accuracy, -loss) of its best evaluation: the best seed is the one saved."""
    test_logits: Tensor
    seed_dir: Path


def _step_loss(setup: DistillSetup):
    dc, pooling = setup.cfg.distill, setup.cfg.finetune.pooling

    def step_loss(m: DistillModel, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        out = m.student(batch["input_ids"], batch["mask"], batch.get("segment_ids"))
        projected = m.project(pool(out.hidden, batch["mask"], pooling)) if m.project is not None else None
        loss = distill_loss(out.logits, batch["teacher_logits"], batch["labels"], dc.temperature, dc.alpha,
                            projected, batch.get("teacher_pooled"), dc.hidden_weight)
        agree = (out.logits.argmax(-1) == batch["teacher_logits"].argmax(-1)).float().mean()
        metrics = {"kl": loss.kl.detach(), "ce": loss.ce.detach(), "agree": agree.detach()}
        if loss.hidden is not None:
            metrics["hidden"] = loss.hidden.detach()
        return loss.total, metrics

    return step_loss


def _validator(setup: DistillSetup, best: EarlyStopping, schedule: BudgetSchedule):
    enc = setup.enc["validation"]

    def validate(m: DistillModel) -> dict[str, float]:
        logits = predict_logits(m.student, enc, setup.student.special.pad, setup.segments, setup.device, setup.dtype)
        metrics = score(enc.labels, logits.argmax(-1).tolist(), setup.teacher.label_names)
        loss = float(F.cross_entropy(logits, torch.tensor(enc.labels)))
        best.update(metrics, loss, schedule.step_count, m.student)
        return {"val_loss": loss, "val_acc": metrics.accuracy, "val_macro_f1": metrics.macro_f1}

    return validate


def distill_seed(setup: DistillSetup, seed: int) -> SeedRun:
    """Train one student with this seed (or continue its checkpoint, or read its finished result)."""
    seed_dir = setup.out / "seeds" / f"seed-{seed}"
    finished = _read_finished(seed_dir)
    if finished is not None:
        return finished
    dc, tc, ft = setup.cfg.distill, setup.cfg.train, setup.cfg.finetune
    set_seed(seed, tc.deterministic)
    teacher_dim = setup.teacher_pooled.shape[1] if setup.teacher_pooled is not None else None
    student = student_classifier(setup.student, len(setup.teacher.label_names), ft.pooling, ft.dropout)
    model = DistillModel(student, teacher_dim).to(setup.device)
    optimizer = make_optimizer(model, dc.lr, tc.weight_decay, setup.device)
    schedule = BudgetSchedule(optimizer, setup.budget, tc.warmup, tokens_per_step=0)
    batches = PoolBatches(setup, seed)
    best = EarlyStopping(dc.patience, dc.min_steps)
    kept = BestSoFar(seed_dir, best)
    ckpt = latest_checkpoint(seed_dir)
    if ckpt is not None:
        state = load_training_state(ckpt, model, optimizer, None)
        schedule.load_state_dict(state["schedule"])
        batches.load_state_dict(state["data"]["batches"])
        kept.restore(state["data"]["best"])
        if not setup.quiet:
            print(f"seed {seed}: resuming from {ckpt} (step {state['step']})", file=sys.stderr)
    settings = LoopSettings(grad_accum=1, clip=tc.clip, on_nan=tc.on_nan, log_every=max(1, setup.eval_every // 4),
                            eval_every=setup.eval_every, checkpoint_every=tc.checkpoint_every,
                            checkpoint_minutes=tc.checkpoint_minutes, progress=tc.progress and not setup.quiet)
    loop = fit(model, batches, _step_loss(setup), settings, device=setup.device, dtype=setup.dtype,
               optimizer=optimizer, schedule=schedule, run_dir=seed_dir, evaluate=_validator(setup, best, schedule),
               should_stop=best.should_stop, data_state=lambda: {"batches": batches.state_dict(), "best": kept.state()},
               desc=f"distill {setup.task.name} seed {seed}")
    model.student.load_state_dict(best.weights)  # the best-validation weights
    test = setup.enc["test"]
    test_logits = predict_logits(model.student, test, setup.student.special.pad, setup.segments, setup.device,
                                 setup.dtype)
    on_test = score(test.labels, test_logits.argmax(-1).tolist(), setup.teacher.label_names)
    result = SeedResult(seed, on_test.accuracy, on_test.macro_f1, best.accuracy, best.macro_f1, best.loss, loop.steps,
                        best.step, loop.stopped_early, round(loop.seconds, 2), loop.history)
    run = SeedRun(result, best.key, test_logits, seed_dir)
    _write_finished(run, best.weights)
    if not setup.quiet:
        print(f"seed {seed}: test accuracy {on_test.accuracy:.4f}, macro-F1 {on_test.macro_f1:.4f} (best validation "
              f"accuracy {best.accuracy:.4f} at step {best.step} of {loop.steps})", file=sys.stderr)
    return run


def _write_finished(run: SeedRun, weights: dict[str, Tensor]) -> None:
    """The seed's best student and result; its checkpoints go (result.json, written last, marks it done)."""
    d = run.seed_dir
    _save_weights(weights, d / "student.safetensors")
    info = {"result": asdict(run.result), "key": list(run.key), "test_logits": run.test_logits.tolist()}
    tmp = d / "result.json.tmp"
    tmp.write_text(json.dumps(info), encoding="utf-8")
    os.replace(tmp, d / "result.json")
    shutil.rmtree(d / "checkpoints", ignore_errors=True)
    for f in d.glob("best-*.safetensors"):
        f.unlink()


def _read_finished(seed_dir: Path) -> SeedRun | None:
    f = seed_dir / "result.json"
    if not f.is_file():
        return None
    try:
        info = json.loads(f.read_text(encoding="utf-8"))
        return SeedRun(SeedResult(**info["result"]), tuple(info["key"]), torch.tensor(info["test_logits"]), seed_dir)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{f} is unreadable ({e}); delete {seed_dir} to train this seed again") from None


# --------------------------------------------------------------------------- the recipe


@dataclass
class ModelFigures:
    """One side of the report, teacher or student."""

    model: str
    accuracy: Summary
    """Test accuracy (the student's over seeds)."""
    macro_f1: Summary
    parameters: int
    disk_bytes: int
    """Size of model.safetensors."""
    texts_per_s_batch1: float
    """CPU, fp32, the same test texts for both, one at a time."""
    texts_per_s_batch32: float


@dataclass
class DistillResult:
    task: str
    teacher: ModelFigures
    student: ModelFigures
    agreement: Summary
    """Share of test texts on which the student predicts the teacher's label (over seeds)."""
    seeds: list[SeedResult]
    best_seed: int
    """The seed with the best validation accuracy (then loss): its student is the one saved."""
    test: Metrics
    """The saved student on the test split."""
    label_names: list[Any]
    texts: dict[str, Any]
    cache: dict[str, Any]
    settings: dict[str, Any]
    out_dir: str
    seconds: float = 0.0
    """Wall clock of the whole distillation (teacher labelling, every seed, this report)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def distill(teacher: str | Path | FineTuned, student: str | Path, inputs: Sequence[str | Path], out: str | Path,
            cfg: RunConfig | None = None, seeds: Sequence[int] | None = None, *, task: str | Path | Task | None = None,
            tokenizer: str | Path | None = None, resume: bool = False, quiet: bool = False) -> DistillResult:
    """Distil the teacher into the student on the inputs' text and the task's labelled training split,
    once per seed; save the best seed's student as a classifier directory in `out`, with report.md/json.

    cfg: the settings (distill.*, finetune.pooling / dropout / max_len, train.* precision, device, warm-up,
    checkpoints); for student preset:NAME its model section is the architecture (see student_config).
    resume: continue the distillation in `out` (its finished seeds are read, the others' checkpoints resumed).
    """
    t0 = time.perf_counter()
    cfg = cfg or student_config(str(student), None, [])
    seeds = tuple(seeds if seeds is not None else cfg.finetune.seeds)
    if not seeds:
        raise ConfigError("--seeds is empty; give at least one seed")
    setup = prepare_distill(teacher, student, inputs, out, cfg, task=task, tokenizer=tokenizer, resume=resume,
                            quiet=quiet)
    runs = [distill_seed(setup, seed) for seed in seeds]
    best = runs[0]
    for r in runs[1:]:
        if r.key > best.key:
            best = r
    _save_student(setup, best, seeds)
    result = _report(setup, runs, best)
    result.seconds = round(time.perf_counter() - t0, 2)
    (setup.out / "report.json").write_text(json.dumps(result.to_dict(), indent=1, default=str), encoding="utf-8")
    (setup.out / "report.md").write_text(report_markdown(result), encoding="utf-8")
    return result


def _save_student(setup: DistillSetup, best: SeedRun, seeds: tuple[int, ...]) -> None:
    """The best seed's student as a fine-tuned classifier directory (runs.save_classifier)."""
    from .data.tasks import BUILTIN_TASKS

    st, task, ft = setup.student, setup.task, setup.cfg.finetune
    model = student_classifier(replace(st, backbone=None), len(setup.teacher.label_names), ft.pooling, None)
    model.load_state_dict(load_file(str(best.seed_dir / "student.safetensors")))
    task_ref = task.name if task.name in BUILTIN_TASKS else task.source
    base = st.run_config or setup.cfg
    used = RunConfig(model=st.model_cfg, data=base.data, objective=base.objective, train=setup.cfg.train,
                     finetune=replace(setup.teacher.config.finetune, task=task_ref, pooling=ft.pooling,
                                      dropout=ft.dropout, max_len=setup.max_len, seeds=seeds),
                     distill=setup.cfg.distill)
    meta = {"task": task.name, "task_source": task_ref, "source_run": st.source, "init": "distilled",
            "seed": best.result.seed, "head": setup.head, "pooling": ft.pooling, "max_len": setup.max_len,
            "pairs": False, "segments": setup.segments, "split": task.split_kind, "teacher": str(setup.teacher.path),
            "teacher_hash": setup.settings["teacher_hash"]}
    save_classifier(setup.out, model, st.tokenizer, used, setup.teacher.label_names, meta)


# --------------------------------------------------------------------------- the report

BATCH1_TEXTS = 64
"""Batch-1 throughput is timed on the first this many of the timed texts."""


@torch.no_grad()
def texts_per_second(model: Classifier, enc: Encoded, pad_id: int, segments: bool, batch_size: int) -> float:
    """CPU, fp32 inference speed on the texts in their order, batch_size at a time, after one warm-up batch
    (padding to each batch's longest text; tokenization not included)."""
    model.eval()
    n = len(enc)
    batches = [collate(enc, list(range(i, min(i + batch_size, n))), pad_id, segments) for i in range(0, n, batch_size)]

    def run(b: dict[str, Tensor]) -> None:
        model(b["input_ids"], b["mask"], b.get("segment_ids"))

    run(batches[0])
    t0 = time.perf_counter()
    for b in batches:
        run(b)
    return n / max(time.perf_counter() - t0, 1e-9)


def _speeds(model: Classifier, tokenizer, max_len: int, pad_id: int, segments: bool, texts: list[str]) -> tuple[float, float]:
    enc = encode(tokenizer, texts, None, max_len)
    one = Encoded(enc.ids[:BATCH1_TEXTS], enc.segments[:BATCH1_TEXTS], enc.labels[:BATCH1_TEXTS])
    return (texts_per_second(model, one, pad_id, segments, 1), texts_per_second(model, enc, pad_id, segments, 32))


def _report(setup: DistillSetup, runs: list[SeedRun], best: SeedRun) -> DistillResult:
    """Teacher against student on the test split, sizes and speeds measured now, on the same texts."""
    teacher, task, test = setup.teacher, setup.task, setup.enc["test"]
    names = teacher.label_names
    teacher.model.to(setup.device)
    t_logits, _ = run_teacher(teacher, task.test.texts, setup.cfg.distill.teacher_batch_size, setup.device,
                              setup.dtype, False)
    teacher.model.cpu()
    t_pred = t_logits.argmax(-1)
    t_test = score(test.labels, t_pred.tolist(), names)
    saved = load_classifier(setup.out)
    timed = task.test.texts[:setup.cfg.distill.throughput_texts]
    t_speed = _speeds(teacher.model, teacher.tokenizer, teacher.meta["max_len"], teacher.special.pad,
                      teacher.meta["segments"], timed)
    s_speed = _speeds(saved.model, saved.tokenizer, setup.max_len, saved.special.pad, setup.segments, timed)
    seeds = [r.result for r in runs]
    teacher_fig = ModelFigures(str(teacher.path), Summary.of([t_test.accuracy]), Summary.of([t_test.macro_f1]),
                               count_parameters(teacher.model), (teacher.path / "model.safetensors").stat().st_size,
                               *t_speed)
    student_fig = ModelFigures(setup.student.source, Summary.of([s.accuracy for s in seeds]),
                               Summary.of([s.macro_f1 for s in seeds]), count_parameters(saved.model),
                               (setup.out / "model.safetensors").stat().st_size, *s_speed)
    agreement = Summary.of([float((r.test_logits.argmax(-1) == t_pred).float().mean()) for r in runs])
    pool, got = setup.texts, setup.labels
    texts = {"labelled": len(task.train), "unlabelled": len(pool.texts), "piece_words": pool.piece_words,
             "sources": pool.sources, "held_out_dropped": pool.held_out_dropped,
             "labelled_dropped": pool.labelled_dropped, "duplicates_dropped": pool.duplicates_dropped,
             "sampled_from": pool.sampled_from, "unk_rate": round(setup.unk_rate, 5)}
    cache = {"dir": str(got.cache_dir), "computed": got.computed, "reused": got.reused, "refused": got.refused,
             "seconds": got.seconds}
    dc = setup.cfg.distill
    settings = {"temperature": dc.temperature, "alpha": dc.alpha, "hidden_weight": dc.hidden_weight,
                "budget": asdict(setup.budget), "batch_size": dc.batch_size, "lr": dc.lr,
                "student_backbone": setup.student.model_cfg.backbone, "tokenizer": setup.student.tokenizer_source}
    best_test = score(test.labels, best.test_logits.argmax(-1).tolist(), names)
    return DistillResult(task.name, teacher_fig, student_fig, agreement, seeds, best.result.seed, best_test,
                         list(names), texts, cache, settings, str(setup.out))


def _size(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def report_markdown(r: DistillResult) -> str:
    t, s = r.teacher, r.student
    rows = [("test accuracy", str(t.accuracy), str(s.accuracy), f"{s.accuracy.mean - t.accuracy.mean:+.4f}"),
            ("test macro-F1", str(t.macro_f1), str(s.macro_f1), f"{s.macro_f1.mean - t.macro_f1.mean:+.4f}"),
            ("parameters", _size(t.parameters), _size(s.parameters), f"{s.parameters / t.parameters:.3f}x"),
            ("size on disk", _size(t.disk_bytes, "B"), _size(s.disk_bytes, "B"), f"{s.disk_bytes / t.disk_bytes:.3f}x"),
            ("CPU texts/s, batch 1", f"{t.texts_per_s_batch1:.1f}", f"{s.texts_per_s_batch1:.1f}",
             f"{s.texts_per_s_batch1 / t.texts_per_s_batch1:.1f}x"),
            ("CPU texts/s, batch 32", f"{t.texts_per_s_batch32:.1f}", f"{s.texts_per_s_batch32:.1f}",
             f"{s.texts_per_s_batch32 / t.texts_per_s_batch32:.1f}x")]
    table = "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    x, c = r.texts, r.cache
    seeds = ", ".join(str(p.seed) for p in r.seeds)
    return (f"# Distillation on {r.task}\n\nTeacher `{t.model}`, student `{s.model}` "
            f"({r.settings['student_backbone']}, tokenizer {r.settings['tokenizer']}); seeds {seeds} "
            f"(mean ± std; the saved student is seed {r.best_seed}, best on validation).\n\n"
            f"| | teacher | student | student vs teacher |\n|---|---:|---:|---:|\n{table}\n\n"
            f"The student predicts the teacher's label on {r.agreement} of the test texts. Throughput: fp32 "
            f"on the CPU ({torch.get_num_threads()} threads), the same test texts for both, measured one after the "
            f"other in this run (batch 1: the first {BATCH1_TEXTS}); tokenization not included.\n\n"
            f"Texts: {x['labelled']:,} labelled training examples and {x['unlabelled']:,} unlabelled pieces of about "
            f"{x['piece_words']} words ({', '.join(f'{k}: {v:,}' for k, v in x['sources'].items())}; dropped: "
            f"{x['held_out_dropped']:,} validation/test texts, {x['labelled_dropped']:,} labelled ones, "
            f"{x['duplicates_dropped']:,} duplicates{'; a sample of ' + format(x['sampled_from'], ',') if x['sampled_from'] else ''}"
            f"); [UNK] rate {x['unk_rate']:.2%}.\nTeacher logits: {c['computed']:,} computed, {c['reused']:,} from "
            f"the cache ({c['dir']}){'; damaged shards refused and rebuilt: ' + str(len(c['refused'])) if c['refused'] else ''}.\n"
            f"Loss: T^2 KL at T={r.settings['temperature']} + {r.settings['alpha']} x CE on labelled examples"
            f"{' + ' + str(r.settings['hidden_weight']) + ' x hidden-state MSE' if r.settings['hidden_weight'] else ''}; "
            f"budget {', '.join(f'{k} {v}' for k, v in r.settings['budget'].items() if v is not None)} per seed.\n"
            f"Took {r.seconds / 60:.1f} min, of which the teacher's labelling {c['seconds'] / 60:.1f} min.\n")
