"""Generation (generate.py): greedy equals Hugging Face's generate, the cache changes nothing, bad settings refused."""

import pytest
import torch

from pretrainlab.generate import generate, next_token
from test_decoder import CTX, STYLES, hf_twin, random_ids, tiny_lm

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def hf_greedy(hf, ids, mask, n, eos_id=None):
    return hf.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=n,
                       pad_token_id=0, eos_token_id=eos_id)


@pytest.mark.parametrize("style", STYLES)
def test_greedy_equals_hf_generate(style):
    lm = tiny_lm(style)
    hf = hf_twin(lm)
    ids = random_ids(1, 4)
    ours = generate(lm, ids, max_new_tokens=10, temperature=0.0)
    assert ours.shape == (1, 14)
    assert torch.equal(ours, hf_greedy(hf, ids, torch.ones_like(ids), 10))


@pytest.mark.parametrize("style", STYLES)
def test_greedy_equals_hf_generate_on_a_left_padded_batch(style):
    lm = tiny_lm(style)
    hf = hf_twin(lm)
    ids = random_ids(2, 5)
    mask = torch.ones_like(ids)
    ids[1, :2], mask[1, :2] = 0, 0  # the second prompt is 3 tokens, padded on the left
    ours = generate(lm, ids, max_new_tokens=8, temperature=0.0, mask=mask)
    assert torch.equal(ours, hf_greedy(hf, ids, mask, 8))
    alone = generate(lm, ids[1:, 2:], max_new_tokens=8, temperature=0.0)
    assert torch.equal(ours[1, 2:], alone[0])  # padding changes nothing


@pytest.mark.parametrize("style", STYLES)
def test_stops_at_eos_as_hf_does(style):
    lm = tiny_lm(style)
    hf = hf_twin(lm)
    ids = random_ids(2, 4, seed=4)
    free = generate(lm, ids, max_new_tokens=10, temperature=0.0)
    eos = int(free[0, 4 + 2])  # row 0's third new token
    ours = generate(lm, ids, max_new_tokens=10, temperature=0.0, eos_id=eos)
    theirs = hf_greedy(hf, ids, torch.ones_like(ids), 10, eos_id=eos)
    assert torch.equal(ours, theirs)
    new = ours[0, 4:]
    k = int((new == eos).nonzero()[0])  # row 0 stops at its first eos (at the third new token or before)
    assert k <= 2 and bool((new[k + 1:] == 0).all())  # and is padded after it


@pytest.mark.parametrize("style", STYLES)
def test_cached_generation_equals_uncached(style):
    lm = tiny_lm(style)
    ids = random_ids(2, 3)
    for settings in (dict(temperature=0.0), dict(temperature=1.3, top_k=20, top_p=0.9, seed=7)):
        cached = generate(lm, ids, max_new_tokens=12, **settings)
        uncached = generate(lm, ids, max_new_tokens=12, use_cache=False, **settings)
        assert torch.equal(cached, uncached)


def test_sampling_is_repeatable_and_its_limits_reach_greedy():
    lm = tiny_lm("llama")
    ids = random_ids(2, 3)
    greedy = generate(lm, ids, max_new_tokens=8, temperature=0.0)
    assert torch.equal(greedy, generate(lm, ids, max_new_tokens=8, temperature=0.0))
    a = generate(lm, ids, max_new_tokens=8, temperature=1.0, seed=3)
    assert torch.equal(a, generate(lm, ids, max_new_tokens=8, temperature=1.0, seed=3))
    assert not torch.equal(a, generate(lm, ids, max_new_tokens=8, temperature=5.0, seed=4))
    assert torch.equal(greedy, generate(lm, ids, max_new_tokens=8, temperature=1.0, top_k=1, seed=3))
    assert torch.equal(greedy, generate(lm, ids, max_new_tokens=8, temperature=1.0, top_p=1e-6, seed=3))
    assert lm.training is False and generate(lm.train(), ids, 2, 0.0) is not None and lm.training is True


def test_top_k_and_top_p_keep_exactly_their_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    drawn = lambda **kw: {int(next_token(logits, 1.0, gen=gen, **kw)) for _ in range(300)}  # noqa: E731
    assert drawn(top_k=2, top_p=None) == {0, 1}
    assert drawn(top_k=None, top_p=0.8) == {0, 1}  # 0.5 + 0.3 reaches 0.8
    assert drawn(top_k=None, top_p=0.81) == {0, 1, 2}


@pytest.mark.parametrize("kwargs, message", [
    (dict(top_p=0.0), r"top_p=0.0 is outside \(0, 1\]"),
    (dict(top_p=1.5), r"top_p=1.5 is outside \(0, 1\]"),
    (dict(temperature=-0.5), "temperature=-0.5 is negative"),
    (dict(top_k=0), "top_k=0 must be at least 1"),
    (dict(max_new_tokens=-1), "max_new_tokens=-1 is negative"),
    (dict(max_new_tokens=13), "ask for at most 12 new tokens"),
])
def test_bad_settings_are_refused(kwargs, message):
    lm = tiny_lm("llama")
    settings = {"max_new_tokens": 2, "temperature": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(lm, random_ids(1, 4), **settings)


def test_bad_prompts_are_refused():
    lm = tiny_lm("gpt2")
    with pytest.raises(ValueError, match=f"the prompt is {CTX + 1} tokens, longer than the model's context of {CTX}"):
        generate(lm, random_ids(1, CTX + 1), max_new_tokens=1)
    with pytest.raises(ValueError, match="the prompt is empty"):
        generate(lm, torch.zeros(1, 0, dtype=torch.long), max_new_tokens=1)
    with pytest.raises(ValueError, match="pad prompts on the left"):
        generate(lm, random_ids(1, 4), max_new_tokens=1, mask=torch.tensor([[1, 1, 1, 0]]))
