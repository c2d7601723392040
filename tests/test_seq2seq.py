"""The encoder-decoder (backbones/seq2seq.py) and its LM (models.Seq2SeqLM): exactly BartForConditionalGeneration,
cache, generation (generate.py's one sampler)."""

import pytest
import torch
from torch.testing import assert_close

from pretrainlab.backbones.seq2seq import Seq2SeqCache, Seq2SeqTransformer, shift_right
from pretrainlab.export.hf_seq2seq_names import (
    HF_BART_NAMES,
    from_hf_bart_state_dict,
    hf_bart_config_kwargs,
    to_hf_bart_state_dict,
)
from pretrainlab.generate import GenerateError, generate
from pretrainlab.heads import Seq2SeqLMHead
from pretrainlab.models import Seq2SeqLM

V, D, PAD, BOS, EOS = 64, 32, 0, 2, 3


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def tiny_model(seed: int = 0, **kw) -> Seq2SeqTransformer:
    """2 + 2 layers, d=32; every weight moved off its init (norms, biases)."""
    return tiny_lm(seed, **kw).backbone


def tiny_lm(seed: int = 0, **kw) -> Seq2SeqLM:
    """tiny_model with its LM head, whose final_logits_bias is moved off zero too."""
    torch.manual_seed(seed)
    m = Seq2SeqTransformer(vocab_size=V, d_model=D, n_layers=2, n_heads=4, d_ff=64, max_len=16, dropout=0.0, **kw)
    lm = Seq2SeqLM(m, Seq2SeqLMHead(m.get_input_embeddings()))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        lm.head.final_logits_bias.normal_(std=0.1)
    return lm.eval()


def hf_twin(lm: Seq2SeqLM, eos: int = EOS):
    from transformers import BartConfig, BartForConditionalGeneration

    m = lm.backbone
    cfg = BartConfig(**hf_bart_config_kwargs(
        vocab_size=m.vocab_size, d_model=m.d_model, n_layers=m.n_layers, n_decoder_layers=m.n_decoder_layers,
        n_heads=m.n_heads, d_ff=m.d_ff, max_len=m.max_len, dropout=m.dropout, pad_id=PAD, bos_id=BOS, eos_id=eos,
    ))
    hf = BartForConditionalGeneration(cfg).eval()
    hf.load_state_dict(to_hf_bart_state_dict(m.state_dict(), lm.head.final_logits_bias), strict=True)
    return hf


def gen(lm: Seq2SeqLM, ids, mask, max_new_tokens=12, temperature=0.0, **kw):
    """generate.generate on an encoder-decoder: greedy unless told, decoding from [SEP] (BART's start: its end)."""
    kw = {"decoder_start_id": EOS, "eos_id": EOS, "pad_id": PAD, **kw}
    return generate(lm, ids, max_new_tokens, temperature, mask=mask, **kw)


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # right padding, as the BART tokenizer pads
    mask[2, 5:] = 0
    ids[mask == 0] = PAD
    dec = torch.randint(5, V, (3, 9), generator=g)
    return ids, mask, dec


def test_logits_equal_hf_bart():
    lm = tiny_lm()
    m, hf = lm.backbone, hf_twin(lm)
    ids, mask, dec = batch()
    ours = m(ids, mask, dec)
    theirs = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_hidden_states=True)
    assert_close(lm(ids, mask, dec), theirs.logits)
    real = mask.bool()
    assert_close(ours.encoder_hidden[real], theirs.encoder_last_hidden_state[real])
    assert_close(ours.decoder_hidden, theirs.decoder_hidden_states[-1])


def test_attentions_and_hidden_states_equal_hf_bart():
    """output_attentions / output_hidden_states: the three kinds of weights and both stacks' states, as BART's."""
    lm = tiny_lm()
    m, hf = lm.backbone, hf_twin(lm)
    hf.set_attn_implementation("eager")  # the implementation that returns its weights
    ids, mask, dec = batch()
    ours = m(ids, mask, dec, output_attentions=True, output_hidden_states=True)
    theirs = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_attentions=True,
                output_hidden_states=True)
    real = mask.bool()
    for a, b in zip(ours.encoder_attentions, theirs.encoder_attentions, strict=True):
        assert_close(a.transpose(1, 2)[real], b.transpose(1, 2)[real])  # (N, H, S): real queries
    for name in ("decoder_attentions", "cross_attentions", "decoder_hidden_states"):
        for a, b in zip(getattr(ours, name), getattr(theirs, name), strict=True):
            assert_close(a, b)
    for a, b in zip(ours.encoder_hidden_states, theirs.encoder_hidden_states, strict=True):
        assert_close(a[real], b[real])
    assert len(ours.encoder_hidden_states) == m.n_layers + 1 and len(ours.decoder_hidden_states) == m.n_decoder_layers + 1
    assert_close(ours.decoder_hidden, m(ids, mask, dec).decoder_hidden)  # the same (explicit attention, not SDPA)


def test_attention_maps_are_distributions_of_the_right_shape():
    m = tiny_model()
    ids, mask, dec = batch()
    out = m(ids, mask, dec, output_attentions=True)
    (B, S), T = ids.shape, dec.shape[1]
    for a in out.cross_attentions:
        assert a.shape == (B, m.n_heads, T, S)
        assert_close(a.sum(-1), torch.ones(B, m.n_heads, T))
        assert (a.masked_select(mask[:, None, None, :] == 0) == 0).all()  # never the encoder's padding
    for a in out.decoder_attentions:
        assert a.shape == (B, m.n_heads, T, T) and (a.triu(1) == 0).all()  # causal: zero above the diagonal
        assert_close(a.sum(-1), torch.ones(B, m.n_heads, T))
    for a in out.encoder_attentions:
        assert a.shape == (B, m.n_heads, S, S)
        assert_close(a.sum(-1).transpose(1, 2)[mask.bool()], torch.ones(int(mask.sum()), m.n_heads))  # (N, H)


def test_input_embeddings_instead_of_ids_change_nothing():
    m = tiny_model()
    ids, mask, dec = batch()
    emb = m.get_input_embeddings()
    assert torch.equal(m(ids, mask, dec, inputs_embeds=emb(ids), decoder_inputs_embeds=emb(dec)).decoder_hidden,
                       m(ids, mask, dec).decoder_hidden)


def test_hf_folder_round_trip(tmp_path, monkeypatch):
    """save_pretrained keeps the tied embedding; AutoModelForSeq2SeqLM loads the folder offline."""
    from transformers import AutoModelForSeq2SeqLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lm = tiny_lm()
    hf_twin(lm).save_pretrained(tmp_path)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    ids, mask, dec = batch()
    assert_close(lm(ids, mask, dec), loaded(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits)


def test_name_map_round_trip_is_exact():
    lm = tiny_lm()
    ours, bias = lm.backbone.state_dict(), lm.head.final_logits_bias
    theirs = to_hf_bart_state_dict(ours, bias)
    assert set(theirs) == set(hf_twin(lm).state_dict())
    back, back_bias = from_hf_bart_state_dict(theirs)
    assert set(back) == set(ours) and torch.equal(back_bias, bias)
    for k, v in ours.items():
        assert torch.equal(back[k], v), k


def test_name_map_covers_every_parameter_once():
    m = tiny_model()
    patterns = {k.replace(".0.", ".{i}.").replace(".1.", ".{i}.") for k in m.state_dict()}
    assert patterns == set(HF_BART_NAMES)
    theirs = [n for t in HF_BART_NAMES.values() for n in (t if isinstance(t, tuple) else (t,))]
    assert len(theirs) == len(set(theirs))


def test_config_kwargs_say_what_the_model_computes():
    from transformers import BartConfig

    cfg = BartConfig(**hf_bart_config_kwargs(vocab_size=V, d_model=D, n_layers=2, n_decoder_layers=1, n_heads=4,
                                             d_ff=64, max_len=16, dropout=0.1, pad_id=PAD, bos_id=BOS, eos_id=EOS))
    assert (cfg.decoder_start_token_id, cfg.eos_token_id, cfg.pad_token_id) == (EOS, EOS, PAD)
    assert cfg.forced_eos_token_id is None and getattr(cfg, "forced_bos_token_id", None) is None
    assert cfg.scale_embedding is False and cfg.activation_function == "gelu" and cfg.tie_word_embeddings
    assert (cfg.encoder_layers, cfg.decoder_layers, cfg.attention_dropout, cfg.activation_dropout) == (2, 1, 0.1, 0.0)


def test_shift_right_is_barts():
    from transformers.models.bart.modeling_bart import shift_tokens_right

    labels = torch.tensor([[BOS, 7, 8, EOS, -100, -100], [BOS, 9, 10, 11, 12, EOS]])
    assert torch.equal(shift_right(labels, EOS, PAD), shift_tokens_right(labels, PAD, EOS))
    assert shift_right(labels, EOS, PAD)[0].tolist() == [EOS, BOS, 7, 8, EOS, PAD]


def test_decoder_is_causal():
    m = tiny_lm()
    ids, mask, dec = batch()
    base = m(ids, mask, dec)
    later = dec.clone()
    later[:, 5:] = torch.randint(5, V, later[:, 5:].shape)
    out = m(ids, mask, later)
    assert torch.equal(out[:, :5], base[:, :5])
    assert not torch.allclose(out[:, 5:], base[:, 5:])


def test_packed_documents_equal_separate_rows():
    """Two (source, target) pairs packed in one row with document ids compute what each alone does."""
    m = tiny_lm()
    src_a, src_b = torch.tensor([[9, 10, 11, 12]]), torch.tensor([[20, 21, 22]])
    tgt_a, tgt_b = torch.tensor([[EOS, 30, 31]]), torch.tensor([[EOS, 40, 41, 42]])
    alone_a = m(src_a, torch.ones_like(src_a), tgt_a)
    alone_b = m(src_b, torch.ones_like(src_b), tgt_b)
    src = torch.cat((src_a, src_b, torch.tensor([[PAD]])), dim=1)
    enc_mask = torch.tensor([[1, 1, 1, 1, 2, 2, 2, 0]])
    tgt = torch.cat((tgt_a, tgt_b, torch.tensor([[PAD]])), dim=1)
    dec_mask = torch.tensor([[1, 1, 1, 2, 2, 2, 2, 0]])
    packed = m(src, enc_mask, tgt, dec_mask)
    assert_close(packed[:, :3], alone_a)
    assert_close(packed[:, 3:7], alone_b)
    assert torch.isfinite(packed).all()


def test_cached_steps_equal_one_full_pass():
    m = tiny_lm()
    ids, mask, dec = batch()
    full = m(ids, mask, dec)
    cache = Seq2SeqCache()
    steps = [m(ids, mask, dec[:, :3], cache=cache)]  # a prefix, then one token at a time
    for t in range(3, dec.shape[1]):
        steps.append(m(None, None, dec[:, t : t + 1], cache=cache))
    assert_close(torch.cat(steps, dim=1), full)
    assert cache.length == dec.shape[1] and cache.layers[0].cross_k.shape[2] == ids.shape[1]


@pytest.mark.parametrize("sampling", [dict(), dict(temperature=0.9, top_k=20, top_p=0.9, seed=3)])
def test_cached_generation_equals_uncached(sampling):
    m = tiny_lm()
    ids, mask, _ = batch()
    assert torch.equal(gen(m, ids, mask, **sampling), gen(m, ids, mask, use_cache=False, **sampling))


def test_greedy_generation_equals_hf_generate():
    m = tiny_lm(seed=1)  # its rows differ: [60 8 8 ...], [36 61 61 5 ...], [61 61 ... 5 5 ...]
    ids, mask, _ = batch()
    free = gen(m, ids, mask)
    eos = int(free[1, 4])  # a token rows 1 and 2 produce at different steps and row 0 never: the end of text
    ours = gen(m, ids, mask, eos_id=eos)
    hf = hf_twin(m, eos=eos)
    theirs = hf.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1, max_new_tokens=12,
                         min_length=0, decoder_start_token_id=EOS, eos_token_id=eos, pad_token_id=PAD)
    assert torch.equal(ours, theirs)
    stops = [(row[1:] == eos).nonzero()[:1].flatten().tolist() for row in ours]
    assert stops[1] == [3] and stops[2] and stops[2][0] > 3 and not stops[0]  # rows end at different steps
    for row, stop in zip(ours, stops):
        assert (row[2 + stop[0]:] == PAD).all() if stop else (row != PAD).all()  # padded after the end token


def test_greedy_is_deterministic_and_sampling_follows_the_seed():
    m = tiny_lm()
    ids, mask, _ = batch()
    assert torch.equal(gen(m, ids, mask, 10), gen(m, ids, mask, 10))
    a = gen(m, ids, mask, 10, temperature=1.5, seed=1)
    assert torch.equal(a, gen(m, ids, mask, 10, temperature=1.5, seed=1))
    assert not torch.equal(a, gen(m, ids, mask, 10, temperature=1.5, seed=2))
    greedy = gen(m, ids, mask, 10)
    assert torch.equal(gen(m, ids, mask, 10, temperature=1.0, top_k=1, seed=5), greedy)
    assert torch.equal(gen(m, ids, mask, 10, temperature=1.0, top_p=1e-6, seed=5), greedy)


@pytest.mark.parametrize("seed", [None, 7])
def test_sampling_leaves_the_global_rng_untouched(seed):
    """The draws come from a generator of the call's own: seeded or not, torch's global RNG is neither reseeded
    (no torch.seed()) nor advanced; without a seed two calls differ (they are not secretly seeded)."""
    m = tiny_lm()
    ids, mask, _ = batch()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    draws = [gen(m, ids, mask, 10, temperature=3.0, seed=seed) for _ in range(3)]
    assert torch.equal(torch.random.get_rng_state(), before)
    assert any(not torch.equal(draws[0], d) for d in draws[1:]) == (seed is None)


@pytest.mark.parametrize("bad, match", [
    (dict(temperature=-1.0), "temperature=-1.0 is negative"),
    (dict(top_p=0.0), r"top_p=0.0 is outside \(0, 1\]"),
    (dict(top_p=1.5), r"top_p=1.5 is outside \(0, 1\]"),
    (dict(top_k=-2), "top_k=-2 must be at least 1"),
])
def test_bad_sampling_settings_are_refused(bad, match):
    m = tiny_lm()
    ids, mask, _ = batch()
    with pytest.raises(GenerateError, match=match):
        gen(m, ids, mask, **bad)


def test_too_long_inputs_are_refused():
    lm = tiny_lm()
    m = lm.backbone
    ids = torch.full((1, 17), 7)
    with pytest.raises(ValueError, match="encoder input has 17 tokens, more than max_len=16"):
        m(ids, torch.ones_like(ids), ids[:, :2])
    with pytest.raises(ValueError, match="decoder input .* 17 tokens"):
        m(ids[:, :4], torch.ones_like(ids[:, :4]), ids)
    with pytest.raises(GenerateError, match="got an input of 4 and max_new_tokens=16"):
        gen(lm, ids[:, :4], torch.ones_like(ids[:, :4]), 16)


def test_sdpa_and_explicit_attention_agree():
    m = tiny_model()
    ids, mask, dec = batch()
    m.attn_impl = "sdpa"
    a = m(ids, mask, dec).decoder_hidden
    m.attn_impl = "explicit"
    assert_close(m(ids, mask, dec).decoder_hidden, a)
