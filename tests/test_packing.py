import numpy as np
import pytest
import torch

from pretrainlab.data.packing import PackedLoader, build_row, plan_rows
from pretrainlab.tokenizer import SpecialIds

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)


class ArraySplit:
    """A corpus split held in memory, with the reader API of data.corpus."""

    def __init__(self, docs):
        self.tokens = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs])
        self.doc_offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
        self.n_tokens = len(self.tokens)

    def read(self, start, stop):
        return self.tokens[start:stop]


def docs_of(n, rng):
    return [list(rng.integers(10, 100, size=int(rng.integers(1, 40)))) for _ in range(n)]


def test_plan_covers_every_token_once_and_rows_fit():
    rng = np.random.default_rng(0)
    split = ArraySplit(docs_of(50, rng))
    plan = plan_rows(split.doc_offsets, seq_len=16, seed=0, epoch=0)
    covered = np.zeros(split.n_tokens, dtype=int)
    for s, n in zip(plan.chunk_starts, plan.chunk_lens):
        covered[s : s + n] += 1
    assert (covered == 1).all()
    for r in range(plan.n_rows):
        lo, hi = plan.row_offsets[r], plan.row_offsets[r + 1]
        assert (plan.chunk_lens[lo:hi] + 2).sum() <= 16
    # chunks never cross a document boundary
    doc_of = np.searchsorted(split.doc_offsets, plan.chunk_starts, side="right")
    doc_end = np.searchsorted(split.doc_offsets, plan.chunk_starts + plan.chunk_lens - 1, side="right")
    assert (doc_of == doc_end).all()


def test_row_layout_cls_sep_and_document_ids():
    split = ArraySplit([[10, 11, 12], [20, 21]])
    plan = plan_rows(split.doc_offsets, seq_len=12, seed=0, epoch=0, shuffle=False)
    ids, mask = build_row(split.read, *plan.row(0), 12, SPECIAL.cls, SPECIAL.sep, SPECIAL.pad)
    assert ids.tolist() == [2, 10, 11, 12, 3, 2, 20, 21, 3, 0, 0, 0]
    assert mask.tolist() == [1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0]


def test_plan_depends_on_seed_and_epoch_only():
    split = ArraySplit(docs_of(30, np.random.default_rng(1)))
    a = plan_rows(split.doc_offsets, 16, seed=3, epoch=1)
    b = plan_rows(split.doc_offsets, 16, seed=3, epoch=1)
    c = plan_rows(split.doc_offsets, 16, seed=3, epoch=2)
    assert np.array_equal(a.chunk_starts, b.chunk_starts)
    assert not np.array_equal(a.chunk_starts, c.chunk_starts)


def test_loader_resumes_exactly_and_under_another_world_size():
    split = ArraySplit(docs_of(20, np.random.default_rng(2)))
    full = PackedLoader(split, 16, 4, SPECIAL, seed=5)
    batches = [full.next_batch() for _ in range(12)]  # crosses an epoch boundary
    assert full.epoch >= 1
    part = PackedLoader(split, 16, 4, SPECIAL, seed=5)
    for _ in range(5):
        part.next_batch()
    state = part.state_dict()
    resumed = PackedLoader(split, 16, 4, SPECIAL, seed=5)
    resumed.load_state_dict(state)
    for want in batches[5:]:
        got = resumed.next_batch()
        assert torch.equal(got["input_ids"], want["input_ids"]) and torch.equal(got["mask"], want["mask"])
    # two ranks split the rows between them, disjointly
    r0 = PackedLoader(split, 16, 2, SPECIAL, seed=5, rank=0, world=2).next_batch()["input_ids"]
    r1 = PackedLoader(split, 16, 2, SPECIAL, seed=5, rank=1, world=2).next_batch()["input_ids"]
    one = PackedLoader(split, 16, 4, SPECIAL, seed=5).next_batch()["input_ids"]
    assert torch.equal(torch.stack([r0[0], r1[0], r0[1], r1[1]]), one)


def test_too_small_corpus_is_a_clear_error():
    from pretrainlab.errors import CorpusError

    split = ArraySplit([[10, 11]])
    with pytest.raises(CorpusError, match="fewer than 2 processes"):
        PackedLoader(split, 16, 4, SPECIAL, world=2)


@pytest.mark.parametrize("window,block", [(7, 7), (64, 8), (64, 3), (10_000, 4096)])
def test_windowed_epoch_plan_covers_every_token_once(window, block):
    from pretrainlab.data.packing import EpochPlan

    docs = docs_of(80, np.random.default_rng(2))
    docs[5:5] = [[], [11] * 200, []]  # empty documents, and one long enough to span several blocks
    split = ArraySplit(docs)
    plan = EpochPlan(split.doc_offsets, 16, seed=1, epoch=0, window=window, block=block)
    covered = np.zeros(split.n_tokens, dtype=int)
    for r in range(plan.n_rows):
        starts, lens = plan.row(r)
        assert len(starts) >= 1 and (lens + 2).sum() <= 16
        for s, n in zip(starts, lens):
            covered[s : s + n] += 1
    assert (covered == 1).all()
    again = EpochPlan(split.doc_offsets, 16, seed=1, epoch=0, window=window, block=block)
    rows = [plan.row(r)[0].tolist() for r in range(plan.n_rows)]
    assert rows == [again.row(r)[0].tolist() for r in reversed(range(again.n_rows))][::-1]  # any access order
    other = EpochPlan(split.doc_offsets, 16, seed=1, epoch=1, window=window, block=block)
    assert rows != [other.row(r)[0].tolist() for r in range(other.n_rows)]


def test_one_window_epoch_plan_is_the_whole_split_plan():
    from pretrainlab.data.packing import EpochPlan

    split = ArraySplit(docs_of(30, np.random.default_rng(3)))
    whole = plan_rows(split.doc_offsets, 16, seed=5, epoch=2)
    epoch = EpochPlan(split.doc_offsets, 16, seed=5, epoch=2)
    assert epoch.n_rows == whole.n_rows
    for r in range(whole.n_rows):
        assert [a.tolist() for a in epoch.row(r)] == [a.tolist() for a in whole.row(r)]


def test_windowed_plan_scatters_neighbouring_chunks():
    """With many windows, one window's chunks come from all over the corpus, not one stretch of it."""
    from pretrainlab.data.packing import EpochPlan

    split = ArraySplit([[7] * 14] * 2000)  # 2,000 one-chunk documents in corpus order
    plan = EpochPlan(split.doc_offsets, 16, seed=0, epoch=0, window=100, block=10)
    first_window = np.concatenate([plan.row(r)[0] for r in range(int(plan.rows_before[1]))])
    docs = np.sort(first_window // 14)
    assert len(docs) == 100 and docs.max() - docs.min() > 1000
    blocks = np.unique(docs // 10)  # ten blocks of ten neighbouring documents, each from its own stretch
    assert len(blocks) == 10 and (np.diff(blocks) > 1).sum() >= 8
