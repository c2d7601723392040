"""The decoder end to end: config (styles, presets, clm by default, what it refuses), pre-training
through the CLI with checkpoints and resume, generation and perplexity on the run."""

import json

import pytest
import torch
from safetensors.torch import load_file

from pretrainlab.cli import main
from pretrainlab.config import PRESETS, ConfigError, describe, load_config
from pretrainlab.runs import load_pretrained

from conftest import FAST, TINY, TRANSFORMER

DECODER = ["model.backbone=decoder", "model.style=llama", "model.dropout=0"]
SETTINGS = TINY + TRANSFORMER + FAST + DECODER + ["train.eval_every=0", "train.eval_batches=1", "train.log_every=1"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def sets(settings):
    return [a for s in settings for a in ("--set", s)]


# --------------------------------------------------------------------------- config


def test_decoder_defaults_llama_style_and_clm_and_is_sized_like_the_encoder():
    cfg = load_config(None, ["model.backbone=decoder"])
    assert (cfg.model.style, cfg.objective.weights) == ("llama", {"clm": 1.0})
    for preset, sizes in PRESETS.items():
        m = load_config(None, ["model.backbone=decoder", "model.style=gpt2", f"model.preset={preset}"]).model
        assert dict(n_layers=m.n_layers, d_model=m.d_model, n_heads=m.n_heads, d_ff=m.d_ff) == sizes
    # the encoder keeps its own defaults
    assert load_config(None, []).objective.weights == {"mlm": 1.0}
    assert load_config(None, []).model.style == "modern"


@pytest.mark.parametrize("objective, why", [
    ("mlm", "predicts a masked token from both sides"),
    ("nsp", r"from its first token \(\[CLS\]\)"),
    ("sop", r"from its first token \(\[CLS\]\)"),
    ("plm", "two-stream attention"),
    ("rtd", "generator is a masked LM"),
])
def test_objectives_a_decoder_cannot_express_are_refused_at_load(objective, why):
    with pytest.raises(ConfigError, match=rf"objective {objective} does not fit model.backbone=decoder \(causal.*{why}"
                                          r".*objective.weights=\{clm: 1.0\}"):
        load_config(None, ["model.backbone=decoder", f"objective.weights={{{objective}: 1.0, clm: 1.0}}"])


@pytest.mark.parametrize("backbone, why", [("transformer", "every position attends to both sides"),
                                           ("cnn", "every kernel reads both sides")])
def test_clm_on_a_bidirectional_backbone_is_refused_at_load(backbone, why):
    with pytest.raises(ConfigError, match=rf"objective clm .* the {backbone} backbone does not have \({why}.*"
                                          r"use model.backbone=decoder"):
        load_config(None, [f"model.backbone={backbone}", "objective.weights={clm: 1.0}"])
    assert load_config(None, ["model.backbone=rnn", "objective.weights={clm: 1.0}"]).objective.weights == {"bilm": 1.0}


def test_bad_decoder_settings_are_refused():
    with pytest.raises(ConfigError, match="model.style='modern' is not a style of the decoder backbone.*choose llama or gpt2"):
        load_config(None, ["model.backbone=decoder", "model.style=modern"])
    with pytest.raises(ConfigError, match="data.seq_len=128 is longer than model.max_len=64"):
        load_config(None, ["model.backbone=decoder", "model.max_len=64", "data.seq_len=128"])
    with pytest.raises(ConfigError, match="model.style=llama needs an even head size"):
        load_config(None, ["model.backbone=decoder", "model.d_model=30", "model.n_heads=10"])


def test_help_config_says_when_to_choose_the_decoder(capsys):
    text = describe()
    assert "decoder (a causal Transformer)" in text and "llama" in text and "gpt2" in text
    assert main(["--help-config"]) == 0
    assert "Choose the encoder to classify" in capsys.readouterr().out


# --------------------------------------------------------------------------- pre-training through the CLI


@pytest.fixture(scope="module")
def run(review_corpus, tmp_path_factory):
    """A tiny llama-style decoder pre-trained 8 steps through the CLI (checkpoints at 4 and 8)."""
    out = tmp_path_factory.mktemp("dec") / "run"
    extra = ["train.budget=8", "train.checkpoint_every=4", "train.deterministic=true"]
    assert main(["pretrain", "--corpus", str(review_corpus), "--out", str(out), *sets(SETTINGS + extra)]) == 0
    return out


def test_pretrain_trains_a_decoder_with_clm_and_resumes_exactly(run, review_corpus, tmp_path, capsys):
    pre = load_pretrained(run)
    assert type(pre.backbone).__name__ == "DecoderBackbone" and pre.backbone.style == "llama"
    assert list(pre.model.objectives) == ["clm"] and type(pre.model.objectives["clm"]).__name__ == "CLM"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["clm_loss"] for r in rows if "clm_loss" in r]
    assert len(losses) == 8 and losses[-1] < losses[0]

    # cut back to the step-4 checkpoint, resume: the same weights as the uninterrupted run
    import shutil

    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_0000008")
    (resumed / "checkpoints" / "latest").write_text("step_0000004\n")
    extra = ["train.budget=8", "train.checkpoint_every=4", "train.deterministic=true"]
    assert main(["pretrain", "--corpus", str(review_corpus), "--out", str(resumed), "--resume",
                 *sets(SETTINGS + extra)]) == 0
    assert "resuming from" in capsys.readouterr().err
    a = load_file(str(run / "checkpoints" / "step_0000008" / "model.safetensors"))
    b = load_file(str(resumed / "checkpoints" / "step_0000008" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_gpt2_style_and_a_tied_head_train_too(review_corpus, tmp_path):
    extra = ["model.style=gpt2", "objective.tie_embeddings=true", "train.budget=2"]
    assert main(["pretrain", "--corpus", str(review_corpus), "--out", str(tmp_path / "g"), *sets(SETTINGS + extra)]) == 0
    pre = load_pretrained(tmp_path / "g")
    assert pre.backbone.style == "gpt2"
    assert pre.model.lm_head.embedding is pre.backbone.get_input_embeddings()


# --------------------------------------------------------------------------- generate


def generate_cli(capsys, *args):
    capsys.readouterr()
    rc = main(["generate", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out.splitlines(), out.err


def test_generate_greedy_is_deterministic_and_is_the_model_s_own_greedy_loop(run, capsys):
    from pretrainlab.generate import generate
    from pretrainlab.models import CausalLM

    rc, lines, _ = generate_cli(capsys, run, "the film was", "a dull", "--temperature", "0", "--max-new-tokens", 8)
    assert rc == 0 and len(lines) == 2
    assert generate_cli(capsys, run, "the film was", "a dull", "--temperature", "0", "--max-new-tokens", 8)[1] == lines
    # the same tokens as generate() on `[CLS] prompt` (start token, no end token), stopping at [SEP]
    pre = load_pretrained(run)
    tok, sp = pre.tokenizer, pre.special
    lm = pre.lm
    assert isinstance(lm, CausalLM) and lm.head is pre.model.lm_head
    ids = torch.tensor([[sp.cls] + tok.encode("the film was", add_special_tokens=False).ids])
    assert sp.sep not in ids[0].tolist()
    ours = generate(lm, ids, 8, temperature=0.0, eos_id=sp.sep)
    assert lines[0] == tok.decode(ours[0].tolist(), skip_special_tokens=True)
    assert lines[0].startswith("the film was")


def test_generate_samples_repeatably_and_reads_a_prompt_file(run, tmp_path, capsys):
    sample = ["--temperature", "1.2", "--top-k", 20, "--top-p", 0.9, "--seed", 3, "--max-new-tokens", 8]
    rc, alone, _ = generate_cli(capsys, run, "the plot", *sample)
    assert rc == 0 and generate_cli(capsys, run, "the plot", *sample)[1] == alone
    (tmp_path / "prompts.txt").write_text("a good\n\nthe plot\n", encoding="utf-8")
    rc, lines, _ = generate_cli(capsys, run, "--file", tmp_path / "prompts.txt", *sample)
    assert rc == 0 and len(lines) == 2 and lines[1] == alone[0]  # each prompt alone with the seed: as on its own


def test_generate_stops_at_the_end_of_text_token(run, monkeypatch):
    from pretrainlab import generate as gen

    settings = gen.GenerationSettings(max_new_tokens=12, temperature=0.0)
    first = gen.generate_run(run, ["the"], settings)[0]
    sep = load_pretrained(run).special.sep
    # make [SEP] the most likely next token everywhere: the text ends after one new token
    real = gen.CausalLM.forward
    monkeypatch.setattr(gen.CausalLM, "forward", lambda self, *a, **k: real(self, *a, **k).index_fill(-1, torch.tensor([sep]), 1e4))
    ended = gen.generate_run(run, ["the"], settings)[0]
    assert ended.ended and ended.ids == first.ids[:ended.n_prompt] + [sep] and ended.continuation == ""
    assert len(first.ids) == first.n_prompt + 12 or first.ended


def test_a_prompt_longer_than_the_context_is_cut_from_the_left_with_a_note(run, capsys):
    long_prompt = " ".join(["good film"] * 60)  # > 64 tokens
    rc, lines, err = generate_cli(capsys, run, long_prompt, "--temperature", "0", "--max-new-tokens", 10)
    assert rc == 0 and len(lines) == 1
    assert "prompt 1 is" in err and "the context of 64 with --max-new-tokens 10 leaves 54" in err
    assert "pre-trained on 16-token sequences" in err
    from pretrainlab.generate import GenerationSettings, generate_run

    g = generate_run(run, [long_prompt], GenerationSettings(10, 0.0), note=lambda m: None)[0]
    assert g.n_prompt == 54 and g.dropped > 0 and len(g.ids) <= 64


@pytest.mark.parametrize("args, message", [
    (["--top-p", "0"], r"top_p=0.0 is outside \(0, 1\]"),
    (["--top-p", "1.5"], r"top_p=1.5 is outside \(0, 1\]"),
    (["--temperature", "-1"], "temperature=-1.0 is negative"),
    (["--top-k", "0"], "top_k=0 must be at least 1"),
])
def test_bad_generation_settings_are_refused_before_the_run_is_read(tmp_path, capsys, args, message):
    import re

    rc, lines, err = generate_cli(capsys, tmp_path / "no-such-run", "a prompt", *args)
    assert rc == 2 and not lines and re.search(message, err)


def test_generate_refuses_runs_that_cannot_generate(run, tmp_path, capsys):
    from pretrainlab.config import save_config

    enc = tmp_path / "encoder"
    enc.mkdir()
    save_config(load_config(None, TINY), enc / "config.yaml")  # generate reads the kind before any weights
    rc, _, err = generate_cli(capsys, enc, "a prompt")
    assert rc == 2 and "is a transformer run, a bidirectional encoder" in err
    assert "model.backbone=decoder" in err and "finetune (then evaluate, predict, explain)" in err and "perplexity" in err
    rc, _, err = generate_cli(capsys, tmp_path, "a prompt")
    assert rc == 2 and "not a pretrainlab run directory" in err
    rc, _, err = generate_cli(capsys, run, "a prompt", "--max-new-tokens", 64)
    assert rc == 2 and "leaves no room for the prompt in the model's context of 64 tokens" in err
    (tmp_path / "p.txt").write_text("x\n")
    rc, _, err = generate_cli(capsys, run, "a prompt", "--file", tmp_path / "p.txt")
    assert rc == 2 and "not both" in err


# --------------------------------------------------------------------------- perplexity

HELD_OUT = ["the film was good", "a very long and dull story of an actor", " ".join(["the plot was fun"] * 10)]


def uniform(pre, weight):
    """The run's model with its vocabulary projection zeroed: every next token equally likely."""
    with torch.no_grad():
        weight.zero_()
    return pre


def test_decoder_perplexity_is_exp_of_the_clm_loss_on_the_same_pieces(run):
    from pretrainlab.intrinsic import _pieces, causal_perplexity

    pre = load_pretrained(run)
    result = causal_perplexity(pre, HELD_OUT, batch_size=2)
    assert result.seq_len == 16 and result.model == "decoder"
    pieces = _pieces(pre, HELD_OUT, 16)
    n_text = sum(len(pre.tokenizer.encode(t, add_special_tokens=False).ids) for t in HELD_OUT)
    assert len(pieces) > len(HELD_OUT) and all(len(p) <= 16 for p in pieces)  # the long text is cut
    assert result.n_tokens == n_text + len(pieces)  # every token after [CLS], and each piece's [SEP]
    # one piece at a time, through the objective's own collator and loss
    clm, total = pre.model.objectives["clm"], 0.0
    for piece in pieces:
        ids = torch.tensor([piece])
        batch = clm.prepare({"input_ids": ids, "mask": torch.ones_like(ids)}, torch.Generator())
        with torch.no_grad():
            loss, _ = clm.loss(pre.model, pre.backbone(ids, batch["mask"]), batch)
        total += float(loss) * len(batch["clm_labels"])
    assert result.nll == pytest.approx(total / result.n_tokens, rel=1e-5)
    assert causal_perplexity(pre, HELD_OUT, batch_size=64).perplexity == pytest.approx(result.perplexity, rel=1e-5)
    head = pre.model.lm_head.embedding.weight
    assert causal_perplexity(uniform(pre, head), HELD_OUT).perplexity == pytest.approx(pre.backbone.vocab_size, rel=1e-6)


def test_rnn_trained_with_clm_gets_a_true_perplexity_from_its_forward_lm(review_corpus, tmp_path):
    from pretrainlab.intrinsic import _pieces, causal_perplexity, perplexity
    from pretrainlab.train import pretrain

    cfg = load_config(None, TINY + FAST + ["model.backbone=rnn", "objective.weights={clm: 1.0}", "train.budget=2",
                                           "train.eval_every=0", "model.dropout=0"])
    pre = load_pretrained(pretrain(cfg, review_corpus, tmp_path / "rnn"))
    result = perplexity(pre, HELD_OUT)
    assert type(result).__name__ == "CausalPerplexity" and "forward LM" in result.summary()
    total = n = 0
    for piece in _pieces(pre, HELD_OUT, 16):  # ELMo's own forward loss, piece by piece
        ids = torch.tensor([piece])
        batch = pre.model.prepare({"input_ids": ids, "mask": torch.ones_like(ids)}, torch.Generator())
        with torch.no_grad():
            m = pre.model(batch).metrics
        total, n = total + float(m["bilm_fwd_loss"]) * len(batch["bilm_fwd_labels"]), n + len(batch["bilm_fwd_labels"])
    assert result.n_tokens == n and result.nll == pytest.approx(total / n, rel=1e-5)
    obj = pre.model.objectives["bilm"]  # clm on an rnn is read as bilm
    with torch.no_grad():
        obj.bias.zero_()
    assert causal_perplexity(uniform(pre, obj.embedding.weight), HELD_OUT).perplexity == pytest.approx(
        pre.backbone.vocab_size, rel=1e-6)


def test_perplexity_cli_says_which_perplexity_it_computed(run, tmp_path, capsys):
    (tmp_path / "held.txt").write_text("\n".join(HELD_OUT) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["perplexity", str(run), "--text-file", str(tmp_path / "held.txt")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("perplexity ") and "true perplexity: exp of the mean next-token NLL" in out
    assert "from the decoder" in out and "pseudo" not in out
