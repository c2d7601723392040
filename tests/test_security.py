"""Nothing pretrainlab reads can run code: weights only through safetensors, no pickle anywhere in
src/ (checked on the source itself), a pickle planted where weights belong is refused unread, and
exports carry no code but our own.
"""

import ast
import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

import pretrainlab
from pretrainlab.cli import main
from pretrainlab.config import load_config
from pretrainlab.errors import PretrainlabError
from pretrainlab.train import pretrain

from conftest import TINY, TRANSFORMER

SRC = Path(pretrainlab.__file__).parent
SETTINGS = TINY + TRANSFORMER + ["train.batch_size=4", "train.eval_every=0", "train.eval_batches=1", "train.budget=2"]


# --------------------------------------------------------------------------- the source scan

CODE_LOADERS = {  # calls that can run code from the data they read, whatever their arguments
    "pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads", "cPickle.load",
    "cPickle.loads", "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads", "joblib.load",
    "marshal.load", "marshal.loads", "shelve.open", "pandas.read_pickle", "torch.jit.load",
    "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all", "numpy.lib.format.read_array",
    "eval", "exec", "builtins.eval", "builtins.exec",
}
SAFE_YAML_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader"}


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """`np.load` -> 'numpy.load' (through the module's imports); None for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def unsafe_calls(source: str, filename: str = "<string>") -> list[str]:
    """Every call in `source` that could load a pickle or run code: 'file:line: what'."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[(a.asname or a.name).split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        if name is None:
            continue
        where = f"{filename}:{node.lineno}"
        if name in CODE_LOADERS:
            found.append(f"{where}: {name}(...)")
        elif name == "torch.load":
            flag = _kw(node, "weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(f"{where}: torch.load without weights_only=True")
        elif name in ("numpy.load", "numpy.lib.npyio.load"):
            flag = _kw(node, "allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                found.append(f"{where}: numpy.load with allow_pickle")
        elif name == "yaml.load":
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _dotted(loader, aliases) not in SAFE_YAML_LOADERS:
                found.append(f"{where}: yaml.load without SafeLoader")
    return found


def test_no_pickle_or_code_loading_anywhere_in_src():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20  # the scan sees the package
    found = [hit for f in files for hit in unsafe_calls(f.read_text(encoding="utf-8"), str(f.relative_to(SRC)))]
    assert found == []


def test_the_scan_finds_what_it_looks_for():
    planted = textwrap.dedent("""
        import pickle, yaml, torch
        import numpy as np
        import pickle as pk
        from pickle import loads as from_bytes
        from torch import load as tload
        pickle.load(f)
        pk.loads(b)
        from_bytes(b)
        torch.load(p)
        torch.load(p, weights_only=False)
        tload(p)
        np.load(p, allow_pickle=True)
        yaml.load(text)
        yaml.load(text, Loader=yaml.Loader)
        yaml.unsafe_load(text)
        eval("1 + 1")
        exec("x = 1")
        torch.jit.load(p)
        # these are fine:
        torch.load(p, map_location="cpu", weights_only=True)
        np.load(p)
        np.load(p, allow_pickle=False)
        yaml.safe_load(text)
        yaml.load(text, Loader=yaml.SafeLoader)
        model.eval()
    """)
    found = unsafe_calls(planted)
    assert len(found) == 13, "\n".join(found)
    assert all(f"<string>:{n}:" in "\n".join(found) for n in range(7, 20))


# --------------------------------------------------------------------------- what is written and read


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory):
    return pretrain(load_config(None, SETTINGS), tiny_corpus, tmp_path_factory.mktemp("sec") / "run")


@pytest.fixture(scope="module")
def finetuned(run, tmp_path_factory):
    import random

    root = tmp_path_factory.mktemp("secft")
    rng = random.Random(0)
    words = "the film was good bad dull fun long great awful story plot".split()
    task = root / "t.csv"
    task.write_text("text,label\n" + "".join(f"{' '.join(rng.choice(words) for _ in range(6))} {i},{i % 2}\n"
                                              for i in range(60)), encoding="utf-8")
    out = root / "ft"
    argv = ["finetune", str(run), "--task", str(task), "--out", str(out), "--seeds", "0"]
    for s in SETTINGS + ["finetune.max_len=16", "finetune.epochs=1", "finetune.batch_size=16"]:
        argv += ["--set", s]
    assert main(argv) == 0
    return out


PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".joblib", ".npz"}


def _files(d: Path) -> list[Path]:
    return [p for p in d.rglob("*") if p.is_file()]


def test_weights_are_written_as_safetensors_only(run, finetuned, tmp_path):
    from safetensors import safe_open

    from pretrainlab.export import export

    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    for name in ("model.safetensors", "rng.safetensors"):
        with safe_open(str(ckpt / name), framework="pt") as f:
            assert list(f.keys())
    # the one .pt file is optimizer state: plain tensors and numbers, readable with weights_only=True
    assert [p.name for p in _files(run) if p.suffix in PICKLE_SUFFIXES] == ["optimizer.pt"] * len(
        list((run / "checkpoints").glob("step_*")))
    torch.load(ckpt / "optimizer.pt", weights_only=True)
    assert [p for p in _files(finetuned) if p.suffix in PICKLE_SUFFIXES] == []
    for src in (finetuned, run):
        out = export(src, tmp_path / src.name)
        assert (out / "model.safetensors").is_file()
        assert [p.name for p in _files(out) if p.suffix in PICKLE_SUFFIXES | {".py"}] == []
        assert "auto_map" not in json.loads((out / "config.json").read_text())


class Plant:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _rehash(ckpt: Path) -> None:
    """An attacker who controls the directory also rewrites the hashes: only the format protects."""
    from pretrainlab.files import sha256_file

    state = json.loads((ckpt / "state.json").read_text())
    state["files"] = {name: sha256_file(ckpt / name) for name in state["files"]}
    (ckpt / "state.json").write_text(json.dumps(state))


def test_a_pickle_planted_as_optimizer_state_is_refused_unread(run, tiny_corpus, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    ckpt = copy / "checkpoints" / "step_0000002"
    marker = tmp_path / "code-ran"
    torch.save({"optimizer": Plant(marker), "scheduler": {}}, ckpt / "optimizer.pt")
    _rehash(ckpt)
    with pytest.raises(PretrainlabError, match="optimizer.pt holds something other than plain tensors and numbers; "
                                               "it was refused unread"):
        pretrain(load_config(None, SETTINGS + ["train.budget=4"]), tiny_corpus, copy, resume=True)
    assert not marker.exists()


def test_a_pickle_planted_as_weights_is_refused_unread(run, finetuned, tiny_corpus, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    # a pre-training checkpoint (resume)
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    ckpt = copy / "checkpoints" / "step_0000002"
    torch.save({"w": Plant(marker)}, ckpt / "model.safetensors")
    _rehash(ckpt)
    with pytest.raises(PretrainlabError, match="model.safetensors is not a safetensors file"):
        pretrain(load_config(None, SETTINGS + ["train.budget=4"]), tiny_corpus, copy, resume=True)
    # continued pre-training from it (--init does not check hashes)
    with pytest.raises(PretrainlabError, match="model.safetensors is not a safetensors file"):
        pretrain(load_config(None, SETTINGS), tiny_corpus, tmp_path / "next", init=copy)
    # a fine-tuned model: predict, evaluate, explain and export all refuse it
    model = tmp_path / "ft"
    shutil.copytree(finetuned, model)
    torch.save({"w": Plant(marker)}, model / "model.safetensors")
    for argv in (["predict", str(model), "a good film"], ["evaluate", str(model)],
                 ["explain", str(model), "--text", "a good film", "--out", str(tmp_path / "r.html")],
                 ["export", str(model), "--to", str(tmp_path / "hf")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "not a safetensors file" in err or "not a readable safetensors file" in err, err
    assert not marker.exists()


def test_a_pickle_planted_in_a_hugging_face_folder_is_refused_unread(run, tmp_path):
    hf_import = pytest.importorskip("pretrainlab.export.hf_import")
    src = tmp_path / "hf"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"],
                                                 "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                                                 "intermediate_size": 64, "vocab_size": 120,
                                                 "max_position_embeddings": 64}))
    shutil.copy(run / "tokenizer.json", src / "tokenizer.json")
    marker = tmp_path / "code-ran"
    torch.save({"bert.embeddings.word_embeddings.weight": Plant(marker)}, src / "pytorch_model.bin")
    with pytest.raises(Exception) as e:
        hf_import.import_hf(src, tmp_path / "imported")
    assert not marker.exists()
    assert isinstance(e.value, PretrainlabError), f"{type(e.value).__name__}: {e.value}"


# --------------------------------------------------------------------------- code in exports


def _exported_code_is_ours(out: Path) -> None:
    config = json.loads((out / "config.json").read_text())
    for cls, ref in config.get("auto_map", {}).items():
        refs = ref if isinstance(ref, list) else [ref]
        for r in filter(None, refs):
            assert "--" not in r, f"auto_map {cls} -> {r} loads code from another repository"
            assert (out / (r.split(".")[0] + ".py")).is_file(), f"auto_map {cls} -> {r}: no such file in the export"
    ours = {p.read_bytes() for p in (SRC / "export").rglob("*.py")} | {p.read_bytes() for p in SRC.rglob("*.py")}
    for py in out.rglob("*.py"):
        assert py.read_bytes() in ours, f"{py.name} is not one of pretrainlab's own files"


@pytest.mark.parametrize("backbone", ["rnn", "cnn"])
def test_exported_remote_code_is_only_our_own_files(tiny_corpus, tmp_path, backbone):
    """RNN/CNN backbones have no transformers class: they export as remote code, and that code must be
    files shipped in pretrainlab (no download, no code from another repository). An export that fails
    is a failure here, not a skip."""
    from pretrainlab.export import export

    run = pretrain(load_config(None, SETTINGS + [f"model.backbone={backbone}"]), tiny_corpus, tmp_path / "run")
    out = export(run, tmp_path / "hf")
    assert (out / "modeling_pretrainlab.py").is_file()  # remote code, not a transformers class
    _exported_code_is_ours(out)
