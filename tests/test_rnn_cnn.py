"""RNN and CNN backbones: padding and document isolation, ELMo directions, trainability, bf16."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from pretrainlab.backbones import build_backbone
from pretrainlab.backbones.cnn import CNNBackbone
from pretrainlab.backbones.rnn import RNNBackbone

V, D = 100, 32
KINDS = ["lstm", "gru", "cnn"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make(kind: str, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    if kind == "cnn":
        # dilation 4 at kernel 3: each layer reaches 4 tokens, more than a test document is long
        model = CNNBackbone(V, D, n_layers=2, kernel_size=3, dilations=(1, 4), dropout=dropout)
    else:
        model = RNNBackbone(V, D, n_layers=2, cell=kind, dropout=dropout)
    return model.eval()


def tokens(n: int, seed: int) -> torch.Tensor:
    return torch.randint(1, V, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", KINDS)
def test_contract(kind):
    model = make(kind)
    assert (model.d_model, model.vocab_size, model.n_layers) == (D, V, 2)
    assert isinstance(model.get_input_embeddings(), nn.Embedding)
    ids = tokens(12, 0).view(2, 6)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 2, 2, 2, 2]])
    out = model(ids, mask, segment_ids=torch.zeros_like(ids), output_attentions=True, output_hidden_states=True)
    assert out.hidden.shape == (2, 6, D) and out.attentions is None
    assert len(out.hidden_states) == model.n_layers + 1 and out.hidden_states[-1] is out.hidden
    assert all(h.shape == (2, 6, D) for h in out.hidden_states)
    assert torch.all(out.hidden[0, 4:] == 0)  # padding outputs are zeros
    # no segment ids means segment 0
    assert_close(model(ids, mask).hidden, out.hidden)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_invariance(kind):
    model = make(kind)
    text = tokens(9, 1)
    alone = model(text[None], torch.ones(1, 9, dtype=torch.long)).hidden[0]
    # more padding, filled with arbitrary token ids that must not matter; and a row of padding only
    ids = torch.cat([text, tokens(7, 2)]).repeat(2, 1)
    mask = torch.zeros(2, 16, dtype=torch.long)
    mask[0, :9] = 1
    out = model(ids, mask).hidden
    assert_close(out[0, :9], alone)
    assert torch.all(out[0, 9:] == 0) and torch.all(out[1] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_documents_do_not_see_each_other(kind):
    model = make(kind)
    a, b = tokens(6, 3), tokens(7, 4)
    ids = torch.cat([a, b, tokens(3, 5)])[None]
    mask = torch.tensor([[1] * 6 + [2] * 7 + [0] * 3])
    packed = model(ids, mask).hidden[0]
    alone_a = model(a[None], torch.ones(1, 6, dtype=torch.long)).hidden[0]
    alone_b = model(b[None], torch.ones(1, 7, dtype=torch.long)).hidden[0]
    assert_close(packed[:6], alone_a)
    assert_close(packed[6:13], alone_b)


def test_all_padding_batch():
    for kind in KINDS:
        out = make(kind)(tokens(8, 6).view(2, 4), torch.zeros(2, 4, dtype=torch.long))
        assert out.hidden.shape == (2, 4, D) and torch.all(out.hidden == 0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_elmo_directions_do_not_see_the_future(cell):
    model = make(cell)
    ids = torch.cat([tokens(12, 7), tokens(4, 8)])[None]
    mask = torch.tensor([[1] * 12 + [2] * 4])  # a second document after the first
    fwd, bwd = model.directional_states(ids, mask)
    assert fwd.shape == bwd.shape == (1, 16, D // 2)
    t = 5
    later = ids.clone()
    later[0, t + 1 : 12] = tokens(12 - t - 1, 9)
    fwd2, bwd2 = model.directional_states(later, mask)
    assert_close(fwd2[:, : t + 1], fwd[:, : t + 1])  # forward state at <= t: tokens <= t only
    assert not torch.allclose(bwd2[:, t], bwd[:, t])  # the backward one does see them
    earlier = ids.clone()
    earlier[0, :t] = tokens(t, 10)
    fwd3, bwd3 = model.directional_states(earlier, mask)
    assert_close(bwd3[:, t:], bwd[:, t:])  # backward state at >= t: tokens >= t only
    assert not torch.allclose(fwd3[:, t], fwd[:, t])
    # the halves of the ordinary output are the two directions
    assert_close(model(ids, mask).hidden, torch.cat([fwd, bwd], dim=-1))


@pytest.mark.parametrize("kind", KINDS)
def test_overfits_one_batch(kind):
    """A tied linear LM head on the backbone learns to reproduce a fixed batch."""
    model = make(kind, dropout=0.1).train()
    emb = model.get_input_embeddings()
    bias = nn.Parameter(torch.zeros(V))
    opt = torch.optim.Adam([*model.parameters(), bias], lr=1e-2)
    ids = tokens(4 * 12, 11).view(4, 12)
    mask = torch.tensor([[1] * 12, [1] * 5 + [2] * 7, [1] * 9 + [0] * 3, [1] * 4 + [0] * 8])
    real = mask != 0
    for _ in range(100):
        logits = model(ids, mask).hidden[real] @ emb.weight.T + bias
        loss = nn.functional.cross_entropy(logits, ids[real])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_autocast(kind):
    model = make(kind)
    ids = tokens(32, 12).view(2, 16)
    mask = torch.tensor([[1] * 16, [1] * 6 + [2] * 6 + [0] * 4])
    ref = model(ids, mask).hidden
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, mask).hidden
    assert torch.isfinite(out).all()
    assert_close(out.float(), ref, atol=0.1, rtol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(ids, mask).hidden.float().pow(2).mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)


def test_factory_builds_them():
    rnn = build_backbone("rnn", vocab_size=V, d_model=D, n_layers=2, rnn_cell="gru", dropout=0.0, pad_id=0)
    assert isinstance(rnn, RNNBackbone) and rnn.cell == "gru" and isinstance(rnn.fwd[0], nn.GRU)
    cnn = build_backbone("cnn", vocab_size=V, d_model=D, n_layers=3, kernel_size=3, dilations=(1, 2))
    assert isinstance(cnn, CNNBackbone) and [b.conv.dilation[1] for b in cnn.blocks] == [1, 2, 1]
    assert cnn.gap == 2
    with pytest.raises(ValueError, match="lstm or gru"):
        RNNBackbone(V, D, 2, cell="rnn")
