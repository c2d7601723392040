"""Train and load tokenizers with the Hugging Face `tokenizers` library.

Special tokens and their ids live here only: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4. A tokenizer
imported from BART (or RoBERTa) keeps its own names and ids for the same five roles:
[CLS]=<s> [SEP]=</s> [PAD]=<pad> [MASK]=<mask> [UNK]=<unk> (`special_ids` finds either set).
Every kind (WordPiece, byte-level BPE, Unigram) splits CJK ideographs and kana into single
characters before the model sees them, as BERT's pre-tokenizer does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import PretrainlabError
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BART_SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<mask>")
"""BART's names for the same roles, in the same order (its <s> starts a text as our [CLS], </s> ends it)."""
KINDS = ("wordpiece", "bpe", "unigram")

# CJK ideographs, kana, hangul syllables and CJK punctuation: one pre-token per character.
_CJK = Regex(
    "[\u3000-\u303f\u3040-\u309f\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
    "\uf900-\ufaff\uff00-\uffef\U00020000-\U0002a6df]"
)


class TokenizerError(PretrainlabError, ValueError):
    """A tokenizer that cannot be used as asked; the message says what to do."""


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    unk: int
    cls: int
    sep: int
    mask: int
    names: tuple[str, ...] = SPECIAL_TOKENS
    """The tokens' names in the tokenizer, in the order pad, unk, cls, sep, mask (ours or BART's)."""

    @property
    def all(self) -> tuple[int, ...]:
        return (self.pad, self.unk, self.cls, self.sep, self.mask)

    def name(self, role: str) -> str:
        """The token's name for a role (pad, unk, cls, sep or mask): '[CLS]', or '<s>' in a BART tokenizer."""
        return self.names[("pad", "unk", "cls", "sep", "mask").index(role)]


def special_ids(tok: Tokenizer, where: str = "tokenizer") -> SpecialIds:
    """Ids of the special tokens, by our names or (a tokenizer without [CLS] but with <s>) BART's;
    a clear error naming the token the tokenizer lacks."""
    names = BART_SPECIAL_TOKENS if tok.token_to_id("[CLS]") is None and tok.token_to_id("<s>") is not None \
        else SPECIAL_TOKENS
    ids = {}
    for role, name, ours in zip(("pad", "unk", "cls", "sep", "mask"), names, SPECIAL_TOKENS):
        i = tok.token_to_id(name)
        if i is None:
            also = f" (pretrainlab's {ours}: BART's tokens map onto ours one to one)" if names != SPECIAL_TOKENS else ""
            raise TokenizerError(
                f"{where}: special token {name}{also} is missing (it has {tok.get_vocab_size()} tokens); "
                f"pretrainlab needs {' '.join(SPECIAL_TOKENS)} (or BART's {' '.join(BART_SPECIAL_TOKENS)}): "
                "retrain it with `pretrainlab tokenizer train`, or add the token to the tokenizer"
            )
        ids[role] = i
    return SpecialIds(**ids, names=names)


def build_tokenizer(kind: str = "wordpiece", lowercase: bool = True) -> tuple[Tokenizer, trainers.Trainer]:
    """An untrained tokenizer and the trainer that fits it (vocab size is set by `train`)."""
    norm = [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " ")]
    if lowercase:
        norm.append(normalizers.Lowercase())
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
        tok.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=lowercase)]
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(special_tokens=list(SPECIAL_TOKENS))
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.normalizer = normalizers.Sequence(norm)
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(_CJK, behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        )
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            special_tokens=list(SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    elif kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Sequence(norm)
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(_CJK, behavior="isolated"), pre_tokenizers.Metaspace(prepend_scheme="first")]
        )
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(special_tokens=list(SPECIAL_TOKENS), unk_token="[UNK]")
    else:
        raise TokenizerError(f"unknown tokenizer kind {kind!r}; choose wordpiece, bpe or unigram")
    return tok, trainer


def train_tokenizer(
    texts: Iterable[str] | Callable[[], Iterable[str]], kind: str = "wordpiece", vocab_size: int = 8192,
    lowercase: bool = True,
) -> Tokenizer:
    """Fit a tokenizer on texts; adds the [CLS] A [SEP] (B [SEP]) template. The same texts give the same tokenizer.

    texts: the texts (NFC, as `prepare` gives them), or a function that yields them afresh each call: WordPiece
    reads them twice (see `_word_pieces`), and a one-shot iterator is held in memory for that.
    """
    if not callable(texts):
        kept = texts if kind != "wordpiece" or isinstance(texts, (list, tuple)) else list(texts)
        texts = lambda: kept  # noqa: E731
    tok, trainer = build_tokenizer(kind, lowercase)
    trainer.vocab_size = vocab_size
    trainer.show_progress = False
    pieces = _word_pieces(tok, texts()) if kind == "wordpiece" else []
    if kind != "unigram":
        trainer.min_frequency = 2
        trainer.special_tokens = list(SPECIAL_TOKENS) + pieces
    chars: set[str] = set()  # unigram must hold every character: counted for the error below
    stream = _nonempty(texts()) if kind != "unigram" else (chars.update(t) or t for t in _nonempty(texts()))
    try:
        tok.train_from_iterator(stream, trainer=trainer)
    except Exception as e:
        if "not large enough to contain all chars" not in str(e):
            raise
        # what the trainer counts: normalised characters, the space as Metaspace's "▁"
        n = len(set(tok.normalizer.normalize_str("".join(sorted(chars)))) - {" "}) + 1
        raise TokenizerError(f"a unigram vocabulary must hold every character of the text: it has {n:,} distinct "
                             f"characters, more than vocab_size={vocab_size:,}; raise data.vocab_size to at least "
                             f"{n:,} (a few times that to learn words), or use tokenizer_kind=bpe or wordpiece") from None
    if tok.get_vocab_size() <= len(SPECIAL_TOKENS) + len(pieces):
        raise TokenizerError("the tokenizer learned no vocabulary: the training text is empty")
    set_template(tok)
    # the pieces were registered as special tokens only to fix their ids: plain vocabulary from here on.
    # Unigram scores change in their last digit on the first save/load; round-tripping the JSON once makes
    # the tokenizer returned here have the same tokenizer_hash as the file it is saved to.
    spec = json.loads(tok.to_str())
    spec["added_tokens"] = [a for a in spec["added_tokens"] if a["content"] not in set(pieces)]
    return Tokenizer.from_str(json.dumps(spec))


def _word_pieces(tok: Tokenizer, texts: Iterable[str]) -> list[str]:
    """WordPiece's single-character continuations ("##c") for every character that may continue a word of
    `texts`, in code point order.

    The trainer (tokenizers 0.23) numbers these pieces as it meets them while iterating a hash map of the words,
    an order that changes with every map; merges of equal count are chosen by those numbers, so the same corpus
    gave another vocabulary each time (huggingface/tokenizers#1794). Registered before training (as special
    tokens, plain vocabulary afterwards), they get fixed numbers and training is deterministic. A character
    that could continue a word but never does adds one piece the trainer would not have made (and that a
    later text may use instead of [UNK]).
    """
    chars: set[str] = set()
    for t in texts:
        chars.update(t)
    norm, pre = tok.normalizer, tok.pre_tokenizer
    normal = {n for c in chars for n in norm.normalize_str(c)}  # per character: the texts are NFC already
    return [f"##{c}" for c in sorted(normal)
            if not c.isspace() and len(pre.pre_tokenize_str(norm.normalize_str(f"a{c}"))) == 1]


def set_template(tok: Tokenizer, prompt: bool = False) -> Tokenizer:
    """Set (in place) what `encode` adds around a text: `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` (the
    training template: a text as pre-training packs it), or with prompt=True a decoder's prompt,
    `[CLS] A` / `[CLS] A [SEP] B`: the start token and no end token, so a causal LM continues the text."""
    ids = special_ids(tok)
    cls, sep = ids.name("cls"), ids.name("sep")  # [CLS] [SEP], or BART's <s> </s>
    specials = [(cls, ids.cls), (sep, ids.sep)]
    if prompt:
        tok.post_processor = processors.TemplateProcessing(single=f"{cls} $A", pair=f"{cls} $A {sep} $B:1",
                                                           special_tokens=specials)
    else:
        tok.post_processor = processors.TemplateProcessing(single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
                                                           special_tokens=specials)
    return tok


def prompt_tokenizer(tok: Tokenizer) -> Tokenizer:
    """A copy of tok that encodes a decoder's prompt: `[CLS] A`, the start token and no end token."""
    return set_template(Tokenizer.from_str(tok.to_str()), prompt=True)


def _nonempty(texts: Iterable[str]) -> Iterator[str]:
    for t in texts:
        if t and not t.isspace():
            yield t


def save_tokenizer(tok: Tokenizer, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".json":
        if path.exists() and not path.is_dir():
            raise TokenizerError(f"{path} is a file; give a directory or a path ending in .json")
        path = path / "tokenizer.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tok.save(str(tmp))
    tmp.replace(path)
    return path


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load tokenizer.json (or a directory holding one) and check its special tokens."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise TokenizerError(f"no tokenizer at {path}; train one with `pretrainlab tokenizer train`")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust error names the JSON problem
        raise TokenizerError(f"{path}: not a valid tokenizer.json ({e})") from None
    special_ids(tok, where=str(path))
    return tok


def tokenizer_hash(tok: Tokenizer) -> str:
    """Stable hash of the tokenizer's full definition (vocabulary, normaliser, template)."""
    canon = json.dumps(json.loads(tok.to_str()), sort_keys=True)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def sentinel_token(i: int) -> str:
    """T5's name for the i-th span-corruption sentinel."""
    return f"<extra_id_{i}>"


def with_sentinels(tok: Tokenizer, n: int) -> Tokenizer:
    """A copy of tok with n sentinel tokens <extra_id_0> ... <extra_id_{n-1}> added as special tokens at the
    end of the vocabulary, counting down as T5's do: <extra_id_0> is the last id (vocab + n - 1)."""
    from tokenizers import AddedToken

    out = Tokenizer.from_str(tok.to_str())
    V = out.get_vocab_size()
    out.add_special_tokens([AddedToken(sentinel_token(i), special=True, normalized=False) for i in reversed(range(n))])
    ids = [out.token_to_id(sentinel_token(i)) for i in range(n)]
    if ids != [V + n - 1 - i for i in range(n)]:
        raise TokenizerError(f"the tokenizer already has some of the tokens <extra_id_0> ... <extra_id_{n - 1}>; "
                             "span corruption adds them itself: use a tokenizer without them")
    return out


def hf_tokenizer(tok: Tokenizer, model_max_length: int = 512):
    """The same tokenizer as a `transformers.PreTrainedTokenizerFast` (for export and checks)."""
    from transformers import PreTrainedTokenizerFast

    pad, unk, cls, sep, mask = special_ids(tok).names  # ours, or an imported BART tokenizer's own
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=unk,
        pad_token=pad,
        cls_token=cls,
        sep_token=sep,
        mask_token=mask,
        model_max_length=model_max_length,
    )


def word_start_table(tok: Tokenizer, texts: list[str]):
    """(vocab,) bool: does this token begin a word? Read from offsets, for any tokenizer kind.

    The tokenizer's own pre-tokenizer decides what a word is (its `word_ids`, derived from
    offsets); each token is counted where it starts a word and where it continues one, and the
    majority wins. Tokens never seen count as word starts (they are then masked alone).
    This needs no knowledge of '##', 'Ġ' or '▁' conventions.
    """
    import numpy as np
    import torch

    V = tok.get_vocab_size()
    starts, conts = np.zeros(V, dtype=np.int64), np.zeros(V, dtype=np.int64)
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        ids = np.asarray(enc.ids, dtype=np.int64)
        if len(ids) == 0:
            continue
        words = np.asarray([-1 if w is None else w for w in enc.word_ids], dtype=np.int64)
        begins = np.ones(len(ids), dtype=bool)
        begins[1:] = words[1:] != words[:-1]
        np.add.at(starts, ids[begins], 1)
        np.add.at(conts, ids[~begins], 1)
    return torch.from_numpy(starts >= conts)
