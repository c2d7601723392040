"""Settings a user can find: each command's --help lists the settings that matter to it with the values a run
uses, --help-config [SECTION] shows those values with every doc, --print-config prints the resolved settings,
--version the package's."""

import re

import pytest
import yaml

from pretrainlab import __version__
from pretrainlab.cli import build_parser, main
from pretrainlab.config import config_from_dict, field_docs, load_config, save_config

from conftest import TINY


def help_of(capsys, *command) -> str:
    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def listed(text: str) -> dict[str, str]:
    """section.key -> value, from the settings a --help lists."""
    return dict(re.findall(r"(?m)^  ([a-z]+\.[a-z_]+)=(\S+)", text))


def test_pretrain_help_lists_its_settings_with_the_values_a_run_uses(capsys):
    out = help_of(capsys, "pretrain")
    settings = listed(out)
    assert "--print-config" in out
    # the tiny preset's sizes, not the dataclass's 256 / 4
    assert settings["model.d_model"] == "128" and settings["model.n_layers"] == "2"
    assert settings["train.budget"] == "5m" and settings["model.backbone"] == "transformer"
    assert settings["objective.weights"] == "{mlm:" and settings["data.seq_len"] == "64"
    cfg = load_config()
    assert {k for k in settings if k.startswith(("model.", "train.", "objective."))} == {
        f"{s}.{f}" for s in ("model", "train", "objective") for f in getattr(cfg, s).__dataclass_fields__}
    assert not any(k.startswith("finetune.") for k in settings)
    # each with the first words of its doc, from the same field docs as --help-config
    assert "Peak learning rate after warm-up." in out and "Training budget: steps (2000)" in out


@pytest.mark.parametrize("command, section", [("finetune", "finetune"), ("curve", "finetune"),
                                              ("distill", "distill"), ("prepare", "data"),
                                              ("tokenizer train", "data")])
def test_every_command_with_settings_lists_its_own(capsys, command, section):
    settings = listed(help_of(capsys, *command.split()))
    ours = [k for k in settings if k.startswith(section + ".")]
    assert len(ours) >= 5
    docs = field_docs(type(getattr(load_config(), section)))
    assert all(k.split(".", 1)[1] in docs for k in ours)
    if command in ("finetune", "curve"):
        assert "model.d_model" not in settings and settings["finetune.lr"] == "0.001"


def test_help_config_shows_the_values_a_run_uses(capsys):
    assert main(["--help-config", "model"]) == 0
    out = capsys.readouterr().out
    auto = "(model.preset=auto: pretrain chooses; tiny's until then)"
    assert f"model.d_model = 128  {auto}" in out and f"model.n_layers = 2  {auto}" in out
    assert "train." not in out and "Hidden size." in out
    assert main(["--help-config"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n{s}:\n" in "\n" + out for s in ("model", "data", "objective", "train", "finetune", "distill"))
    assert main(["--help-config", "modle"]) == 2
    assert "no such section; choose among model, data" in capsys.readouterr().err


def test_print_config_prints_the_resolved_settings_and_runs_nothing(capsys, tmp_path):
    # no --corpus / --out needed; the output is valid as --config and gives the same settings back
    assert main(["pretrain", "--print-config", "--set", "model.preset=mini", "--set", "train.budget=10m"]) == 0
    printed = capsys.readouterr().out
    cfg = config_from_dict(yaml.safe_load(printed))
    assert cfg.model.d_model == 256 and cfg.train.budget == "10m"
    assert cfg == load_config(None, ["model.preset=mini", "train.budget=10m"])
    (tmp_path / "run.yaml").write_text(printed)
    assert load_config(tmp_path / "run.yaml") == cfg
    assert not list(tmp_path.glob("*/"))  # nothing ran


def test_finetune_print_config_starts_from_the_runs_own_settings(capsys, tmp_path):
    """finetune and curve read a run's finetune settings first: --print-config shows what they would use."""
    run = tmp_path / "run"
    run.mkdir()
    save_config(load_config(None, TINY + ["finetune.lr=0.02"]), run / "config.yaml")
    for command in ("finetune", "curve"):
        assert main([command, str(run), "--print-config", "--set", "finetune.epochs=7"]) == 0
        cfg = config_from_dict(yaml.safe_load(capsys.readouterr().out))
        assert cfg.finetune.lr == 0.02 and cfg.finetune.epochs == 7 and cfg.model.d_model == 32
    assert main(["finetune", str(tmp_path / "nowhere"), "--print-config"]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"pretrainlab {__version__}"


def test_help_of_every_command_builds(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.format_help().startswith(f"usage: pretrainlab {name}")
