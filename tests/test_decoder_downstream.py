"""A decoder downstream: last-token classifiers (finetune, evaluate, predict, curve, explain through
the CLI), and Hugging Face export / import (LlamaForCausalLM, GPT2LMHeadModel, *ForSequenceClassification)."""

import json
import random

import pytest
import torch

from pretrainlab.cli import main
from pretrainlab.models import LastTokenClassifier, pool
from pretrainlab.runs import load_classifier, load_pretrained

from conftest import FINETUNE, TINY, TRANSFORMER
from test_finetune import great_csv, make_run

DECODER = ["model.backbone=decoder", "model.dropout=0"]
SETTINGS = TINY + TRANSFORMER + FINETUNE + DECODER
FT = ["finetune.epochs=2", "finetune.min_steps=0", "finetune.lr=0.01"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def sets(settings):
    """--set arguments for commands on a run (its architecture is the run's: no model.* settings)."""
    return [a for s in settings if not s.startswith("model.") for a in ("--set", s)]


def make_decoder_run(path, style="llama"):
    """A decoder run directory as `pretrain` writes it (one checkpoint of a fresh model; test_finetune's
    settings plus ours)."""
    return make_run(path, *DECODER, f"model.style={style}")


@pytest.fixture(scope="module")
def dec_run(tmp_path_factory):
    return make_decoder_run(tmp_path_factory.mktemp("dec") / "run")


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return great_csv(tmp_path_factory.mktemp("task") / "great.csv", n=96)


@pytest.fixture(scope="module")
def pair_task(tmp_path_factory):
    """Pairs: label pos exactly when the SECOND text holds 'great' (so the model must read past the first)."""
    rng = random.Random(2)
    words = "the a film movie story actor plot was good bad dull fun".split()
    rows = ["first,second,label"]
    for i in range(96):
        a = " ".join(rng.choice(words) for _ in range(4)) + f" {i}"
        b = [rng.choice(words) for _ in range(4)]
        if i % 2:
            b[rng.randrange(4)] = "great"
        rows.append(f"{a},{' '.join(b)},{'pos' if i % 2 else 'neg'}")
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the last-token classifier


def test_last_token_pooling_finds_the_last_real_token():
    hidden = torch.arange(2 * 5 * 1, dtype=torch.float).view(2, 5, 1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert pool(hidden, mask, "last")[:, 0].tolist() == [2.0, 9.0]


def test_a_decoder_classifier_reads_each_text_as_if_alone(dec_run):
    pre = load_pretrained(dec_run)
    clf = LastTokenClassifier(pre.backbone, 3).eval()
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 20, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        both = clf(ids, mask).logits
        alone = clf(ids[1:, :3], mask[1:, :3]).logits
        other_padding = clf(torch.where(mask.bool(), ids, 7), mask).logits  # what lies in the padding is never read
    torch.testing.assert_close(both[1:], alone)
    torch.testing.assert_close(other_padding, both)
    assert clf.head.bias is None  # Llama's / GPT-2's `score`: no bias


# --------------------------------------------------------------------------- fine-tuning through the CLI


@pytest.fixture(scope="module")
def classifier(dec_run, task, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "clf"
    assert main(["finetune", str(dec_run), "--task", str(task), "--out", str(out), "--seeds", "0",
                 *sets(SETTINGS + FT)]) == 0
    return out


def test_finetune_evaluate_predict_on_a_decoder(dec_run, classifier, capsys):
    info = json.loads((classifier / "classifier.json").read_text())
    assert (info["head"], info["pooling"], info["segments"]) == ("decoder", "last", False)
    ftm = load_classifier(classifier)
    assert isinstance(ftm.model, LastTokenClassifier)
    capsys.readouterr()
    assert main(["evaluate", str(classifier)]) == 0
    assert "macro-F1" in capsys.readouterr().out
    assert main(["predict", str(classifier), "a great film", "a dull film"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in ("neg", "pos") for line in lines)


def test_a_decoder_learns_a_pair_task_from_its_last_token(dec_run, pair_task, tmp_path, capsys):
    out = tmp_path / "pairs"
    extra = ["finetune.text_column=first", "finetune.text_pair_column=second", "finetune.epochs=6",
             "finetune.max_len=24", "finetune.lr=0.01"]
    assert main(["finetune", str(dec_run), "--task", str(pair_task), "--out", str(out), "--seeds", "0",
                 *sets(SETTINGS + FT + extra)]) == 0
    ftm = load_classifier(out)
    assert ftm.meta["pairs"] is True
    capsys.readouterr()
    assert main(["predict", str(out), "a film 1", "--pair", "the great plot"]) == 0
    assert capsys.readouterr().out.split("\t")[0] in ("neg", "pos")
    assert json.loads((out / "results.json").read_text())["accuracy"]["mean"] >= 0.8  # measured: 1.0 (10 test pairs)


def test_curve_and_explain_work_on_a_decoder(dec_run, classifier, task, tmp_path, capsys):
    out = tmp_path / "curve"
    assert main(["curve", str(dec_run), "--task", str(task), "--labels", "16", "all", "--seeds", "0",
                 "--out", str(out), *sets(SETTINGS + ["finetune.epochs=1", "finetune.min_steps=2"])]) == 0
    assert (out / "curve.csv").is_file() and "pretrained" in (out / "curve.csv").read_text()
    html = tmp_path / "report.html"
    assert main(["explain", str(classifier), "--text", "a great film", "--steps", "4", "--out", str(html)]) == 0
    page = html.read_text(encoding="utf-8")
    assert "hv-data" in page  # the attention head view: the decoder returns its (causal) attention maps


# --------------------------------------------------------------------------- export and import

PROMPT = "the film was"


@pytest.fixture(scope="module", params=[("llama", "false"), ("gpt2", "true")], ids=["llama-untied", "gpt2-tied"])
def trained(request, review_corpus, tmp_path_factory):
    """A decoder pre-trained a few steps (so that its greedy text is not the init's), per style."""
    from pretrainlab.config import load_config
    from pretrainlab.train import pretrain
    from conftest import FAST

    style, tie = request.param
    cfg = load_config(None, SETTINGS + FAST + [f"model.style={style}", f"objective.tie_embeddings={tie}",
                                               "train.budget=6", "train.eval_every=0"])
    return pretrain(cfg, review_corpus, tmp_path_factory.mktemp(style) / "run")


def test_export_writes_the_hf_causal_lm_whose_greedy_generate_is_ours(trained, tmp_path, capsys):
    from pretrainlab.export import run_snippet
    from pretrainlab.generate import GenerationSettings, generate_run

    to = tmp_path / "hf"
    capsys.readouterr()
    assert main(["export", str(trained), "--to", str(to)]) == 0  # its check: logits, ids and greedy generate
    out = capsys.readouterr().out
    assert "greedy generate equal" in out and "tokenizer ids match" in out
    style = load_pretrained(trained).backbone.style
    config = json.loads((to / "config.json").read_text())
    assert config["architectures"] == [{"llama": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel"}[style]]
    sp = load_pretrained(trained).special
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (sp.cls, sp.sep, sp.pad)
    tc = json.loads((to / "tokenizer_config.json").read_text())
    assert (tc["padding_side"], tc["bos_token"], tc["eos_token"]) == ("left", "[CLS]", "[SEP]")

    # AutoModelForCausalLM under HF_HUB_OFFLINE=1: model.generate(**tokenizer(prompt, return_tensors="pt"))
    result = run_snippet(to, PROMPT)
    ids = result["input_ids"][0]
    assert ids[0] == sp.cls and sp.sep not in ids  # the start token and no end token
    ours = generate_run(trained, [PROMPT], GenerationSettings(max_new_tokens=12, temperature=0.0))[0]
    assert result["generated"] == ours.ids  # the same tokens as `pretrainlab generate --temperature 0`
    assert result["label"] == ours.text


def test_export_then_import_is_exact(trained, tmp_path, capsys):
    from pretrainlab.tokenizer import tokenizer_hash

    to = tmp_path / "hf"
    assert main(["export", str(trained), "--to", str(to), "--no-check"]) == 0
    capsys.readouterr()
    assert main(["import", str(to), "--out", str(tmp_path / "back"), "--seq-len", "16"]) == 0
    assert "LM head:" in capsys.readouterr().out
    a, b = load_pretrained(trained), load_pretrained(tmp_path / "back")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    tied = lambda p: p.model.lm_head.embedding is p.backbone.get_input_embeddings()  # noqa: E731
    assert tied(a) == tied(b)
    assert tokenizer_hash(a.tokenizer) == tokenizer_hash(b.tokenizer)  # the training template is back
    assert b.config.model == a.config.model.__class__(**{**a.config.model.__dict__, "preset": None})
    assert b.config.data.seq_len == a.config.data.seq_len and b.config.objective.weights == {"clm": 1.0}


def test_continued_pre_training_of_an_imported_decoder(trained, review_corpus, tmp_path, capsys):
    to = tmp_path / "hf"
    assert main(["export", str(trained), "--to", str(to), "--no-check"]) == 0
    assert main(["import", str(to), "--out", str(tmp_path / "imp"), "--seq-len", "16"]) == 0
    capsys.readouterr()
    args = ["pretrain", "--corpus", str(review_corpus), "--out", str(tmp_path / "more"), "--init", str(tmp_path / "imp"),
            *sets(TINY + ["train.budget=1", "train.eval_every=0"])]  # nothing said about the model or objective
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "its architecture is used" in err and "objective.weights={'clm': 1.0}" in err
    assert load_pretrained(tmp_path / "more").backbone.style == load_pretrained(trained).backbone.style


@pytest.mark.parametrize("change, message", [
    ({"num_key_value_heads": 2}, "grouped-query attention"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}, "rotary base 500000.0"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
])
def test_import_refuses_llama_folders_it_would_not_compute_alike(dec_run, tmp_path, capsys, change, message):
    to = tmp_path / "hf"
    assert main(["export", str(dec_run), "--to", str(to), "--no-check"]) == 0
    config = json.loads((to / "config.json").read_text())
    (to / "config.json").write_text(json.dumps({**config, **change}))
    capsys.readouterr()
    assert main(["import", str(to), "--out", str(tmp_path / "imp")]) == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def gpt2_classifier(task, tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt2")
    run = make_decoder_run(root / "run", style="gpt2")
    out = root / "clf"
    assert main(["finetune", str(run), "--task", str(task), "--out", str(out), "--seeds", "0",
                 *sets(SETTINGS + FT + ["finetune.epochs=1"])]) == 0
    return out


@pytest.mark.parametrize("which, architecture", [("llama", "LlamaForSequenceClassification"),
                                                 ("gpt2", "GPT2ForSequenceClassification")])
def test_a_decoder_classifier_exports_and_the_readme_snippet_runs_on_it(classifier, gpt2_classifier, tmp_path, capsys,
                                                                        which, architecture):
    from pretrainlab.export import run_snippet

    src = {"llama": classifier, "gpt2": gpt2_classifier}[which]
    to = tmp_path / "hf"
    capsys.readouterr()
    assert main(["export", str(src), "--to", str(to)]) == 0  # the README's snippet, offline, equal logits
    assert "labels agree" in capsys.readouterr().out
    config = json.loads((to / "config.json").read_text())
    assert config["architectures"] == [architecture] and config["pad_token_id"] == load_classifier(src).special.pad
    tc = json.loads((to / "tokenizer_config.json").read_text())
    assert tc["padding_side"] == "right"
    result = run_snippet(to, "a great film")
    ftm = load_classifier(src)
    assert result["input_ids"][0][-1] == ftm.special.sep  # classifiers read `[CLS] text [SEP]`, as fine-tuned
    from pretrainlab.evaluate import predict

    assert result["label"] == predict(src, ["a great film"])[0][0]
