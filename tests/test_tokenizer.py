"""Tokenizer: CJK split into characters, special ids, a stable hash, and parity with transformers."""

import random

import pytest

from pretrainlab.config import DataConfig
from pretrainlab.data.prepare import train_tokenizer_on_files
from pretrainlab.tokenizer import SPECIAL_TOKENS, load_tokenizer, save_tokenizer, special_ids, tokenizer_hash, train_tokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps.",
    "A fox is quick; a dog is lazy. Foxes and dogs are animals.",
    "東京は日本の首都です。ひらがなとカタカナ。",
    "Quick thinking helps the brown dog find the fox again.",
] * 5
KINDS = ("wordpiece", "bpe", "unigram")


@pytest.fixture(scope="module")
def tokenizers():
    # 400 > the 256 bytes of byte-level BPE: room for merges, which "東京" (20 times here) would get
    return {kind: train_tokenizer(TEXTS, kind, vocab_size=400) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_cjk_splits_into_characters(tokenizers, kind):
    tok = tokenizers[kind]
    assert len(tok.encode("the quick brown fox", add_special_tokens=False).ids) < 16  # it did learn merges
    text = "東京は日本の首都"
    enc = tok.encode(text, add_special_tokens=False)
    spans = [(s, e) for s, e in enc.offsets if e > s]
    assert all(e - s == 1 for s, e in spans), enc.tokens  # no token covers two characters
    assert sorted({s for s, _ in spans}) == list(range(len(text)))


@pytest.mark.parametrize("kind", KINDS)
def test_special_ids_and_template(tokenizers, kind):
    tok = tokenizers[kind]
    ids = special_ids(tok)
    assert ids.all == (0, 1, 2, 3, 4)
    enc = tok.encode("the dog", "the fox")
    assert enc.ids[0] == ids.cls and enc.ids.count(ids.sep) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_hash_survives_save_and_load(tmp_path, tokenizers, kind):
    tok = tokenizers[kind]
    loaded = load_tokenizer(save_tokenizer(tok, tmp_path / "tok"))
    assert tokenizer_hash(loaded) == tokenizer_hash(tok)
    assert loaded.encode(TEXTS[0]).ids == tok.encode(TEXTS[0]).ids


@pytest.mark.parametrize("kind", KINDS)
def test_loads_in_transformers_with_the_same_ids(tmp_path, tokenizers, kind):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from pretrainlab.tokenizer import hf_tokenizer

    tok = tokenizers[kind]
    path = save_tokenizer(tok, tmp_path / "tokenizer.json")
    fast = PreTrainedTokenizerFast(tokenizer_file=str(path))
    hf_tokenizer(tok).save_pretrained(tmp_path / "hf")
    auto = AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in ("The lazy fox, again.", "東京は首都", TEXTS[1]):
        ours = tok.encode(text).ids
        assert fast(text)["input_ids"] == ours
        assert auto(text)["input_ids"] == ours
    assert auto.mask_token_id == 4 and auto.pad_token_id == 0 and auto.cls_token_id == 2


def test_train_on_files_writes_a_loadable_tokenizer(tmp_path):
    (tmp_path / "a.txt").write_text("\n\n".join(TEXTS), encoding="utf-8")
    path = train_tokenizer_on_files([tmp_path / "a.txt"], tmp_path / "out", DataConfig(vocab_size=100, min_chars=1))
    assert path == tmp_path / "out" / "tokenizer.json"
    tok = load_tokenizer(path)
    assert [tok.id_to_token(i) for i in range(5)] == list(SPECIAL_TOKENS)


def test_a_unigram_vocabulary_smaller_than_the_character_set_is_a_clear_error():
    """Finding 4: say how many distinct characters there are and the smallest vocab size that works."""
    import string

    from pretrainlab.tokenizer import TokenizerError

    texts = ["The quick brown fox jumps over the lazy dog. 今天天气很好 " + string.ascii_letters + "0123456789 é"] * 50
    with pytest.raises(TokenizerError, match=r"it has 44 distinct characters, more than vocab_size=40; "
                                             r"raise data.vocab_size to at least 44"):
        train_tokenizer(texts, "unigram", 40)
    assert train_tokenizer(texts, "unigram", 44).get_vocab_size() >= 44  # the size it names works


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_the_same_texts_give_the_same_tokenizer(kind):
    """WordPiece numbered its "##x" pieces in the order it met them in a hash map of the words, and merges of
    equal count went by those numbers: these texts gave another vocabulary nearly every time
    (huggingface/tokenizers#1794), so tests/conftest.py's corpus, and every `prepare`, differed from session to
    session. The pieces are now registered first, in code point order, and stay plain vocabulary."""
    rng = random.Random(0)
    words = "the cat dog sat on a mat and ran to house with big small red tree river people nation law".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + "." for _ in range(200)]
    first = train_tokenizer(texts, kind, vocab_size=120)
    for again in (texts, iter(texts), lambda: texts):  # a list, a one-shot iterator, a function that reads afresh
        assert train_tokenizer(again, kind, vocab_size=120).to_str() == first.to_str()
    assert sorted(t.content for t in first.get_added_tokens_decoder().values()) == sorted(SPECIAL_TOKENS)
    if kind == "wordpiece":
        assert first.encode("dogs", add_special_tokens=False).tokens[-1] == "##s"  # a piece, in the vocabulary
        assert first.encode("the ##s", add_special_tokens=False).tokens[-1] != "##s"  # and no special token
