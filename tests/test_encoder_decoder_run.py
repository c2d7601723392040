"""An encoder-decoder run after pre-training: generate, fine-tune / evaluate / predict / curve, export, import."""

import json
import random
from dataclasses import replace

import pytest
import torch
from torch.testing import assert_close

from pretrainlab.cli import main
from pretrainlab.config import load_config
from pretrainlab.generate import GenerateError, GenerationSettings, generate_run
from pretrainlab.train import pretrain

from conftest import FAST, FINETUNE, TINY, TRANSFORMER, review_csv

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

SETTINGS = TINY + TRANSFORMER + FAST + FINETUNE + [
    "model.backbone=encoder-decoder", "model.style=bart", "model.dropout=0", "model.max_len=32",
    "train.budget=30", "train.eval_every=0", "train.eval_batches=1"]
PROMPTS = ["the cat [MASK] on the mat.", "people of the union and the state."]


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory):
    """A tiny encoder-decoder pre-trained 30 steps with the default objective (infill+permute)."""
    return pretrain(load_config(None, SETTINGS), tiny_corpus, tmp_path_factory.mktemp("s2s") / "run")


# --------------------------------------------------------------------------- generate


def test_generate_cli_greedy_is_deterministic(run, tmp_path, capsys):
    args = ["generate", str(run), *PROMPTS, "--temperature", "0", "--max-new-tokens", "12"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and len(first.splitlines()) == 2
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS[1] + "\n\n" + PROMPTS[0] + "\n", encoding="utf-8")
    assert main(["generate", str(run), "--file", str(prompts), "--temperature", "0", "--max-new-tokens", "12"]) == 0
    assert capsys.readouterr().out.splitlines() == first.splitlines()[::-1]  # one prompt at a time: order only


def test_generation_stops_at_the_end_and_sampling_follows_the_seed(run):
    greedy = generate_run(run, PROMPTS, GenerationSettings(max_new_tokens=20, temperature=0.0))
    for g in greedy:
        assert g.ids[0] == 3 and len(g.ids) <= 21  # [SEP] starts the decoder (BART's </s>)
        assert g.ended == (3 in g.ids[1:]) and (not g.ended or g.ids[-1] == 3)  # nothing after the end token
    a = generate_run(run, PROMPTS, GenerationSettings(20, temperature=1.0, top_k=20, top_p=0.9, seed=1))
    assert [g.ids for g in a] == [g.ids for g in generate_run(run, PROMPTS, GenerationSettings(20, 1.0, 20, 0.9, 1))]
    top1 = generate_run(run, PROMPTS, GenerationSettings(20, temperature=1.0, top_k=1, seed=4))
    assert [g.ids for g in top1] == [g.ids for g in greedy]


@pytest.mark.parametrize("settings, match", [
    (GenerationSettings(temperature=-0.5), "temperature=-0.5 is negative"),
    (GenerationSettings(top_p=0.0), r"top_p=0.0 is outside \(0, 1\]"),
    (GenerationSettings(top_p=1.2), r"top_p=1.2 is outside \(0, 1\]"),
    (GenerationSettings(max_new_tokens=40), "the decoder writes at most 31 tokens"),
])
def test_bad_generation_settings_are_refused(run, settings, match):
    with pytest.raises(GenerateError, match=match):
        generate_run(run, PROMPTS, settings)


def test_a_text_longer_than_the_encoder_is_cut_with_a_note(run):
    notes = []
    g = generate_run(run, [" ".join(["cat"] * 50)], GenerationSettings(4, 0.0), note=notes.append)[0]
    assert g.n_prompt == 32 and g.dropped == 20 and "its last 20 tokens were cut" in notes[0]


def test_generate_on_an_encoder_run_names_the_commands_that_fit(tiny_corpus, tmp_path, capsys):
    enc = pretrain(load_config(None, TINY + TRANSFORMER + ["train.budget=1"]), tiny_corpus, tmp_path / "enc")
    assert main(["generate", str(enc), "a cat", "--temperature", "0"]) == 2
    err = capsys.readouterr().err
    assert "is a transformer run, a bidirectional encoder" in err and "finetune" in err and "curve" in err


# --------------------------------------------------------------------------- fine-tuning


def pair_csv(n: int) -> str:
    rng = random.Random(1)
    words = "the cat dog sat on a mat and ran to house".split()
    rows = ["text,text2,label"] + [f"{' '.join(rng.choice(words) for _ in range(4))} {i},"
                                   f"{' '.join(rng.choice(words) for _ in range(3))},{'ab'[i % 2]}" for i in range(n)]
    return "\n".join(rows) + "\n"


def test_classifier_equals_bart_for_sequence_classification_on_pairs():
    """The decoder's state at the last [SEP]: BartForSequenceClassification's logits, single texts and pairs."""
    from transformers import BartConfig, BartForSequenceClassification

    from pretrainlab.export.hf_seq2seq_names import hf_bart_config_kwargs, to_hf_bart_state_dict
    from pretrainlab.models import build_classifier
    from test_seq2seq import tiny_model

    m = build_classifier(tiny_model(), 3, "mean", "bart", 0.0, eos_id=3).eval()
    with torch.no_grad():
        for p in (*m.pooler.parameters(), *m.head.parameters()):
            p.normal_(std=0.3)
    bb = m.backbone
    hf = BartForSequenceClassification(BartConfig(**hf_bart_config_kwargs(
        vocab_size=bb.vocab_size, d_model=bb.d_model, n_layers=bb.n_layers, n_decoder_layers=bb.n_decoder_layers,
        n_heads=bb.n_heads, d_ff=bb.d_ff, max_len=bb.max_len, dropout=0.0, pad_id=0, bos_id=2, eos_id=3),
        num_labels=3)).eval()
    sd = {k: v for k, v in to_hf_bart_state_dict(bb.state_dict()).items() if k != "lm_head.weight"}
    sd.update({"classification_head.dense.weight": m.pooler.weight, "classification_head.dense.bias": m.pooler.bias,
               "classification_head.out_proj.weight": m.head.weight, "classification_head.out_proj.bias": m.head.bias})
    hf.load_state_dict(sd, strict=True)
    singles = torch.tensor([[2, 9, 10, 11, 3, 0, 0], [2, 12, 13, 14, 15, 16, 3]])
    pairs = torch.tensor([[2, 9, 10, 3, 20, 21, 3], [2, 12, 3, 22, 3, 0, 0]])  # [CLS] A [SEP] B [SEP], padded
    for ids in (singles, pairs):
        mask = (ids != 0).long()
        assert_close(m(ids, mask).logits, hf(input_ids=ids, attention_mask=mask).logits)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    path = tmp_path_factory.mktemp("task") / "task.csv"
    path.write_text(review_csv(random.Random(0), 60), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def classifier(run, task, tmp_path_factory):
    """The run fine-tuned from the command line (one seed, two epochs)."""
    ft = tmp_path_factory.mktemp("ft") / "ft"
    assert main(["finetune", str(run), "--task", str(task), "--out", str(ft), "--seeds", "0",
                 "--set", "finetune.epochs=2"]) == 0
    return ft


def test_finetune_evaluate_predict_and_curve_on_an_encoder_decoder_run(run, task, classifier, tmp_path, capsys):
    ft = classifier
    info = json.loads((ft / "classifier.json").read_text())
    assert (info["head"], info["pooling"], info["segments"]) == ("bart", "eos", False)
    assert main(["evaluate", str(ft), "--task", str(task)]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["predict", str(ft), "a good film", "a dull movie"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in ("neg", "pos") for line in lines)
    assert main(["curve", str(run), "--task", str(task), "--labels", "30", "--seeds", "0",
                 "--out", str(tmp_path / "curve")]) == 0
    rows = (tmp_path / "curve" / "curve.csv").read_text().splitlines()
    assert {r.split(",")[1] for r in rows[1:]} >= {"pretrained", "random-init"}


def test_finetune_on_text_pairs(run, tmp_path, capsys):
    task = tmp_path / "pairs.csv"
    task.write_text(pair_csv(40), encoding="utf-8")
    ft = tmp_path / "ft"
    assert main(["finetune", str(run), "--task", str(task), "--out", str(ft), "--seeds", "0",
                 "--set", "finetune.epochs=1", "--set", "finetune.text_pair_column=text2"]) == 0
    assert json.loads((ft / "classifier.json").read_text())["pairs"] is True
    capsys.readouterr()
    assert main(["predict", str(ft), "the cat sat", "--pair", "on a mat"]) == 0
    assert capsys.readouterr().out.split("\t")[0] in ("a", "b")


# --------------------------------------------------------------------------- export and import


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "bart"
    assert main(["export", str(run), "--to", str(out)]) == 0  # the check: offline load, equal logits
    return out


def test_export_is_bart_for_conditional_generation_and_generates_as_pretrainlab(run, exported, monkeypatch):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"] == ["BartForConditionalGeneration"]
    assert (config["decoder_start_token_id"], config["eos_token_id"], config["pad_token_id"]) == (3, 3, 0)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = AutoModelForSeq2SeqLM.from_pretrained(exported).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported)
    for prompt in PROMPTS:
        ours = generate_run(run, [prompt], GenerationSettings(max_new_tokens=12, temperature=0.0))[0]
        theirs = model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=12)  # greedy: its default
        assert theirs[0].tolist() == ours.ids
        assert tokenizer.decode(theirs[0], skip_special_tokens=True).replace(" ", "") == ours.text.replace(" ", "")


def test_exported_classifier_runs_the_readme_snippet(classifier, tmp_path, monkeypatch, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "hf-cls"
    assert main(["export", str(classifier), "--to", str(out)]) == 0
    assert "loads it: label" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BartForSequenceClassification"] and config["pad_token_id"] == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the README's snippet, unchanged
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    outputs = model(**tokenizer("This is a great movie!", return_tensors="pt"))
    assert model.config.id2label[outputs.logits.argmax().item()] in ("neg", "pos")
    from pretrainlab.export import logits_fn

    inputs = tokenizer(["a good film", "a dull and long movie"], return_tensors="pt", padding=True)
    assert_close(model.eval()(**inputs).logits, logits_fn(classifier)(dict(inputs)))


def test_import_takes_the_export_back_exactly_and_pre_trains_on(run, exported, tiny_corpus, tmp_path, capsys):
    from pretrainlab.runs import load_pretrained

    assert main(["import", str(exported), "--out", str(tmp_path / "imported")]) == 0
    assert "BartForConditionalGeneration" in capsys.readouterr().out
    a, b = load_pretrained(run), load_pretrained(tmp_path / "imported")
    assert b.config.model == replace(a.config.model, preset=None) and list(b.model.objectives) == ["infill+permute"]
    sa, sb = a.backbone.state_dict(), b.backbone.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # continued pre-training of the imported folder
    cont = pretrain(load_config(None, SETTINGS + ["train.budget=2"]), tiny_corpus, tmp_path / "more",
                    init=tmp_path / "imported")
    assert (cont / "summary.json").is_file()


def test_import_of_an_exported_classifier_keeps_its_backbone(classifier, tmp_path):
    from pretrainlab.export import export
    from pretrainlab.export.hf_import import import_hf
    from pretrainlab.runs import load_classifier, load_pretrained

    export(classifier, tmp_path / "hf")
    report = import_hf(tmp_path / "hf", tmp_path / "imported", quiet=True)
    assert report.architecture == "BartForSequenceClassification"
    sa = load_classifier(classifier).model.backbone.state_dict()
    imported = load_pretrained(tmp_path / "imported")
    sb = imported.backbone.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not imported.model.lm_head.final_logits_bias.any()  # a classifier has none: zero, as BART's init


# --------------------------------------------------------------------------- explain and probe


def test_explain_a_run_and_a_fine_tuned_encoder_decoder(run, classifier, task, tmp_path, capsys):
    for model_dir, name in ((run, "run.html"), (classifier, "ft.html")):
        out = tmp_path / name
        assert main(["explain", str(model_dir), "--text", "a good film", "--task-file", str(task), "--steps", "4",
                     "--max-examples", "8", "--out", str(out)]) == 0
        page = out.read_text(encoding="utf-8")
        for part in ("Encoder self-attention", "Decoder self-attention (causal)", "Cross-attention", "encoder layer 2",
                     "decoder layer 2", "decoder embeddings"):
            assert part in page, part
        assert page.count("class=\"hv-data\"") == 2  # the encoder's and the decoder's head views
        assert ("Token attributions toward" in page) == (model_dir == classifier)


def test_integrated_gradients_through_both_sides_are_complete(classifier):
    from pretrainlab.interpret import integrated_gradients
    from pretrainlab.interpret.report import prepare_inputs
    from pretrainlab.runs import load_classifier

    ft = load_classifier(classifier)
    sp, clf = ft.special, ft.model.eval()
    enc = prepare_inputs(ft.tokenizer, ["a good film and great fun", "dull"], None, 16, sp.pad)
    attrs = integrated_gradients(clf, enc.ids, enc.mask, pad_id=sp.pad, keep_ids=(sp.cls, sp.sep), n_steps=64)
    for a in attrs:
        gap = a.logit - a.baseline_logit
        assert abs(sum(a.scores) - gap) <= abs(a.delta) + 1e-5 and abs(a.delta) < 0.02 * abs(gap) + 1e-4
        assert all(s == 0.0 for s, special in zip(a.scores, a.special) if special)  # kept in the baseline


def test_probe_gives_one_score_per_layer_of_each_stack(run, task, capsys):
    from pretrainlab.intrinsic import probe

    r = probe(run, task, max_len=16)
    assert r.layers == ["encoder embeddings", "encoder layer 1", "encoder layer 2",
                        "decoder embeddings", "decoder layer 1", "decoder layer 2"]
    assert len(r.test_accuracy) == len(r.train_accuracy) == 6
    assert main(["probe", str(run), "--task", str(task)]) == 0
    assert "decoder layer 2" in capsys.readouterr().out
