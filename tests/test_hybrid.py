"""objective hybrid (GPT-BERT): masked next-token prediction on most rows and causal LM on the others, one encoder,
one LM head; per-row causal attention in the encoder; refused where the backbone has no attention masks."""

import pytest
import torch
import torch.nn.functional as F

from pretrainlab.backbones import build_backbone
from pretrainlab.config import ConfigError, load_config
from pretrainlab.models import PretrainModel
from pretrainlab.objectives import build_objectives
from pretrainlab.objectives.hybrid import Hybrid, after_first, causal_rows
from pretrainlab.objectives.mlm import MaskRate, mask_tokens
from pretrainlab.tokenizer import SpecialIds
from pretrainlab.train import pretrain

from conftest import FAST, TINY, TRANSFORMER

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
V = 40
pytestmark = pytest.mark.usefixtures("one_thread")

# four rows, two documents each ([CLS] ... [SEP]), padding at the end of the last two
IDS = torch.tensor([[2, 10, 11, 12, 3, 2, 13, 3],
                    [2, 14, 15, 3, 2, 16, 17, 3],
                    [2, 18, 19, 20, 21, 3, 0, 0],
                    [2, 22, 23, 3, 2, 24, 3, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 2, 2, 2],
                     [1, 1, 1, 1, 2, 2, 2, 2],
                     [1, 1, 1, 1, 1, 1, 0, 0],
                     [1, 1, 1, 1, 2, 2, 2, 0]])


def tiny(seed=0, style="modern"):
    torch.manual_seed(seed)
    return build_backbone("transformer", vocab_size=V, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=16,
                          dropout=0.0, style=style)


def tiny_model(**settings):
    bb = tiny()
    objs, head = build_objectives({"hybrid": 1.0}, backbone=bb, backbone_kind="transformer", vocab_size=V,
                                  special=SPECIAL, settings=settings)
    return PretrainModel(bb, objs, {"hybrid": 1.0}, head)


def test_causal_rows_are_the_last_share_of_the_batch_leaving_one_masked():
    assert causal_rows(16, 1 / 16).tolist() == [False] * 15 + [True]
    assert causal_rows(4, 0.5).tolist() == [False, False, True, True]
    assert causal_rows(4, 0.0).tolist() == [False] * 4
    assert causal_rows(1, 0.9).tolist() == [False]  # one row: it is masked
    assert after_first(torch.tensor([[1, 1, 2, 2, 2, 0]])).tolist() == [[0, 1, 0, 2, 2, 0]]


def test_the_collator_on_a_hand_made_batch():
    """causal_share 1/4: row 3 is causal, rows 0-2 masked. A masked row masks as mlm would, never a document's first
    token, and predicts each masked token from the position before it; the causal row keeps its tokens and
    predicts each next token of its document."""
    obj = Hybrid(V, SPECIAL.all, SPECIAL.mask, MaskRate(0.4, 0.4), causal_share=0.25)
    out = obj.prepare({"input_ids": IDS, "mask": MASK}, torch.Generator().manual_seed(3))
    assert out["hybrid_causal"].tolist() == [False, False, False, True]
    maskable = torch.tensor([[0, 1, 1, 1, 1, 0, 2, 2],  # by hand: no first token of a document, no causal row
                             [0, 1, 1, 1, 0, 2, 2, 2],
                             [0, 1, 1, 1, 1, 1, 0, 0],
                             [0, 0, 0, 0, 0, 0, 0, 0]])
    masked, positions, labels = mask_tokens(IDS, maskable, SPECIAL.all, SPECIAL.mask, V, 0.4,
                                            torch.Generator().manual_seed(3))
    assert torch.equal(out["hybrid_input"], masked) and len(positions) > 0
    assert torch.equal(out["mntp_positions"], positions - 1) and torch.equal(out["mntp_labels"], labels)
    assert torch.equal(IDS.reshape(-1)[out["mntp_positions"] + 1], out["mntp_labels"])  # the NEXT token
    assert torch.equal(out["hybrid_input"][3], IDS[3])
    # row 3: [CLS] 22 23 [SEP] | [CLS] 24 [SEP] pad -> positions 0 1 2 | 4 5 predict 22 23 [SEP] | 24 [SEP]
    assert out["hybrid_clm_positions"].tolist() == [24, 25, 26, 28, 29]
    assert out["hybrid_clm_labels"].tolist() == [22, 23, 3, 24, 3]


def test_causal_rows_attend_to_earlier_tokens_of_their_document_only():
    bb = tiny().eval()
    rows = torch.tensor([False, False, False, True])
    h = bb(IDS, MASK, causal_rows=rows).hidden
    changed = IDS.clone()
    changed[:, 2] = 30  # a token of every row's first document
    h2 = bb(changed, MASK, causal_rows=rows).hidden
    assert torch.allclose(h[3, :2], h2[3, :2], atol=1e-6)  # a causal row: what came before is unchanged
    assert not torch.allclose(h[3, 2], h2[3, 2])
    assert not torch.allclose(h[0, 1], h2[0, 1])  # a bidirectional row: a later token reaches position 1
    for r in range(3):  # the second document sees nothing of the first, either way
        assert torch.allclose(h[r, MASK[r] == 2], h2[r, MASK[r] == 2], atol=1e-6)
    # a causal row's state at t is the same row cut after t (nothing later exists)
    for t in range(1, 4):
        alone = bb(IDS[3:, : t + 1], MASK[3:, : t + 1], causal_rows=torch.tensor([True])).hidden
        assert torch.allclose(alone[0, t], h[3, t], atol=1e-5), t
    # bidirectional rows are what the encoder computes without flags
    assert torch.allclose(bb(IDS, MASK).hidden[:3], h[:3], atol=1e-6)


def test_the_loss_is_the_share_weighted_mean_of_both_tasks_from_the_model_head():
    model = tiny_model(causal_share=0.25, mask_rate=0.4)
    batch = model.prepare({"input_ids": IDS, "mask": MASK}, torch.Generator().manual_seed(3))
    out = model(batch)
    hidden = model.backbone(batch["hybrid_input"], MASK, causal_rows=batch["hybrid_causal"]).hidden.reshape(-1, 32)
    mntp = F.cross_entropy(model.lm_head(hidden[batch["mntp_positions"]]), batch["mntp_labels"])
    clm = F.cross_entropy(model.lm_head(hidden[batch["hybrid_clm_positions"]]), batch["hybrid_clm_labels"])
    assert torch.allclose(out.loss, 0.75 * mntp + 0.25 * clm, atol=1e-5)
    assert torch.allclose(out.metrics["hybrid_clm_loss"], clm, atol=1e-5)


def test_a_tiny_model_overfits_one_batch_under_the_hybrid():
    model = tiny_model(causal_share=0.25, mask_rate=0.4)
    batch = model.prepare({"input_ids": IDS, "mask": MASK}, torch.Generator().manual_seed(3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.1 * losses[0], losses[::10]
    assert float(out.metrics["hybrid_mntp_acc"]) == 1.0
    # 4 of the causal row's 5 targets: its two [CLS] (each at position 0 of its document, seeing only itself) have
    # one state, so 22 and 24 after them cannot both be right
    assert float(out.metrics["hybrid_clm_acc"]) == pytest.approx(0.8)


def test_settings_reach_the_objective():
    obj = tiny_model(mask_rate=0.3, mask_rate_end=0.15, causal_share=0.125).objectives["hybrid"]
    assert obj.rate == MaskRate(0.3, 0.15) and obj.causal_share == 0.125
    assert tiny_model().objectives["hybrid"].causal_share == 0.0625  # GPT-BERT's 15 : 1
    with pytest.raises(ConfigError, match=r"objective.causal_share=1 must be in \[0, 1\)"):
        tiny_model(causal_share=1)


@pytest.mark.parametrize("kind", ["rnn", "cnn", "decoder", "encoder-decoder"])
def test_refused_at_config_load_where_the_backbone_cannot_express_it(kind):
    with pytest.raises(ConfigError, match="hybrid") as e:
        load_config(None, [f"model.backbone={kind}", "objective.weights={hybrid: 1.0}"])
    assert "backbone=transformer" in str(e.value) or kind == "encoder-decoder"
    with pytest.raises(ConfigError, match="keep one of them"):
        load_config(None, ["objective.weights={hybrid: 1.0, mlm: 1.0}"])


def test_pretrain_runs_the_hybrid_and_logs_both_losses(tiny_corpus, tmp_path):
    cfg = load_config(None, TINY + TRANSFORMER + FAST + [
        "objective.weights={hybrid: 1.0}", "objective.causal_share=0.25", "objective.mask_rate=0.3",
        "objective.mask_rate_end=0.15", "train.budget=3", "train.eval_every=0", "train.eval_batches=1"])
    run = pretrain(cfg, tiny_corpus, tmp_path / "run")
    text = (run / "metrics.jsonl").read_text()
    assert "hybrid_mntp_loss" in text and "hybrid_clm_loss" in text and "val_hybrid_mntp_acc" in text
