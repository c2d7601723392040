"""A real checkpoint adapted to the user's text: the reference pre-trained further on the run's corpus.

    run_dir = adapt_reference("runs/minilm", pre, "10m", "curve/reference-dapt", cfg, lr=1e-4)

Domain-adaptive pre-training (Gururangan et al. 2020). The run's prepared corpus (corpus.json names it) is
decoded back to text (OUT/corpus.txt, documents by their sentences) and prepared again with the reference's
tokenizer (OUT/corpus), then `pretrain` continues the reference from its weights (`init`) for the budget, with
the reference's architecture and objective (pretrain adopts them), at a learning rate for a trained model. A
reference imported without an MLM head (all-MiniLM-L6-v2) gets a fresh one, which trains alone for
train.head_warmup of the budget before the body moves (train.py). Every step resumes: the text and the corpus
are written once, a killed pre-training continues from its checkpoint, a finished one is reused.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from .checkpoint import latest_checkpoint
from .config import ConfigError, RunConfig
from .distill.pool import corpus_documents
from .runs import Pretrained


def adapt_reference(reference: Path, pre: Pretrained, budget: str, out: Path, cfg: RunConfig, lr: float) -> Path:
    """The reference pre-trained further on `pre`'s corpus for `budget`: a run directory in out/run."""
    from .data.prepare import prepare_corpus
    from .train import pretrain

    run = out / "run"
    if (run / "summary.json").is_file():
        return run
    corpus = run_corpus(pre)
    text = out / "corpus.txt"
    if not text.is_file():
        write_corpus_text(corpus, text)
    tokenizer = Path(reference) / "tokenizer.json"
    prepare_corpus([str(text)], out / "corpus", cfg.data, tokenizer_path=tokenizer)
    cfg = replace(cfg, train=replace(cfg.train, budget=budget, lr=lr))
    return pretrain(cfg, out / "corpus", run, resume=run.is_dir(), init=reference)


def run_corpus(pre: Pretrained) -> Path:
    """The prepared corpus a pre-training run was trained on (its corpus.json), which must still be there."""
    run_dir = Path(str(pre.run_dir))
    info = run_dir / "corpus.json"
    if not info.is_file():
        raise ConfigError(f"--reference-dapt adapts the reference to the run's corpus, but {run_dir} names none (no "
                          "corpus.json: an imported model or a fine-tuned one); give a run of pretrainlab pretrain")
    path = Path(json.loads(info.read_text(encoding="utf-8"))["path"])
    if not path.is_dir():
        raise ConfigError(f"--reference-dapt: the run's corpus {path} (from {info}) is gone; prepare it again there")
    return path


def write_corpus_text(corpus: Path, path: Path) -> Path:
    """Every document of a prepared corpus as text, its sentences on one line, blank lines between documents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for sentences in corpus_documents(corpus):
            f.write(" ".join(sentences) + "\n\n")
    os.replace(tmp, path)
    return path
