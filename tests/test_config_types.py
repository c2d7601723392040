"""Every setting's type is checked when it is loaded, `X | None` included: a value of the wrong type is refused
with the field, the value and an example, never a TypeError from inside a dataclass check."""

import typing
import pytest

from pretrainlab.config import ConfigError, RunConfig, load_config

# a value of the wrong kind for each field type (what a user types by mistake)
WRONG = {int: "many", float: "high", bool: "maybe", str: "[a, b]"}


def _field_cases():
    for section, cls in typing.get_type_hints(RunConfig).items():
        for key, ftype in typing.get_type_hints(cls).items():
            args = typing.get_args(ftype)
            optional = type(None) in args
            base = next(a for a in args if a is not type(None)) if optional else ftype
            if typing.get_origin(base) is dict:
                continue  # objective.weights: checked by its section (test_bad_inputs: weights-not-mapping)
            bad = "wide" if typing.get_origin(base) is tuple else WRONG[base]
            yield pytest.param(section, key, bad, optional, id=f"{section}.{key}")


@pytest.mark.parametrize("section, key, bad, optional", list(_field_cases()))
def test_every_field_refuses_a_value_of_the_wrong_type(section, key, bad, optional):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{section}.{key}={bad}"])
    message = str(e.value)
    assert f"{section}.{key}" in message
    if "expects" in message:  # the type check itself (a choice field may refuse the text first, also by name)
        assert "e.g. --set " + f"{section}.{key}=" in message
        assert message.count(" or null") == optional


@pytest.mark.parametrize("setting", ["finetune.dropout", "finetune.text_pair_column", "finetune.group_column",
                                     "model.preset"])
def test_optional_fields_take_null(setting):
    section, key = setting.split(".")
    assert getattr(getattr(load_config(None, [f"{setting}=null"]), section), key) is None


def test_finetune_dropout_high_is_refused_with_an_example():
    """It ended in a TypeError traceback: `str(type)` of `float | None` matched no check."""
    with pytest.raises(ConfigError, match=r"finetune.dropout expects float or null, got 'high'; "
                                          r"e.g. --set finetune.dropout=0.1"):
        load_config(None, ["finetune.dropout=high"])


def test_values_are_brought_to_the_field_type():
    cfg = load_config(None, ["train.lr=3e-4", "finetune.dropout=0", "finetune.seeds=[1, 2]", "model.dilations=2",
                             "train.budget=2000", "finetune.text_pair_column=b"])
    assert cfg.train.lr == 3e-4 and type(cfg.finetune.dropout) is float
    assert cfg.finetune.seeds == (1, 2) and cfg.model.dilations == (2,)
    assert cfg.train.budget == "2000" and cfg.finetune.text_pair_column == "b"
