"""model.preset=auto: the rule on hand-made figures (throughput injected, no clock), and an auto run end to end
(the preset it resolved is what config.yaml records, so resume, fine-tuning and export work as for any run)."""

import json
import random

import pytest
import torch
import yaml

from pretrainlab import sizing
from pretrainlab.config import PRESETS, ConfigError, load_config
from pretrainlab.sizing import Candidate, SizingRule, auto_size, choose
from pretrainlab.train import pretrain

from conftest import FAST, FINETUNE, TINY, TRANSFORMER, review_csv

SIZES = ("model.preset", "model.n_layers", "model.d_model", "model.n_heads", "model.d_ff")
SETTINGS = [s for s in TINY + TRANSFORMER + FAST + FINETUNE if not s.startswith(SIZES)] + [
    "train.eval_every=0", "train.eval_batches=1", "finetune.epochs=1"]
"""The tests' tiny settings without any size: model.preset stays at its default, auto."""

PARAMS = {"tiny": 1_600_000, "mini": 6_300_000, "small": 21_000_000, "medium": 34_000_000, "base": 110_000_000}
TOK_PER_S = {"tiny": 40_000.0, "mini": 13_000.0, "small": 4_000.0, "medium": 2_000.0, "base": 500.0}
"""Rough CPU figures (2 cores, bf16): tiny's 40k tok/s and 1.6M parameters as measured (scaling.md)."""

pytestmark = pytest.mark.usefixtures("one_thread")


def cfg(*extra):
    return load_config(None, SETTINGS + list(extra))


def injected(measured):
    def measure(c):
        measured.append(c.model.preset)
        return PARAMS[c.model.preset], TOK_PER_S[c.model.preset]
    return measure


def test_choose_takes_the_largest_trained_enough_and_stops_at_the_first_below():
    looked = []

    def candidates():
        for name, tokens in (("tiny", 100.0), ("mini", 60.0), ("small", 5.0), ("medium", 1e9)):
            looked.append(name)
            yield Candidate(name, 10, tokens)

    preset, seen = choose(candidates(), SizingRule(min_tokens_per_parameter=5.0))
    assert preset == "mini" and [c.preset for c in seen] == ["tiny", "mini", "small"] == looked
    # none trained enough: the smallest
    assert choose(iter([Candidate("tiny", 10, 1.0), Candidate("mini", 20, 1.0)]))[0] == "tiny"


def test_auto_picks_a_larger_model_for_a_longer_budget_on_the_same_corpus(capsys):
    """At the injected speeds, on the demo's 3.6M tokens: 5 minutes give tiny 12M tokens (7.5 per parameter) and
    mini 3.9M (0.6): tiny. 60 minutes give mini 46.8M tokens (7.4 per parameter): mini; small 14.4M (0.7) is not."""
    rule = SizingRule(min_tokens_per_parameter=5.0)
    measured = []
    short, s5 = auto_size(cfg("train.budget=5m"), 3_600_000, injected(measured), rule=rule)
    assert measured == ["tiny", "mini"] and s5.preset == "tiny"
    measured.clear()
    long, s60 = auto_size(cfg("train.budget=60m"), 3_600_000, injected(measured), rule=rule)
    assert measured == ["tiny", "mini", "small"] and s60.preset == "mini"
    assert (short.model.preset, short.model.d_model) == ("tiny", PRESETS["tiny"]["d_model"])
    assert (long.model.preset, long.model.d_model, long.model.n_layers) == ("mini", 256, 4)
    assert s60.line() == "60m on 3.6M tokens: preset mini (6.3M parameters), ~13 passes, ~7 tokens/parameter"
    sizing.say(s60)
    out = capsys.readouterr().err
    assert s60.line() in out and "small 21.0M: 0.7 tokens/parameter" in out and "warning" not in out
    d = s60.to_dict()
    assert (d["preset"], d["tokens"], d["passes"]) == ("mini", 46_800_000, 13.0)


def test_a_token_or_step_budget_needs_no_probe():
    rule = SizingRule(min_tokens_per_parameter=5.0)

    def measure(c):
        return PARAMS[c.model.preset], None

    assert auto_size(cfg("train.budget=40Mtok"), 3_600_000, measure, rule=rule)[1].preset == "mini"
    # 1,000 steps of 32 x 64 tokens on 2 processes: 4.1M tokens
    _, s = auto_size(cfg("train.budget=1000", "train.batch_size=32", "data.seq_len=64"), 3_600_000, measure, world=2,
                     rule=rule)
    assert s.chosen.tokens == 1000 * 32 * 64 * 2 and s.preset == "tiny"


def test_a_tiny_corpus_gets_a_warning_naming_its_tokens_the_passes_and_what_to_do():
    _, s = auto_size(cfg("train.budget=60m"), 50_000, injected([]), rule=SizingRule(min_tokens_per_parameter=5.0))
    w = s.warning()
    assert "50,000 training tokens" in w and "~936 times in 60m" in w and "Add text" in w and "shorten train.budget" in w


def test_explicit_presets_and_sizes_win():
    assert load_config(None, []).model.preset == "auto"
    assert load_config(None, ["model.preset=mini"]).model.preset == "mini"
    # an explicit size: the tiny preset under it, as before auto (nothing left to choose)
    m = load_config(None, ["model.n_layers=3"]).model
    assert (m.preset, m.n_layers, m.d_model) == ("tiny", 3, PRESETS["tiny"]["d_model"])
    with pytest.raises(ConfigError, match="model.preset='huge' is not one of auto, tiny"):
        load_config(None, ["model.preset=huge"])


def test_printed_settings_of_an_auto_config_load_back_as_auto():
    from pretrainlab.config import config_from_dict, config_yaml

    c = load_config(None, [])
    printed = yaml.safe_load(config_yaml(c))
    assert "d_model" not in printed["model"]  # sizes are chosen by pretrain
    assert config_from_dict(printed) == c


def test_the_probe_measures_tokens_per_second_and_leaves_the_rng_alone(review_corpus):
    from pretrainlab.runs import build_pretrain_model
    from pretrainlab.sizing import probe_throughput
    from pretrainlab.tokenizer import load_tokenizer, special_ids

    c = load_config(None, TINY + TRANSFORMER + FAST)
    tok = load_tokenizer(review_corpus / "tokenizer.json")
    model = build_pretrain_model(c, tok.get_vocab_size(), special_ids(tok))
    ids = torch.randint(5, tok.get_vocab_size(), (8, 16))
    batch = {"input_ids": ids, "mask": torch.ones_like(ids)}
    state = torch.get_rng_state()
    rate = probe_throughput(model, lambda: model.prepare(dict(batch), torch.Generator().manual_seed(0)),
                            device=torch.device("cpu"), dtype=None, lr=1e-3, seconds=0.05)
    assert rate > 0 and torch.equal(torch.get_rng_state(), state)


@pytest.fixture(scope="module")
def auto_run(review_corpus, tmp_path_factory):
    """An auto run with a step budget, the rule's candidates cut to tiny and mini and the threshold at 0: mini."""
    mp = pytest.MonkeyPatch()
    mp.setattr(sizing, "RULE", SizingRule(min_tokens_per_parameter=0.0, candidates=("tiny", "mini")))
    run = pretrain(cfg("train.budget=3"), review_corpus, tmp_path_factory.mktemp("auto") / "run")
    mp.undo()
    return run


def test_an_auto_run_records_its_preset_and_resumes_fine_tunes_and_exports(auto_run, review_corpus, tmp_path):
    from pretrainlab.export import export
    from pretrainlab.finetune import finetune

    saved = yaml.safe_load((auto_run / "config.yaml").read_text())["model"]
    assert (saved["preset"], saved["d_model"], saved["n_layers"]) == ("mini", 256, 4)
    summary = json.loads((auto_run / "summary.json").read_text())
    assert summary["sizing"]["preset"] == "mini" and summary["sizing"]["tokens"] == 3 * 8 * 16
    # --resume with the same (auto) settings continues the mini run: no new choice, no refusal
    pretrain(cfg("train.budget=5"), review_corpus, auto_run, resume=True)
    assert json.loads((auto_run / "summary.json").read_text())["steps"] == 5
    task = tmp_path / "t.csv"
    task.write_text(review_csv(random.Random(1), 64), encoding="utf-8")
    finetune(auto_run, task, cfg(), out_dir=tmp_path / "ft", seeds=(0,))
    from transformers import AutoModelForMaskedLM

    hf = AutoModelForMaskedLM.from_pretrained(export(auto_run, tmp_path / "hf"))
    assert hf.config.hidden_size == 256 and hf.config.num_hidden_layers == 4


def test_pretrain_prints_what_auto_chose(review_corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sizing, "RULE", SizingRule(min_tokens_per_parameter=5.0, candidates=("tiny", "mini")))
    pretrain(cfg("train.budget=2"), review_corpus, tmp_path / "run")
    err = capsys.readouterr().err
    assert "2 steps on " in err and "preset tiny" in err and "model.preset=auto takes the largest preset" in err


def test_a_time_budget_probes_the_candidates_inside_pretrain(review_corpus, tmp_path, capsys, monkeypatch):
    """The path `make demo` takes (a wall-clock budget: each candidate's tokens/s is measured in pretrain's own
    probe); every other test here uses a step budget, which needs no probe."""
    monkeypatch.setattr(sizing, "RULE", SizingRule(min_tokens_per_parameter=0.0, candidates=("tiny", "mini"),
                                                    probe_seconds=0.05))
    run = pretrain(cfg("train.budget=2s"), review_corpus, tmp_path / "run")
    chosen = json.loads((run / "summary.json").read_text())["sizing"]
    assert chosen["preset"] == "mini" and chosen["budget"] == "2s" and chosen["tokens"] > 0
    assert "2s on " in capsys.readouterr().err


def test_pretrain_warns_on_a_tiny_corpus_and_not_on_an_adequate_one(review_corpus, tmp_path, capsys, monkeypatch):
    """The same 12-step budget (12 x 32 x 16 = 6,144 tokens) at the rule's own warn_passes (100): on a corpus of
    a few dozen training tokens even tiny re-reads it >100 times and pretrain says so on stderr, as the user sees
    it; on the 200-review corpus (a few passes) it says nothing of the kind."""
    from pretrainlab.data.prepare import prepare_corpus
    from conftest import review_docs

    monkeypatch.setattr(sizing, "RULE", SizingRule(min_tokens_per_parameter=5.0, candidates=("tiny",)))
    raw = tmp_path / "small.txt"
    raw.write_text(review_docs(random.Random(3), 3), encoding="utf-8")
    small = tmp_path / "small"
    prepare_corpus([str(raw)], small,
                   load_config(None, ["data.vocab_size=120", "data.min_chars=5", "data.seq_len=16"]).data)
    budget = ("train.budget=12", "train.batch_size=32")
    capsys.readouterr()

    run = pretrain(cfg(*budget), small, tmp_path / "small_run")
    err = capsys.readouterr().err
    chosen = json.loads((run / "summary.json").read_text())["sizing"]
    n, passes = chosen["corpus_tokens"], chosen["passes"]
    assert chosen["preset"] == "tiny" and passes > 100
    warning = [line for line in err.splitlines() if f"the corpus has only {n:,} training tokens" in line]
    assert len(warning) == 1, err
    assert (f"would read it ~{passes:,.0f} times in 12 steps" in warning[0] and "Add text" in warning[0]
            and "shorten train.budget" in warning[0])

    run = pretrain(cfg(*budget), review_corpus, tmp_path / "adequate_run")
    err = capsys.readouterr().err
    chosen = json.loads((run / "summary.json").read_text())["sizing"]
    assert chosen["passes"] < 100 and "preset tiny" in err
    assert "the corpus has only" not in err and "shorten train.budget" not in err


def test_an_explicit_preset_is_not_probed_and_records_no_sizing(review_corpus, tmp_path, capsys, monkeypatch):
    """model.preset=tiny with a wall-clock budget (the budget kind that would probe under auto): no probe, no
    auto choice, no sizing.json nor summary["sizing"], and nothing printed about a choice."""
    from pretrainlab.train import SIZING_FILE

    def refuse(*args, **kwargs):
        raise AssertionError("an explicit model.preset must not be sized or probed")

    monkeypatch.setattr(sizing, "probe_throughput", refuse)
    monkeypatch.setattr(sizing, "auto_size", refuse)
    run = pretrain(cfg("model.preset=tiny", "train.budget=1s"), review_corpus, tmp_path / "run")
    saved = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert (saved["preset"], saved["d_model"]) == ("tiny", PRESETS["tiny"]["d_model"])
    assert not (run / SIZING_FILE).exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] > 0 and "sizing" not in summary
    assert "model.preset=auto" not in capsys.readouterr().err
