"""More texts for the teacher to label: augmented copies of the pool's own texts (Tang et al. 2019).

    copies = augment(pool.texts, 2, p_mask=0.1, p_swap=0.1, p_ngram=0.25, mask_token="[MASK]", seed=7)
    copies.texts[0], pool.texts[copies.sources[0]]   # the first copy and the text it was made from
    pool = augmented_pool(pool, 2, 0.1, 0.1, 0.25, "[MASK]", held_out=val_and_test_texts, labelled=train_texts)

Per word of a copy, with probability p_mask the mask token (none: a swapped word instead), else with p_swap a word
drawn from the pool's own words by frequency (the paper drew one of the same part of speech; there is no tagger
here); then with p_ngram the whole copy becomes a random n-gram of itself (n uniform in 1..5). Each copy draws from
its own generator, seeded by the seed, the copy's number and its source text's hash: the same pool gives the same
copies in any run (a resumed one, the teacher-logits cache's lookup), and more copies keep the first ones.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..data.text import normalize
from .cache import text_hash
from .pool import TextPool

MAX_NGRAM = 5
"""The longest n-gram a copy is cut to (n uniform in 1..MAX_NGRAM, as Tang et al.)."""


@dataclass
class Copies:
    """Augmented copies, each with the text it was made from."""

    texts: list[str]
    sources: list[int]
    """Of each copy, the index of its source among the texts given (distill.augment_targets=source: its target)."""


def augment(texts: Sequence[str], copies: int, p_mask: float, p_swap: float, p_ngram: float, mask_token: str | None,
            seed: int) -> Copies:
    """`copies` augmented copies of each text, in the texts' order, without duplicates: none equals one of the
    texts or an earlier copy. mask_token None: a word drawn for masking is swapped instead."""
    vocab = [w for t in texts for w in t.split()]  # every occurrence: a draw picks a word by its frequency
    seen, out = set(texts), Copies([], [])
    for i, text in enumerate(texts):
        words = text.split()
        if not words:
            continue
        for c in range(copies):
            rng = random.Random(f"{seed}:{c}:".encode() + text_hash(text))
            new = []
            for w in words:
                x = rng.random()
                if x < p_mask:
                    new.append(mask_token if mask_token is not None else rng.choice(vocab))
                elif x < p_mask + p_swap:
                    new.append(rng.choice(vocab))
                else:
                    new.append(w)
            if rng.random() < p_ngram:
                n = rng.randint(1, MAX_NGRAM)
                start = rng.randrange(max(1, len(new) - n + 1))
                new = new[start:start + n]
            copy = " ".join(new)
            if copy not in seen:
                seen.add(copy)
                out.texts.append(copy)
                out.sources.append(i)
    return out


def augment_seed(p_mask: float, p_swap: float, p_ngram: float) -> int:
    """The copies' seed, from the probabilities (not the number of copies: more copies keep the first ones)."""
    return int.from_bytes(hashlib.sha256(f"{p_mask}:{p_swap}:{p_ngram}".encode()).digest()[:8], "big")


def augmented_pool(pool: TextPool, copies: int, p_mask: float, p_swap: float, p_ngram: float, mask_token: str | None,
                   *, held_out: Sequence[str], labelled: Sequence[str]) -> TextPool:
    """The pool with `copies` augmented copies of each of its texts at its end (augment): a copy equal to a held-out
    text (validation or test, up to case and spaces) is dropped and counted, one equal to a labelled training text
    (in the texts already, with its label) dropped as a duplicate. The pool given is left as it is; the copies'
    sources are its texts (copy_sources)."""
    found = augment(pool.texts, copies, p_mask, p_swap, p_ngram, mask_token, augment_seed(p_mask, p_swap, p_ngram))
    held = {normalize(t).lower() for t in held_out}
    taken = {normalize(t).lower() for t in labelled}
    keys = [normalize(t).lower() for t in found.texts]
    kept = [j for j, k in enumerate(keys) if k not in held and k not in taken]
    return replace(pool, texts=pool.texts + [found.texts[j] for j in kept], augmented=len(kept),
                   augment_held_out_dropped=sum(k in held for k in keys),
                   copy_sources=[found.sources[j] for j in kept])
