"""Encoder-decoder objectives: infill (BART), permute (BART), span (T5): exact collators, overfit."""

import math

import numpy as np
import pytest
import torch

from pretrainlab.backbones.seq2seq import Seq2SeqTransformer
from pretrainlab.config import ConfigError
from pretrainlab.errors import CorpusError
from pretrainlab.heads import Seq2SeqLMHead
from pretrainlab.models import PretrainModel
from pretrainlab.objectives.denoise import IGNORE, pad_pairs
from pretrainlab.objectives.infill import Infill, apply_spans, infill_spans
from pretrainlab.objectives.permute import Permute, document_sentences, one_sentence_documents, permute_sentences
from pretrainlab.objectives.span import SpanCorruption, corrupt_spans, span_counts, span_noise_mask

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4  # pretrainlab's special ids: [CLS] = BART's <s>, [SEP] = </s>
SENTINELS = [127, 126, 125, 124]  # T5's <extra_id_0>, <extra_id_1>, ... count down from the top
IDS = dict(bos_id=CLS, eos_id=SEP, pad_id=PAD, decoder_start_id=SEP)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# --------------------------------------------------------------------------- shared batch


def test_pad_pairs_shifts_the_labels_behind_the_start_token():
    b = pad_pairs([np.array([CLS, 7, SEP]), np.array([CLS, 8, 9, SEP])], [np.array([CLS, 5, 6, SEP]), np.array([CLS, SEP])],
                  pad_id=PAD, decoder_start_id=SEP)
    assert b["input_ids"].tolist() == [[CLS, 7, SEP, PAD], [CLS, 8, 9, SEP]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert b["labels"].tolist() == [[CLS, 5, 6, SEP], [CLS, SEP, IGNORE, IGNORE]]
    assert b["decoder_input_ids"].tolist() == [[SEP, CLS, 5, 6], [SEP, CLS, SEP, PAD]]


# --------------------------------------------------------------------------- infill


def test_apply_spans_by_hand():
    tokens = np.arange(10, 20)
    # tokens 10 11 masked; a mask inserted before 15; tokens 17 18 19 masked
    out = apply_spans(tokens, [(0, 2), (5, 0), (7, 3)], MASK)
    assert out.tolist() == [MASK, 12, 13, 14, MASK, 15, 16, MASK]


@pytest.mark.parametrize("n", [1, 2, 7, 16, 40, 200])
def test_infill_spans_hide_30_percent_in_separate_spans(n):
    for seed in range(20):
        spans = infill_spans(n, np.random.default_rng(seed))
        assert sum(length for _, length in spans) == math.ceil(0.3 * n)
        ends = [s + length for s, length in spans]
        assert all(e < s for e, (s, _) in zip(ends, spans[1:]))  # a kept token between any two spans
        assert all(0 <= s and s + length <= n for s, length in spans)
        out = apply_spans(np.arange(100, 100 + n), spans, MASK)
        assert (out == MASK).sum() == len(spans)  # one mask per span, zero-length ones included
        kept = np.ones(n, dtype=bool)
        for s, length in spans:
            kept[s : s + length] = False
        assert out[out != MASK].tolist() == (np.arange(100, 100 + n)[kept]).tolist()


def test_infill_span_lengths_are_poisson_3_with_insertions():
    lengths = [length for seed in range(300) for _, length in infill_spans(200, np.random.default_rng(seed))]
    assert abs(np.mean(lengths) - 3.0) < 0.15
    assert 0.02 < np.mean(np.array(lengths) == 0) < 0.08  # Poisson(3) gives 0 with probability e^-3 = 0.05


def test_infill_collator_exactly():
    docs = [np.arange(10, 20), np.arange(30, 36)]
    batch = Infill(mask_id=MASK, **IDS).collate(docs, np.random.default_rng(7))
    rng = np.random.default_rng(7)  # the same draws, by hand
    sources = [[CLS, *apply_spans(d, infill_spans(len(d), rng), MASK).tolist(), SEP] for d in docs]
    S = max(map(len, sources))
    assert batch["input_ids"].tolist() == [s + [PAD] * (S - len(s)) for s in sources]
    assert batch["labels"].tolist() == [[CLS, *range(10, 20), SEP], [CLS, *range(30, 36), SEP] + [IGNORE] * 4]
    assert batch["decoder_input_ids"][:, :3].tolist() == [[SEP, CLS, 10], [SEP, CLS, 30]]
    assert batch["attention_mask"].sum(1).tolist() == [len(s) for s in sources]


# --------------------------------------------------------------------------- permute


def test_permutation_by_hand_and_restored():
    tokens = np.array([11, 12, 13, 21, 22, 31, 32, 33, 34])  # three sentences: 1x, 2x, 3x
    offsets = np.array([0, 3, 5, 9])
    out, order = permute_sentences(tokens, offsets, np.random.default_rng(1))
    sentences = [tokens[offsets[j] : offsets[j + 1]].tolist() for j in range(3)]
    assert out.tolist() == sum((sentences[j] for j in order), [])
    lengths = np.diff(offsets)[order]
    pieces = np.split(out, np.cumsum(lengths)[:-1])
    restored = [None] * 3
    for place, j in enumerate(order):
        restored[j] = pieces[place].tolist()
    assert sum(restored, []) == tokens.tolist()


def test_permutations_are_uniform():
    tokens, offsets = np.arange(6), np.array([0, 2, 4, 6])
    seen = {}
    for seed in range(600):
        _, order = permute_sentences(tokens, offsets, np.random.default_rng(seed))
        seen[tuple(order)] = seen.get(tuple(order), 0) + 1
    assert len(seen) == 6 and min(seen.values()) > 60


def test_sentences_of_a_document_from_the_corpus_arrays():
    doc_offsets = np.array([0, 5, 7, 15])
    sent_offsets = np.array([0, 2, 5, 7, 9, 12, 15])  # doc 0: 2 sentences, doc 1: 1, doc 2: 3
    assert document_sentences(doc_offsets, sent_offsets, 0).tolist() == [0, 2, 5]
    assert document_sentences(doc_offsets, sent_offsets, 1).tolist() == [0, 2]
    assert document_sentences(doc_offsets, sent_offsets, 2).tolist() == [0, 2, 5, 8]
    assert one_sentence_documents(doc_offsets, sent_offsets) == 1


def test_permute_collator_targets_the_original_order():
    docs = [np.array([11, 12, 13, 21, 22, 31, 32]), np.array([41, 42, 43])]
    offsets = [np.array([0, 3, 5, 7]), np.array([0, 3])]  # the second has one sentence: copied
    batch = Permute(**IDS).collate(docs, offsets, np.random.default_rng(2))
    rng = np.random.default_rng(2)
    first, _ = permute_sentences(docs[0], offsets[0], rng)
    assert batch["input_ids"].tolist() == [[CLS, *first.tolist(), SEP], [CLS, 41, 42, 43, SEP, PAD, PAD, PAD, PAD]]
    assert batch["labels"].tolist() == [[CLS, 11, 12, 13, 21, 22, 31, 32, SEP], [CLS, 41, 42, 43, SEP] + [IGNORE] * 4]


def test_permute_then_infill():
    docs = [np.arange(10, 30)]
    offsets = [np.array([0, 5, 12, 20])]
    infill = Infill(mask_id=MASK, **IDS)
    batch = Permute(**IDS, infill=infill).collate(docs, offsets, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    shuffled, _ = permute_sentences(docs[0], offsets[0], rng)
    expected = apply_spans(shuffled, infill_spans(20, rng), MASK)
    assert batch["input_ids"][0].tolist() == [CLS, *expected.tolist(), SEP]
    assert batch["labels"][0].tolist() == [CLS, *range(10, 30), SEP]


def test_permute_refuses_a_batch_of_one_sentence_documents():
    docs = [np.arange(5, 9), np.arange(5, 12)]
    with pytest.raises(CorpusError, match="batch of 2 documents that all have one sentence"):
        Permute(**IDS).collate(docs, [np.array([0, 4]), np.array([0, 7])], np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"must rise from 0 to the document's length 4"):
        permute_sentences(docs[0], np.array([0, 3]), np.random.default_rng(0))


# --------------------------------------------------------------------------- span


def test_corrupt_spans_by_hand():
    tokens = np.arange(10, 18)
    noise = np.zeros(8, dtype=bool)
    noise[[2, 3, 6]] = True  # spans "12 13" and "16"
    source, target = corrupt_spans(tokens, noise, SENTINELS)
    assert source.tolist() == [10, 11, 127, 14, 15, 126, 17]
    assert target.tolist() == [127, 12, 13, 126, 16]


@pytest.mark.parametrize("n", [2, 5, 20, 64, 100])
def test_span_noise_mask_counts_as_t5(n):
    for seed in range(10):
        noise = span_noise_mask(n, np.random.default_rng(seed))
        n_noise, n_spans = span_counts(n)
        assert noise.sum() == n_noise == min(max(round(n * 0.15), 1), n - 1)
        starts = noise & ~np.concatenate(([False], noise[:-1]))
        assert starts.sum() == n_spans == max(round(n_noise / 3), 1)
        assert not noise[0] and noise[-1]  # T5: kept tokens first, a noise span last
    assert span_counts(100) == (15, 5)


def test_span_collator_exactly():
    rows = [np.arange(10, 30), np.arange(40, 47)]
    batch = SpanCorruption(sentinels=SENTINELS, eos_id=SEP, pad_id=PAD, decoder_start_id=SEP).collate(
        rows, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    expected = [corrupt_spans(r, span_noise_mask(len(r), rng), SENTINELS) for r in rows]
    src0, tgt0 = expected[0]
    assert batch["input_ids"][0].tolist() == [*src0.tolist(), SEP]
    assert batch["labels"][0].tolist() == [*tgt0.tolist(), SEP]
    # rebuild the rows from source + target: every token is either kept or inside its sentinel's span
    for (src, tgt), row in zip(expected, rows):
        spans = np.split(tgt, np.flatnonzero(np.isin(tgt, SENTINELS))[1:])
        rebuilt = sum(([*spans[SENTINELS.index(t)][1:].tolist()] if t in SENTINELS else [t] for t in src.tolist()), [])
        assert rebuilt == row.tolist()


def test_span_refuses_more_spans_than_sentinels():
    span = SpanCorruption(sentinels=SENTINELS[:2], eos_id=SEP, pad_id=PAD, decoder_start_id=SEP)
    assert span.max_spans(100) == 5
    with pytest.raises(ConfigError, match="row 1 has 100 tokens, .* need 5 noise spans, but only 2 sentinel tokens"):
        span.collate([np.arange(5, 15), np.arange(5, 105)], np.random.default_rng(0))
    noise = np.array([0, 1, 0, 1, 0, 1], dtype=bool)
    with pytest.raises(ConfigError, match="needs 3 noise spans but only 2 sentinel tokens"):
        corrupt_spans(np.arange(6), noise, SENTINELS[:2])


# --------------------------------------------------------------------------- overfit one batch


def overfit(objective, batch: dict, steps: int = 80) -> tuple[float, float]:
    """Train a fresh tiny model on one batch with the objective's own loss -> (last loss, accuracy)."""
    torch.manual_seed(0)
    backbone = Seq2SeqTransformer(vocab_size=128, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=32, dropout=0.0)
    model = PretrainModel(backbone, {objective.name: objective}, {objective.name: 1.0},
                          Seq2SeqLMHead(backbone.get_input_embeddings()))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss, metrics = objective.loss(model, None, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach()), float(metrics[f"{objective.name}_acc"])


@pytest.mark.parametrize("name", ["infill", "permute", "permute+infill", "span"])
def test_tiny_model_overfits_one_batch(name):
    rng = np.random.default_rng(0)
    docs = [rng.integers(5, 120, size=n) for n in (12, 10, 14, 9)]
    offsets = [np.array([0, 4, 8, 12]), np.array([0, 5, 10]), np.array([0, 3, 9, 14]), np.array([0, 4, 9])]
    infill = Infill(mask_id=MASK, **IDS)
    if name == "infill":
        objective, batch = infill, infill.collate(docs, rng)
    elif name in ("permute", "permute+infill"):
        objective = Permute(**IDS, infill=infill if name == "permute+infill" else None)
        batch = objective.collate(docs, offsets, rng)
    else:
        objective = SpanCorruption(sentinels=SENTINELS, eos_id=SEP, pad_id=PAD, decoder_start_id=SEP)
        batch = objective.collate(docs, rng)
    loss, acc = overfit(objective, batch)
    assert acc == 1.0 and loss < 0.05, (loss, acc)
