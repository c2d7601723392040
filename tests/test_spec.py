"""backbones/spec.py and objectives/spec.py: each row says true things about the backbone or objective it
builds, and config reads the rows."""

import pytest
import torch

from pretrainlab.backbones import build_backbone
from pretrainlab.backbones.spec import BACKBONES, PRESETS, kind_of_hf_model_type
from pretrainlab.config import ConfigError, load_config
from pretrainlab.models import head_kind
from pretrainlab.objectives.spec import OBJECTIVES, refusal

pytestmark = pytest.mark.usefixtures("one_thread")
KINDS = list(BACKBONES)
SIZES = dict(vocab_size=40, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=12, dropout=0.0)


def tiny(kind, style=None):
    return build_backbone(kind, **SIZES, style=style or BACKBONES[kind].default_style)


def run(backbone, ids):
    mask = torch.ones_like(ids)
    if BACKBONES[backbone_kind(backbone)].lm == "seq2seq_lm":
        return backbone(ids, mask, ids).decoder_hidden
    return backbone(ids, mask).hidden


def backbone_kind(backbone):
    return next(k for k in KINDS if type(backbone) is type(tiny(k)))


@pytest.mark.parametrize("kind", KINDS)
def test_each_row_builds_its_kind_in_every_style(kind):
    spec = BACKBONES[kind]
    assert spec.name == kind and set(spec.heads) == set(spec.styles)
    for style in spec.styles:
        bb = tiny(kind, style)
        assert spec.embedding_weight in bb.state_dict()
        assert bb.state_dict()[spec.embedding_weight].shape[0] == SIZES["vocab_size"]
        blocks = [m for m in bb.modules() if isinstance(m, spec.block_classes())] if spec.fsdp_blocks else []
        assert len(blocks) == (0 if not spec.fsdp_blocks else 2 * SIZES["n_layers"] if spec.lm == "seq2seq_lm"
                               else SIZES["n_layers"])


@pytest.mark.parametrize("kind", KINDS)
def test_has_positions_is_whether_the_backbone_has_a_context_length(kind):
    """A backbone with positions knows its max_len (learned positions refuse a longer input); one without runs any."""
    for style in BACKBONES[kind].styles:
        bb = tiny(kind, style).eval()
        assert (getattr(bb, "max_len", None) == SIZES["max_len"]) == BACKBONES[kind].has_positions
        if not BACKBONES[kind].has_positions:
            ids = torch.randint(5, 40, (1, SIZES["max_len"] + 4))
            assert run(bb, ids).shape[:2] == ids.shape


@pytest.mark.parametrize("kind", KINDS)
def test_causal_is_whether_a_state_ignores_the_tokens_after_it(kind):
    bb = tiny(kind).eval()
    a = torch.randint(5, 40, (1, 8))
    b = a.clone()
    b[0, -1] = 4 if a[0, -1] != 4 else 5
    with torch.no_grad():
        same = torch.allclose(run(bb, a)[0, :-1], run(bb, b)[0, :-1], atol=1e-6)
    assert same == BACKBONES[kind].causal


@pytest.mark.parametrize("kind", KINDS)
def test_config_reads_the_row(kind):
    spec = BACKBONES[kind]
    cfg = load_config(None, [f"model.backbone={kind}"])
    assert cfg.model.style == spec.default_style
    assert cfg.objective.weights == dict(spec.default_objectives)
    assert head_kind(cfg.model) == spec.head(spec.default_style)
    for preset in PRESETS:
        if preset in spec.presets:
            m = load_config(None, [f"model.backbone={kind}", f"model.preset={preset}"]).model
            assert {k: getattr(m, k) for k in spec.presets[preset]} == dict(spec.presets[preset])
    with pytest.raises(ConfigError, match=f"is not a style of the {kind} backbone"):
        load_config(None, [f"model.backbone={kind}", "model.style=nostyle"])
    if spec.has_positions:
        with pytest.raises(ConfigError, match="longer than model.max_len"):
            load_config(None, [f"model.backbone={kind}", "model.max_len=16", "data.seq_len=32"])
    else:
        assert load_config(None, [f"model.backbone={kind}", "model.max_len=16", "data.seq_len=32"]).data.seq_len == 32


def test_a_style_of_one_kind_implies_that_backbone_unless_one_is_set(caplog):
    caplog.set_level("INFO", logger="pretrainlab.config")
    t5 = load_config(overrides=["model.style=t5"])
    assert (t5.model.backbone, dict(t5.objective.weights)) == ("encoder-decoder", {"span": 1.0})
    assert "model.style=t5 is the encoder-decoder's: model.backbone=encoder-decoder" in caplog.messages
    assert load_config(overrides=["model.style=llama"]).model.backbone == "decoder"
    for kind, spec in BACKBONES.items():  # every style that only one row has, and its objectives follow
        for style in [s for s in spec.styles if [k for k in KINDS if s in BACKBONES[k].styles] == [kind]]:
            cfg = load_config(overrides=[f"model.style={style}"])
            assert (cfg.model.backbone, cfg.objective.weights) == (kind, dict(spec.objectives(style)))
    assert load_config(overrides=["model.style=bert"]).model.backbone == "transformer"  # three rows have it
    with pytest.raises(ConfigError, match="model.style='t5' is not a style of the transformer backbone "
                                          r"\(t5 is the encoder-decoder's\)"):
        load_config(overrides=["model.backbone=transformer", "model.style=t5"])


def test_every_imported_model_type_has_one_kind():
    types = [t for s in BACKBONES.values() for t in s.hf_model_types]
    assert len(types) == len(set(types))
    assert all(kind_of_hf_model_type(t) in BACKBONES for t in types) and kind_of_hf_model_type("mistral") is None
    assert all(BACKBONES[k].importer for k in map(kind_of_hf_model_type, types))


# --------------------------------------------------------------------------- objectives/spec.py


def test_each_objective_is_refused_exactly_where_its_row_says_and_says_why():
    for name, row in OBJECTIVES.items():
        for kind in KINDS:
            why = refusal(kind, {name: 1.0})
            fits = kind in row.fits or kind in row.renamed_on
            assert (why is None) == fits, (name, kind, why)
            if not fits:
                assert f"the {kind} backbone" in why or f"model.backbone={kind}" in why or "encoder-decoder" in why, why
                assert name in why


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_each_row_builds_its_objective_on_a_backbone_it_fits(name):
    """From its own settings (the defaults), with what the model shares with it; it says what batches it reads."""
    from pretrainlab.objectives import build_objectives
    from pretrainlab.tokenizer import SpecialIds

    kind = OBJECTIVES[name].fits[0]
    bb = tiny(kind)
    objs, head = build_objectives({name: 1.0}, backbone=bb, backbone_kind=kind, vocab_size=SIZES["vocab_size"],
                                  special=SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4),
                                  make_backbone=lambda **size: build_backbone(kind, **{**SIZES, **size}))
    assert list(objs) == [name] and objs[name].name == name
    assert objs[name].reads in ("rows", "pairs", "sentences")
    assert (head is not None) == (name in ("mlm", "hybrid", "clm", "infill", "permute", "span"))  # scored with the model's head


def test_conflicting_objectives_are_refused_together_and_factory_takes_few_parameters():
    import inspect

    from pretrainlab.objectives import build_objectives

    for name, row in OBJECTIVES.items():
        for other, why in row.conflicts.items():
            kind = row.fits[0]
            assert refusal(kind, {name: 1.0, other: 1.0}) == why.format(on=", ".join(sorted((name, other))))
    assert len(inspect.signature(build_objectives).parameters) < 10
