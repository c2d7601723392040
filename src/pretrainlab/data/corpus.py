"""Read a prepared corpus (see data/prepare.py) back: memory-mapped token ids with document and
sentence boundaries.

    corpus = open_corpus("corpus")
    train = corpus.split("train")
    train.n_tokens, train.doc_offsets[:3]    # global token offsets: [0, end of doc 0, end of doc 1]
    train.read(1000, 1128)                    # int64 ids of tokens 1000..1127, across shards if need be
    train.doc(7)                              # ids of document 7

Offsets are global to the split (the shards are concatenated in order); every document boundary is
also a sentence boundary. Nothing per document or per sentence is held in memory: `doc_bounds(lo, hi)`
reads a stretch of document offsets from the shards' index files, and the whole `doc_offsets` /
`sent_offsets` arrays are read on first use only (the sentence-pair objectives need them; masked LM,
whose loader plans from `doc_bounds`, does not), so memory stays flat in the corpus size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import CorpusError
from ..tokenizer import TokenizerError, load_tokenizer, tokenizer_hash
from .shards import IDS, MANIFEST, PROGRESS, index_paths, is_boundaries, read_shard


class CorpusSplit:
    """One split (train or val) of a prepared corpus."""

    def __init__(self, name: str, shards: list[np.memmap], doc_files: list[Path], shard_docs: list[int],
                 sent_files: list[Path], n_sents: int):
        self.name = name
        self._shards = shards
        self._starts = np.cumsum([0] + [len(s) for s in shards])  # global offset of each shard, then the end
        self._doc_files = doc_files
        self._first_doc = np.cumsum([0] + list(shard_docs))  # global index of each shard's first document, then n_docs
        self._doc_offsets: np.ndarray | None = None
        self._sent_files = sent_files
        self._sent_offsets: np.ndarray | None = None
        self.n_tokens = int(self._starts[-1])
        self.n_docs = int(self._first_doc[-1])
        self.n_sents = n_sents

    def doc_bounds(self, lo: int, hi: int) -> np.ndarray:
        """int64, (hi - lo + 1,): global offsets of the boundaries of documents lo..hi-1 (their starts, then
        the end of the last), read from the index files; nothing is kept."""
        lo, hi = int(lo), int(hi)
        if not 0 <= lo <= hi <= self.n_docs:
            raise IndexError(f"documents [{lo}, {hi}) are outside the {self.name} split's {self.n_docs} documents")
        if self._doc_offsets is not None:
            return self._doc_offsets[lo : hi + 1].copy()
        # shard i holds boundaries first_doc[i]..first_doc[i + 1]; its last is the next shard's first
        first = min(int(np.searchsorted(self._first_doc, lo, side="right")) - 1, len(self._doc_files) - 1)
        parts = []
        for i in range(first, len(self._doc_files)):
            a, b = max(lo, int(self._first_doc[i])), min(hi, int(self._first_doc[i + 1]))
            local = _read_npy_slice(self._doc_files[i], a - self._first_doc[i], b - self._first_doc[i] + 1)
            parts.append((local if not parts else local[1:]) + self._starts[i])
            if b == hi:
                break
        return np.concatenate(parts)

    @property
    def doc_offsets(self) -> np.ndarray:
        """int64, (n_docs + 1,): document i is tokens [doc_offsets[i], doc_offsets[i + 1]).

        The whole array, read on first use and kept (8 bytes a document): for small splits and the
        sentence-pair objectives; the packed loader reads `doc_bounds` a block at a time instead."""
        if self._doc_offsets is None:
            self._doc_offsets = self.doc_bounds(0, self.n_docs)
        return self._doc_offsets

    @property
    def sent_offsets(self) -> np.ndarray:
        """int64, (n_sents + 1,): sentence boundaries; a superset of doc_offsets.

        Read from the shards' index files on first use only (the sentence-pair objectives need it;
        masked LM does not), so that a plain MLM run keeps no per-sentence array in memory."""
        if self._sent_offsets is None:
            parts = [np.zeros(1, np.int64)]
            for path, start in zip(self._sent_files, self._starts[:-1].tolist()):
                parts.append(np.load(path)[1:] + start)
            self._sent_offsets = np.concatenate(parts)
        return self._sent_offsets

    def __repr__(self) -> str:
        return f"CorpusSplit({self.name!r}, n_docs={self.n_docs}, n_sents={self.n_sents}, n_tokens={self.n_tokens})"

    def read(self, start: int, stop: int) -> np.ndarray:
        """int64 ids of the global token range [start, stop); copies only that range."""
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= self.n_tokens:
            raise IndexError(f"token range [{start}, {stop}) is outside the {self.name} split's {self.n_tokens} tokens")
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        last = int(np.searchsorted(self._starts, stop, side="left"))  # one past the last shard touched
        if last - first <= 1:
            base = self._starts[first]
            return self._shards[first][start - base : stop - base].astype(np.int64)
        out = np.empty(stop - start, dtype=np.int64)
        for i in range(first, last):
            lo, hi = max(start, self._starts[i]), min(stop, self._starts[i + 1])
            out[lo - start : hi - start] = self._shards[i][lo - self._starts[i] : hi - self._starts[i]]
        return out

    def doc(self, i: int) -> np.ndarray:
        """int64 ids of document i."""
        if not -self.n_docs <= i < self.n_docs:
            raise IndexError(f"document {i} is outside the {self.name} split's {self.n_docs} documents")
        i %= self.n_docs
        return self.read(*self.doc_bounds(i, i + 1))


class Corpus:
    """A prepared corpus directory: its manifest, tokenizer and splits."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest
        self.tokenizer_path = path / manifest["tokenizer"]["file"]
        self.tokenizer_hash: str = manifest["tokenizer"]["hash"]
        self.vocab_size: int = manifest["tokenizer"]["vocab_size"]
        self._splits: dict[str, CorpusSplit] = {}

    def __repr__(self) -> str:
        return f"Corpus({str(self.path)!r}, splits={list(self.manifest['splits'])}, vocab_size={self.vocab_size})"

    @property
    def splits(self) -> list[str]:
        return list(self.manifest["splits"])

    def split(self, name: str) -> CorpusSplit:
        if name not in self.manifest["splits"]:
            raise CorpusError(f"{self.path} has no {name!r} split; it has {', '.join(self.splits)}"
                              + (" (prepare it with data.val_fraction > 0 for a val split)" if name == "val" else ""))
        if name not in self._splits:
            self._splits[name] = self._open_split(name, self.manifest["splits"][name])
        return self._splits[name]

    def _open_split(self, name: str, info: dict) -> CorpusSplit:
        dtype = np.dtype(self.manifest["dtype"])
        shards, doc_files, shard_docs, sent_files, n_sents = [], [], [], [], 0
        for shard in info["shards"]:
            bin_path = self.path / shard["file"]
            stem = bin_path.name[: -len(IDS)]
            try:
                size, d, s = read_shard(self.path, shard["file"])
            except (OSError, ValueError) as e:
                raise _corrupt(self.path, f"shard {stem} is missing or unreadable ({e})") from None
            n = shard["tokens"]
            if size != n * dtype.itemsize:
                raise _corrupt(self.path, f"{bin_path.name} has {size} bytes, expected {n * dtype.itemsize}")
            if not (is_boundaries(d, n) and is_boundaries(s, n)) or len(d) != shard["docs"] + 1:
                raise _corrupt(self.path, f"the boundaries of shard {stem} do not fit its {n} tokens")
            if not (s[np.minimum(np.searchsorted(s, d), len(s) - 1)] == d).all():
                raise _corrupt(self.path, f"shard {stem}: a document boundary is not a sentence boundary")
            shards.append(np.memmap(bin_path, dtype=dtype, mode="r", shape=(n,)))
            doc_file, sent_file = index_paths(self.path, shard["file"])
            doc_files.append(doc_file)
            shard_docs.append(len(d) - 1)
            sent_files.append(sent_file)
            n_sents += len(s) - 1
            del d, s  # checked, not kept: the loader reads boundaries back a block at a time
        return CorpusSplit(name, shards, doc_files, shard_docs, sent_files, n_sents)


def _read_npy_slice(path: Path, lo: int, hi: int) -> np.ndarray:
    """A copy of entries lo..hi-1 of a 1-d .npy file; the mapping goes with the call, so nothing stays resident."""
    try:
        mapped = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise _corrupt(path.parent, f"{path.name} is missing or unreadable ({e})") from None
    if not 0 <= lo <= hi <= len(mapped):
        raise CorpusError(f"{path}: asked for entries [{lo}, {hi}) of {len(mapped)}: the prepared corpus changed on "
                          "disk since it was opened; open it again")
    out = np.array(mapped[lo:hi], dtype=np.int64)
    del mapped
    return out


def _corrupt(path: Path, what: str) -> CorpusError:
    return CorpusError(f"{path}: corrupt prepared corpus: {what}; run `pretrainlab prepare` again into a new --out")


def open_corpus(path: str | Path) -> Corpus:
    """Open a directory written by prepare_corpus; CorpusError when it is missing, incomplete or corrupt."""
    path = Path(path)
    if not path.is_dir():
        raise CorpusError(f"{path}: no such corpus directory; create it with `pretrainlab prepare INPUTS --out {path}`")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        if (path / PROGRESS).is_file():
            raise CorpusError(f"{path}: the preparation was interrupted (no {MANIFEST}); run the same "
                              "`pretrainlab prepare` again to finish it")
        raise CorpusError(f"{path}: not a prepared corpus (no {MANIFEST}); create it with "
                          f"`pretrainlab prepare INPUTS --out {path}`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest["tokenizer"]["file"], manifest["tokenizer"]["hash"], manifest["tokenizer"]["vocab_size"]
        manifest["dtype"], manifest["splits"]
    except (ValueError, KeyError, TypeError) as e:
        raise _corrupt(path, f"{MANIFEST} is unreadable ({type(e).__name__}: {e})") from None
    corpus = Corpus(path, manifest)
    try:
        tok = load_tokenizer(corpus.tokenizer_path)
    except TokenizerError as e:
        raise _corrupt(path, str(e)) from None
    if tokenizer_hash(tok) != corpus.tokenizer_hash:
        raise _corrupt(path, f"{corpus.tokenizer_path.name} is not the tokenizer the ids were made with "
                             f"(hash {tokenizer_hash(tok)}, manifest says {corpus.tokenizer_hash})")
    if not corpus.splits:
        raise _corrupt(path, "the manifest lists no split")
    for name in corpus.splits:
        corpus.split(name)  # checks every shard and index now rather than mid-training
    return corpus
