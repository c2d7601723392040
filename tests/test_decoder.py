"""The causal decoder (backbones/decoder.py), its clm objective and its HF name maps: tiny and exact."""

import pytest
import torch

from pretrainlab.backbones.decoder import DecoderBackbone, KVCache
from pretrainlab.export.hf_decoder_names import (
    HF_DECODER_CLASSES, from_hf_decoder_state_dict, hf_decoder_config_kwargs, to_hf_decoder_state_dict,
)
from pretrainlab.heads import LMHead
from pretrainlab.models import CausalLM, PretrainModel
from pretrainlab.objectives.clm import CLM, IGNORE, next_token_labels

V, D, L, H, FF, CTX = 96, 32, 2, 4, 48, 16
STYLES = ("llama", "gpt2")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def tiny_lm(style: str, tie: bool = True, seed: int = 0) -> CausalLM:
    """2 layers, d=32; every parameter moved off its init so that norms and biases are checked too."""
    torch.manual_seed(seed)
    backbone = DecoderBackbone(V, D, L, H, FF, max_len=CTX, style=style)
    head = LMHead(D, V, backbone.get_input_embeddings() if tie else None)
    lm = CausalLM(backbone, head)
    with torch.no_grad():
        for p in lm.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return lm.eval()


def hf_twin(lm: CausalLM, tie: bool = True):
    """The HF causal LM (built offline from its config) holding lm's weights."""
    import transformers

    style = lm.backbone.style
    config_cls, model_cls = (getattr(transformers, n) for n in HF_DECODER_CLASSES[style])
    config = config_cls(**hf_decoder_config_kwargs(lm.backbone, tie_embeddings=tie), attn_implementation="eager")
    hf = model_cls(config).eval()
    lm_head = None if tie else lm.head.embedding.weight
    hf.load_state_dict(to_hf_decoder_state_dict(style, lm.backbone.state_dict(), lm_head), strict=True)
    return hf


def random_ids(B: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(5, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("style", STYLES)
def test_logits_equal_hf(style, tie):
    lm = tiny_lm(style, tie)
    hf = hf_twin(lm, tie)
    ids = random_ids(2, CTX)
    with torch.no_grad():
        torch.testing.assert_close(lm(ids), hf(input_ids=ids).logits)


@pytest.mark.parametrize("style", STYLES)
def test_left_padded_logits_equal_hf(style):
    lm = tiny_lm(style)
    hf = hf_twin(lm)
    ids = random_ids(2, 10)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    ids[1, :4] = 0
    positions = (mask.cumsum(1) - 1).clamp_min(0)  # what HF generate passes for left padding
    with torch.no_grad():
        ours = lm(ids, mask)
        theirs = hf(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real])


@pytest.mark.parametrize("style", STYLES)
def test_causal(style):
    lm = tiny_lm(style)
    ids = random_ids(1, 12)
    with torch.no_grad():
        base = lm(ids)
        for j in (1, 6, 11):
            changed = ids.clone()
            changed[0, j] = (changed[0, j] + 7) % V
            out = lm(changed)
            torch.testing.assert_close(out[:, :j], base[:, :j], rtol=0, atol=0)  # earlier positions: untouched
            assert not torch.allclose(out[:, j], base[:, j])


@pytest.mark.parametrize("style", STYLES)
def test_packed_documents_never_attend_across(style):
    lm = tiny_lm(style)
    a, b = random_ids(1, 5, seed=2), random_ids(1, 7, seed=3)
    ids = torch.cat((a, b, torch.zeros(1, 4, dtype=torch.long)), dim=1)  # [doc 1 | doc 2 | padding]
    mask = torch.tensor([[1] * 5 + [2] * 7 + [0] * 4])
    with torch.no_grad():
        packed = lm.backbone(ids, mask).hidden
        alone_a = lm.backbone(a, torch.ones_like(a)).hidden
        alone_b = lm.backbone(b, torch.ones_like(b)).hidden
    torch.testing.assert_close(packed[:, :5], alone_a)
    torch.testing.assert_close(packed[:, 5:12], alone_b)  # positions restart: doc 2 reads as if alone


@pytest.mark.parametrize("style", STYLES)
def test_cached_forward_equals_full_forward(style):
    lm = tiny_lm(style)
    ids = random_ids(2, 12)
    mask = torch.tensor([[1] * 4 + [2] * 8, [1] * 12])
    with torch.no_grad():
        full = lm.backbone(ids, mask).hidden
        cache = KVCache()
        parts = [lm.backbone(ids[:, s:e], mask[:, s:e], cache=cache).hidden for s, e in ((0, 3), (3, 7), (7, 8), (8, 12))]
    assert len(cache) == 12 and cache.keys[0].shape == (2, H, 12, D // H)
    torch.testing.assert_close(torch.cat(parts, dim=1), full)


@pytest.mark.parametrize("style", STYLES)
def test_sdpa_and_explicit_attention_agree(style):
    lm = tiny_lm(style)
    ids = random_ids(2, 12)
    mask = torch.tensor([[1] * 4 + [2] * 6 + [0] * 2, [1] * 12])
    outs = []
    with torch.no_grad():
        for impl in ("sdpa", "explicit"):
            lm.backbone.attn_impl = impl
            outs.append(lm.backbone(ids, mask).hidden)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # low precision takes the explicit path
            lm.backbone.attn_impl = "auto"
            low = lm.backbone(ids, mask).hidden
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(low.float(), outs[1], atol=0.1, rtol=0.05)


def test_attention_weights_are_causal_and_per_document():
    lm = tiny_lm("llama")
    mask = torch.tensor([[1, 1, 1, 2, 2, 0]])
    with torch.no_grad():
        out = lm.backbone(random_ids(1, 6), mask, output_attentions=True, output_hidden_states=True)
    w = out.attentions[0][0, 0]  # (T, T) layer 0, head 0
    allowed = torch.tensor([[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0],
                            [0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    assert bool((w[~allowed] == 0).all()) and bool((w[allowed] > 0).all())
    assert len(out.attentions) == L and len(out.hidden_states) == L + 1


def test_context_and_style_errors():
    lm = tiny_lm("gpt2")
    with pytest.raises(ValueError, match="exceed the decoder's context max_len=16"):
        lm(random_ids(1, CTX + 1))
    cache = KVCache()
    lm.backbone(random_ids(1, 10), torch.ones(1, 10, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="10 cached"):
        lm.backbone(random_ids(1, 7), torch.ones(1, 7, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="choose llama or gpt2"):
        DecoderBackbone(V, D, L, style="bert")
    with pytest.raises(ValueError, match="even head size"):
        DecoderBackbone(V, 30, L, n_heads=10)


# --------------------------------------------------------------------------- name maps


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("style", STYLES)
def test_name_map_round_trip_is_exact(style, tie):
    lm = tiny_lm(style, tie)
    sd = lm.backbone.state_dict()
    head = None if tie else lm.head.embedding.weight
    hf_sd = to_hf_decoder_state_dict(style, sd, head)
    back, lm_head = from_hf_decoder_state_dict(style, hf_sd)
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    assert torch.equal(lm_head, lm.head.embedding.weight)
    # and the other way: an HF model's own state dict -> ours -> theirs again
    theirs = hf_twin(tiny_lm(style, tie, seed=5), tie).state_dict()
    again = to_hf_decoder_state_dict(style, *from_hf_decoder_state_dict(style, theirs))
    assert again.keys() <= theirs.keys()
    assert all(torch.equal(again[k], theirs[k]) for k in again)


def test_name_map_refuses_unknown_and_missing_names():
    sd = tiny_lm("llama").backbone.state_dict()
    with pytest.raises(KeyError, match="no Hugging Face name"):
        to_hf_decoder_state_dict("llama", {**sd, "extra.weight": sd["norm.weight"]})
    hf_sd = to_hf_decoder_state_dict("llama", sd)
    del hf_sd["model.layers.1.self_attn.k_proj.weight"]
    with pytest.raises(KeyError, match="lacks"):
        from_hf_decoder_state_dict("llama", hf_sd)


# --------------------------------------------------------------------------- the clm objective


def test_clm_labels_on_a_hand_made_packed_row():
    ids = torch.tensor([[2, 11, 12, 3, 2, 21, 22, 23, 3, 0, 0], [2, 31, 32, 33, 34, 35, 36, 37, 38, 39, 3]])
    mask = torch.tensor([[1, 1, 1, 1, 2, 2, 2, 2, 2, 0, 0], [1] * 11])
    x = IGNORE
    expected = torch.tensor([[11, 12, 3, x, 21, 22, 23, 3, x, x, x],  # never across a document, never padding
                             [31, 32, 33, 34, 35, 36, 37, 38, 39, 3, x]])
    assert torch.equal(next_token_labels(ids, mask), expected)
    batch = CLM().prepare({"input_ids": ids, "mask": mask}, torch.Generator())
    flat = expected.reshape(-1)
    assert torch.equal(batch["clm_positions"], (flat != x).nonzero().squeeze(1))
    assert torch.equal(batch["clm_labels"], flat[flat != x])


@pytest.mark.parametrize("style", STYLES)
def test_clm_loss_is_the_hf_loss(style):
    lm = tiny_lm(style)
    hf = hf_twin(lm)
    ids = random_ids(2, CTX)
    clm = CLM()
    batch = clm.prepare({"input_ids": ids, "mask": torch.ones_like(ids)}, torch.Generator())
    with torch.no_grad():
        loss, metrics = clm.loss(PretrainModel(lm.backbone, {}, {}, lm.head), lm.backbone(ids, batch["mask"]), batch)
        theirs = hf(input_ids=ids, labels=ids).loss  # HF shifts the labels itself
    torch.testing.assert_close(loss, theirs)


@pytest.mark.parametrize("style", STYLES)
def test_tiny_decoder_overfits_one_batch_under_clm(style):
    torch.manual_seed(0)
    backbone = DecoderBackbone(V, D, L, H, FF, max_len=CTX, style=style)
    model = PretrainModel(backbone, {"clm": CLM()}, {"clm": 1.0}, LMHead(D, V, backbone.get_input_embeddings()))
    ids = random_ids(2, CTX)
    mask = torch.tensor([[1] * 9 + [2] * 7, [1] * 16])
    batch = model.prepare({"input_ids": ids, "mask": mask}, torch.Generator())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        out = model(batch)
        first = first if first is not None else float(out.loss.detach())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    with torch.no_grad():
        out = model(batch)
    assert float(out.loss) < 0.05 * first
    assert float(out.metrics["clm_acc"]) == 1.0
