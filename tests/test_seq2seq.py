"""The encoder-decoder (backbones/seq2seq.py): exactly BartForConditionalGeneration, cache, generation."""

import pytest
import torch
from torch.testing import assert_close

from pretrainlab.backbones.seq2seq import Seq2SeqCache, Seq2SeqTransformer, generate, next_token, shift_right
from pretrainlab.export.hf_seq2seq_names import (
    HF_BART_NAMES,
    from_hf_bart_state_dict,
    hf_bart_config_kwargs,
    to_hf_bart_state_dict,
)

V, D, PAD, BOS, EOS = 64, 32, 0, 2, 3


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def tiny_model(seed: int = 0, **kw) -> Seq2SeqTransformer:
    """2 + 2 layers, d=32; every weight moved off its init (norms, biases, final_logits_bias too)."""
    torch.manual_seed(seed)
    m = Seq2SeqTransformer(vocab_size=V, d_model=D, n_layers=2, n_heads=4, d_ff=64, max_len=16, dropout=0.0, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        m.final_logits_bias.normal_(std=0.1)
    return m.eval()


def hf_twin(m: Seq2SeqTransformer, eos: int = EOS):
    from transformers import BartConfig, BartForConditionalGeneration

    cfg = BartConfig(**hf_bart_config_kwargs(
        vocab_size=m.vocab_size, d_model=m.d_model, n_layers=m.n_layers, n_decoder_layers=m.n_decoder_layers,
        n_heads=m.n_heads, d_ff=m.d_ff, max_len=m.max_len, dropout=m.dropout, pad_id=PAD, bos_id=BOS, eos_id=eos,
    ))
    hf = BartForConditionalGeneration(cfg).eval()
    hf.load_state_dict(to_hf_bart_state_dict(m.state_dict()), strict=True)
    return hf


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
    m = tiny_model()
    hf = hf_twin(m)
    ids, mask, dec = batch()
    ours = m(ids, mask, dec)
    theirs = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_hidden_states=True)
    assert_close(ours.logits, theirs.logits)
    real = mask.bool()
    assert_close(ours.encoder_hidden[real], theirs.encoder_last_hidden_state[real])
    assert_close(ours.decoder_hidden, theirs.decoder_hidden_states[-1])


def test_attentions_and_hidden_states_equal_hf_bart():
    """output_attentions / output_hidden_states: the three kinds of weights and both stacks' states, as BART's."""
    m = tiny_model()
    hf = hf_twin(m)
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
    assert_close(ours.logits, m(ids, mask, dec).logits)  # the same logits (explicit attention instead of SDPA)


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
    assert torch.equal(m(ids, mask, dec, inputs_embeds=emb(ids), decoder_inputs_embeds=emb(dec)).logits,
                       m(ids, mask, dec).logits)


def test_hf_folder_round_trip(tmp_path, monkeypatch):
    """save_pretrained keeps the tied embedding; AutoModelForSeq2SeqLM loads the folder offline."""
    from transformers import AutoModelForSeq2SeqLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = tiny_model()
    hf_twin(m).save_pretrained(tmp_path)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    ids, mask, dec = batch()
    assert_close(m(ids, mask, dec).logits, loaded(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits)


def test_name_map_round_trip_is_exact():
    m = tiny_model()
    ours = m.state_dict()
    theirs = to_hf_bart_state_dict(ours)
    assert set(theirs) == set(hf_twin(m).state_dict())
    back = from_hf_bart_state_dict(theirs)
    assert set(back) == set(ours)
    for k, v in ours.items():
        assert torch.equal(back[k], v), k


def test_name_map_covers_every_parameter_once():
    m = tiny_model()
    patterns = {k.replace(".0.", ".{i}.").replace(".1.", ".{i}.") for k in m.state_dict()} - {"final_logits_bias"}
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
    m = tiny_model()
    ids, mask, dec = batch()
    base = m(ids, mask, dec).logits
    later = dec.clone()
    later[:, 5:] = torch.randint(5, V, later[:, 5:].shape)
    out = m(ids, mask, later).logits
    assert torch.equal(out[:, :5], base[:, :5])
    assert not torch.allclose(out[:, 5:], base[:, 5:])


def test_packed_documents_equal_separate_rows():
    """Two (source, target) pairs packed in one row with document ids compute what each alone does."""
    m = tiny_model()
    src_a, src_b = torch.tensor([[9, 10, 11, 12]]), torch.tensor([[20, 21, 22]])
    tgt_a, tgt_b = torch.tensor([[EOS, 30, 31]]), torch.tensor([[EOS, 40, 41, 42]])
    alone_a = m(src_a, torch.ones_like(src_a), tgt_a).logits
    alone_b = m(src_b, torch.ones_like(src_b), tgt_b).logits
    src = torch.cat((src_a, src_b, torch.tensor([[PAD]])), dim=1)
    enc_mask = torch.tensor([[1, 1, 1, 1, 2, 2, 2, 0]])
    tgt = torch.cat((tgt_a, tgt_b, torch.tensor([[PAD]])), dim=1)
    dec_mask = torch.tensor([[1, 1, 1, 2, 2, 2, 2, 0]])
    packed = m(src, enc_mask, tgt, dec_mask).logits
    assert_close(packed[:, :3], alone_a)
    assert_close(packed[:, 3:7], alone_b)
    assert torch.isfinite(packed).all()


def test_cached_steps_equal_one_full_pass():
    m = tiny_model()
    ids, mask, dec = batch()
    full = m(ids, mask, dec).logits
    cache = Seq2SeqCache()
    steps = [m(ids, mask, dec[:, :3], cache=cache).logits]  # a prefix, then one token at a time
    for t in range(3, dec.shape[1]):
        steps.append(m(None, None, dec[:, t : t + 1], cache=cache).logits)
    assert_close(torch.cat(steps, dim=1), full)
    assert cache.length == dec.shape[1] and cache.layers[0].cross_k.shape[2] == ids.shape[1]


@pytest.mark.parametrize("sampling", [dict(), dict(temperature=0.9, top_k=20, top_p=0.9, seed=3)])
def test_cached_generation_equals_uncached(sampling):
    m = tiny_model()
    ids, mask, _ = batch()
    kw = dict(decoder_start_id=EOS, eos_id=EOS, pad_id=PAD, max_new_tokens=12, **sampling)
    assert torch.equal(generate(m, ids, mask, **kw), generate(m, ids, mask, use_cache=False, **kw))


def test_greedy_generation_equals_hf_generate():
    m = tiny_model(seed=1)  # its rows differ: [60 8 8 ...], [36 61 61 5 ...], [61 61 ... 5 5 ...]
    ids, mask, _ = batch()
    free = generate(m, ids, mask, decoder_start_id=EOS, eos_id=EOS, pad_id=PAD, max_new_tokens=12)
    eos = int(free[1, 4])  # a token rows 1 and 2 produce at different steps and row 0 never: the end of text
    ours = generate(m, ids, mask, decoder_start_id=EOS, eos_id=eos, pad_id=PAD, max_new_tokens=12)
    hf = hf_twin(m, eos=eos)
    theirs = hf.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1, max_new_tokens=12,
                         min_length=0, decoder_start_token_id=EOS, eos_token_id=eos, pad_token_id=PAD)
    assert torch.equal(ours, theirs)
    stops = [(row[1:] == eos).nonzero()[:1].flatten().tolist() for row in ours]
    assert stops[1] == [3] and stops[2] and stops[2][0] > 3 and not stops[0]  # rows end at different steps
    for row, stop in zip(ours, stops):
        assert (row[2 + stop[0]:] == PAD).all() if stop else (row != PAD).all()  # padded after the end token


def test_greedy_is_deterministic_and_sampling_follows_the_seed():
    m = tiny_model()
    ids, mask, _ = batch()
    kw = dict(decoder_start_id=EOS, eos_id=EOS, pad_id=PAD, max_new_tokens=10)
    assert torch.equal(generate(m, ids, mask, **kw), generate(m, ids, mask, **kw))
    a = generate(m, ids, mask, temperature=1.5, seed=1, **kw)
    assert torch.equal(a, generate(m, ids, mask, temperature=1.5, seed=1, **kw))
    assert not torch.equal(a, generate(m, ids, mask, temperature=1.5, seed=2, **kw))
    greedy = generate(m, ids, mask, **kw)
    assert torch.equal(generate(m, ids, mask, temperature=1.0, top_k=1, seed=5, **kw), greedy)
    assert torch.equal(generate(m, ids, mask, temperature=1.0, top_p=1e-6, seed=5, **kw), greedy)


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    draws = {int(next_token(logits, 1.0, 2, 1.0, g)) for _ in range(200)}
    assert draws == {0, 1}
    draws = {int(next_token(logits, 1.0, 0, 0.8, g)) for _ in range(200)}  # 0.5 + 0.3 reaches 0.8
    assert draws == {0, 1}
    draws = {int(next_token(logits, 1.0, 0, 0.81, g)) for _ in range(400)}
    assert draws == {0, 1, 2}


@pytest.mark.parametrize("bad, match", [
    (dict(temperature=-1.0), "temperature=-1.0 is negative"),
    (dict(top_p=0.0), r"top_p=0.0 is outside \(0, 1\]"),
    (dict(top_p=1.5), r"top_p=1.5 is outside \(0, 1\]"),
    (dict(top_k=-2), "top_k=-2 is negative"),
])
def test_bad_sampling_settings_are_refused(bad, match):
    m = tiny_model()
    ids, mask, _ = batch()
    with pytest.raises(ValueError, match=match):
        generate(m, ids, mask, decoder_start_id=EOS, eos_id=EOS, pad_id=PAD, **bad)


def test_too_long_inputs_are_refused():
    m = tiny_model()
    ids = torch.full((1, 17), 7)
    with pytest.raises(ValueError, match="encoder input has 17 tokens, more than max_len=16"):
        m(ids, torch.ones_like(ids), ids[:, :2])
    with pytest.raises(ValueError, match="decoder input .* 17 tokens"):
        m(ids[:, :4], torch.ones_like(ids[:, :4]), ids)
    with pytest.raises(ValueError, match="got an input of 4 and max_new_tokens=16"):
        generate(m, ids[:, :4], torch.ones_like(ids[:, :4]), decoder_start_id=EOS, eos_id=EOS, pad_id=PAD,
                 max_new_tokens=16)


def test_sdpa_and_explicit_attention_agree():
    m = tiny_model()
    ids, mask, dec = batch()
    m.attn_impl = "sdpa"
    a = m(ids, mask, dec).logits
    m.attn_impl = "explicit"
    assert_close(m(ids, mask, dec).logits, a)
