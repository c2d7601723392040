"""ELMo-style bidirectional LM (objective bilm; clm on an rnn is read as bilm) on the RNN; presets and the other
objectives on rnn/cnn."""

import json

import pytest
import torch
import torch.nn.functional as F

from pretrainlab.backbones import build_backbone
from pretrainlab.config import ConfigError, load_config
from pretrainlab.models import PretrainModel
from pretrainlab.objectives import build_objectives
from pretrainlab.objectives.elmo import ELMo, neighbour_targets
from pretrainlab.tokenizer import SpecialIds

from conftest import TINY

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
V, D = 64, 32


pytestmark = pytest.mark.usefixtures("one_thread")


def rnn(seed=0, cell="lstm"):
    torch.manual_seed(seed)
    return build_backbone("rnn", vocab_size=V, d_model=D, n_layers=2, rnn_cell=cell, dropout=0.0)


def elmo_model(weights=None, seed=0, cell="lstm"):
    weights = weights or {"bilm": 1.0}
    bb = rnn(seed, cell)
    objs, head = build_objectives(weights, backbone=bb, backbone_kind="rnn", vocab_size=V, special=SPECIAL,
                                  settings={"tie_embeddings": True})
    return PretrainModel(bb, objs, weights, head)


def packed_batch(seed=0):
    """Row 0: documents of 6 and 5 tokens, then padding; row 1: one document of 9 tokens, padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (2, 12), generator=g)
    mask = torch.tensor([[1] * 6 + [2] * 5 + [0], [1] * 9 + [0] * 3])
    ids[0, [0, 6]], ids[0, [5, 10]] = SPECIAL.cls, SPECIAL.sep
    ids[1, 0], ids[1, 8] = SPECIAL.cls, SPECIAL.sep
    ids[mask == 0] = SPECIAL.pad
    return {"input_ids": ids, "mask": mask}


# --------------------------------------------------------------------------- collator


def test_targets_are_neighbours_inside_one_document():
    b = packed_batch()
    ids, T = b["input_ids"], b["input_ids"].shape[1]
    fwd_pos, fwd_lab, bwd_pos, bwd_lab = neighbour_targets(ids, b["mask"])
    # pairs (t, t+1): row 0 has 5 + 4 (none across the boundary 5|6, none into padding), row 1 has 8
    pairs = [(0, t) for t in range(5)] + [(0, t) for t in range(6, 10)] + [(1, t) for t in range(8)]
    assert fwd_pos.tolist() == [r * T + t for r, t in pairs]
    assert fwd_lab.tolist() == [int(ids[r, t + 1]) for r, t in pairs]
    assert bwd_pos.tolist() == [r * T + t + 1 for r, t in pairs]
    assert bwd_lab.tolist() == [int(ids[r, t]) for r, t in pairs]
    # the forward LM ends each chunk by predicting [SEP], the backward LM by predicting [CLS]
    assert fwd_lab.tolist().count(SPECIAL.sep) == 3 and bwd_lab.tolist().count(SPECIAL.cls) == 3
    assert SPECIAL.pad not in fwd_lab.tolist() + bwd_lab.tolist()


def test_targets_are_the_original_tokens_under_mlm():
    model = elmo_model({"mlm": 1.0, "bilm": 1.0})
    b = model.prepare(packed_batch(), torch.Generator().manual_seed(0))
    assert (b["input_ids"] != b["original_ids"]).any()  # mlm masked the input
    assert b["bilm_fwd_labels"].tolist() == neighbour_targets(b["original_ids"], b["mask"])[1].tolist()


# --------------------------------------------------------------------------- loss


def reference_loss(model, batch):
    """Token by token, document by document, from `directional_states` (its own forward pass)."""
    obj = model.objectives["bilm"]
    fwd, bwd = model.backbone.directional_states(batch["input_ids"], batch["mask"])
    ids, mask = batch["input_ids"], batch["mask"]
    losses = []
    for r in range(ids.shape[0]):
        for t in range(ids.shape[1] - 1):
            if mask[r, t] == 0 or mask[r, t] != mask[r, t + 1]:
                continue
            f = F.linear(obj.proj_fwd(fwd[r, t]), obj.embedding.weight, obj.bias)
            b = F.linear(obj.proj_bwd(bwd[r, t + 1]), obj.embedding.weight, obj.bias)
            losses += [F.cross_entropy(f[None], ids[r, t + 1, None]), F.cross_entropy(b[None], ids[r, t, None])]
    return torch.stack(losses).mean()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_loss_equals_the_token_by_token_reference(cell):
    model = elmo_model(cell=cell).eval()
    with torch.no_grad():  # non-zero head weights, so that a wrong half or position shows
        for p in model.objectives["bilm"].parameters():
            p.add_(torch.randn_like(p) * 0.1)
    b = model.prepare(packed_batch(), torch.Generator())
    out = model(b)
    torch.testing.assert_close(out.loss, reference_loss(model, b))
    m = out.metrics
    torch.testing.assert_close(m["bilm_loss"], (m["bilm_fwd_loss"] + m["bilm_bwd_loss"]) / 2)
    assert 0 <= float(m["bilm_acc"]) <= 1


def test_a_direction_never_sees_the_token_it_predicts():
    """Changing token t+1 leaves the forward logits at t alone; changing t leaves the backward ones at t+1."""
    model = elmo_model().eval()
    obj = model.objectives["bilm"]
    b = packed_batch()

    def logits(ids):
        fwd, bwd = model.backbone(ids, b["mask"]).hidden.split(D // 2, dim=-1)
        return obj.logits(fwd[0], obj.proj_fwd), obj.logits(bwd[0], obj.proj_bwd)  # row 0: (T, V) each

    with torch.no_grad():
        f0, b0 = logits(b["input_ids"])
        changed = b["input_ids"].clone()
        changed[0, 3] = (changed[0, 3] + 1 - 5) % (V - 5) + 5
        f1, b1 = logits(changed)
    torch.testing.assert_close(f1[:3], f0[:3], rtol=0, atol=0)  # forward at t <= 2 predicts up to token 3
    torch.testing.assert_close(b1[4:], b0[4:], rtol=0, atol=0)  # backward at t >= 4 predicts down to token 3
    assert not torch.equal(f1[3], f0[3]) and not torch.equal(b1[3], b0[3])


def test_the_softmax_is_tied_to_the_input_embedding():
    model = elmo_model()
    obj = model.objectives["bilm"]
    assert obj.embedding is model.backbone.get_input_embeddings()
    names = {n for n, _ in model.named_parameters()}  # shared parameters are listed once
    assert "objectives.bilm.embedding.weight" not in names and "objectives.bilm.bias" in names
    out = model(model.prepare(packed_batch(), torch.Generator()))
    out.loss.backward()
    assert model.backbone.embed_tokens.weight.grad.abs().sum() > 0


def test_overfits_one_batch():
    model = elmo_model()
    b = model.prepare(packed_batch(), torch.Generator())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss = model(b).loss
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 3.5 and float(loss.detach()) < 0.1 * first


def test_clm_on_an_rnn_is_read_as_bilm_with_a_one_line_note(capsys):
    capsys.readouterr()
    cfg = load_config(None, ["model.backbone=rnn", "objective.weights={mlm: 1.0, clm: 0.5}"])
    assert cfg.objective.weights == {"mlm": 1.0, "bilm": 0.5}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "objective clm on model.backbone=rnn is named bilm now" in err[0]
    assert load_config(None, ["model.backbone=decoder"]).objective.weights == {"clm": 1.0}  # the decoder's own
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kind", ["transformer", "cnn"])
def test_rejected_for_backbones_that_are_not_directional(kind):
    bb = build_backbone(kind, vocab_size=V, d_model=D, n_layers=1, n_heads=2, d_ff=64, max_len=16)
    with pytest.raises(ConfigError, match=rf"objective bilm .* the {kind} backbone does not have .*"
                                          rf"use model\.backbone=rnn for bilm, or mlm, nsp, sop or rtd with {kind}"):
        build_objectives({"bilm": 1.0}, backbone=bb, backbone_kind=kind, vocab_size=V, special=SPECIAL)


# --------------------------------------------------------------------------- presets


def test_preset_gives_parameter_matched_rnn_and_cnn_sizes():
    from pretrainlab.backbones.spec import CNN_DIMS, RNN_DIMS

    for preset in ("tiny", "mini", "small"):
        m = load_config(None, ["model.backbone=rnn", f"model.preset={preset}"]).model
        assert dict(d_model=m.d_model, n_layers=m.n_layers) == RNN_DIMS[preset]
        m = load_config(None, ["model.backbone=cnn", f"model.preset={preset}"]).model
        assert dict(d_model=m.d_model, n_layers=m.n_layers) == CNN_DIMS[preset]
    m = load_config(None, ["model.backbone=transformer", "model.preset=mini"]).model
    assert (m.d_model, m.n_layers, m.n_heads, m.d_ff) == (256, 4, 4, 1024)
    assert load_config(None, ["model.backbone=rnn"]).model.n_layers == RNN_DIMS["tiny"]["n_layers"]  # default preset


def test_explicit_sizes_win_over_the_preset():
    m = load_config(None, ["model.backbone=rnn", "model.preset=mini", "model.n_layers=3"]).model
    assert (m.d_model, m.n_layers) == (256, 3)
    m = load_config(None, ["model.backbone=cnn", "model.preset=small", "model.d_model=64"]).model
    assert (m.d_model, m.n_layers) == (64, 5)
    with pytest.raises(ConfigError, match="model.preset=base has no RNN size .* give model.d_model and model.n_layers"):
        load_config(None, ["model.backbone=rnn", "model.preset=base"])
    m = load_config(None, ["model.backbone=rnn", "model.preset=base", "model.d_model=64", "model.n_layers=2"]).model
    assert (m.d_model, m.n_layers) == (64, 2)


def test_a_saved_config_reloads_with_the_same_sizes(tmp_path):
    from pretrainlab.config import config_from_dict, save_config

    cfg = load_config(None, ["model.backbone=cnn", "model.preset=mini", "model.n_layers=2"])
    save_config(cfg, tmp_path / "config.yaml")
    import yaml

    assert config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text())) == cfg


# --------------------------------------------------------------------------- every objective through pretrain()


SETTINGS = TINY + ["train.batch_size=4", "train.budget=3", "train.eval_every=0", "train.eval_batches=1",
                   "train.log_every=1"]


@pytest.mark.parametrize("backbone,weights", [
    ("rnn", "{bilm: 1.0}"), ("rnn", "{mlm: 1.0, clm: 1.0}"), ("rnn", "{mlm: 1.0}"), ("rnn", "{mlm: 1.0, nsp: 1.0}"),
    ("rnn", "{mlm: 1.0, sop: 1.0}"), ("rnn", "{rtd: 1.0}"),
    ("cnn", "{mlm: 1.0}"), ("cnn", "{mlm: 1.0, nsp: 1.0}"), ("cnn", "{sop: 1.0}"), ("cnn", "{rtd: 1.0}"),
])
def test_pretrain_runs_each_objective(tiny_corpus, tmp_path, capsys, backbone, weights):
    from pretrainlab.runs import load_pretrained
    from pretrainlab.train import pretrain

    cfg = load_config(None, SETTINGS + [f"model.backbone={backbone}", f"objective.weights={weights}"])
    run = pretrain(cfg, tiny_corpus, tmp_path / "run")
    err = capsys.readouterr().err
    assert f"model: {backbone} " in err and "M backbone parameters" in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["backbone_parameters"] > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows if "loss" in r)
    names = {"bilm": "bilm_loss", "mlm": "mlm_loss", "nsp": "nsp_loss", "sop": "sop_loss", "rtd": "rtd_disc_loss"}
    for name in cfg.objective.weights:
        assert any(names[name] in r or f"val_{names[name]}" in r for r in rows), (name, rows[-1])
    assert load_pretrained(run).backbone.d_model == 32  # loads back


def test_cli_finetune_prints_the_parameter_count(tiny_corpus, tmp_path, capsys):
    from pretrainlab.cli import main
    from pretrainlab.train import pretrain

    run = pretrain(load_config(None, SETTINGS + ["model.backbone=rnn", "objective.weights={clm: 1.0}"]), tiny_corpus,
                   tmp_path / "run")
    rows = ["text,label"] + [f"the cat sat {i},{'ab'[i % 2]}" for i in range(40)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    args = ["finetune", str(run), "--task", str(tmp_path / "t.csv"), "--seeds", "0", "--set", "finetune.epochs=1",
            "--set", "train.progress=false", "--set", "finetune.max_len=16"]
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr()
    assert "model: rnn " in out.err and "backbone parameters" in out.err
