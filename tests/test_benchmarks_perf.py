"""The pure logic of benchmarks/profile_step.py: which category a profiled operator's time goes to."""

import importlib
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def ps():
    """benchmarks/profile_step.py, imported as the scripts import each other (benchmarks/ on sys.path)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("profile_step")
    finally:
        sys.path.remove(str(BENCHMARKS))


@dataclass
class Event:
    """The two fields of a torch.profiler FunctionEvent that category_of reads."""

    name: str
    cpu_parent: "Event | None" = None


def chain(*names: str) -> Event:
    """Events nested outermost first -> the innermost one."""
    event = None
    for name in names:
        event = Event(name, event)
    return event


def test_operator_names_to_categories(ps):
    expected = {
        "aten::mm": ps.MATMUL, "aten::addmm": ps.MATMUL, "aten::linear": ps.MATMUL,
        "aten::_scaled_dot_product_flash_attention_for_cpu": ps.MATMUL,
        "autograd::engine::evaluate_function: MmBackward0": ps.MATMUL, "BaddbmmBackward0": ps.MATMUL,
        "attention_bias": ps.BIAS,
        "EmbeddingBackward0": ps.EMBEDDING, "aten::embedding_dense_backward": ps.EMBEDDING,
        "Optimizer.step#AdamW.step": ps.OPTIMIZER, "aten::_foreach_lerp_": ps.OPTIMIZER,
        "aten::to": ps.CASTS, "aten::_to_copy": ps.CASTS, "ToCopyBackward0": ps.CASTS,
        "aten::log_softmax": ps.LOSS, "aten::nll_loss_forward": ps.LOSS,
        "autograd::engine::evaluate_function: NllLossBackward0": ps.LOSS,
        # no category of their own: they take their parents'
        "aten::copy_": None, "aten::zeros": None, "aten::topk": None, "aten::embedding": None, "aten::gelu": None,
        "step": None,
    }
    assert {name: ps.rule_of(name) for name in expected} == expected


def test_outermost_category_wins_but_a_cast_is_a_cast(ps):
    expected = {
        ("step", "aten::linear", "aten::mm"): ps.MATMUL,
        ("step", "aten::linear", "aten::_to_copy", "aten::copy_"): ps.CASTS,  # autocast's cast inside linear
        ("step", "aten::cross_entropy_loss", "aten::nll_loss_nd", "aten::ne"): ps.LOSS,
        ("step", "attention_bias", "aten::zeros"): ps.BIAS,
        ("step", "aten::zeros"): ps.OTHER,
        ("autograd::engine::evaluate_function: EmbeddingBackward0", "EmbeddingBackward0",
         "aten::embedding_dense_backward", "aten::index_add_"): ps.EMBEDDING,
        ("step", "Optimizer.step#AdamW.step", "aten::_foreach_lerp_", "aten::lerp_"): ps.OPTIMIZER,
        ("step", "aten::clone", "aten::copy_"): ps.OTHER,  # a copy that is not a cast
        ("step",): ps.OTHER,  # the Python between operators
    }
    assert {names: ps.category_of(chain(*names)) for names in expected} == expected


def test_label_calls_puts_a_function_under_its_range(ps):
    module = types.SimpleNamespace(bias=lambda n: torch.zeros(n, n))
    ps.label_calls(module, "bias", ps.BIAS_RANGE)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out = module.bias(3)
    assert out.shape == (3, 3)
    zeros = [e for e in prof.events() if e.name == "aten::zeros"]
    assert zeros and all(ps.category_of(e) == ps.BIAS for e in zeros)


def test_flat_buffer_adamw_takes_the_same_steps_as_foreach():
    """benchmarks/optimizer_step.py's flat variant: parameters and gradients become views of one buffer per
    group, backward accumulates into it, and AdamW + clipping over the buffer give foreach's weights."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        opt_bench = importlib.import_module("optimizer_step")
    finally:
        sys.path.remove(str(BENCHMARKS))
    from torch import nn

    torch.manual_seed(0)
    base = nn.Sequential(nn.Embedding(11, 6), nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3))
    x = torch.randint(0, 11, (4, 7))
    sides = {v: opt_bench.build(v, base, lr=0.05, weight_decay=0.1) for v in ("foreach", "flat-foreach", "flat-fused")}
    flat_model = sides["flat-foreach"][0]
    buffers = {p.untyped_storage().data_ptr() for p in flat_model.parameters()}
    assert len(buffers) == 2  # one per weight-decay group
    for _ in range(3):
        for model, update in sides.values():
            model(x).pow(2).mean().backward()
            update(0.5)  # clipping bites: the gradients' norm is well above 0.5 at first
    ref = dict(sides["foreach"][0].named_parameters())
    for v in ("flat-foreach", "flat-fused"):
        for name, p in sides[v][0].named_parameters():
            torch.testing.assert_close(p, ref[name], rtol=1e-5, atol=1e-6)
            assert p.grad is not None and float(p.grad.abs().sum()) == 0.0  # zeroed in place, not set to None
    assert not torch.equal(ref["1.weight"], base[1].weight)  # it did train
