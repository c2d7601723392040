"""NSP / SOP pairs, PLM two-stream attention, RTD, and the objective factory (tiny and exact)."""

import numpy as np
import pytest
import torch

from pretrainlab.data.pairs import PairLoader, plan_pairs, truncate_pair
from pretrainlab.tokenizer import SpecialIds

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
V = 128


class ArraySplit:
    """A corpus split held in memory, with the reader API of data.corpus (sentences included)."""

    def __init__(self, docs):
        """docs: list of documents, each a list of sentences, each a list of token ids."""
        sents = [s for d in docs for s in d]
        self.tokens = np.concatenate([np.asarray(s, dtype=np.int64) for s in sents])
        self.sent_offsets = np.concatenate([[0], np.cumsum([len(s) for s in sents])]).astype(np.int64)
        n_sents = np.cumsum([0] + [len(d) for d in docs])
        self.doc_offsets = self.sent_offsets[n_sents]
        self.n_tokens, self.n_docs = len(self.tokens), len(docs)

    def read(self, start, stop):
        return self.tokens[start:stop]


def make_docs(n_docs, rng, base=0, max_sents=8, max_len=6):
    """Documents whose tokens are all distinct, so that every token names its position."""
    docs, nxt = [], base
    for _ in range(n_docs):
        doc = []
        for _ in range(int(rng.integers(1, max_sents + 1))):
            n = int(rng.integers(1, max_len + 1))
            doc.append(list(range(nxt, nxt + n)))
            nxt += n
        docs.append(doc)
    return docs


def doc_of(split):
    """The document of every token position of a split."""
    return np.searchsorted(split.doc_offsets, np.arange(split.n_tokens), side="right") - 1


def pieces(batch, r):
    """(A, B) of row r of a pair batch as token positions (make_docs ids from 5 are position + 5),
    checking the [CLS] A [SEP] B [SEP] layout, the mask and the segment ids."""
    ids, seg, mask = batch["input_ids"][r], batch["segment_ids"][r], batch["mask"][r]
    n = int(mask.sum())
    assert mask[:n].eq(1).all() and mask[n:].eq(0).all() and ids[n:].eq(SPECIAL.pad).all()
    seps = (ids[:n] == SPECIAL.sep).nonzero().squeeze(1).tolist()
    assert ids[0] == SPECIAL.cls and len(seps) == 2 and seps[1] == n - 1
    a, b = ids[1 : seps[0]].numpy() - 5, ids[seps[0] + 1 : n - 1].numpy() - 5
    assert seg[: seps[0] + 1].eq(0).all() and seg[seps[0] + 1 : n].eq(1).all() and seg[n:].eq(0).all()
    return a, b


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    train = ArraySplit(make_docs(60, rng, base=5))  # ids from 5: above the special tokens
    val = ArraySplit(make_docs(6, rng, base=5 + train.n_tokens))
    return train, val


@pytest.fixture(scope="module")
def small_vocab(corpus):
    """The training split with its ids folded into the tiny models' vocabulary."""
    train, _ = corpus
    split = ArraySplit([[[5]]])
    split.__dict__.update(train.__dict__)
    split.tokens = (train.tokens - 5) % (V - 5) + 5
    return split


# --------------------------------------------------------------------------- pairs (NSP, SOP)


def test_truncate_pair_longest_first():
    assert truncate_pair(3, 4, 10) == (3, 4)
    assert truncate_pair(10, 2, 8) == (6, 2)
    assert truncate_pair(6, 6, 9) == (5, 4)  # B loses first on a tie
    for la in range(1, 20):
        for lb in range(1, 20):
            a, b = truncate_pair(la, lb, 13)
            assert a + b == min(la + lb, 13) and a >= 1 and b >= 1 and a <= la and b <= lb


def test_plan_chunks_are_runs_of_whole_sentences_of_one_document(corpus):
    train, _ = corpus
    plan = plan_pairs(train.doc_offsets, train.sent_offsets, 16, seed=0, epoch=0)
    first = np.searchsorted(train.sent_offsets, train.doc_offsets)
    assert (plan.chunk_starts >= first[plan.chunk_docs]).all() and (plan.chunk_stops <= first[plan.chunk_docs + 1]).all()
    # chunks of one epoch never overlap
    covered = np.zeros(len(train.sent_offsets) - 1, dtype=int)
    for s, e in zip(plan.chunk_starts, plan.chunk_stops):
        covered[s:e] += 1
    assert covered.max() == 1 and covered.mean() > 0.9


def test_nsp_labels_balanced_negatives_from_other_documents(corpus):
    train, _ = corpus
    doc = doc_of(train)
    loader = PairLoader(train, 16, 32, SPECIAL, kind="nsp", seed=1)
    labels = []
    for _ in range(20):
        batch = loader.next_batch()
        for r in range(32):
            a, b = pieces(batch, r)
            assert len(a) >= 1 and len(b) >= 1 and len(a) + len(b) <= 13
            assert (np.diff(a) == 1).all() and (np.diff(b) == 1).all()  # contiguous spans
            doc_a, doc_b = doc[a], doc[b]
            assert (doc_a == doc_a[0]).all() and (doc_b == doc_b[0]).all()
            if batch["nsp_labels"][r] == 0:  # the true continuation: B starts where A ends
                assert b[0] == a[-1] + 1 and doc_a[0] == doc_b[0]
            else:  # random: from another document, starting at a sentence
                assert doc_b[0] != doc_a[0]
                assert b[0] in train.sent_offsets
            labels.append(int(batch["nsp_labels"][r]))
    share = np.mean(labels)
    assert abs(share - 0.5) < 0.06, share


def test_sop_swaps_half_of_consecutive_segments(corpus):
    train, _ = corpus
    doc = doc_of(train)
    loader = PairLoader(train, 16, 32, SPECIAL, kind="sop", seed=2)
    labels = []
    for _ in range(20):
        batch = loader.next_batch()
        for r in range(32):
            a, b = pieces(batch, r)
            assert (doc[np.concatenate([a, b])] == doc[a[0]]).all()  # one document
            first, second = (a, b) if batch["sop_labels"][r] == 0 else (b, a)
            assert second[0] == first[-1] + 1  # consecutive, in that order
            labels.append(int(batch["sop_labels"][r]))
    assert abs(np.mean(labels) - 0.5) < 0.06


def test_pairs_never_leave_their_split(corpus):
    train, val = corpus
    lo, hi = val.tokens.min(), val.tokens.max()
    for kind in ("nsp", "sop"):
        loader = PairLoader(val, 16, 16, SPECIAL, kind=kind, seed=0)
        for _ in range(10):
            ids = loader.next_batch()["input_ids"]
            text = ids[ids > 4]
            assert ((text >= lo) & (text <= hi)).all(), "a validation pair holds a token of another split"


def test_pairs_resume_exactly_and_odd_lengths(corpus):
    train, _ = corpus
    full = PairLoader(train, 15, 8, SPECIAL, kind="nsp", seed=3)
    batches = [full.next_batch() for _ in range(30)]  # crosses an epoch boundary
    assert full.epoch >= 1
    part = PairLoader(train, 15, 8, SPECIAL, kind="nsp", seed=3)
    for _ in range(11):
        part.next_batch()
    resumed = PairLoader(train, 15, 8, SPECIAL, kind="nsp", seed=3)
    resumed.load_state_dict(part.state_dict())
    for want in batches[11:]:
        got = resumed.next_batch()
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_nsp_needs_two_documents():
    from pretrainlab.errors import CorpusError

    one = ArraySplit([[[5, 6, 7], [8, 9]]])
    with pytest.raises(CorpusError, match="at least 2 documents"):
        PairLoader(one, 16, 2, SPECIAL, kind="nsp")
    PairLoader(one, 16, 2, SPECIAL, kind="sop").next_batch()  # sop needs only one


# --------------------------------------------------------------------------- models on the tiny transformer


def tiny_backbone(seed=0, d_model=32, n_heads=2, d_ff=64, style="bert"):
    from pretrainlab.backbones import build_backbone

    torch.manual_seed(seed)
    return build_backbone("transformer", vocab_size=V, d_model=d_model, n_layers=2, n_heads=n_heads, d_ff=d_ff,
                          max_len=32, dropout=0.0, style=style)


def tiny_model(weights, seed=0, style="bert", **kw):
    from pretrainlab.models import PretrainModel
    from pretrainlab.objectives import build_objectives

    bb = tiny_backbone(seed, style=style)
    objs, head = build_objectives(weights, backbone=bb, backbone_kind="transformer", vocab_size=V, special=SPECIAL,
                                  settings={"tie_embeddings": True, **kw}, make_backbone=lambda **size: tiny_backbone(seed + 1, style=style, **size))
    return PretrainModel(bb, objs, weights, head)


def packed_batch(B=4, T=16, seed=0):
    """Two documents per row ([CLS] ... [SEP] [CLS] ... [SEP]) and padding at the end."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    cut = T // 2
    ids[:, 0], ids[:, cut - 1], ids[:, cut], ids[:, T - 3] = 2, 3, 2, 3
    mask[:, cut:] = 2
    ids[:, T - 2 :], mask[:, T - 2 :] = 0, 0
    return {"input_ids": ids, "mask": mask}


def overfit(model, batch, steps, lr=3e-3):
    """Loss of the first step and the mean of the last 10 on one fixed, prepared batch."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    return losses[0], sum(losses[-10:]) / 10


def test_mlm_never_masks_the_special_tokens_of_pairs(small_vocab):
    train = small_vocab
    model = tiny_model({"mlm": 1.0, "nsp": 1.0})
    raw = PairLoader(train, 16, 16, SPECIAL, kind="nsp").next_batch()
    batch = model.prepare(raw, torch.Generator().manual_seed(0))
    picked = raw["input_ids"].reshape(-1)[batch["mlm_positions"]]
    assert (picked > 4).all(), "MLM picked [CLS], [SEP] or padding"
    assert torch.equal(batch["segment_ids"], raw["segment_ids"]) and torch.equal(batch["nsp_labels"], raw["nsp_labels"])
    out = model(batch)
    assert {"mlm_loss", "nsp_loss", "nsp_acc"} <= set(out.metrics)


@pytest.mark.parametrize("kind", ["nsp", "sop"])
def test_pair_objective_overfits_one_batch(small_vocab, kind):
    train = small_vocab
    model = tiny_model({kind: 1.0})
    batch = model.prepare(PairLoader(train, 16, 8, SPECIAL, kind=kind, seed=4).next_batch(), torch.Generator())
    first, last = overfit(model, batch, steps=60)
    assert last < 0.1 * first, (first, last)
    # the head has BERT's pooler + seq_relationship shape
    head = model.objectives[kind].head
    assert head.pooler.weight.shape == (32, 32) and head.seq_relationship.weight.shape == (2, 32)


def test_rtd_labels_are_replaced_real_tokens():
    model = tiny_model({"rtd": 1.0})
    rtd = model.objectives["rtd"]
    raw = packed_batch(B=6)
    batch = model.prepare(raw, torch.Generator().manual_seed(0))
    logits, corrupted, labels = rtd.corrupt(batch)
    original, real = raw["input_ids"], raw["mask"] != 0
    assert torch.equal(labels, ((corrupted != original) & real).float())
    # only the generator's masked positions change, never to a special token, without a gradient path
    changed = (corrupted != original).reshape(-1).nonzero().squeeze(1)
    assert set(changed.tolist()) <= set(batch["rtd_positions"].tolist())
    assert (corrupted.reshape(-1)[batch["rtd_positions"]] > 4).all()
    assert labels.sum() > 0 and not corrupted.requires_grad
    assert logits.shape == (len(batch["rtd_positions"]), V)
    # the generator reads the discriminator's embedding tables through one projection; a quarter of its width
    gen, bb = rtd.generator, model.backbone
    assert gen.tok_emb.embedding is bb.tok_emb and gen.pos_emb.embedding is bb.pos_emb
    assert gen.seg_emb.embedding is bb.seg_emb and gen.tok_emb.project is gen.pos_emb.project is gen.seg_emb.project
    assert gen.d_model == 8 and rtd.generator_head.embedding is bb.tok_emb


def test_rtd_sampling_follows_the_generator_softmax():
    from pretrainlab.objectives.rtd import generator_size, sample_tokens

    logits = torch.log(torch.tensor([[0.0, 0.0, 0.2, 0.5, 0.3]]).clamp_min(1e-30)).repeat(20000, 1)
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(sample_tokens(logits, u, banned=(0,)), minlength=5).float() / 20000
    assert torch.allclose(counts, torch.tensor([0.0, 0.0, 0.2, 0.5, 0.3]), atol=0.015)
    assert (sample_tokens(logits, u, banned=(3,)) != 3).all()
    assert generator_size(256, 4, 1024, 0.25) == (64, 1, 256)  # ELECTRA-small's generator
    assert generator_size(768, 12, 3072, 1 / 3) == (256, 4, 1024)  # ELECTRA-base's
    assert generator_size(128, 2, 512, 0.25) == (32, 1, 128)  # the tiny preset's: a quarter of its width
    assert generator_size(128, 2, 512, 0.25, head_size=0) == (64, 1, 256)  # before #28: whole 64-wide heads, half
    assert generator_size(32, None, 128, 0.25) == (8, 1, 32)  # no attention: an even size


def test_rtd_generator_input_is_masked_as_electra_or_as_bert():
    """ELECTRA: 85% of the picked tokens become [MASK] and 15% stay; bert: 80% [MASK], 10% random, 10% stay. Both
    from the same draws (mask_tokens' roll), so the picked positions are the same."""
    raw = packed_batch(B=64, T=16, seed=3)
    out = {}
    for masking in ("electra", "bert"):
        rtd = tiny_model({"rtd": 1.0}, rtd_masking=masking).objectives["rtd"]
        batch = rtd.prepare(raw, torch.Generator().manual_seed(5))
        seen = batch["rtd_input"].reshape(-1)[batch["rtd_positions"]]
        out[masking] = (batch["rtd_positions"], seen == SPECIAL.mask, seen == batch["rtd_labels"])
    (pos_e, mask_e, kept_e), (pos_b, mask_b, kept_b) = out["electra"], out["bert"]
    assert torch.equal(pos_e, pos_b) and len(pos_e) > 100
    assert torch.equal(mask_e | kept_e, torch.ones_like(mask_e))  # electra: never a random token
    assert mask_b.sum() <= mask_e.sum() and (~mask_b & ~kept_b).any()  # bert: some random tokens
    assert 0.78 < mask_e.float().mean() < 0.92


def test_rtd_settings_default_to_electra_and_old_runs_load_as_they_trained():
    from pretrainlab.config import ConfigError, config_from_dict, load_config

    cfg = load_config(None, ["objective.weights={rtd: 1.0}"])
    o = cfg.objective
    assert (o.rtd_generator_fraction, o.rtd_generator_head_size, o.rtd_shared_embeddings, o.rtd_masking,
            o.rtd_weight, o.mask_rate) == (0.25, 64, "all", "electra", 50.0, 0.15)
    saved = cfg.to_dict()
    for key in ("rtd_generator_head_size", "rtd_shared_embeddings", "rtd_masking"):
        del saved["objective"][key]  # a config.yaml written before these settings existed
    old = config_from_dict(saved).objective
    assert (old.rtd_generator_head_size, old.rtd_shared_embeddings, old.rtd_masking) == (0, "token", "bert")
    assert config_from_dict(cfg.to_dict()) == cfg
    model = tiny_model({"rtd": 1.0}, rtd_generator_head_size=0, rtd_shared_embeddings="token")
    gen = model.objectives["rtd"].generator
    assert gen.d_model == 16 and isinstance(gen.pos_emb, torch.nn.Embedding)  # as before: its own positions
    with pytest.raises(ConfigError, match="objective.rtd_masking"):
        load_config(None, ["objective.rtd_masking=gumbel"])


def test_rtd_overfits_and_trains_the_main_backbone():
    model = tiny_model({"rtd": 1.0})
    batch = model.prepare(packed_batch(B=8), torch.Generator().manual_seed(1))
    out = model(batch)
    out.loss.backward()
    assert model.backbone.layers[-1].ff_out.weight.grad.abs().sum() > 0  # the discriminator is the main backbone
    model.zero_grad()
    first, last = overfit(model, batch, steps=100)
    assert last < 0.3 * first, (first, last)


def test_factory_rejects_what_cannot_work():
    from pretrainlab.backbones import build_backbone
    from pretrainlab.config import ConfigError, load_config
    from pretrainlab.objectives import build_objectives

    with pytest.raises(ConfigError, match="plm needs attention masks, which the rnn backbone"):
        load_config(None, ["model.backbone=rnn", "objective.weights={plm: 1}"])
    rnn = build_backbone("rnn", vocab_size=V, d_model=32, n_layers=1)
    with pytest.raises(ConfigError, match="plm needs attention masks, which the rnn backbone"):
        build_objectives({"plm": 1.0}, backbone=rnn, backbone_kind="rnn", vocab_size=V, special=SPECIAL)
    bb = tiny_backbone()
    with pytest.raises(ConfigError, match="Drop mlm"):
        build_objectives({"mlm": 1.0, "rtd": 1.0}, backbone=bb, backbone_kind="transformer", vocab_size=V,
                         special=SPECIAL, make_backbone=lambda **kw: tiny_backbone(**kw))
    with pytest.raises(ConfigError, match="keep one of them"):
        build_objectives({"nsp": 1.0, "sop": 1.0}, backbone=bb, backbone_kind="transformer", vocab_size=V,
                         special=SPECIAL)


# --------------------------------------------------------------------------- PLM


def test_plm_order_targets_are_the_last_kth_of_real_tokens():
    from pretrainlab.objectives.plm import sample_order

    batch = packed_batch(B=8, T=16)
    ids, mask = batch["input_ids"], batch["mask"]
    for k in (1, 3, 6):
        rank, targets, valid = sample_order(ids, mask, SPECIAL.all, k, torch.Generator().manual_seed(k))
        n_cand = ((mask != 0) & (ids > 4)).sum(1)
        assert torch.equal(valid.sum(1), (n_cand // k).clamp_min(1))
        for r in range(8):
            t = targets[r][valid[r]]
            assert (ids[r, t] > 4).all() and (mask[r, t] != 0).all()  # never special tokens or padding
            assert sorted(rank[r, t].tolist()) == list(range(1, len(t) + 1))  # the order among targets
            others = torch.ones(16, dtype=torch.bool)
            others[t] = False
            assert (rank[r, others] == 0).all()  # everything else comes before them


def test_row_seeded_draws_depend_on_the_row_alone():
    """With the loaders' row_seed, PLM's order and RTD's corruption of a row are the same whatever
    batch (or process) it lands in: what makes N ranks train like one process."""
    from pretrainlab.objectives.plm import sample_order

    batch = packed_batch(B=6, T=16)
    batch["row_seed"] = torch.arange(100, 106) * 1_000_000_007
    ids, mask = batch["input_ids"], batch["mask"]
    whole = sample_order(ids, mask, SPECIAL.all, 3, torch.Generator().manual_seed(0), batch["row_seed"])
    for r in range(6):
        alone = sample_order(ids[r : r + 1], mask[r : r + 1], SPECIAL.all, 3, torch.Generator().manual_seed(r),
                             batch["row_seed"][r : r + 1])
        assert torch.equal(alone[0][0], whole[0][r])  # the same factorisation order
    rtd = tiny_model({"rtd": 1.0}).objectives["rtd"]
    both = rtd.prepare(dict(batch), torch.Generator().manual_seed(0))
    first = rtd.prepare({k: v[:3] for k, v in batch.items()}, torch.Generator().manual_seed(1))
    n = len(first["rtd_positions"])
    assert torch.equal(both["rtd_input"][:3], first["rtd_input"])
    assert torch.equal(both["rtd_positions"][:n], first["rtd_positions"])
    assert torch.equal(both["rtd_uniform"][:n], first["rtd_uniform"])
    masks = [sample_order(ids, mask, SPECIAL.all, 3, torch.Generator().manual_seed(0), batch["row_seed"] + i)[0]
             for i in range(2)]
    assert not torch.equal(*masks)  # other seeds, other orders


@pytest.mark.parametrize("style, attn_impl", [("bert", "sdpa"), ("bert", "explicit"), ("modern", "explicit")])
def test_two_stream_content_stream_is_the_ordinary_encoder(style, attn_impl):
    bb = tiny_backbone(style=style).eval()
    bb.attn_impl = attn_impl
    batch = packed_batch(B=3, T=15)
    ids, mask = batch["input_ids"], batch["mask"]
    seg = torch.zeros_like(ids)
    same_doc = mask[:, :, None] == mask[:, None, :]
    index = torch.tensor([[1, 9], [2, 3], [4, 11]])
    h, g = bb.forward_two_stream(ids, mask, seg, same_doc, index, torch.ones(3, 2, 15, dtype=torch.bool),
                                 SPECIAL.mask)
    torch.testing.assert_close(h, bb(ids, mask, seg).hidden)
    assert g.shape == (3, 2, 32)


@pytest.mark.parametrize("style", ["bert", "modern"])
def test_plm_query_stream_sees_neither_its_token_nor_later_ones(style):
    model = tiny_model({"plm": 1.0}, style=style, plm_k=2).eval()
    plm = model.objectives["plm"]
    batch = model.prepare(packed_batch(B=2, T=16, seed=3), torch.Generator().manual_seed(0))
    rank, targets, valid, mask = batch["plm_rank"], batch["plm_targets"], batch["plm_valid"], batch["mask"]

    def predictions(ids):
        with torch.no_grad():
            logits, scored = plm.target_logits(model.backbone, {**batch, "input_ids": ids})
        out = torch.full((*scored.shape, V), float("nan"))
        out[scored] = logits
        return out  # (B, P, V)

    base = predictions(batch["input_ids"])
    checked_later = 0
    for b in range(2):
        for p in range(int(valid[b].sum())):
            pos = int(targets[b, p])
            ids = batch["input_ids"].clone()
            ids[b, pos] = 5 if ids[b, pos] != 5 else 6  # perturb this target's token
            new = predictions(ids)
            same_doc = mask[b].gather(0, targets[b]) == mask[b, pos]
            earlier_or_self = valid[b] & same_doc & (rank[b].gather(0, targets[b]) <= rank[b, pos])
            torch.testing.assert_close(new[b][earlier_or_self], base[b][earlier_or_self])
            other_doc = valid[b] & ~same_doc
            torch.testing.assert_close(new[b][other_doc], base[b][other_doc])  # nothing crosses documents
            torch.testing.assert_close(new[1 - b], base[1 - b])
            later = valid[b] & same_doc & (rank[b].gather(0, targets[b]) > rank[b, pos])
            if later.any():  # and it is seen by the targets after it in the order
                assert not torch.allclose(new[b][later], base[b][later])
                checked_later += 1
    assert checked_later > 0


def test_plm_loss_only_on_targets_and_odd_lengths():
    model = tiny_model({"plm": 1.0})
    for T in (15, 9):
        raw = packed_batch(B=3, T=T, seed=T)
        batch = model.prepare(raw, torch.Generator().manual_seed(0))
        plm = model.objectives["plm"]
        logits, scored = plm.target_logits(model.backbone, batch)
        assert torch.equal(scored, batch["plm_valid"])  # every target has context ([CLS] at least)
        assert logits.shape == (int(batch["plm_valid"].sum()), V)  # the vocabulary projection only there
        out = model(batch)
        assert torch.isfinite(out.loss) and set(out.metrics) == {"plm_loss", "plm_acc"}
    assert plm.head.embedding is model.backbone.tok_emb  # tied to the token embedding


def test_plm_overfits_one_batch():
    model = tiny_model({"plm": 1.0}, plm_k=3)
    batch = model.prepare(packed_batch(B=8, T=16), torch.Generator().manual_seed(2))
    first, last = overfit(model, batch, steps=100)
    assert last < 0.3 * first, (first, last)


def test_mlm_overfits_together_with_plm():
    model = tiny_model({"mlm": 1.0, "plm": 1.0})
    batch = model.prepare(packed_batch(B=8, T=16), torch.Generator().manual_seed(3))
    assert torch.equal(batch["original_ids"], packed_batch(B=8, T=16)["input_ids"])
    first, last = overfit(model, batch, steps=60)
    assert last < 0.5 * first, (first, last)
