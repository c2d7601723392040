"""objectives/losses.py: the shared vocabulary loss and accuracy are F.cross_entropy's and argmax's, alone and in
every objective that scores with them (tiny and exact)."""

import importlib

import pytest
import torch
import torch.nn.functional as F

from pretrainlab.backbones import build_backbone
from pretrainlab.models import PretrainModel
from pretrainlab.objectives import build_objectives
from pretrainlab.objectives.losses import SummedCrossEntropy, top_one
from pretrainlab.tokenizer import SpecialIds

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
V = 64
pytestmark = pytest.mark.usefixtures("one_thread")


def test_summed_cross_entropy_and_top_one_are_torch_s():
    """The loss's own backward gives F.cross_entropy's value and gradient; top_one is argmax == labels."""
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(40, 50, generator=gen) * 3).requires_grad_()
    labels = torch.randint(0, 50, (40,), generator=gen)
    labels[:10] = logits[:10].argmax(-1)  # some hits
    ours = SummedCrossEntropy.apply(logits, labels) * 0.3
    (g_ours,) = torch.autograd.grad(ours, logits)
    theirs = F.cross_entropy(logits, labels, reduction="sum") * 0.3
    (g_theirs,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(g_ours, g_theirs)
    assert torch.equal(top_one(logits, labels), logits.argmax(-1) == labels) and top_one(logits, labels).sum() >= 10


def test_no_targets_score_zero_and_ties_count_as_hits():
    """A process with nothing to predict (mlm's row-seeded masks) has a 0 loss and a zero gradient, as
    F.cross_entropy's sum; a tie for the highest logit is a hit for top_one where argmax picks the first."""
    empty = torch.zeros(0, 7, requires_grad=True)
    loss = SummedCrossEntropy.apply(empty, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and empty.grad.shape == (0, 7)
    tied = torch.tensor([[1.0, 1.0, 0.0]])
    assert top_one(tied, torch.tensor([1])).tolist() == [True] and tied.argmax(-1).tolist() == [0]


class TorchCrossEntropy:
    """What the objectives computed before objectives/losses.py: F.cross_entropy's summed loss."""

    @staticmethod
    def apply(logits, labels):
        return F.cross_entropy(logits, labels, reduction="sum")


def argmax_hits(logits, labels):
    return logits.argmax(-1) == labels


# objective -> (the module that scores with losses.py, backbone kind, the objective's settings)
SCORED = {
    "mlm": ("mlm", "transformer", {}),
    "hybrid": ("hybrid", "transformer", {"causal_share": 0.25}),  # 2 causal rows of 8
    "plm": ("plm", "transformer", {}),
    "rtd": ("rtd", "transformer", {}),
    "bilm": ("elmo", "rnn", {}),
    "clm": ("clm", "decoder", {}),
}


def tiny_model(name: str) -> PretrainModel:
    _, kind, settings = SCORED[name]
    style = "llama" if kind == "decoder" else "bert"

    def backbone(seed=0, d_model=32, n_heads=2, d_ff=64):
        torch.manual_seed(seed)
        return build_backbone(kind, vocab_size=V, d_model=d_model, n_layers=2, n_heads=n_heads, d_ff=d_ff,
                              max_len=16, dropout=0.0, style=style)

    bb = backbone()
    objs, head = build_objectives({name: 1.0}, backbone=bb, backbone_kind=kind, vocab_size=V, special=SPECIAL,
                                  settings={"tie_embeddings": True, **settings},
                                  make_backbone=lambda **size: backbone(1, **size))
    return PretrainModel(bb, objs, {name: 1.0}, head)


def packed_batch(B=8, T=16):
    """Two documents per row ([CLS] ... [SEP] [CLS] ... [SEP]), padding at the end."""
    ids = torch.randint(5, V, (B, T), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(B, T, dtype=torch.long)
    ids[:, 0], ids[:, 7], ids[:, 8], ids[:, 13] = 2, 3, 2, 3
    mask[:, 8:] = 2
    ids[:, 14:], mask[:, 14:] = 0, 0
    return {"input_ids": ids, "mask": mask}


def loss_metrics_grads(model, batch):
    model.zero_grad()
    out = model(batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), out.metrics, grads


@pytest.mark.parametrize("name", list(SCORED))
def test_each_objective_scores_as_f_cross_entropy_and_argmax(name, monkeypatch):
    """Each objective's loss, its gradient (every parameter, the LM head's included) and accuracy are what
    F.cross_entropy and argmax == labels give, after a few steps so that some predictions are right."""
    torch.manual_seed(0)
    model = tiny_model(name)
    batch = model.prepare(packed_batch(), torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        model(batch).loss.backward()
        opt.step()
    loss, metrics, grads = loss_metrics_grads(model, batch)
    module = importlib.import_module(f"pretrainlab.objectives.{SCORED[name][0]}")
    monkeypatch.setattr(module, "SummedCrossEntropy", TorchCrossEntropy)
    monkeypatch.setattr(module, "top_one", argmax_hits)
    ref_loss, ref_metrics, ref_grads = loss_metrics_grads(model, batch)
    torch.testing.assert_close(loss, ref_loss)
    assert grads.keys() == ref_grads.keys() and grads
    for n in grads:
        torch.testing.assert_close(grads[n], ref_grads[n], msg=n)
    accs = [k for k in metrics if k.endswith("_acc") and k != "rtd_disc_acc"]
    assert accs and all(0 < metrics[k] < 1 for k in accs), metrics  # some right, some wrong: not all equal
    assert metrics.keys() == ref_metrics.keys()
    for k in metrics:
        assert (metrics[k] == ref_metrics[k]) if k in accs else torch.allclose(metrics[k], ref_metrics[k]), k
