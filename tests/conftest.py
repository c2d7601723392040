"""Shared fixtures: the tiny settings every test builds on, one thread, and tiny data to train on."""

import random

import pytest
import torch

from pretrainlab.config import load_config

# --------------------------------------------------------------------------- settings (`section.key=value`)

TINY = ["model.preset=tiny", "model.n_layers=2", "model.d_model=32", "data.seq_len=16", "train.progress=false",
        "train.precision=fp32", *[
            # the defaults the tests were written against (the package defaults are the measured CPU
            # recipe: modern, untied, no dropout, a 5-minute budget, fine-tuning with a step floor);
            # tests of the new defaults say so themselves (test_curve.py)
            "model.style=bert", "model.dropout=0.1", "objective.tie_embeddings=true", "train.budget=1000",
            "train.lr=1e-3", "finetune.pooling=cls", "finetune.dropout=null", "finetune.epochs=3",
            "finetune.lr=5e-4", "finetune.patience=2", "finetune.min_steps=0", "finetune.inference_precision=fp32",
            "finetune.evals=0", "finetune.max_minutes=0"]]
"""Every test's base: a 2-layer d=32 model on 16-token sequences, fp32, no progress bar. Each test file adds
what it needs (`SETTINGS = TINY + TRANSFORMER + [...]`), so that the additions are visible where they matter."""
TRANSFORMER = ["model.n_heads=4", "model.d_ff=64", "model.max_len=64"]
"""Transformer sizes that go with TINY (heads of 8, a 2x feed-forward) instead of the tiny preset's 2 heads / 512."""
FAST = ["train.batch_size=8", "train.lr=0.01", "train.warmup=0"]
"""Pre-training that learns something in a handful of steps."""
FINETUNE = ["finetune.max_len=16", "finetune.batch_size=16", "finetune.lr=0.005"]
"""Fine-tuning on tiny tasks: short texts, one or two batches an epoch."""


@pytest.fixture(autouse=True)
def messages_on_stderr():
    """pretrainlab's messages on stderr at INFO, as the command line shows them, for library calls too (capsys
    reads them); tests/test_logs.py checks what an unconfigured library call prints."""
    from pretrainlab.logs import messages_shown

    with messages_shown():
        yield


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (a second one only adds synchronisation, and the cores are shared).
    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------- tiny data

REVIEW_WORDS = ("the a film movie story actor plot scene was is very quite rather good bad great awful dull fun long "
                "short").split()


def review_docs(rng: random.Random, n: int, words=REVIEW_WORDS) -> str:
    """`n` documents of 6-30 random words, blank lines between: the text of a .txt corpus."""
    return "\n\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(6, 30))) + "." for _ in range(n))


def review_csv(rng: random.Random, n: int, labels=("neg", "pos"), words=REVIEW_WORDS) -> str:
    """A text,label task of `n` rows of 6 random words (+ the row number, so every text is unique);
    labels in turn, so they are balanced and not learnable."""
    rows = ["text,label"] + [" ".join(rng.choice(words) for _ in range(6)) + f" {i}," + labels[i % len(labels)]
                             for i in range(n)]
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A real prepared corpus: a few hundred short documents of English-like text."""
    from pretrainlab.data.prepare import prepare_corpus

    rng = random.Random(0)
    words = ("the cat dog sat on a mat and ran to house with big small red blue tree under over "
             "river near far people nation state union congress law year war peace").split()
    raw = tmp_path_factory.mktemp("raw")
    docs = []
    for d in range(300):
        sents = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))).capitalize() + "."
                 for _ in range(rng.randint(1, 5))]
        docs.append(f"Document {d}. " + " ".join(sents))
    (raw / "corpus.txt").write_text("\n\n".join(docs), encoding="utf-8")
    out = tmp_path_factory.mktemp("prepared")
    data = load_config(None, ["data.vocab_size=120", "data.min_chars=5", "data.val_fraction=0.1"]).data
    prepare_corpus([str(raw / "corpus.txt")], out, data)
    return out


@pytest.fixture(scope="module")
def review_corpus(tmp_path_factory):
    """A prepared corpus of 200 movie-review-like documents (vocabulary 120), one per test module."""
    from pretrainlab.data.prepare import prepare_corpus

    raw = tmp_path_factory.mktemp("raw") / "corpus.txt"
    raw.write_text(review_docs(random.Random(0), 200), encoding="utf-8")
    out = tmp_path_factory.mktemp("corpus")
    prepare_corpus([str(raw)], out, load_config(None, ["data.vocab_size=120", "data.min_chars=5"]).data)
    return out


# --------------------------------------------------------------------------- weights of a trained size

FP32_PARITY = (2e-6, 1e-5)
"""(rtol, atol) for a parity test on trained-size weights: |theirs - ours| <= atol + rtol * max |ours|. Both sides
run the same float32 maths in another order (fused attention, other kernels); float32 rounds at 6e-8 of a value,
and the logits measured in tests/test_export_trained.py differ by at most 4.3e-7 of their largest value (most
by exactly 0). A mapping or module difference shows above it: a head normalising with eps 1e-12 where its twin
uses 1e-5 moved them by 2.3e-5 to 4.4e-5 of it."""


def assert_parity(theirs: torch.Tensor, ours: torch.Tensor, what: str = "logits") -> None:
    """theirs equals ours within float32 noise relative to ours' scale (FP32_PARITY)."""
    rtol, atol = FP32_PARITY
    scale = float(ours.abs().max())
    diff = float((theirs.float() - ours.float()).abs().max())
    assert theirs.shape == ours.shape, (theirs.shape, ours.shape)
    assert diff <= atol + rtol * scale, f"{what}: max |difference| {diff:.3g} for values up to {scale:.3g}"


def trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every trainable parameter the size training gives it, in place (and return the model).

    Fresh weights (N(0, 0.02), norms 1, biases 0) keep activations and logits so small that a mismatch between
    two implementations (a norm's eps, the GELU form, rotary precision) hides under any tolerance. Here matrices
    get N(0, 1 / fan_in) (activations of unit size, as after training), embeddings N(0, 1) (LM logits up to ~20
    at d=32, as a trained tiny model's), a classifier's output layer (under 8 rows) N(0, 1) (logits of a few
    units), norm gains U(0.5, 1.5) and biases N(0, 0.1). Frozen parameters (the modern style's all-zero segment
    table) stay as they are; tied parameters are drawn once.
    """
    g = torch.Generator().manual_seed(seed)
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if id(p) in embeddings or (p.dim() == 2 and p.shape[0] < 8):
                p.copy_(torch.randn(p.shape, generator=g))
            elif p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            elif name.endswith("bias") or name == "bias" or not bool(p.count_nonzero()):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    return model


def trained_like_dir(path, seed: int = 0):
    """A pre-training run or fine-tuned model directory, its weights rewritten in place by `trained_like`
    (a run's checkpoint keeps a valid sha256 in state.json). -> path"""
    import json
    from pathlib import Path

    from safetensors.torch import save_model

    from pretrainlab.files import sha256_file
    from pretrainlab.runs import is_classifier_dir, load_classifier, load_pretrained

    path = Path(path)
    if is_classifier_dir(path):
        save_model(trained_like(load_classifier(path).model, seed), str(path / "model.safetensors"))
        return path
    pre = load_pretrained(path)
    save_model(trained_like(pre.model, seed), str(pre.checkpoint / "model.safetensors"))
    state = json.loads((pre.checkpoint / "state.json").read_text(encoding="utf-8"))
    state["files"]["model.safetensors"] = sha256_file(pre.checkpoint / "model.safetensors")
    (pre.checkpoint / "state.json").write_text(json.dumps(state), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- interrupted runs


def pretrain_interrupted(monkeypatch, cfg, corpus, out, step: int) -> None:
    """pretrain(cfg, corpus, out) stopped by a KeyboardInterrupt inside the forward pass of training step `step`:
    it saves the state after step - 1 (for --resume) and raises Interrupted saying so."""
    from pretrainlab.loop import Interrupted
    from pretrainlab.models import PretrainModel
    from pretrainlab.train import pretrain

    calls = {"n": 0}
    real_forward = PretrainModel.forward

    def forward(self, batch):
        if self.training:
            calls["n"] += 1
            if calls["n"] == step:
                raise KeyboardInterrupt
        return real_forward(self, batch)

    with monkeypatch.context() as m:
        m.setattr(PretrainModel, "forward", forward)
        with pytest.raises(Interrupted, match=f"at step {step - 1}; checkpoint saved"):
            pretrain(cfg, corpus, out)


def latest_checkpoint_dir(run):
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
