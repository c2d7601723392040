"""Raw text -> normalised, deduplicated documents -> token-id shards that training memory-maps.

    report = prepare_corpus(["data/raw"], "corpus", DataConfig())   # trains a tokenizer when none is given
    print(report.summary())
    corpus = open_corpus("corpus")                                  # data/corpus.py reads it back

The output directory holds the tokenizer, the shards of each split (token ids, document and
sentence boundaries) and, written last, manifest.json: data/shards.py defines that format.

A document is never cut across shards; a shard closes at the first document boundary past
`shard_tokens`. Shards are written under a temporary name and renamed when complete, index first,
ids last; then `progress.json` (the run's key, hashed from the sources' sha256, the settings and the
tokenizer, and the list of complete shards) is rewritten. An interrupted run with the same key
resumes after its last listed shard: the text is read again (cheap) but only the rest is tokenized.
A finished run (manifest.json with the same key) is not redone at all.

Text goes through: Unicode NFC, whitespace runs -> one space, drop documents shorter than
min_chars (data/text.py), drop exact and near duplicates (data.dedup; found by a first pass that hashes the
normalised texts and their MinHash bands into partition files on disk, data/dedup.py and data/neardup.py: memory
stays flat, `dedup.tmp/` goes when the run ends; dropped.jsonl lists every document dropped and why), hold
out a validation share by hash (at least one document when there are two or more), split into
sentences (a regex, boundaries kept), tokenize the sentences of ~1 MB of documents at once
(`encode_batch_fast` on a background thread, Rust threads inside; no [CLS]/[SEP]).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ..config import DataConfig
from ..errors import CorpusError
from ..files import sha256_file
from ..tokenizer import TokenizerError, load_tokenizer, save_tokenizer, tokenizer_hash, train_tokenizer
from .dedup import EXACT, NEAR, find_duplicates, read_flags, write_dropped
from .readers import ReadStats, resolve_inputs
from .shards import (DOCS, FORMAT, IDS, MANIFEST, PROGRESS, SENTS, SPLITS, TOKENIZER, ids_dtype, read_shard,
                     shard_stem)
from .text import normalized_documents, text_key
from .vocab import VocabProposal, propose_vocab_size

log = logging.getLogger(__name__)

DROPPED = "dropped.jsonl"
VOCAB_PROPOSAL = "vocab_proposal.json"
"""With data.vocab_size=0: the size proposed (data/vocab.py); the manifest repeats it."""
"""In the prepared corpus: every document dropped, where it came from, why and (a duplicate) of what."""
DEDUP_DIR = "dedup.tmp"
"""Where the first pass keeps its partitions and flags (data/dedup.py) while a run lasts."""
BATCH_CHARS = 1 << 20
"""Characters of text tokenized per encode_batch call: big enough to keep the tokenizer's threads busy."""
# Settings that change what is written; the others (seq_len, workers, corpus) do not.
_KEY_SETTINGS = ("tokenizer_kind", "vocab_size", "lowercase", "text_field", "one_doc_per_line", "min_chars",
                 "dedup", "near_dup_threshold", "val_fraction", "errors", "encoding", "shard_tokens")


@dataclass
class PrepareReport:
    """What prepare_corpus did; `summary()` says it in words."""

    out_dir: Path
    status: str
    """prepared, resumed (after an interrupted run) or up to date (nothing redone)."""
    n_sources: int
    source_bytes: int
    docs_read: int
    duplicates_dropped: int
    """Exact duplicates (the same text after normalisation as an earlier document)."""
    near_duplicates_dropped: int
    """Near duplicates (data.near_dup_threshold); dropped.jsonl lists every dropped document."""
    short_dropped: int
    """Documents shorter than min_chars after normalisation (or with no token at all)."""
    replaced_bytes: int
    splits: dict[str, dict[str, int]]
    """split -> {docs, sentences, tokens, shards}."""
    dtype: str
    tokenizer_path: Path
    tokenizer_hash: str
    tokenizer_trained: bool
    seconds: float
    vocab_proposal: dict | None = None
    """With data.vocab_size=0: the size proposed from the corpus and its word count (data/vocab.py)."""

    @property
    def n_docs(self) -> int:
        return sum(s["docs"] for s in self.splits.values())

    @property
    def n_sentences(self) -> int:
        return sum(s["sentences"] for s in self.splits.values())

    @property
    def n_tokens(self) -> int:
        return sum(s["tokens"] for s in self.splits.values())

    def summary(self) -> str:
        if self.status == "up to date":
            return (f"{self.out_dir} is up to date (same sources, settings and tokenizer): nothing redone; "
                    f"{self.n_docs:,} documents, {self.n_tokens:,} tokens")
        mb = self.source_bytes / 1e6
        per_split = ", ".join(f"{name} {s['docs']:,} docs / {s['tokens']:,} tokens in {s['shards']} shard(s)"
                              for name, s in self.splits.items())
        lines = [
            f"{self.status} {self.out_dir}: {self.n_docs:,} documents, {self.n_sentences:,} sentences, "
            f"{self.n_tokens:,} tokens from {self.n_sources} file(s), {mb:,.1f} MB, in {self.seconds:.1f} s "
            f"({mb / max(self.seconds, 1e-9):.2f} MB/s)",
            f"  {per_split}; ids stored as {self.dtype}",
            f"  read {self.docs_read:,} documents: dropped {self.duplicates_dropped:,} exact duplicates, "
            f"{self.near_duplicates_dropped:,} near duplicates and {self.short_dropped:,} too short "
            f"(listed in {DROPPED}); {self.replaced_bytes:,} undecodable bytes replaced",
            f"  tokenizer {self.tokenizer_path} ({'trained on this corpus' if self.tokenizer_trained else 'given'}, "
            f"hash {self.tokenizer_hash})",
        ]
        if self.vocab_proposal:
            p = self.vocab_proposal
            lines.append(VocabProposal(p["size"], p["words"]).line().replace("vocabulary: ", "  vocabulary ", 1))
        return "\n".join(lines)


# --------------------------------------------------------------------------- text


# Closing quotes and brackets that stay with the sentence they end.
_CLOSERS = "\"'\u201d\u2019)\\]\u300d\u300f\uff09\u3011\u300b\u3009\uff3d\uff5d\uff02\uff07"
# Latin: . ! ? and closers, then the space before a non-lowercase character (the boundary is the space).
# CJK: 。！？．｡ (a run of them) and closers end a sentence with or without a following space (the boundary
# is right after them). One character class first keeps the scan fast (~100 MB/s); "..." matches at its last dot.
_SENTENCE_END = re.compile(rf"[.!?][{_CLOSERS}]*( )(?=[^a-z])|[\u3002\uff01\uff1f\uff0e\uff61]+[{_CLOSERS}]*(?=.)")


def split_sentences(text: str) -> list[str]:
    """Split normalised text after . ! ? (and closing quotes) before a space and a non-lowercase character,
    and after 。！？．｡ (and closing quotes / brackets such as 」』）), with or without a space after them.

    A space between sentences stays at the front of the next one, so the pieces concatenate back to the
    text; the tokenizers isolate CJK characters and punctuation, so the pieces tokenize like the whole
    (with unigram, whose Metaspace marks a text's start, a CJK sentence after no space starts with "▁", as a
    document does).
    """
    ends = [m.start(1) if m.group(1) else m.end() for m in _SENTENCE_END.finditer(text)]
    return [text[a:b] for a, b in zip([0, *ends], [*ends, len(text)])]


def _documents(paths: list[Path], cfg: DataConfig, stats: ReadStats, counts: dict[str, int],
               repeats: Path) -> Iterator[tuple[str, float]]:
    """(normalised text, hash score in [0, 1)) of each document that survives filtering and deduplication;
    `repeats`: the flags of dedup.find_duplicates for the same paths and settings (one per document)."""
    flags = read_flags(repeats)
    for text in normalized_documents(paths, cfg, stats):
        code = next(flags, None)
        if code is None:
            raise _changed_under_us(paths)
        if text is None:
            counts["short_dropped"] += 1
            continue
        if code == EXACT or code == NEAR:
            counts["near_duplicates_dropped" if code == NEAR else "duplicates_dropped"] += 1
            continue
        yield text, text_key(text)[1]
    if next(flags, None) is not None:
        raise _changed_under_us(paths)


def _changed_under_us(paths: list[Path]) -> CorpusError:
    return CorpusError(f"the input files ({', '.join(str(p) for p in paths[:3])}{', ...' if len(paths) > 3 else ''}) "
                       "changed while they were being prepared (not the same documents as a moment ago); "
                       "leave them alone and run the same `pretrainlab prepare` again")


def _nothing_left(counts: dict[str, int], stats: ReadStats, cfg: DataConfig) -> CorpusError:
    return CorpusError(
        f"no documents left after filtering: read {stats.documents}, dropped {counts['duplicates_dropped']} "
        f"exact duplicates, {counts['near_duplicates_dropped']} near duplicates and {counts['short_dropped']} shorter "
        f"than data.min_chars={cfg.min_chars}; "
        "add text or lower data.min_chars"
    )


# --------------------------------------------------------------------------- tokenizer


def train_tokenizer_on_files(inputs: Iterable[str | Path], out: str | Path, data_cfg: DataConfig) -> Path:
    """Train data_cfg.tokenizer_kind on the normalised, deduplicated documents; -> path of tokenizer.json."""
    paths = resolve_inputs(inputs)
    with tempfile.TemporaryDirectory(prefix="pretrainlab-dedup-") as work:
        tok, _ = _train_on(paths, data_cfg, find_duplicates(paths, data_cfg, Path(work)))
    return save_tokenizer(tok, out)


def _no_drops() -> dict[str, int]:
    """What a pass over the documents counts as it drops them, all 0 before it starts."""
    return {"short_dropped": 0, "duplicates_dropped": 0, "near_duplicates_dropped": 0}


def _train_on(paths: list[Path], cfg: DataConfig, repeats: Path) -> tuple[Tokenizer, VocabProposal | None]:
    """The tokenizer, and with data.vocab_size=0 the size proposed for it (an extra pass that counts the words)."""
    stats, counts, kept = ReadStats(), _no_drops(), 0

    def texts() -> Iterator[str]:  # one pass over the documents (WordPiece's training makes two)
        nonlocal stats, counts, kept  # what the latest pass read, for the error below
        stats, counts, kept = ReadStats(), _no_drops(), 0
        for text, _ in _documents(paths, cfg, stats, counts, repeats):
            kept += 1
            yield text

    proposal = None
    if cfg.vocab_size == 0:
        proposal = propose_vocab_size(text for text, _ in _documents(paths, cfg, ReadStats(), _no_drops(), repeats))
        log.info(proposal.line())
    try:
        size = proposal.size if proposal else cfg.vocab_size
        return train_tokenizer(texts, cfg.tokenizer_kind, size, cfg.lowercase), proposal
    except TokenizerError:
        if kept == 0:
            raise _nothing_left(counts, stats, cfg) from None
        raise


# --------------------------------------------------------------------------- tokenizing


@dataclass
class _Batch:
    """Documents waiting to be tokenized: their sentences back to back, and which split each goes to."""

    sentences: list[str] = field(default_factory=list)
    doc_sents: list[int] = field(default_factory=list)
    """Sentences per document."""
    splits: list[int] = field(default_factory=list)
    """0 train, 1 val, per document."""
    chars: int = 0

    def add(self, text: str, split: int) -> None:
        pieces = split_sentences(text)
        self.sentences += pieces
        self.doc_sents.append(len(pieces))
        self.splits.append(split)
        self.chars += len(text)


def _tokenize(tok: Tokenizer, sentences: list[str], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """-> (ids of all sentences back to back, tokens per sentence).

    One encode_batch_fast call (Rust threads, no offsets computed); the ids come back through one
    np.fromiter, so there is no Python work per token beyond the list of ids the binding returns.
    """
    encodings = tok.encode_batch_fast(sentences, add_special_tokens=False)
    sent_lens = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=dtype, count=int(sent_lens.sum()))
    return ids, sent_lens


# --------------------------------------------------------------------------- shards


@dataclass
class _Shard:
    file: str
    tokens: int
    docs: int
    sentences: int
    consumed: int
    """Documents of the split this shard accounts for: its own plus any that tokenized to nothing."""
    empty: int
    """Of those, documents that tokenized to nothing (not stored)."""


class _ShardWriter:
    """Writes one split's documents into shards of about `shard_tokens` tokens, cut at document boundaries.

    A shard is closed lazily, when the next document arrives, so the last document written is always
    in the open shard (and can be taken back: see `pop_last`). Documents (and sentences) with no
    token are counted but not stored: offsets stay strictly increasing.
    """

    def __init__(self, out_dir: Path, split: str, dtype: np.dtype, shard_tokens: int, done: list[_Shard],
                 on_close: Callable[[], None]):
        self.out_dir, self.split, self.dtype, self.shard_tokens = out_dir, split, np.dtype(dtype), shard_tokens
        self.shards = list(done)
        self.on_close = on_close
        self.done_consumed = sum(s.consumed for s in done)
        self._file = None
        self._tokens = self._consumed = self._empty = 0
        self._doc_ends: list[np.ndarray] = []  # shard-local ends, one array per add()
        self._sent_ends: list[np.ndarray] = []

    @property
    def n_docs(self) -> int:
        return sum(s.docs for s in self.shards) + sum(len(a) for a in self._doc_ends)

    @property
    def n_empty(self) -> int:
        return sum(s.empty for s in self.shards) + self._empty

    def add(self, ids: np.ndarray, doc_lens: np.ndarray, sent_lens: np.ndarray, doc_sents: np.ndarray) -> None:
        """Append documents: their ids back to back, tokens per document / per sentence, sentences per document."""
        doc_ends = np.cumsum(doc_lens)
        sent_ends = np.cumsum(sent_lens)
        doc_sent_ends = np.cumsum(doc_sents)
        d = 0
        while d < len(doc_lens):
            base = int(doc_ends[d - 1]) if d else 0
            if self._tokens >= self.shard_tokens and doc_ends[-1] > base:  # full, and tokens still to come
                self._close()
                self.on_close()
            # documents d..k-1 go here: up to the one that brings the shard to shard_tokens
            k = min(int(np.searchsorted(doc_ends, base + self.shard_tokens - self._tokens, side="left")) + 1, len(doc_lens))
            stop = int(doc_ends[k - 1])
            s_lo, s_hi = (int(doc_sent_ends[d - 1]) if d else 0), int(doc_sent_ends[k - 1])
            if stop > base:
                if self._file is None:
                    self._file = open(self.out_dir / f"{shard_stem(self.split, len(self.shards))}{IDS}.tmp", "wb")
                ids[base:stop].tofile(self._file)
                keep_docs, keep_sents = doc_lens[d:k] > 0, sent_lens[s_lo:s_hi] > 0
                self._doc_ends.append(doc_ends[d:k][keep_docs] - base + self._tokens)
                self._sent_ends.append(sent_ends[s_lo:s_hi][keep_sents] - base + self._tokens)
                self._tokens += stop - base
            self._consumed += k - d
            self._empty += int((doc_lens[d:k] == 0).sum())
            d = k

    def pop_last(self) -> tuple[np.ndarray, np.ndarray]:
        """Take the last document back out of the open shard: -> (its ids, its sentence lengths)."""
        doc_ends = np.concatenate(self._doc_ends)
        sent_ends = np.concatenate(self._sent_ends)
        start = int(doc_ends[-2]) if len(doc_ends) > 1 else 0
        self._file.flush()
        ids = np.fromfile(self._file.name, dtype=self.dtype, offset=start * self.dtype.itemsize)
        self._file.truncate(start * self.dtype.itemsize)
        self._file.seek(0, os.SEEK_END)
        first = int(np.searchsorted(sent_ends, start, side="right"))
        sent_lens = np.diff(np.concatenate([[start], sent_ends[first:]]))
        self._doc_ends, self._sent_ends = [doc_ends[:-1]], [sent_ends[:first]]
        self._tokens = start
        self._consumed -= 1
        return ids, sent_lens

    def _close(self) -> None:
        name = shard_stem(self.split, len(self.shards))
        docs = np.concatenate([np.zeros(1, np.int64), *self._doc_ends])
        sents = np.concatenate([np.zeros(1, np.int64), *self._sent_ends])
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        for suffix, array in ((DOCS, docs), (SENTS, sents)):
            tmp = self.out_dir / f"{name}{suffix}.tmp"
            with open(tmp, "wb") as f:
                np.save(f, array)
            tmp.replace(self.out_dir / f"{name}{suffix}")
        # the ids last: a shard whose .bin exists (and that progress.json lists) is complete
        (self.out_dir / f"{name}{IDS}.tmp").replace(self.out_dir / f"{name}{IDS}")
        self.shards.append(_Shard(f"{name}{IDS}", self._tokens, len(docs) - 1, len(sents) - 1, self._consumed, self._empty))
        self._file, self._tokens, self._consumed, self._empty = None, 0, 0, 0
        self._doc_ends, self._sent_ends = [], []

    def finish(self) -> list[_Shard]:
        """Close the open shard (if it holds any token) without calling on_close; -> all shards."""
        if self._file is not None:
            self._close()
        return self.shards


def _complete_shards(out_dir: Path, split: str, dtype: np.dtype, recorded: list[dict]) -> list[_Shard]:
    """The shards an interrupted run recorded as complete and that are intact on disk, in order."""
    shards = []
    for record in recorded:
        shard = _Shard(**record)
        try:
            size, docs, sents = read_shard(out_dir, shard.file)
        except (OSError, ValueError):
            break
        if (size != shard.tokens * np.dtype(dtype).itemsize or int(docs[-1]) != shard.tokens
                or int(sents[-1]) != shard.tokens or len(docs) - 1 != shard.docs):
            break
        shards.append(shard)
    return shards


def _remove_outputs(out_dir: Path, keep: dict[str, int] | None = None) -> None:
    """Delete this module's files in out_dir (never anything else); keep the first keep[split] shards."""
    keep = keep or {}
    for split in SPLITS:
        for path in out_dir.glob(f"{split}-*"):
            index = path.name[len(split) + 1 :].split(".")[0]
            if path.name.endswith(".tmp") or not index.isdigit() or int(index) >= keep.get(split, 0):
                path.unlink()


# --------------------------------------------------------------------------- the run


def prepare_corpus(
    inputs: Iterable[str | Path], out_dir: str | Path, data_cfg: DataConfig, tokenizer_path: str | Path | None = None,
    finetune_cfg=None,
) -> PrepareReport:
    """Read, normalise, deduplicate, split and tokenize `inputs` into shards in out_dir (see the module doc).

    An input `task:NAME` or `task:FILE` is that task's training texts (data/task_text.py), split as
    finetune_cfg (default: FinetuneConfig()) says, so `finetune` and `curve` agree on what is training text.
    """
    from ..config import FinetuneConfig
    from .task_text import resolve_task_inputs

    inputs = resolve_task_inputs(inputs, finetune_cfg or FinetuneConfig())
    try:
        return _prepare_corpus(inputs, Path(out_dir), data_cfg, tokenizer_path)
    finally:
        shutil.rmtree(Path(out_dir) / DEDUP_DIR, ignore_errors=True)  # also what a killed run left


def _prepare_corpus(inputs: Iterable[str | Path], out_dir: Path, data_cfg: DataConfig,
                    tokenizer_path: str | Path | None) -> PrepareReport:
    started = time.perf_counter()
    cfg = data_cfg
    out = Path(out_dir)
    paths = resolve_inputs(inputs)
    if out.exists() and not out.is_dir():
        raise CorpusError(f"--out {out} is a file; give a directory for the shards")
    out.mkdir(parents=True, exist_ok=True)
    manifest, progress = _read_json(out / MANIFEST), _read_json(out / PROGRESS)
    sources = _describe_sources(paths, known=(manifest or {}).get("sources", []) + (progress or {}).get("sources", []))

    tok_spec, given_bytes = _given_tokenizer(tokenizer_path)  # read now: it may live in out_dir
    settings = {k: getattr(cfg, k) for k in _KEY_SETTINGS}
    key = _hash_json({"format": FORMAT, "sources": [[s["path"], s["sha256"]] for s in sources],
                      "settings": settings, "tokenizer": tok_spec})

    if manifest is not None and manifest.get("key") == key and _outputs_present(out, manifest):
        return _report(out, manifest, "up to date", time.perf_counter() - started)

    (out / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(out / DEDUP_DIR, ignore_errors=True)
    repeats = find_duplicates(paths, cfg, out / DEDUP_DIR)  # the first pass: which documents repeat
    write_dropped(repeats, paths, out / DROPPED)
    resume = progress is not None and progress.get("key") == key and (out / TOKENIZER).is_file()
    if resume:
        tok = load_tokenizer(out / TOKENIZER)
        resume = tokenizer_hash(tok) == progress.get("tokenizer_hash")
    if not resume:
        for stale in (PROGRESS, VOCAB_PROPOSAL):
            (out / stale).unlink(missing_ok=True)
        _remove_outputs(out)
        if given_bytes is not None:
            _write_atomic(out / TOKENIZER, given_bytes)
        else:
            tok, proposal = _train_on(paths, cfg, repeats)
            save_tokenizer(tok, out / TOKENIZER)
            if proposal is not None:  # read back into the manifest at the end (also after a resumed run)
                _write_atomic(out / VOCAB_PROPOSAL, json.dumps(proposal.to_dict()).encode())
        tok = load_tokenizer(out / TOKENIZER)  # the file, as every later reader will see it
    tok_hash = tokenizer_hash(tok)
    vocab_size = max(tok.get_vocab().values()) + 1  # ids, not entries, decide the dtype
    dtype = ids_dtype(vocab_size)

    recorded = progress.get("shards", {}) if resume else {}
    done = {s: _complete_shards(out, s, dtype, recorded.get(s, [])) for s in SPLITS}
    _remove_outputs(out, keep={s: len(done[s]) for s in SPLITS})

    def save_progress() -> None:
        shards = {s: [asdict(x) for x in writers[s].shards] for s in SPLITS}
        record = {"key": key, "tokenizer_hash": tok_hash, "sources": sources, "shards": shards}
        _write_atomic(out / PROGRESS, json.dumps(record).encode())

    writers = {s: _ShardWriter(out, s, dtype, cfg.shard_tokens, done[s], on_close=save_progress) for s in SPLITS}
    save_progress()
    stats, counts = ReadStats(), _no_drops()
    kept = _tokenize_documents(_documents(paths, cfg, stats, counts, repeats), cfg.val_fraction, tok, dtype, writers)
    if kept == 0:
        raise _nothing_left(counts, stats, cfg)
    if cfg.val_fraction > 0 and writers["val"].n_docs == 0 and writers["train"].n_docs >= 2:
        # no document hashed into the validation share: hold out the last training document
        ids, sent_lens = writers["train"].pop_last()
        writers["val"].add(ids, np.array([len(ids)]), sent_lens, np.array([len(sent_lens)]))
    shards = {s: writers[s].finish() for s in SPLITS}
    save_progress()  # both last shards at once: a crash between them redoes both

    totals = {s: _split_totals(shards[s]) for s in SPLITS}
    if totals["train"]["tokens"] < cfg.seq_len:
        raise CorpusError(
            f"the corpus is smaller than one training sequence: {totals['train']['tokens']} training tokens from "
            f"{kept} document(s), fewer than data.seq_len={cfg.seq_len}; add text (or lower data.seq_len)"
        )
    manifest = {
        "format": FORMAT,
        "key": key,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sources": sources,
        "settings": asdict(cfg),
        "tokenizer": {"file": TOKENIZER, "hash": tok_hash, "vocab_size": vocab_size,
                      "trained": tokenizer_path is None, "proposal": _read_json(out / VOCAB_PROPOSAL)},
        "dtype": dtype.name,
        "counts": {
            "docs_read": stats.documents,
            "duplicates_dropped": counts["duplicates_dropped"],
            "near_duplicates_dropped": counts["near_duplicates_dropped"],
            "short_dropped": counts["short_dropped"] + sum(w.n_empty for w in writers.values()),
            "replaced_bytes": stats.replaced_bytes,
            "docs": sum(t["docs"] for t in totals.values()),
            "sentences": sum(t["sentences"] for t in totals.values()),
            "tokens": sum(t["tokens"] for t in totals.values()),
        },
        "splits": {s: {**totals[s], "shards": [asdict(x) for x in shards[s]]} for s in SPLITS if shards[s]},
    }
    _write_atomic(out / MANIFEST, json.dumps(manifest, indent=1).encode())
    (out / PROGRESS).unlink(missing_ok=True)
    return _report(out, manifest, "resumed" if resume else "prepared", time.perf_counter() - started)


def _given_tokenizer(tokenizer_path: str | Path | None) -> tuple[str, bytes | None]:
    """-> (its hash, the bytes of its file) for the tokenizer given (a tokenizer.json or a directory holding
    one), read before anything in out_dir is removed; ("trained", None) when none is given."""
    if tokenizer_path is None:
        return "trained", None
    given = Path(tokenizer_path)
    given = given / TOKENIZER if given.is_dir() else given
    tok = load_tokenizer(given)  # checks the special tokens
    return tokenizer_hash(tok), given.read_bytes()


def _tokenize_documents(documents: Iterator[tuple[str, float]], val_fraction: float, tok: Tokenizer,
                        dtype: np.dtype, writers: dict[str, _ShardWriter]) -> int:
    """Split (by hash score), sentence-split and tokenize the documents into the writers; -> documents kept.

    Documents already in a complete shard of an interrupted run are counted and skipped. One thread
    tokenizes batch k (in Rust, without the GIL) while this one reads, normalises and splits batch
    k+1 and writes batch k-1: the Python work hides behind the tokenizer's.
    """
    seen_per_split = {s: 0 for s in SPLITS}
    kept = 0
    batch = _Batch()
    pending: tuple[Future, _Batch] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") as pool:

        def submit(batch: _Batch) -> None:
            nonlocal pending
            future = pool.submit(_tokenize, tok, batch.sentences, dtype)
            if pending is not None:
                _write_batch(*pending[0].result(), pending[1], writers)
            pending = (future, batch)

        for text, score in documents:
            kept += 1
            split = 1 if score < val_fraction else 0
            name = SPLITS[split]
            seen_per_split[name] += 1
            if seen_per_split[name] <= writers[name].done_consumed:
                continue  # already in a complete shard of the interrupted run
            batch.add(text, split)
            if batch.chars >= BATCH_CHARS:
                submit(batch)
                batch = _Batch()
        if batch.sentences:
            submit(batch)
        if pending is not None:
            _write_batch(*pending[0].result(), pending[1], writers)
    return kept


def _write_batch(ids: np.ndarray, sent_lens: np.ndarray, batch: _Batch, writers: dict[str, _ShardWriter]) -> None:
    """Hand each split its documents of a tokenized batch."""
    doc_sents = np.asarray(batch.doc_sents, dtype=np.int64)
    doc_lens = np.add.reduceat(sent_lens, np.cumsum(doc_sents) - doc_sents)
    split_of = np.asarray(batch.splits)
    for s, name in enumerate(SPLITS):
        take = split_of == s
        if take.all():
            writers[name].add(ids, doc_lens, sent_lens, doc_sents)
        elif take.any():
            writers[name].add(ids[np.repeat(take, doc_lens)], doc_lens[take],
                              sent_lens[np.repeat(take, doc_sents)], doc_sents[take])


def _split_totals(shards: list[_Shard]) -> dict[str, int]:
    return {"docs": sum(s.docs for s in shards), "sentences": sum(s.sentences for s in shards),
            "tokens": sum(s.tokens for s in shards), "n_shards": len(shards)}


def _report(out: Path, manifest: dict, status: str, seconds: float) -> PrepareReport:
    c = manifest["counts"]
    return PrepareReport(
        out_dir=out, status=status, n_sources=len(manifest["sources"]),
        source_bytes=sum(s["bytes"] for s in manifest["sources"]), docs_read=c["docs_read"],
        duplicates_dropped=c["duplicates_dropped"], near_duplicates_dropped=c.get("near_duplicates_dropped", 0),
        short_dropped=c["short_dropped"],
        replaced_bytes=c["replaced_bytes"],
        splits={name: {"docs": s["docs"], "sentences": s["sentences"], "tokens": s["tokens"], "shards": s["n_shards"]}
                for name, s in manifest["splits"].items()},
        dtype=manifest["dtype"], tokenizer_path=out / TOKENIZER, tokenizer_hash=manifest["tokenizer"]["hash"],
        tokenizer_trained=manifest["tokenizer"]["trained"], seconds=seconds,
        vocab_proposal=manifest["tokenizer"].get("proposal"),
    )


# --------------------------------------------------------------------------- files


def _describe_sources(paths: list[Path], known: list[dict]) -> list[dict]:
    """Path, size, mtime and sha256 of each input; the sha256 is reused when size and mtime are unchanged."""
    by_path = {(k["path"], k["bytes"], k["mtime_ns"]): k["sha256"] for k in known if "sha256" in k}
    sources = []
    for p in paths:
        st = p.stat()
        digest = by_path.get((str(p), st.st_size, st.st_mtime_ns)) or sha256_file(p)
        sources.append({"path": str(p), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest})
    return sources


def _hash_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _outputs_present(out: Path, manifest: dict) -> bool:
    files = [x["file"] for s in manifest.get("splits", {}).values() for x in s["shards"]]
    return (out / TOKENIZER).is_file() and all((out / f).is_file() for f in files)
