"""The remote-code file is a deliberate, self-contained copy of our model code (transformers loads it
with trust_remote_code, without pretrainlab): every copy still matches its source.

`export/remote/modeling_pretrainlab.py` marks each copy with `# Copied from pretrainlab.<module>.<name>`,
and those marks are the one table of what is copied from where. A copied function must be its source's
code (the same syntax tree; docstrings and comments aside). A copied module differs from its source on
purpose (no hidden-states path, no argument checks, no initialisation, no memory-format tuning), so a
textual check would need a pile of exceptions; instead it must hold the same parameters (names and
shapes: the source's state dict loads strictly) and compute the same outputs from the same weights,
on inputs with packed documents, padding and segments. That is what an export relies on, and it
survives a refactor of the source that keeps its behaviour."""

import ast
import importlib
import inspect
import re
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from pretrainlab.export.remote import config_kwargs
from pretrainlab.export.remote import modeling_pretrainlab as remote
from pretrainlab.export.remote.configuration_pretrainlab import PretrainlabConfig

pytestmark = pytest.mark.usefixtures("one_thread")

REMOTE = Path(remote.__file__)
GLUE = {"PretrainlabPreTrainedModel", "PretrainlabModel", "PretrainlabForMaskedLM"}
"""transformers wrappers with no pretrainlab counterpart (the MLM round trip is in test_export_remote.py)."""
V, D, B, T = 50, 16, 3, 14


def copied_from() -> dict[str, str]:
    """{name in the remote file: dotted path of its source}, read off the `# Copied from` marks."""
    marks = re.findall(r"^# Copied from (pretrainlab(?:\.\w+)+)\n(?:@.*\n)*(?:def|class) (\w+)",
                       REMOTE.read_text(encoding="utf-8"), re.M)
    return {name: source for source, name in marks}


def source_of(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def code(fn) -> str:
    """A function's syntax tree without its docstring (comments are not in the tree)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    if ast.get_docstring(tree) is not None:
        tree.body = tree.body[1:]
    return ast.dump(tree, annotate_fields=False)


def inputs(segments: bool = True):
    """Rows of packed documents (mask 1, 2, ...) with trailing padding; one row is all padding."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, V, (B, T), generator=g)
    mask = torch.tensor([[1] * 5 + [2] * 6 + [3] * 3, [1] * 9 + [0] * 5, [0] * T])
    ids[mask == 0] = 0
    seg = torch.randint(0, 2, (B, T), generator=g) * (mask != 0) if segments else None
    return ids, mask, seg


def same(ours: nn.Module, copy: nn.Module, rename=lambda name: name) -> tuple[nn.Module, nn.Module]:
    """Both in eval mode, `copy` holding `ours`' weights: randomised first (so that no zero-initialised
    bias hides a difference), then loaded strictly under the export's names (`rename`: None drops one)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    weights = {rename(k): v for k, v in ours.state_dict().items() if rename(k) is not None}
    copy.load_state_dict(weights, strict=True)
    return ours.eval(), copy.eval()


def backbone(kind: str, **kw):
    from pretrainlab.backbones.cnn import CNNBackbone
    from pretrainlab.backbones.rnn import RNNBackbone

    if kind == "cnn":
        return CNNBackbone(V, D, 3, kernel_size=3, dilations=(1, 2), dropout=0.1, **kw)
    return RNNBackbone(V, D, 2, cell=kind, dropout=0.1, **kw)


# --------------------------------------------------------------------------- how each copied module is compared


def check_rnn_encoder(source):
    for cell in ("lstm", "gru"):
        for segments in (2, 0):
            ours = source(V, D, 2, cell=cell, dropout=0.1, type_vocab_size=segments, pad_id=0)
            ours, copy = same(ours, remote.RNNEncoder(V, D, 2, cell, 0.1, segments, 0))
            ids, mask, seg = inputs(segments > 0)
            torch.testing.assert_close(copy(ids, mask, seg), ours(ids, mask, seg).hidden, rtol=0, atol=1e-6)


def check_cnn_encoder(source):
    for kernel, dilations, segments in ((3, [1, 2], 2), (4, [1, 3], 0)):  # even kernel, odd dilation: the gap rounds up
        ours = source(V, D, 3, kernel_size=kernel, dilations=tuple(dilations), dropout=0.1, type_vocab_size=segments,
                      pad_id=0)
        ours, copy = same(ours, remote.CNNEncoder(V, D, 3, kernel, dilations, 0.1, segments, 0))
        ids, mask, seg = inputs(segments > 0)
        with warnings.catch_warnings():  # even kernel, odd dilation: torch pads a copy (slower, the same)
            warnings.filterwarnings("ignore", "Using padding='same' with even kernel", UserWarning)
            torch.testing.assert_close(copy(ids, mask, seg), ours(ids, mask, seg).hidden, rtol=0, atol=1e-6)


def check_conv_block(source):
    ours, copy = same(source(D, 3, 2, 0.1), remote.ConvBlock(D, 3, 2, 0.1))
    x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(2))
    valid = (inputs()[1] != 0).unsqueeze(-1).float()
    torch.testing.assert_close(copy(x, valid), ours(x, valid), rtol=0, atol=1e-6)


def check_classifier(source):
    for kind, pooling in (("lstm", "cls"), ("gru", "mean"), ("cnn", "mean")):
        ours = source(backbone(kind), n_labels=3, pooling=pooling, dropout=0.1)
        config = PretrainlabConfig(**config_kwargs(ours.backbone), pooling=pooling, num_labels=3)
        ours, copy = same(ours, remote.PretrainlabForSequenceClassification(config),
                          lambda k: k.replace("backbone.", "backbone.encoder.", 1))  # the export's name map
        ids, mask, seg = inputs()
        torch.testing.assert_close(copy(ids, mask, seg).logits, ours(ids, mask, seg).logits, rtol=0, atol=1e-6)


def check_mlm_head(source):
    embedding = nn.Embedding(V, D)
    ours = source(D, V, embedding)
    ours, copy = same(ours, remote.PretrainlabMLMHead(D, V), lambda k: None if k.startswith("embedding.") else k)
    h = torch.randn(B, T, D, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(copy(h, embedding), ours(h), rtol=0, atol=1e-6)


MODULES = {"RNNEncoder": check_rnn_encoder, "CNNEncoder": check_cnn_encoder, "ConvBlock": check_conv_block,
           "PretrainlabForSequenceClassification": check_classifier, "PretrainlabMLMHead": check_mlm_head}
"""Copied modules, keyed by their name in the remote file; a copied function needs no entry."""


# --------------------------------------------------------------------------- the checks


def test_every_copy_is_marked_and_every_mark_is_checked():
    tree = ast.parse(REMOTE.read_text(encoding="utf-8"))
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    marks = copied_from()
    assert defined - GLUE == set(marks), "mark each copy `# Copied from pretrainlab.X.Y` (or list it in GLUE)"
    for name, source in marks.items():
        source_of(source)  # the source still exists there
        copy = getattr(remote, name)
        assert inspect.isfunction(copy) or name in MODULES, f"{name}: a copied module without a check in MODULES"


@pytest.mark.parametrize("name", [n for n, s in copied_from().items() if inspect.isfunction(getattr(remote, n))])
def test_copied_function_is_its_source(name):
    source = copied_from()[name]
    assert code(getattr(remote, name)) == code(source_of(source)), \
        f"{REMOTE.name}:{name} differs from {source}: copy the change over (or update the mark if it moved)"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_copied_module_computes_what_its_source_computes(name):
    MODULES[name](source_of(copied_from()[name]))
