"""An encoder-decoder run after pre-training: generate, fine-tune / evaluate / predict / curve, export, import."""

import pytest
import torch

from pretrainlab.cli import main
from pretrainlab.config import load_config
from pretrainlab.generate import GenerateError, GenerationSettings, generate_run
from pretrainlab.train import pretrain

from conftest import FAST, FINETUNE, TINY, TRANSFORMER

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
