"""The unlabelled texts: every input cut into pieces of the task's typical length, without the task's own texts.

    pool = read_unlabelled(["task:mr", "sotu/"], task, cfg.finetune, cfg.data)
    pool.texts, pool.held_out_dropped
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data.tasks import Task
from ..errors import CorpusError
from ..tokenizer import load_tokenizer
from .cache import text_hash

log = logging.getLogger(__name__)


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
    augmented: int = 0
    """Of `texts`, the augmented copies at their end (distill.augment; augment.py)."""
    augment_held_out_dropped: int = 0
    """Augmented copies equal to a validation or test text: never trained on."""
    copy_sources: list[int] = field(default_factory=list)
    """Of each augmented copy, in their order, the index in `texts` of the original it was made from."""


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
    from ..data.prepare import split_sentences
    from ..data.readers import read_documents, resolve_inputs
    from ..data.shards import MANIFEST
    from ..data.task_text import is_task_input, training_texts
    from ..data.text import normalize

    if is_task_input(item):
        for text in training_texts(item, finetune_cfg)[1]:
            yield [normalize(text)]
    elif Path(item).is_dir() and (Path(item) / MANIFEST).is_file():
        yield from corpus_documents(Path(item))
    else:
        paths = resolve_inputs([item])
        for doc in read_documents(paths, data_cfg.text_field, data_cfg.one_doc_per_line, data_cfg.errors,
                                  data_cfg.encoding):
            yield split_sentences(normalize(doc))


def corpus_documents(path: Path) -> Iterator[list[str]]:
    """Every document of a prepared corpus (all its splits), its sentences decoded back to text."""
    import numpy as np

    from ..data.corpus import open_corpus

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


def read_unlabelled(inputs: Sequence[str | Path], task: Task, finetune_cfg, data_cfg, max_texts: int = 0, *,
                    strict: bool = False, flag: str = "--texts") -> TextPool:
    """The unlabelled pieces of every input, deduplicated, without the task's validation/test texts and
    its labelled training texts (equal up to case and spaces); a CorpusError for an input with no text in
    it, and for inputs whose every piece is one of the task's held-out texts.

    strict (the learning curve's pool): also a CorpusError for an input that holds one of the task's test texts
    (a whole document, a sentence or a piece equal to it after normalisation) and for one that adds no text.
    flag: the command-line option the inputs came from, for the messages."""
    from ..data.text import normalize

    if not inputs:
        raise CorpusError(f"no unlabelled input given; pass {flag} FILE|DIR|CORPUS|task:NAME")
    words = typical_words(task)
    test = {normalize(t).lower() for t in task.test.texts}
    held_out = test | {normalize(t).lower() for t in task.validation.texts}  # equal up to case and spaces
    labelled = {normalize(t).lower() for t in task.train.texts}
    pool = TextPool([], words, {})
    seen: set[str] = set()
    for item in map(str, inputs):
        n, kept, found = 0, len(pool.texts), set()
        for sentences in input_documents(item, finetune_cfg, data_cfg):
            if strict:
                found |= {t for t in (" ".join(sentences), *sentences) if t.lower() in test}
            for p in pieces(sentences, words):
                n += 1
                if p.lower() in held_out:
                    pool.held_out_dropped += 1
                    found |= {p} if p.lower() in test else set()
                elif p.lower() in labelled:
                    pool.labelled_dropped += 1
                elif p in seen:
                    pool.duplicates_dropped += 1
                else:
                    seen.add(p)
                    pool.texts.append(p)
        if n == 0:
            raise CorpusError(f"{flag} {item}: no text in it (no piece of at least {max(1, words // 4)} words, "
                              f"a quarter of {task.name}'s typical {words}); give files with text in them")
        if strict:
            _check_strict(item, flag, task, n, len(pool.texts) - kept, {t.lower() for t in found})
        pool.sources[item] = n
    if not pool.texts and pool.held_out_dropped:
        raise CorpusError(f"{flag} {' '.join(map(str, inputs))}: every piece is a text of {task.name} itself "
                          f"({pool.labelled_dropped} training, {pool.held_out_dropped} validation/test texts, which "
                          "are never trained on); give unlabelled text beyond the task's own")
    if not pool.texts:  # e.g. task:NAME of the teacher's own task: its training split, labelled already
        log.info(f"note: {flag} {' '.join(map(str, inputs))} add no text to {task.name}'s labelled training split; the "
                 "student learns the teacher's soft labels on those texts alone")
    if max_texts and len(pool.texts) > max_texts:
        keep = set(sorted(pool.texts, key=lambda t: text_hash(t))[:max_texts])
        pool.sampled_from, pool.texts = len(pool.texts), [t for t in pool.texts if t in keep]
    return pool


def _check_strict(item: str, flag: str, task: Task, n: int, added: int, test_found: set[str]) -> None:
    """The learning curve's checks of one unlabelled input: none of the test texts, and some text of its own."""
    if test_found:
        example = sorted(test_found)[0]
        raise CorpusError(f"{flag} {item}: it holds {len(test_found)} of {task.name}'s {len(task.test)} test texts "
                          f"(exact match after normalisation, e.g. {example[:80]!r}); the curve scores every model on "
                          "them, so no model may see them: remove them from the input")
    if added == 0:
        raise CorpusError(f"{flag} {item}: no usable text: none of its {n} pieces adds to the pool (each is one of "
                          f"{task.name}'s own texts, whose training ones are in the pool already with their labels "
                          "hidden, or a repeat); give text beyond the task's own")
