"""The encoder-decoder wired end to end: config, factory, packed-row objectives, pre-training, resume."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pretrainlab.backbones import build_backbone
from pretrainlab.backbones.seq2seq import Seq2SeqTransformer
from pretrainlab.cli import main
from pretrainlab.config import ConfigError, load_config
from pretrainlab.data.packing import build_row, sentence_starts
from pretrainlab.objectives import build_objectives, span_sentinel_ids
from pretrainlab.objectives.denoise import IGNORE, pack_pairs, row_documents
from pretrainlab.objectives.infill import Infill, apply_spans, infill_spans
from pretrainlab.objectives.permute import permute_sentences
from pretrainlab.objectives.span import corrupt_spans, span_noise_mask
from pretrainlab.tokenizer import SpecialIds
from pretrainlab.train import pretrain

from conftest import TINY, TRANSFORMER

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

ENC_DEC = ["model.backbone=encoder-decoder", "model.style=bart"]
SETTINGS = TINY + TRANSFORMER + ENC_DEC + [
    "model.dropout=0", "train.batch_size=4", "train.eval_every=0", "train.eval_batches=1", "train.log_every=1",
    "train.deterministic=true", "train.lr=3e-3"]
SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
PAD, CLS, SEP, MASK = 0, 2, 3, 4


def cfg(*extra):
    return load_config(None, SETTINGS + list(extra))


def weights(run, step=None):
    name = f"step_{step:07d}" if step else (run / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run / "checkpoints" / name / "model.safetensors"))


# --------------------------------------------------------------------------- config


def test_config_defaults_presets_and_help():
    c = load_config(None, ["model.backbone=encoder-decoder"])
    assert c.model.style == "bart" and c.objective.weights == {"infill": 1.0, "permute": 1.0}
    # the encoder's preset, half the layers on each side (base = BART-base: 6 + 6, d 768)
    assert (c.model.d_model, c.model.n_layers, c.model.n_decoder_layers, c.model.n_heads) == (128, 1, 0, 2)
    base = load_config(None, ["model.backbone=encoder-decoder", "model.preset=base"]).model
    assert (base.d_model, base.n_layers, base.n_heads, base.d_ff) == (768, 6, 12, 3072)
    assert load_config(None, ["model.backbone=encoder-decoder", "model.n_layers=3"]).model.n_layers == 3
    o = c.objective
    assert (o.infill_mask_ratio, o.infill_poisson_lambda, o.span_noise_density, o.span_mean_length,
            o.span_sentinels) == (0.3, 3.0, 0.15, 3.0, 100)
    # an explicit choice wins over the default objective; other backbones keep mlm
    assert load_config(None, ENC_DEC + ["objective.weights={span: 1.0}"]).objective.weights == {"span": 1.0}
    assert load_config(None, []).objective.weights == {"mlm": 1.0}


def test_help_config_documents_the_encoder_decoder(capsys):
    assert main(["--help-config"]) == 0
    out = capsys.readouterr().out
    for needle in ("encoder-decoder", "model.n_decoder_layers", "objective.infill_mask_ratio = 0.3", "Poisson",
                   "objective.span_sentinels = 100", "infill+permute"):
        assert needle in out, needle


@pytest.mark.parametrize("settings, match", [
    (ENC_DEC + ["objective.weights={mlm: 1.0}"], "objective mlm scores the encoder's own states .* use infill"),
    (ENC_DEC + ["objective.weights={plm: 1.0}"], "objective plm scores the encoder's own states"),
    (ENC_DEC + ["objective.weights={span: 1.0, infill: 1.0}"], "keep span alone"),
    (ENC_DEC + ["model.style=modern"], r"model.style='modern' is not a style of the encoder-decoder backbone.*choose bart"),
    (["objective.weights={infill: 1.0}"], "the transformer backbone has no such decoder. Use model.backbone=encoder-decoder"),
    (["model.backbone=rnn", "objective.weights={permute: 1.0}"], "the rnn backbone has no such decoder"),
    (["model.backbone=cnn", "objective.weights={span: 1.0}"], "the cnn backbone has no such decoder"),
    (ENC_DEC + ["model.d_model=30", "model.n_heads=4"], "does not divide model.d_model=30"),
    (ENC_DEC + ["model.max_len=32", "data.seq_len=64"], "data.seq_len=64 is longer than model.max_len=32"),
    (ENC_DEC + ["objective.span_sentinels=0"], "objective.span_sentinels must be >= 1"),
    (ENC_DEC + ["objective.infill_mask_ratio=1.0"], r"objective.infill_mask_ratio must be in \[0, 1\)"),
])
def test_objectives_and_sizes_refused_with_the_reason(settings, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, settings)


def test_factory_builds_the_encoder_decoder_from_plain_values():
    m = build_backbone("encoder-decoder", vocab_size=50, d_model=32, n_layers=2, n_decoder_layers=1, n_heads=4,
                       d_ff=64, max_len=16, dropout=0.0, style="bart", pad_id=0)
    assert isinstance(m, Seq2SeqTransformer)
    assert (len(m.encoder_layers), len(m.decoder_layers), m.max_len, m.vocab_size) == (2, 1, 16, 50)
    same = build_backbone("encoder-decoder", vocab_size=50, d_model=32, n_layers=2, n_heads=4, d_ff=64, style="bart")
    assert len(same.decoder_layers) == 2  # n_decoder_layers 0: as many as the encoder
    objs, head = build_objectives({"infill": 1.0, "permute": 1.0}, backbone=m, backbone_kind="encoder-decoder",
                                  vocab_size=50, special=SPECIAL)
    assert head.embedding is m.get_input_embeddings()  # BART's LM head is the token embedding
    assert list(objs) == ["infill+permute"] and objs["infill+permute"].infill is not None
    span = build_objectives({"span": 1.0}, backbone=m, backbone_kind="encoder-decoder", vocab_size=50,
                            special=SPECIAL, settings={"span_sentinels": 3})[0]["span"]
    assert span.sentinels == [49, 48, 47] == span_sentinel_ids(50, 3)


# --------------------------------------------------------------------------- packed rows -> (source, target)


def packed_row():
    """Two documents in one row of 16: 'a b c | d e' (two sentences) and 'f g h' (one), then padding."""
    tokens = np.array([10, 11, 12, 13, 14, 20, 21, 22])  # the split's tokens
    chunk_starts, chunk_lens = np.array([0, 5]), np.array([5, 3])
    sent_offsets = np.array([0, 3, 5, 8])
    ids, mask = build_row(lambda a, b: tokens[a:b], chunk_starts, chunk_lens, 16, CLS, SEP, PAD)
    return ids, mask, sentence_starts(sent_offsets, chunk_starts, chunk_lens, 16)


def test_sentence_starts_and_row_documents_by_hand():
    ids, mask, starts = packed_row()
    assert ids.tolist() == [CLS, 10, 11, 12, 13, 14, SEP, CLS, 20, 21, 22, SEP] + [PAD] * 4
    assert np.flatnonzero(starts).tolist() == [1, 4, 8]  # '10', '13' and '20' begin sentences
    docs = row_documents(ids, mask, starts)
    assert [(t.tolist(), o.tolist()) for t, o in docs] == [([10, 11, 12, 13, 14], [0, 3, 5]), ([20, 21, 22], [0, 3])]
    # a long document's later chunk starts mid-sentence: its first token counts as a start
    assert np.flatnonzero(sentence_starts(np.array([0, 9]), np.array([4]), np.array([3]), 8)).tolist() == [1]


def test_pack_pairs_numbers_documents_on_both_sides_by_hand():
    rows = [[(np.array([CLS, 7, SEP]), np.array([CLS, 5, 6, SEP])), (np.array([CLS, SEP]), np.array([CLS, 8, SEP]))],
            [(np.array([CLS, 9, 9, SEP]), np.array([CLS, SEP]))]]
    b = pack_pairs(rows, pad_id=PAD, decoder_start_id=SEP)
    assert b["input_ids"].tolist() == [[CLS, 7, SEP, CLS, SEP], [CLS, 9, 9, SEP, PAD]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 2, 2], [1, 1, 1, 1, 0]]
    assert b["labels"].tolist() == [[CLS, 5, 6, SEP, CLS, 8, SEP], [CLS, SEP] + [IGNORE] * 5]
    # each document's target shifted right behind its own start token
    assert b["decoder_input_ids"].tolist() == [[SEP, CLS, 5, 6, SEP, CLS, 8], [SEP, CLS, PAD, PAD, PAD, PAD, PAD]]
    assert b["decoder_attention_mask"].tolist() == [[1, 1, 1, 1, 2, 2, 2], [1, 1, 0, 0, 0, 0, 0]]


def objective(name, sentinels=4):
    weights = {n: 1.0 for n in name.split("+")}
    model = build_backbone("encoder-decoder", vocab_size=64, d_model=32, n_layers=1, n_heads=4, d_ff=64, max_len=32,
                           style="bart")
    return build_objectives(weights, backbone=model, backbone_kind="encoder-decoder", vocab_size=64,
                            special=SPECIAL, settings={"span_sentinels": sentinels})[0][name]


def prepared(name, seed=123):
    ids, mask, starts = packed_row()
    batch = {"input_ids": torch.from_numpy(ids)[None], "mask": torch.from_numpy(mask)[None],
             "sent_start": torch.from_numpy(starts)[None], "row_seed": torch.tensor([seed])}
    return objective(name).prepare(batch, torch.Generator().manual_seed(0)), batch


def test_packed_infill_by_hand():
    rng = np.random.default_rng(123)  # the row's seed: the same draws by hand, document after document
    a = apply_spans(np.array([10, 11, 12, 13, 14]), infill_spans(5, rng, max_spans=2), MASK)
    f = apply_spans(np.array([20, 21, 22]), infill_spans(3, rng, max_spans=1), MASK)
    b, loaded = prepared("infill")
    assert b["input_ids"][0].tolist() == [CLS, *a.tolist(), SEP, CLS, *f.tolist(), SEP]
    assert b["labels"][0].tolist() == [CLS, 10, 11, 12, 13, 14, SEP, CLS, 20, 21, 22, SEP]
    assert (b["input_ids"] == MASK).sum() >= 2
    assert torch.equal(b["mask"], loaded["mask"])  # the loader's mask stays: the loop counts tokens with it


def test_packed_permute_restores_the_original_order_by_hand():
    b, _ = prepared("permute", seed=5)
    rng = np.random.default_rng(5)
    shuffled, order = permute_sentences(np.array([10, 11, 12, 13, 14]), np.array([0, 3, 5]), rng)
    assert b["input_ids"][0].tolist() == [CLS, *shuffled.tolist(), SEP, CLS, 20, 21, 22, SEP]  # one sentence: copied
    assert b["labels"][0].tolist() == [CLS, 10, 11, 12, 13, 14, SEP, CLS, 20, 21, 22, SEP]
    seen = {tuple(prepared("permute", seed=s)[0]["input_ids"][0, 1:6].tolist()) for s in range(12)}
    assert seen == {(10, 11, 12, 13, 14), (13, 14, 10, 11, 12)}  # both orders of the two sentences
    both, _ = prepared("infill+permute", seed=5)
    assert both["labels"].tolist() == b["labels"].tolist() and (both["input_ids"] == MASK).any()


def test_packed_span_by_hand():
    b, _ = prepared("span", seed=9)
    rng = np.random.default_rng(9)
    sentinels = [63, 62, 61, 60]
    s1, t1 = corrupt_spans(np.array([10, 11, 12, 13, 14]), span_noise_mask(5, rng), sentinels)
    s2, t2 = corrupt_spans(np.array([20, 21, 22]), span_noise_mask(3, rng), sentinels)
    assert b["input_ids"][0].tolist() == [*s1.tolist(), SEP, *s2.tolist(), SEP]
    real = b["labels"][0][b["labels"][0] != IGNORE].tolist()
    assert real == [*t1.tolist(), SEP, *t2.tolist(), SEP] and real[0] == 63  # each document from <extra_id_0>


def test_packed_infill_never_lengthens_a_document():
    for seed in range(300):
        spans = infill_spans(6, np.random.default_rng(seed), max_spans=2)
        assert len(spans) <= 2 and sum(n for _, n in spans) == 2
    for seed in range(30):
        b, _ = prepared("infill", seed=seed)
        assert b["input_ids"].shape[1] <= 12


# --------------------------------------------------------------------------- bad input before any work


def test_permute_refuses_a_corpus_of_one_sentence_documents(review_corpus, tmp_path):
    with pytest.raises(ConfigError, match=r"all 19[0-9] training documents of the corpus have one sentence"):
        pretrain(cfg("train.budget=2"), review_corpus, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_span_refuses_more_spans_than_sentinels_before_training(tiny_corpus, tmp_path):
    with pytest.raises(ConfigError, match=r"data.seq_len=64 \(62 tokens of text\) needs 3 noise spans .*"
                                          "span_sentinels=2; raise objective.span_sentinels to at least 3"):
        pretrain(cfg("objective.weights={span: 1.0}", "objective.span_sentinels=2", "data.seq_len=64"),
                 tiny_corpus, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- pre-training end to end


def test_pretrain_cli_trains_checkpoints_and_resumes_exactly(tiny_corpus, tmp_path, capsys):
    args = ["pretrain", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "run")]
    for s in SETTINGS + ["train.budget=6", "train.checkpoint_every=3"]:
        args += ["--set", s]
    assert main(args) == 0
    run = tmp_path / "run"
    assert "encoder-decoder (bart, 2 + 2 layers)" in capsys.readouterr().err
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert all(0 <= r["infill+permute_acc"] <= 1 for r in rows if "loss" in r)
    assert any("val_infill+permute_loss" in r for r in rows)
    # cut back to the step-3 checkpoint and resume: the same weights as the straight run
    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_0000006")
    (resumed / "checkpoints" / "latest").write_text("step_0000003\n")
    pretrain(cfg("train.budget=6", "train.checkpoint_every=3"), tiny_corpus, resumed, resume=True)
    a, b = weights(run), weights(resumed)
    assert a.keys() == b.keys() and any(k.startswith("backbone.decoder_layers") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_span_run_adds_the_sentinels_to_its_tokenizer(tiny_corpus, tmp_path):
    from pretrainlab.runs import load_pretrained

    run = pretrain(cfg("objective.weights={span: 1.0}", "objective.span_sentinels=8", "train.budget=2"),
                   tiny_corpus, tmp_path / "run")
    pre = load_pretrained(run)
    V = pre.tokenizer.get_vocab_size()
    assert pre.backbone.vocab_size == V and pre.tokenizer.token_to_id("<extra_id_0>") == V - 1
    assert pre.tokenizer.token_to_id("<extra_id_7>") == V - 8
    assert pre.model.objectives["span"].sentinels == list(range(V - 1, V - 9, -1))


def test_tiny_model_overfits_one_packed_batch(tiny_corpus):
    """The whole pre-training path (packed rows -> prepare -> PretrainModel) on one fixed batch."""
    from pretrainlab.data.corpus import open_corpus
    from pretrainlab.runs import build_pretrain_model
    from pretrainlab.tokenizer import load_tokenizer, special_ids
    from pretrainlab.train import batch_source

    corpus = open_corpus(tiny_corpus)
    tok = load_tokenizer(corpus.tokenizer_path)
    c = cfg()
    torch.manual_seed(0)
    model = build_pretrain_model(c, tok.get_vocab_size(), special_ids(tok))
    loader = batch_source(corpus.split("train"), 16, 4, special_ids(tok), model.objectives)
    batch = model.prepare(loader.next_batch(), torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert float(out.metrics["infill+permute_acc"]) == 1.0 and float(out.loss.detach()) < 0.05, out.metrics
