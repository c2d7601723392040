"""RTD (ELECTRA) checked exactly on a hand-made batch (issue #28): which tokens the collator picks and what the
generator reads in their place, the corrupted ids and the discriminator's labels from a generator whose
distribution the test writes, and objective.rtd_weight: loss = generator loss + rtd_weight x discriminator loss."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pretrainlab.objectives import mlm as mlm_module
from pretrainlab.objectives import rtd as rtd_module
from pretrainlab.objectives.mlm import salted
from test_objectives import SPECIAL, V, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

CLS, SEP, PAD, UNK, MASK = SPECIAL.cls, SPECIAL.sep, SPECIAL.pad, SPECIAL.unk, SPECIAL.mask
T = 8


def hand_batch() -> dict[str, torch.Tensor]:
    """Row 0: one segment then padding; row 1: two segments, an [UNK] among the real tokens."""
    ids = torch.tensor([[CLS, 10, 11, 12, 13, SEP, PAD, PAD],
                        [CLS, 20, 21, SEP, 22, UNK, 24, SEP]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0],
                         [1, 1, 1, 1, 2, 2, 2, 2]])
    return {"input_ids": ids, "mask": mask, "row_seed": torch.tensor([1001, 2002])}


# the draws each row's seed would give, written out: a token is picked where select < 0.15 (a special token or
# padding never is, even at 0.0); roll decides what the generator reads there (electra: < 0.85 [MASK], else kept;
# bert: < 0.8 [MASK], < 0.9 the random id, else kept); uniform is where the sample falls in the generator's CDF
SELECT = torch.tensor([[0.00, 0.01, 0.90, 0.14, 0.50, 0.00, 0.00, 0.00],
                       [0.00, 0.05, 0.30, 0.00, 0.10, 0.00, 0.12, 0.00]])
ROLL = torch.tensor([[0.5, 0.10, 0.5, 0.82, 0.5, 0.5, 0.5, 0.5],
                     [0.5, 0.87, 0.5, 0.50, 0.95, 0.5, 0.50, 0.5]])
RANDOM_IDS = torch.tensor([[5, 5, 5, 77, 5, 5, 5, 5],
                           [5, 88, 5, 5, 5, 5, 5, 5]])
UNIFORM = torch.tensor([[0.9, 0.5, 0.9, 0.25, 0.9, 0.9, 0.9, 0.9],
                        [0.9, 0.5, 0.9, 0.90, 0.5, 0.9, 0.75, 0.9]])
PICKED = [1, 3, 9, 12, 14]  # flat (row * T + t): row 0's 10 and 12, row 1's 20, 22 and 24


@pytest.fixture
def hand_draws(monkeypatch):
    """Replace the per-row draws by the ones written above, looked up by the salted seeds RTD must use
    (salt 1 for the mask, salt 3 for the samples), so a draw from any other stream fails loudly."""
    rows = hand_batch()["row_seed"]
    mask_seeds = dict(zip(salted(rows, 1).tolist(), range(2)))
    sample_seeds = dict(zip(salted(rows, 3).tolist(), range(2)))

    def row_draws(seed, n, low, high):
        b = mask_seeds[seed]
        assert n == T and (low, high) == (max(SPECIAL.all) + 1, V)
        return SELECT[b].clone(), ROLL[b].clone(), RANDOM_IDS[b].clone()

    def row_rand(seeds, n):
        assert n == T
        return torch.stack([UNIFORM[sample_seeds[s]] for s in seeds.tolist()])

    monkeypatch.setattr(mlm_module, "_row_draws", row_draws)
    monkeypatch.setattr(rtd_module, "row_rand", row_rand)


class FixedLogits(nn.Module):
    """A generator head whose logits (N, V) the test writes: one row per picked position, in their order."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        assert h.shape[0] == len(self.logits)
        return self.logits


def test_rtd_collator_picks_and_masks_exactly_as_drawn(hand_draws):
    raw = hand_batch()
    expected_input = {
        # electra: 85% [MASK] (rolls 0.10, 0.82, 0.50), the rest kept (0.87, 0.95), never a random token
        "electra": torch.tensor([[CLS, MASK, 11, MASK, 13, SEP, PAD, PAD],
                                 [CLS, 20, 21, SEP, 22, UNK, MASK, SEP]]),
        # bert: 80% [MASK] (0.10, 0.50), 10% random (0.82 -> 77, 0.87 -> 88), 10% kept (0.95)
        "bert": torch.tensor([[CLS, MASK, 11, 77, 13, SEP, PAD, PAD],
                              [CLS, 88, 21, SEP, 22, UNK, MASK, SEP]]),
    }
    assert mlm_module.MASKINGS == {"bert": (0.8, 0.1), "electra": (0.85, 0.0)}
    for masking, want in expected_input.items():
        rtd = tiny_model({"rtd": 1.0}, rtd_masking=masking).objectives["rtd"]
        batch = rtd.prepare(dict(raw), torch.Generator().manual_seed(0))
        assert batch["rtd_positions"].tolist() == PICKED  # never [CLS], [SEP], [UNK] or padding, though drawn 0.0
        assert batch["rtd_labels"].tolist() == [10, 12, 20, 22, 24]
        assert torch.equal(batch["rtd_input"], want), masking
        assert torch.equal(batch["rtd_uniform"], UNIFORM.reshape(-1)[PICKED])
        assert batch["rtd_real"].tolist() == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15]
        assert torch.equal(batch["input_ids"], raw["input_ids"])  # the discriminator's ids are not masked here


def test_rtd_collator_without_row_seeds_uses_the_generators_draws_in_order():
    """The same exactness on the generator path (no row_seed): the draws replayed from a copy of the generator."""
    raw = {k: v for k, v in hand_batch().items() if k != "row_seed"}
    rtd = tiny_model({"rtd": 1.0}).objectives["rtd"]
    for seed in range(20):
        batch = rtd.prepare(dict(raw), torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        select, roll = torch.rand(2, T, generator=g), torch.rand(2, T, generator=g)
        torch.randint(5, V, (2, T), generator=g)  # the random ids: electra uses none
        real = (raw["mask"] != 0) & (raw["input_ids"] > MASK)
        picked = ((select < 0.15) & real).reshape(-1)
        if not picked.any():  # without row seeds a batch always gets one: its lowest draw among real tokens
            picked[torch.where(real.reshape(-1), select.reshape(-1), 2.0).argmin()] = True
        positions = picked.nonzero().squeeze(1)
        assert torch.equal(batch["rtd_positions"], positions), seed
        want = raw["input_ids"].reshape(-1).clone()
        want[positions[roll.reshape(-1)[positions] < 0.85]] = MASK
        assert torch.equal(batch["rtd_input"].reshape(-1), want), seed
        assert torch.equal(batch["rtd_uniform"], torch.rand(len(positions), generator=g)), seed


def test_rtd_corrupts_with_the_generators_samples_and_labels_only_real_changes(hand_draws):
    model = tiny_model({"rtd": 1.0})
    rtd = model.objectives["rtd"]
    batch = rtd.prepare(hand_batch(), torch.Generator())
    logits = torch.full((len(PICKED), V), float("-inf"))
    logits[0, 10] = 0.0  # all mass on the original token: replaced by itself, so labelled original (ELECTRA)
    logits[1, [70, 71]] = 0.0  # half and half: uniform 0.25 -> 70
    logits[2, 20] = 0.0  # the original again, at a position the generator saw kept
    logits[3, [MASK, 61]] = 0.0  # [MASK] is never sampled: all the mass left is on 61
    logits[4, [70, 71]] = 0.0  # uniform 0.75 -> 71
    rtd.generator_head = FixedLogits(logits)
    seen = []
    rtd.generator.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    gen_logits, corrupted, labels = rtd.corrupt(batch)
    assert len(seen) == 1 and torch.equal(seen[0], batch["rtd_input"])  # the generator reads the masked input
    assert torch.equal(gen_logits, logits)
    assert torch.equal(corrupted, torch.tensor([[CLS, 10, 11, 70, 13, SEP, PAD, PAD],
                                                [CLS, 20, 21, SEP, 61, UNK, 71, SEP]]))
    assert torch.equal(labels, torch.tensor([[0, 0, 0, 1, 0, 0, 0, 0],
                                             [0, 0, 0, 0, 1, 0, 1, 0]], dtype=torch.float))


def test_rtd_never_samples_a_banned_token_even_at_uniform_zero():
    """torch.rand returns exactly 0.0 with probability 2**-24 a draw: it once sampled token 0, [PAD], though banned."""
    from pretrainlab.objectives.rtd import sample_tokens

    logits = torch.zeros(2, V)
    assert (sample_tokens(logits, torch.tensor([0.0, 0.5]), banned=SPECIAL.all) > MASK).all()
    assert sample_tokens(logits[:1], torch.tensor([0.0]), banned=SPECIAL.all).item() == max(SPECIAL.all) + 1


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_rtd_weight_scales_the_discriminator_loss_and_its_gradients(hand_draws):
    out, grad = {}, {}
    for weight in (0.0, 1.0, 50.0):
        model = tiny_model({"rtd": 1.0}, rtd_weight=weight)
        if weight == 0.0:
            reference = model
        assert model.objectives["rtd"].weight == weight
        batch = model.prepare(hand_batch(), torch.Generator())
        out[weight] = model(batch)
        out[weight].loss.backward()
        grad[weight] = grads(model)
    for a, b in ((0.0, 1.0), (1.0, 50.0)):  # everything but the weight the same: same models, same draws
        for key in ("rtd_gen_loss", "rtd_disc_loss", "rtd_replaced"):
            assert torch.equal(out[a].metrics[key], out[b].metrics[key]), key
    for weight in (1.0, 50.0):
        m = out[weight].metrics
        torch.testing.assert_close(out[weight].loss, m["rtd_gen_loss"] + weight * m["rtd_disc_loss"])

    # the component losses against a reference: mean cross-entropy over the picked tokens, mean binary
    # cross-entropy over the real ones ([CLS] and [SEP] included, padding not) of the discriminator's logits
    rtd = reference.objectives["rtd"]
    batch = reference.prepare(hand_batch(), torch.Generator())
    with torch.no_grad():
        gen_logits, corrupted, labels = rtd.corrupt(batch)
        hidden = reference.backbone(corrupted, batch["mask"]).hidden
        disc_logits = rtd.discriminator_head(hidden)
    real = batch["mask"] != 0
    torch.testing.assert_close(out[1.0].metrics["rtd_gen_loss"], F.cross_entropy(gen_logits, batch["rtd_labels"]))
    torch.testing.assert_close(out[1.0].metrics["rtd_disc_loss"],
                               F.binary_cross_entropy_with_logits(disc_logits[real], labels[real]))

    # gradients: the discriminator's own parameters (its head, the main backbone's blocks) scale with the weight,
    # the generator's own do not move, the shared embedding tables get generator + weight x discriminator
    disc_only = [n for n in grad[1.0] if n.startswith(("objectives.rtd.discriminator_head.", "backbone.layers."))]
    gen_only = [n for n in grad[1.0] if n.startswith(("objectives.rtd.generator.layers.",
                                                      "objectives.rtd.generator_head."))]
    assert disc_only and gen_only and set(grad[0.0]) == set(grad[1.0]) == set(grad[50.0])
    for n in disc_only:
        assert grad[0.0][n].abs().max() == 0, n
        torch.testing.assert_close(grad[50.0][n], 50 * grad[1.0][n], msg=n)
    for n in gen_only:
        assert torch.equal(grad[50.0][n], grad[1.0][n]) and grad[1.0][n].abs().max() > 0, n
    for n, g in grad[50.0].items():
        torch.testing.assert_close(g, grad[0.0][n] + 50 * (grad[1.0][n] - grad[0.0][n]), rtol=1e-4, atol=1e-6,
                                   msg=n)
    assert grad[50.0]["backbone.tok_emb.weight"].abs().max() > 0
