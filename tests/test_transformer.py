"""Transformer backbone: both attention paths agree, both styles equal their Hugging Face
reference, packed documents are isolated, bf16 autocast works. Tiny sizes (2 layers, d=32)."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch.testing import assert_close

from pretrainlab.backbones import build_backbone
from pretrainlab.backbones.transformer import TransformerBackbone, dropout
from pretrainlab.export.hf_names import (
    from_hf_bert_state_dict,
    from_hf_modernbert_state_dict,
    hf_config_kwargs,
    to_hf_bert_state_dict,
    to_hf_modernbert_state_dict,
)

V, D, L, H, FF, MAX_LEN = 100, 32, 2, 4, 64, 32
STYLES = ("bert", "modern")


def tiny(style: str, **kw) -> TransformerBackbone:
    torch.manual_seed(0)
    args = dict(vocab_size=V, d_model=D, n_layers=L, n_heads=H, d_ff=FF, max_len=MAX_LEN, dropout=0.1, style=style)
    return TransformerBackbone(**{**args, **kw}).eval()


def batch(packed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 14) ids and mask: padding at the end of rows 1-2; with packed, 2-3 documents per row."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, V, (3, 14), generator=g)
    if packed:
        mask = torch.tensor([[1] * 5 + [2] * 9, [1] * 4 + [2] * 3 + [3] * 5 + [0] * 2, [1] * 6 + [2] * 2 + [0] * 6])
    else:
        mask = torch.tensor([[1] * 14, [1] * 10 + [0] * 4, [1] * 3 + [0] * 11])
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("packed", [False, True])
def test_sdpa_equals_explicit(style, packed):
    model = tiny(style)
    ids, mask = batch(packed)
    model.attn_impl = "sdpa"
    a = model(ids, mask).hidden
    model.attn_impl = "explicit"
    b = model(ids, mask).hidden
    assert torch.isfinite(a).all() and torch.isfinite(b).all()  # padding rows too
    assert_close(a, b)


def test_auto_choice_and_bad_impl():
    model = tiny("bert")
    assert model._use_sdpa("cpu", torch.float32)  # eval, fp32 CPU
    assert not model._use_sdpa("cpu", torch.bfloat16)
    assert model._use_sdpa("cuda", torch.bfloat16)
    model.train()
    assert not model._use_sdpa("cpu", torch.float32)  # SDPA's own CPU dropout is slow
    model.attn_impl = "flash"
    with pytest.raises(ValueError, match="attn_impl"):
        model(*batch(False))


def hf_reference(style: str, impl: str = "eager"):
    """Our model and the HF model holding the same weights (copied HF -> ours)."""
    ours = tiny(style, type_vocab_size=2)
    if style == "bert":
        config = transformers.BertConfig(**hf_config_kwargs(ours), attn_implementation=impl)
        hf = transformers.BertModel(config, add_pooling_layer=False).eval()
        ours.load_state_dict(from_hf_bert_state_dict(hf.state_dict()), strict=True)
    else:
        config = transformers.ModernBertConfig(**hf_config_kwargs(ours), attn_implementation=impl)
        hf = transformers.ModernBertModel(config).eval()
        ours.load_state_dict(from_hf_modernbert_state_dict(hf.state_dict(), type_vocab_size=2), strict=True)
    return ours, hf


@pytest.mark.parametrize("style", STYLES)
def test_matches_hugging_face(style):
    ours, hf = hf_reference(style)
    ids, mask = batch(packed=False)
    real = mask.bool()
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        for attn_impl in ("explicit", "sdpa"):
            ours.attn_impl = attn_impl
            assert_close(ours(ids, mask).hidden[real], theirs[real])


def test_bert_matches_hugging_face_with_segments():
    ours, hf = hf_reference("bert")
    ids, mask = batch(packed=False)
    segments = (torch.arange(14) >= 6).long().expand(3, 14) * mask
    real = mask.bool()
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, token_type_ids=segments).last_hidden_state
        assert_close(ours(ids, mask, segments).hidden[real], theirs[real])


@pytest.mark.parametrize("style", STYLES)
def test_state_dict_round_trip(style):
    model = tiny(style, type_vocab_size=2 if style == "bert" else 0)
    sd = model.state_dict()
    if style == "bert":
        back = from_hf_bert_state_dict(to_hf_bert_state_dict(sd, prefix="bert."), prefix="bert.")
    else:
        back = from_hf_modernbert_state_dict(to_hf_modernbert_state_dict(sd, prefix="model."), prefix="model.")
    assert back.keys() == sd.keys()
    for k in sd:
        assert torch.equal(back[k], sd[k]), k


def test_modern_export_refuses_learned_segments():
    model = tiny("modern")
    sd = model.state_dict()
    assert "seg_emb.weight" not in to_hf_modernbert_state_dict(sd)  # still zero: dropped exactly
    sd["seg_emb.weight"] = sd["seg_emb.weight"] + 0.1
    with pytest.raises(ValueError, match="segment"):
        to_hf_modernbert_state_dict(sd)
    assert "seg_emb.weight" not in to_hf_modernbert_state_dict(sd, drop_segments=True)


@pytest.mark.parametrize("style", STYLES)
def test_packed_documents_equal_separate(style):
    """Row [A A A A A B B B B B B B] gives A's and B's hidden states as if each were alone."""
    model = tiny(style)
    ids, _ = batch(packed=False)
    a, b = ids[0, :5], ids[0, 5:12]
    for impl in ("explicit", "sdpa"):
        model.attn_impl = impl
        packed = model(ids[:1, :12], torch.tensor([[1] * 5 + [2] * 7])).hidden[0]
        alone_a = model(a[None], torch.ones(1, 5, dtype=torch.long)).hidden[0]
        alone_b = model(b[None], torch.ones(1, 7, dtype=torch.long)).hidden[0]
        assert_close(packed[:5], alone_a)
        assert_close(packed[5:], alone_b)


@pytest.mark.parametrize("style", STYLES)
def test_attention_weights(style):
    model = tiny(style)
    ids, mask = batch(packed=True)
    out = model(ids, mask, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == L and len(out.hidden_states) == L + 1
    model.attn_impl = "sdpa"  # weights asked for: the explicit path regardless
    assert_close(model(ids, mask, output_attentions=True).hidden, out.hidden)
    allowed = (mask[:, :, None] == mask[:, None, :])[:, None]  # (B, 1, T, T)
    for w in out.attentions:
        assert w.shape == (3, H, 14, 14)
        assert_close(w.sum(-1), torch.ones(3, H, 14))
        assert (w[~allowed.expand_as(w)] == 0).all()  # nothing across documents or from real to padding


@pytest.mark.parametrize("style", STYLES)
def test_bf16_autocast(style):
    model = tiny(style).train()
    ids, mask = batch(packed=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = model(ids, mask).hidden
    h.float().square().mean().backward()
    assert torch.isfinite(h).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    for impl in ("explicit", "sdpa"):
        model.attn_impl = impl
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(ids, mask).hidden.float()
        assert_close(low, model(ids, mask).hidden, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("style", STYLES)
def test_padding_invariance(style):
    model = tiny(style)
    ids, mask = batch(packed=True)
    more_ids = torch.cat([ids, torch.zeros(3, 9, dtype=torch.long)], dim=1)
    more_mask = torch.cat([mask, torch.zeros(3, 9, dtype=torch.long)], dim=1)
    real = mask.bool()
    assert_close(model(more_ids, more_mask).hidden[:, :14][real], model(ids, mask).hidden[real])


def test_factory_and_contract():
    model = build_backbone("transformer", vocab_size=V, d_model=D, n_layers=L, n_heads=H, d_ff=FF, style="modern")
    assert (model.d_model, model.vocab_size, model.style, model.n_layers, model.n_heads) == (D, V, "modern", L, H)
    assert model.get_input_embeddings() is model.tok_emb
    with pytest.raises(ValueError, match="style"):
        TransformerBackbone(V, D, L, H, style="gpt")
    with pytest.raises(ValueError, match="max_len"):
        tiny("bert")(torch.ones(1, MAX_LEN + 1, dtype=torch.long), torch.ones(1, MAX_LEN + 1, dtype=torch.long))


def test_init():
    model = tiny("bert")
    assert abs(model.layers[0].ff_in.weight.std().item() - 0.02) < 0.003
    assert (model.layers[0].ff_in.bias == 0).all() and (model.emb_norm.weight == 1).all()
    assert (model.tok_emb.weight[0] == 0).all()  # padding row


def test_fast_dropout():
    x = torch.ones(200_000)
    y = dropout(x, 0.1, training=True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.005
    assert_close(y.mean(), torch.tensor(1.0), atol=0.01, rtol=0)  # expectation preserved
    assert dropout(x, 0.1, training=False) is x
    g = torch.ones(1000, requires_grad=True)
    dropout(g, 0.5, True).sum().backward()
    assert set(g.grad.unique().tolist()) <= {0.0, 2.0}
