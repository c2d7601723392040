"""The encoder-decoder's t5 style (issue #25 item 6): the logits of transformers' T5ForConditionalGeneration given
the same weights, its greedy `generate` on the exported folder, an HF T5 folder imported and exported back
exactly, span corruption by default from `pretrain --set model.style=t5`, and fine-tuning, curve, explain and
probes on a t5 run (distillation into a t5 student: tests/test_distill.py)."""

import json

import pytest
import torch
from torch.testing import assert_close

from pretrainlab.backbones.seq2seq import Seq2SeqCache, Seq2SeqTransformer
from pretrainlab.backbones.t5 import relative_bucket
from pretrainlab.cli import main
from pretrainlab.export.hf_t5 import hf_t5_config_kwargs, to_hf_t5_state_dict
from pretrainlab.generate import GenerationSettings, generate_run
from pretrainlab.heads import build_lm_head
from pretrainlab.models import Seq2SeqLM

from conftest import FAST, FINETUNE, TINY, TRANSFORMER
# fixtures, each on this module's run: the task and the run fine-tuned on it; the run exported (its check: offline
# load, equal logits)
from test_encoder_decoder_run import classifier, exported, task  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

V, PAD, EOS = 64, 0, 3
SETTINGS = TINY + TRANSFORMER + FAST + FINETUNE + [
    "model.backbone=encoder-decoder", "model.style=t5", "model.dropout=0", "model.max_len=32",
    "train.budget=30", "train.eval_every=0", "train.eval_batches=1"]
PROMPTS = ["the cat sat on the mat.", "people of the union and the state."]


def moved(model: torch.nn.Module) -> None:
    """Every weight moved off its init by half its own spread (the norms' scales, all 1, by 0.2)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * (0.5 * p.std() if p.std() > 0 else 0.2))


def t5_lm(n_decoder_layers=3, seed=0) -> Seq2SeqLM:
    """A tiny t5-style model whose weights are moved off their init."""
    torch.manual_seed(seed)
    bb = Seq2SeqTransformer(vocab_size=V, d_model=32, n_layers=2, n_decoder_layers=n_decoder_layers, n_heads=4,
                            d_ff=48, max_len=64, dropout=0.0, style="t5", pad_id=PAD).eval()
    moved(bb)
    return Seq2SeqLM(bb, build_lm_head("seq2seq_lm", bb, V, bb.get_input_embeddings())).eval()


def hf_t5(lm: Seq2SeqLM):
    from transformers import T5Config, T5ForConditionalGeneration

    bb = lm.backbone
    hf = T5ForConditionalGeneration(T5Config(**hf_t5_config_kwargs(bb, pad_id=PAD, eos_id=EOS,
                                                                    decoder_start_id=bb.decoder_start(EOS))))
    missing, unexpected = hf.load_state_dict(to_hf_t5_state_dict(bb.state_dict()), strict=False)
    assert not missing and not unexpected
    return hf.eval()


def test_relative_buckets_are_t5s():
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-300, 300)[None, :] - torch.arange(0, 40)[:, None]
    for bidirectional in (True, False):
        assert torch.equal(relative_bucket(rel, bidirectional),
                           T5Attention._relative_position_bucket(rel, bidirectional=bidirectional))


@pytest.mark.parametrize("attn_impl", ["sdpa", "explicit"])
def test_logits_equal_t5_for_conditional_generation(attn_impl):
    lm = t5_lm()
    lm.backbone.attn_impl = attn_impl
    hf = hf_t5(lm)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, V, (2, 40), generator=g)  # 40 and 24 tokens: distances in the logarithmic buckets too
    mask = torch.ones_like(ids)
    mask[1, 30:], ids[1, 30:] = 0, PAD
    dec = torch.randint(5, V, (2, 24), generator=g)
    dec[:, 0] = PAD  # the decoder starts from the padding token
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        assert_close(lm(ids, mask, dec), theirs)
        # one token at a time through the cache: the same logits
        cache = Seq2SeqCache()
        steps = [lm(ids, mask, dec[:, t:t + 1], cache=cache) for t in range(dec.shape[1])]
        assert_close(torch.cat(steps, dim=1), theirs)


def test_the_t5_style_is_t5s_architecture():
    bb = t5_lm().backbone
    assert not any(name.endswith("bias") for name, _ in bb.named_parameters())  # no biases anywhere
    assert bb.decoder_start(EOS) == PAD and bb.output_scale == 32 ** -0.5
    assert bb.tok_emb.padding_idx is None  # the padding row starts the decoder: it is trained
    sd = bb.state_dict()
    assert sd["enc_rel.weight"].shape == sd["dec_rel.weight"].shape == (32, 4)  # one bias per bucket and head
    assert "decoder_layers.1.self_attn.q.weight" in sd and "decoder_layers.1.ff.wi_1.weight" in sd  # gated-GELU


def test_greedy_generation_equals_hf_generate():
    from pretrainlab.generate import generate

    lm = t5_lm(n_decoder_layers=2)
    hf = hf_t5(lm)
    ids = torch.randint(5, V, (1, 12), generator=torch.Generator().manual_seed(2))
    start = lm.backbone.decoder_start(EOS)
    ours = generate(lm, ids, 20, temperature=0.0, eos_id=EOS, pad_id=PAD, decoder_start_id=start)
    theirs = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                         num_beams=1)
    assert ours.tolist() == theirs.tolist()


# --------------------------------------------------------------------------- a t5 run


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory):
    """A tiny t5 pre-trained 30 steps from the command line, its default objective (span corruption)."""
    out = tmp_path_factory.mktemp("t5") / "run"
    args = ["pretrain", "--corpus", str(tiny_corpus), "--out", str(out)]
    for s in SETTINGS:
        args += ["--set", s]
    assert main(args) == 0
    return out


def test_pretrain_takes_span_corruption_as_the_t5_default(run):
    from pretrainlab.runs import load_pretrained

    pre = load_pretrained(run)
    assert pre.config.model.style == "t5" and dict(pre.config.objective.weights) == {"span": 1.0}
    assert list(pre.model.objectives) == ["span"]
    assert pre.model.objectives["span"].decoder_start_id == pre.special.pad  # the targets behind [PAD]


def test_export_is_t5_for_conditional_generation_and_generates_as_pretrainlab(run, exported, monkeypatch):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from pretrainlab.runs import load_pretrained

    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"] == ["T5ForConditionalGeneration"] and config["feed_forward_proj"] == "gated-gelu"
    assert (config["decoder_start_token_id"], config["eos_token_id"], config["pad_token_id"]) == (0, 3, 0)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = AutoModelForSeq2SeqLM.from_pretrained(exported).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported)
    pre = load_pretrained(run)
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    dec = torch.tensor([[0, 7, 8, 9, 10], [0, 11, 12, 13, 14]])
    with torch.no_grad():
        assert_close(pre.lm.eval()(batch.input_ids, batch.attention_mask, dec),
                     model(**batch, decoder_input_ids=dec).logits)
    for prompt in PROMPTS:
        ours = generate_run(run, [prompt], GenerationSettings(max_new_tokens=12, temperature=0.0))[0]
        assert ours.ids[0] == 0  # [PAD] starts the decoder
        theirs = model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=12)  # greedy: its default
        assert theirs[0].tolist() == ours.ids


def test_export_takes_the_run_back_exactly(run, exported, tmp_path, capsys):
    from pretrainlab.runs import load_pretrained

    assert main(["import", str(exported), "--out", str(tmp_path / "imported")]) == 0
    assert "T5ForConditionalGeneration" in capsys.readouterr().out
    a, b = load_pretrained(run), load_pretrained(tmp_path / "imported")
    assert (b.config.model.style, list(b.model.objectives)) == ("t5", ["span"])
    sa, sb = a.backbone.state_dict(), b.backbone.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- an HF T5 folder imported


def t5_folder(path, tok):
    """A tiny random T5ForConditionalGeneration (gated-GELU, v1.1's body) saved with save_pretrained, with a
    tokenizer holding pretrainlab's special tokens (at T5's pad id 0)."""
    from transformers import T5Config, T5ForConditionalGeneration

    from pretrainlab.tokenizer import hf_tokenizer, special_ids

    sp = special_ids(tok)
    torch.manual_seed(3)
    cfg = T5Config(vocab_size=tok.get_vocab_size(), d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3,
                   num_heads=4, dropout_rate=0.0, feed_forward_proj="gated-gelu", pad_token_id=sp.pad,
                   eos_token_id=sp.sep, decoder_start_token_id=sp.pad)
    model = T5ForConditionalGeneration(cfg).eval()
    moved(model)
    model.save_pretrained(path)
    hf_tokenizer(tok, model_max_length=64).save_pretrained(path)
    return path


def test_an_hf_t5_folder_imports_and_exports_back_exactly(run, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import AutoModelForSeq2SeqLM

    from pretrainlab.export import export
    from pretrainlab.export.hf_import import import_hf
    from pretrainlab.runs import load_pretrained

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = t5_folder(tmp_path / "hf", load_pretrained(run).tokenizer)
    report = import_hf(folder, tmp_path / "imported", quiet=True)
    assert (report.model_type, report.architecture) == ("t5", "T5ForConditionalGeneration")
    pre = load_pretrained(tmp_path / "imported")
    assert (pre.config.model.n_layers, pre.config.model.n_decoder_layers, pre.config.model.d_ff) == (2, 3, 48)
    hf = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    ids = torch.tensor([[5, 9, 14, 22, 3], [7, 8, 3, 0, 0]])
    mask = (ids != 0).long()
    dec = torch.tensor([[0, 10, 11, 12], [0, 13, 14, 15]])
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        assert_close(pre.lm.eval()(ids, mask, dec), theirs)
    back = export(tmp_path / "imported", tmp_path / "back")
    theirs, again = load_file(str(folder / "model.safetensors")), load_file(str(back / "model.safetensors"))
    assert theirs.keys() == again.keys() and all(torch.equal(theirs[k], again[k]) for k in theirs)
    keys = ("d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads", "feed_forward_proj",
            "pad_token_id", "eos_token_id", "decoder_start_token_id", "scale_decoder_outputs")
    a, b = (json.loads((f / "config.json").read_text()) for f in (folder, back))
    assert {k: a.get(k) for k in keys} == {k: b.get(k) for k in keys}


def test_a_t5_folder_pretrainlab_cannot_compute_is_refused(run, tmp_path):
    from pretrainlab.export.hf_import import ImportError_, import_hf
    from pretrainlab.runs import load_pretrained

    folder = t5_folder(tmp_path / "hf", load_pretrained(run).tokenizer)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "feed_forward_proj": "relu"}))
    with pytest.raises(ImportError_, match="feed_forward_proj='relu'; pretrainlab's t5 style has"):
        import_hf(folder, tmp_path / "imported", quiet=True)


def test_a_fine_tuned_t5_exports_as_t5_for_sequence_classification_and_imports_back(classifier, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pretrainlab.export import logits_fn
    from pretrainlab.export.hf_import import import_hf
    from pretrainlab.runs import load_classifier, load_pretrained

    out = tmp_path / "hf-cls"
    assert main(["export", str(classifier), "--out", str(out)]) == 0  # the check: the snippet, equal logits
    assert json.loads((out / "config.json").read_text())["architectures"] == ["T5ForSequenceClassification"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    inputs = tokenizer(["a good film", "a dull and long movie"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert_close(model(**inputs).logits, logits_fn(classifier)(dict(inputs)))
    report = import_hf(out, tmp_path / "imported", quiet=True)
    assert report.architecture == "T5ForSequenceClassification"
    sa = load_classifier(classifier).model.backbone.state_dict()
    sb = load_pretrained(tmp_path / "imported").backbone.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- downstream
# The bart style's tests of fine-tuning (evaluate, predict, curve), explain, integrated gradients and probes
# (tests/test_encoder_decoder_run.py), collected here again: each runs on this module's t5 run.

from test_encoder_decoder_run import (  # noqa: E402, F401
    test_explain_a_run_and_a_fine_tuned_encoder_decoder as test_explain_a_t5_run_and_classifier,
    test_finetune_evaluate_predict_and_curve_on_an_encoder_decoder_run as test_finetune_and_curve_on_a_t5_run,
    test_integrated_gradients_through_both_sides_are_complete as test_integrated_gradients_through_t5,
    test_probe_gives_one_score_per_layer_of_each_stack as test_probe_t5_layers)
