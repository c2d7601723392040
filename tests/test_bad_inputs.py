"""A catalogue of bad inputs to every command: each runs the real CLI entry in-process and must end
with exit code 2 and `error: <message>` on stderr, where the message names what is wrong and what to
do, and never a traceback. docs/errors.md lists the same cases with the messages users see
(regenerate it with PRETRAINLAB_ERRORS_MD=docs/errors.md pytest tests/test_bad_inputs.py; the last test fails
while it is out of date).
"""

import gzip
import os
import random
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest
import torch

from pretrainlab.cli import main
from pretrainlab.config import load_config
from pretrainlab.train import pretrain

from conftest import TINY, TRANSFORMER

SETTINGS = TINY + TRANSFORMER + ["train.batch_size=4", "train.eval_every=0", "train.eval_batches=1",
                              "train.deterministic=true"]
FT = SETTINGS + ["finetune.max_len=16", "finetune.batch_size=16", "finetune.epochs=1"]


def sets(settings):
    out = []
    for s in settings:
        out += ["--set", s]
    return out


# --------------------------------------------------------------------------- what the cases build on


@pytest.fixture(scope="module")
def fx(tiny_corpus, tmp_path_factory):
    """A prepared corpus, a pre-training run (2 steps) and a model fine-tuned from it (1 epoch)."""
    root = tmp_path_factory.mktemp("fx")
    run = pretrain(load_config(None, SETTINGS + ["train.budget=2"]), tiny_corpus, root / "run")
    task = root / "reviews.csv"
    rng = random.Random(0)
    words = "the film was good bad dull fun long great awful story plot".split()
    rows = [f"{' '.join(rng.choice(words) for _ in range(6))} {i},{'pos' if i % 2 else 'neg'}" for i in range(80)]
    task.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    model = root / "ft"
    with torch.random.fork_rng():
        assert main(["finetune", str(run), "--task", str(task), "--out", str(model), "--seeds", "0"] + sets(FT)) == 0
    return SimpleNamespace(root=root, corpus=tiny_corpus, run=run, task=task, model=model)


@dataclass
class Case:
    command: str
    bad: str
    """The bad input, in words (the docs table's second column)."""
    argv: Callable[[SimpleNamespace, Path], list[str]]
    """(fixtures, an empty directory for this case) -> the command line after `pretrainlab`."""
    message: str
    """The part of the message that must appear, exactly (paths may be written as {tmp}, {run}, ...)."""


def write(path: Path, data: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def prepare(*inputs: str, extra=()) -> list[str]:
    return ["prepare", *inputs, "--out", "{tmp}/prepared", *sets(["data.vocab_size=100", "data.min_chars=5", *extra])]


def pretrain_argv(fx, tmp, *extra, out=None, resume=False):
    argv = ["pretrain", "--corpus", str(fx.corpus), "--out", str(out or tmp / "run")] + sets(SETTINGS + ["train.budget=2", *extra])
    return argv + (["--resume"] if resume else [])


def copy_run(fx, tmp) -> Path:
    shutil.copytree(fx.run, tmp / "run")
    return tmp / "run"


def flip_a_byte(run: Path) -> Path:
    f = run / "checkpoints" / "step_0000002" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF
    f.write_bytes(bytes(data))
    return run


def delete_checkpoint(run: Path) -> Path:
    shutil.rmtree(run / "checkpoints" / "step_0000002")
    return run


def truncate_optimizer(run: Path) -> Path:
    f = run / "checkpoints" / "step_0000002" / "optimizer.pt"
    f.write_bytes(f.read_bytes()[:100])
    return run


def damaged_model(fx, tmp: Path, name: str, data: bytes) -> str:
    """A copy of the fine-tuned model with one file replaced."""
    shutil.copytree(fx.model, tmp / "ft")
    (tmp / "ft" / name).write_bytes(data)
    return str(tmp / "ft")


def empty_run(fx, tmp: Path) -> str:
    """A run directory whose first checkpoint was never written."""
    run = tmp / "run"
    shutil.copytree(fx.run, run, ignore=shutil.ignore_patterns("checkpoints"))
    return str(run)

TEXT = "A first document that is long enough.\n\nA second document, also long enough to be kept.\n"
LONG_TEXT = "\n\n".join(f"Document {i}: {random.Random(i).random()} and {random.Random(-i).random()}." for i in range(500))

CASES: dict[str, Case] = {
    # ----------------------------------------------------------------- prepare
    "prepare-non-utf8": Case(
        "prepare", "a .txt file with a byte that is not UTF-8",
        lambda fx, t: prepare(write(t / "a.txt", b"A good first line of text.\nbad \xff byte here\n")),
        "{tmp}/a.txt: line 2 is not utf-8 (byte 0xff at column 5); pass --set data.errors=replace to replace such "
        "bytes, or --set data.encoding=... if the file uses another encoding"),
    "prepare-binary": Case(
        "prepare", "a binary file named .txt",
        lambda fx, t: prepare(write(t / "model.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00" * 50)),
        "{tmp}/model.txt: NUL bytes in its first 8 KB: this is a binary file, not text; remove it from the inputs"),
    "prepare-empty-file": Case(
        "prepare", "an empty file",
        lambda fx, t: prepare(write(t / "empty.txt", "")),
        "{tmp}/empty.txt: the file is empty (no documents in it); remove it from the inputs"),
    "prepare-empty-dir": Case(
        "prepare", "an empty directory",
        lambda fx, t: prepare(str((t / "raw").mkdir() or t / "raw")),
        "{tmp}/raw: the directory holds no .txt/.text/.md/.jsonl/.csv/.tsv/.parquet/.arrow (text formats "
        "optionally compressed: .gz/.bz2/.xz) files"),
    "prepare-glob-nothing": Case(
        "prepare", "a glob that matches no file",
        lambda fx, t: prepare(str(t / "data" / "*.jsonl")),
        "{tmp}/data/*.jsonl: the pattern matches no .txt/.text/.md/.jsonl/.csv/.tsv"),
    "prepare-missing-path": Case(
        "prepare", "a path that does not exist",
        lambda fx, t: prepare(str(t / "nowhere.txt")),
        "{tmp}/nowhere.txt: no such file or directory"),
    "prepare-jsonl-no-field": Case(
        "prepare", ".jsonl lines without the text field",
        lambda fx, t: prepare(write(t / "a.jsonl", '{"body": "some text", "id": 1}\n')),
        "{tmp}/a.jsonl: line 1 has no field 'text' (it has 'body', 'id'); pass --set data.text_field=NAME"),
    "prepare-jsonl-not-json": Case(
        "prepare", "a .jsonl line that is not JSON",
        lambda fx, t: prepare(write(t / "a.jsonl", '{"text": "fine, long enough"}\n{"text": "cut off\n')),
        "{tmp}/a.jsonl: line 2 is not valid JSON (Unterminated string starting at at column 10); fix the line or remove it"),
    "prepare-jsonl-not-object": Case(
        "prepare", "a .jsonl line that is a list",
        lambda fx, t: prepare(write(t / "a.jsonl", '["a", "list"]\n')),
        "{tmp}/a.jsonl: line 1 is a JSON list, not an object with a 'text' field"),
    "prepare-huge-line": Case(
        "prepare", "one line of 11 MB (minified or binary)",
        lambda fx, t: prepare(write(t / "huge.txt", b"word " * (11 * 2**20 // 5))),
        "{tmp}/huge.txt: line 1 is longer than 10 MB; this looks like a binary or minified file: remove it from the "
        "inputs, or break the text into lines"),
    "prepare-csv-no-column": Case(
        "prepare", "a .csv without the text column",
        lambda fx, t: prepare(write(t / "a.csv", "body,label\nsome text here,1\n")),
        "{tmp}/a.csv: no column 'text' in the header (columns: 'body', 'label'); pass --set data.text_field=NAME"),
    "prepare-unknown-corpus-name": Case(
        "prepare", "a name that is neither a path nor a built-in corpus",
        lambda fx, t: prepare("sotuu"),
        "sotuu: no such file or directory, nor a built-in corpus (did you mean 'sotu'?); built-in corpora: sotu, kjv, "
        "gcide, wiki (`pretrainlab data list`); a task's training texts: task:NAME or task:FILE.csv"),
    "prepare-unknown-type": Case(
        "prepare", "a file type it cannot read (.pdf)",
        lambda fx, t: prepare(write(t / "paper.pdf", "%PDF-1.4")),
        "{tmp}/paper.pdf: unknown file type; supported: .txt/.text/.md/.jsonl/.csv/.tsv/.parquet/.arrow (text formats "
        "optionally compressed: .gz/.bz2/.xz); rename it (e.g. to .txt)"),
    "prepare-bad-gzip": Case(
        "prepare", "a .gz file that is not gzip",
        lambda fx, t: prepare(write(t / "a.txt.gz", b"this is not gzip data at all")),
        "{tmp}/a.txt.gz: not a valid .gz file"),
    "prepare-truncated-gzip": Case(
        "prepare", "a truncated .gz file",
        lambda fx, t: prepare(write(t / "a.txt.gz", gzip.compress(LONG_TEXT.encode())[:3000])),
        "{tmp}/a.txt.gz: not a valid .gz file after line"),
    "prepare-unknown-encoding": Case(
        "prepare", "an encoding Python does not know",
        lambda fx, t: prepare(write(t / "a.txt", TEXT), extra=["data.encoding=klingon"]),
        "unknown encoding 'klingon'; give a Python codec name, e.g. utf-8 or latin-1"),
    "prepare-too-small": Case(
        "prepare", "less text than one training sequence",
        lambda fx, t: prepare(write(t / "a.txt", "Tiny text here."), extra=["data.seq_len=64"]),
        "the corpus is smaller than one training sequence"),
    "prepare-all-too-short": Case(
        "prepare", "every document shorter than data.min_chars",
        lambda fx, t: prepare(write(t / "a.txt", "a\n\nb\n\nc\n"), extra=["data.min_chars=50"]),
        "no documents left after filtering: read 3, dropped 0 exact duplicates, 0 near duplicates and 3 shorter than data.min_chars=50; "
        "add text or lower data.min_chars"),
    "prepare-missing-tokenizer": Case(
        "prepare", "--tokenizer that does not exist",
        lambda fx, t: prepare(write(t / "a.txt", TEXT)) + ["--tokenizer", str(t / "tok.json")],
        "no tokenizer at {tmp}/tok.json; train one with `pretrainlab tokenizer train`"),
    "prepare-bad-tokenizer": Case(
        "prepare", "--tokenizer that is not a tokenizer.json",
        lambda fx, t: prepare(write(t / "a.txt", TEXT)) + ["--tokenizer", write(t / "tok.json", '{"vocab": []}')],
        "{tmp}/tok.json: not a valid tokenizer.json"),
    "prepare-out-is-file": Case(
        "prepare", "--out that is a file",
        lambda fx, t: ["prepare", write(t / "a.txt", TEXT), "--out", write(t / "out.txt", "x")],
        "--out {tmp}/out.txt is a file; give a directory for the shards"),
    "prepare-shard-tokens": Case(
        "prepare", "data.shard_tokens=0",
        lambda fx, t: prepare(write(t / "a.txt", TEXT), extra=["data.shard_tokens=0"]),
        "data.shard_tokens must be at least 1, got 0"),
    # ----------------------------------------------------------------- tokenizer train
    "tokenizer-nothing-left": Case(
        "tokenizer train", "only blank lines and very short documents",
        lambda fx, t: ["tokenizer", "train", write(t / "a.txt", "\n\nok\n\n  \n\nhi\n"), "--out", str(t / "tok")],
        "no documents left after filtering: read 2, dropped 0 exact duplicates, 0 near duplicates and 2 shorter than data.min_chars=20"),
    "tokenizer-unknown-kind": Case(
        "tokenizer train", "an unknown tokenizer kind",
        lambda fx, t: ["tokenizer", "train", write(t / "a.txt", TEXT), "--out", str(t / "tok"),
                       *sets(["data.tokenizer_kind=sentencepiece"])],
        "data.tokenizer_kind='sentencepiece' is not one of wordpiece, bpe, unigram"),
    "tokenizer-tiny-vocab": Case(
        "tokenizer train", "a vocabulary smaller than 16",
        lambda fx, t: ["tokenizer", "train", write(t / "a.txt", TEXT), "--out", str(t / "tok"),
                       *sets(["data.vocab_size=8"])],
        "data.vocab_size must be at least 16 (or 0: proposed from the corpus), got 8"),
    "tokenizer-out-is-file": Case(
        "tokenizer train", "--out that is a file (not .json)",
        lambda fx, t: ["tokenizer", "train", write(t / "a.txt", TEXT * 20), "--out", write(t / "tok", "x"),
                       *sets(["data.vocab_size=100"])],
        "{tmp}/tok is a file; give a directory or a path ending in .json"),
    # ----------------------------------------------------------------- data get
    "data-get-unknown": Case(
        "data get", "a name that is not built in (no hub is tried: hf:OWNER/NAME names one)",
        lambda fx, t: ["data", "get", "wikitext-103", "--cache-dir", str(t / "cache")],
        "unknown source 'wikitext-103'; built-in sources: "),
    "data-get-misspelt": Case(
        "data get", "a misspelt built-in name",
        lambda fx, t: ["data", "get", "sotuu", "--cache-dir", str(t / "cache")],
        "(did you mean 'sotu'?)"),
    "data-get-cache-is-file": Case(
        "data get", "--cache-dir that is a file",
        lambda fx, t: ["data", "get", "sotu", "--cache-dir", write(t / "cache", "x")],
        "--cache-dir {tmp}/cache is a file; give a directory"),
    # ----------------------------------------------------------------- pretrain: configuration
    "pretrain-unknown-key": Case(
        "pretrain", "--set with a misspelt key",
        lambda fx, t: pretrain_argv(fx, t, "train.lrr=1e-3"),
        "unknown setting train.lrr; did you mean train.lr?"),
    "pretrain-bad-type": Case(
        "pretrain", "--set with a value of the wrong type",
        lambda fx, t: pretrain_argv(fx, t, "train.batch_size=many"),
        "train.batch_size expects int, got 'many'"),
    "pretrain-set-no-equals": Case(
        "pretrain", "--set without =",
        lambda fx, t: pretrain_argv(fx, t, "train.lr"),
        "--set 'train.lr': write section.key=value, e.g. train.lr=3e-4"),
    "pretrain-unknown-section": Case(
        "pretrain", "--set with an unknown section",
        lambda fx, t: pretrain_argv(fx, t, "trian.lr=1e-3"),
        "--set 'trian.lr=1e-3': unknown section 'trian'; did you mean 'train'?"),
    "pretrain-heads": Case(
        "pretrain", "heads that do not divide d_model",
        lambda fx, t: pretrain_argv(fx, t, "model.n_heads=5"),
        "model.n_heads=5 does not divide model.d_model=32; choose n_heads among [1, 2, 4, 8, 16]"),
    "pretrain-seq-len": Case(
        "pretrain", "data.seq_len longer than model.max_len",
        lambda fx, t: pretrain_argv(fx, t, "data.seq_len=128"),
        "data.seq_len=128 is longer than model.max_len=64 (the position embeddings); raise model.max_len or lower "
        "data.seq_len"),
    "pretrain-zero-budget": Case(
        "pretrain", "a zero budget",
        lambda fx, t: pretrain_argv(fx, t, "train.budget=0"),
        "train.budget='0' is zero; give a positive budget"),
    "pretrain-bad-budget": Case(
        "pretrain", "a budget in an unknown unit",
        lambda fx, t: pretrain_argv(fx, t, "train.budget=3days"),
        "train.budget='3days': unknown unit 'days'; use steps, s, m, h, tok, ktok or Mtok"),
    "pretrain-negative-lr": Case(
        "pretrain", "a negative learning rate",
        lambda fx, t: pretrain_argv(fx, t, "train.lr=-1e-3"),
        "train.lr must be positive, got -0.001"),
    "pretrain-unknown-objective": Case(
        "pretrain", "an objective that does not exist",
        lambda fx, t: pretrain_argv(fx, t, "objective.weights.xlm=1.0"),
        "objective.weights='xlm' is not one of mlm, nsp, sop, plm, rtd, clm"),
    "pretrain-weights-not-mapping": Case(
        "pretrain", "objective.weights that is not a mapping",
        lambda fx, t: pretrain_argv(fx, t, "objective.weights=5"),
        "objective.weights must map objectives to weights, e.g. {{mlm: 1.0, nsp: 1.0}}; got 5"),
    "pretrain-weight-not-number": Case(
        "pretrain", "an objective weight that is not a number",
        lambda fx, t: pretrain_argv(fx, t, "objective.weights.mlm=lots"),
        "objective.weights.mlm must be a number, got 'lots'"),
    "pretrain-list-as-text": Case(
        "pretrain", "text where a list is expected",
        lambda fx, t: pretrain_argv(fx, t, "model.dilations=wide"),
        "model.dilations expects a list of int, got 'wide'; e.g. --set model.dilations=[1, 2, 4, 8]"),
    "pretrain-list-of-text": Case(
        "pretrain", "a list with a word where numbers are expected",
        lambda fx, t: pretrain_argv(fx, t, "model.dilations=[1, two]"),
        "model.dilations expects a list of int, got [1, 'two']; e.g. --set model.dilations=[1, 2, 4, 8]"),
    "pretrain-fraction-as-int": Case(
        "pretrain", "a fraction where a whole number is expected",
        lambda fx, t: pretrain_argv(fx, t, "train.batch_size=32.5"),
        "train.batch_size expects int, got 32.5; e.g. --set train.batch_size=32"),
    "pretrain-not-a-bool": Case(
        "pretrain", "a word that is not true or false for a switch",
        lambda fx, t: pretrain_argv(fx, t, "train.deterministic=maybe"),
        "train.deterministic expects bool, got 'maybe'; e.g. --set train.deterministic=false"),
    "pretrain-optional-text-as-list": Case(
        "pretrain", "a list for a setting that takes a name or null",
        lambda fx, t: pretrain_argv(fx, t, "model.preset=[tiny, mini]"),
        "model.preset expects str or null, got ['tiny', 'mini']; e.g. --set model.preset=auto"),
    "pretrain-ambiguous-budget": Case(
        "pretrain", "a budget in M (minutes or million tokens?)",
        lambda fx, t: pretrain_argv(fx, t, "train.budget=10M"),
        "train.budget='10M' is ambiguous: write 10m for 10 minutes or 10Mtok for 10 million tokens"),
    "pretrain-empty-dilations": Case(
        "pretrain", "an empty list of CNN dilations",
        lambda fx, t: pretrain_argv(fx, t, "model.backbone=cnn", "model.dilations=[]"),
        "model.dilations must be a list of positive integers, e.g. [1, 2, 4, 8], got []"),
    "pretrain-budget-below-one-step": Case(
        "pretrain", "a budget of less than one step",
        lambda fx, t: pretrain_argv(fx, t, "train.budget=0.5"),
        "train.budget='0.5' is less than one step; give a larger budget"),
    "pretrain-plm-rnn": Case(
        "pretrain", "PLM with the RNN backbone",
        lambda fx, t: pretrain_argv(fx, t, "model.backbone=rnn", "objective.weights={plm: 1.0}"),
        "objective plm needs attention masks, which the rnn backbone does not have; use mlm, nsp, sop, rtd (or bilm "
        "for rnn) with it, or backbone=transformer for plm"),
    "pretrain-hybrid-rnn": Case(
        "pretrain", "GPT-BERT's hybrid objective with the RNN backbone",
        lambda fx, t: pretrain_argv(fx, t, "model.backbone=rnn", "objective.weights={hybrid: 1.0}"),
        "objective hybrid (GPT-BERT: masked next-token prediction and causal LM in one encoder) makes some rows of a "
        "batch attend causally, which needs attention masks: the rnn backbone has none. Use "
        "model.backbone=transformer for hybrid, or mlm with rnn"),
    "pretrain-mask-span-without-mlm": Case(
        "pretrain", "LTG-BERT's span masking without mlm",
        lambda fx, t: pretrain_argv(fx, t, "objective.weights={rtd: 1.0}", "objective.mask_span=3"),
        "objective.mask_span=3.0 is read by objective mlm only, which objective.weights does not train (rtd); add mlm "
        "to objective.weights, or drop objective.mask_span"),
    "pretrain-mask-span-and-whole-word": Case(
        "pretrain", "span masking and whole-word masking together",
        lambda fx, t: pretrain_argv(fx, t, "objective.mask_span=3", "objective.whole_word=true"),
        "objective.mask_span=3.0 and objective.whole_word=true are two ways to choose the masked tokens (spans of "
        "tokens, whole words); keep one of them"),
    "pretrain-whole-word-without-masking": Case(
        "pretrain", "whole-word masking where no objective masks tokens (a decoder's clm)",
        lambda fx, t: pretrain_argv(fx, t, "model.backbone=decoder", "model.style=gpt2", "objective.whole_word=true"),
        "objective.whole_word=true is read by objectives mlm, rtd and hybrid only, none of which objective.weights "
        "trains (clm); drop objective.whole_word, or add one of them to objective.weights"),
    "pretrain-vocab-mismatch": Case(
        "pretrain", "model.vocab_size other than the corpus tokenizer's",
        lambda fx, t: pretrain_argv(fx, t, "model.vocab_size=500"),
        "model.vocab_size=500 but the corpus tokenizer has"),
    "pretrain-config-missing": Case(
        "pretrain", "--config that does not exist",
        lambda fx, t: pretrain_argv(fx, t) + ["--config", str(t / "run.yaml")],
        "config file {tmp}/run.yaml does not exist"),
    "pretrain-config-not-yaml": Case(
        "pretrain", "--config that is not YAML",
        lambda fx, t: pretrain_argv(fx, t) + ["--config", write(t / "run.yaml", "train: [unclosed\n")],
        "{tmp}/run.yaml: not valid YAML"),
    "pretrain-config-bad-section": Case(
        "pretrain", "--config with an unknown section",
        lambda fx, t: pretrain_argv(fx, t) + ["--config", write(t / "run.yaml", "modle:\n  d_model: 32\n")],
        "{tmp}/run.yaml: unknown section 'modle'; did you mean 'model'?"),
    # ----------------------------------------------------------------- pretrain: corpus and run directory
    "pretrain-missing-corpus": Case(
        "pretrain", "a corpus directory that does not exist",
        lambda fx, t: ["pretrain", "--corpus", str(t / "corpus"), "--out", str(t / "run")] + sets(SETTINGS),
        "{tmp}/corpus: no such corpus directory; create it with `pretrainlab prepare INPUTS --out {tmp}/corpus`"),
    "pretrain-raw-corpus": Case(
        "pretrain", "raw text instead of a prepared corpus",
        lambda fx, t: ["pretrain", "--corpus", str(Path(write(t / "raw" / "a.txt", TEXT)).parent), "--out",
                       str(t / "run")] + sets(SETTINGS),
        "{tmp}/raw: not a prepared corpus (no manifest.json); create it with `pretrainlab prepare INPUTS --out {tmp}/raw`"),
    "pretrain-interrupted-corpus": Case(
        "pretrain", "a corpus whose preparation was interrupted",
        lambda fx, t: ["pretrain", "--corpus", str(Path(write(t / "part" / "progress.json", "{}")).parent), "--out",
                       str(t / "run")] + sets(SETTINGS),
        "{tmp}/part: the preparation was interrupted (no manifest.json); run the same `pretrainlab prepare` again to "
        "finish it"),
    "pretrain-out-is-file": Case(
        "pretrain", "--out that is a file",
        lambda fx, t: pretrain_argv(fx, t, out=Path(write(t / "run", "x"))),
        "--out {tmp}/run is a file; give a directory for the run"),
    "pretrain-out-taken": Case(
        "pretrain", "--out that holds a run, without --resume",
        lambda fx, t: pretrain_argv(fx, t, out=copy_run(fx, t)),
        "{tmp}/run already holds a run; pass --resume to continue it, or choose another --out"),
    "pretrain-resume-nothing": Case(
        "pretrain", "--resume with no run directory",
        lambda fx, t: pretrain_argv(fx, t, resume=True),
        "--resume: {tmp}/run has no checkpoint to resume from; drop --resume to start anew"),
    "pretrain-resume-other-config": Case(
        "pretrain", "--resume with another model configuration",
        lambda fx, t: pretrain_argv(fx, t, "model.d_ff=128", out=copy_run(fx, t), resume=True),
        "cannot resume: the configuration differs from the checkpoint's:\n  model.d_ff: checkpoint 64 vs now 128"),
    "pretrain-corrupt-checkpoint": Case(
        "pretrain", "--resume from a checkpoint with a flipped byte",
        lambda fx, t: pretrain_argv(fx, t, out=flip_a_byte(copy_run(fx, t)), resume=True),
        "{tmp}/run/checkpoints/step_0000002: model.safetensors does not match its recorded sha256 (corrupt or "
        "truncated); delete this checkpoint directory to fall back to an earlier one"),
    "pretrain-latest-dangling": Case(
        "pretrain", "--resume when checkpoints/latest names a deleted checkpoint",
        lambda fx, t: pretrain_argv(fx, t, out=delete_checkpoint(copy_run(fx, t)), resume=True),
        "--resume: {tmp}/run/checkpoints/latest names step_0000002, which is missing; write the name of a complete "
        "checkpoint directory in {tmp}/run/checkpoints into it"),
    "pretrain-truncated-checkpoint": Case(
        "pretrain", "--resume from a checkpoint whose optimizer.pt was cut short",
        lambda fx, t: pretrain_argv(fx, t, out=truncate_optimizer(copy_run(fx, t)), resume=True),
        "{tmp}/run/checkpoints/step_0000002: optimizer.pt does not match its recorded sha256 (corrupt or truncated)"),
    "pretrain-init-missing": Case(
        "pretrain", "--init from a directory with no model",
        lambda fx, t: pretrain_argv(fx, t) + ["--init", str((t / "empty").mkdir() or t / "empty")],
        "--init {tmp}/empty: no model.safetensors found (a run directory or an imported model)"),
    # ----------------------------------------------------------------- finetune
    "finetune-missing-column": Case(
        "finetune", "a task file without the text column",
        lambda fx, t: ["finetune", str(fx.run), "--task", write(t / "t.csv", "sentence,label\na b,1\nc d,0\n"),
                       "--out", str(t / "ft")] + sets(FT),
        "{tmp}/t.csv: no column 'text'; the columns present are 'sentence', 'label'. Set finetune.text_column / "
        "text_pair_column / label_column / group_column to match"),
    "finetune-one-class": Case(
        "finetune", "a label column with one class",
        lambda fx, t: ["finetune", str(fx.run), "--task",
                       write(t / "t.csv", "text,label\n" + "".join(f"text number {i},pos\n" for i in range(30))),
                       "--out", str(t / "ft")] + sets(FT),
        "{tmp}/t.csv: column 'label' holds one class ('pos') in all 30 rows; a classifier needs at least two; is it "
        "the label column?"),
    "finetune-missing-task": Case(
        "finetune", "a task that is neither a file nor built in",
        lambda fx, t: ["finetune", str(fx.run), "--task", "mrr", "--out", str(t / "ft")] + sets(FT),
        "task 'mrr' is neither a file nor a built-in task (did you mean 'mr'?)"),
    "finetune-missing-run": Case(
        "finetune", "a pre-training run directory that does not exist",
        lambda fx, t: ["finetune", str(t / "run"), "--task", str(fx.task), "--out", str(t / "ft")] + sets(FT),
        "{tmp}/run: no such run directory; give the --out of `pretrainlab pretrain`"),
    "finetune-run-without-checkpoint": Case(
        "finetune", "a run killed before its first checkpoint",
        lambda fx, t: ["finetune", empty_run(fx, t), "--task", str(fx.task), "--out", str(t / "ft")] + sets(FT),
        "{tmp}/run has no checkpoint yet; pre-train it first (pretrainlab pretrain --out {tmp}/run)"),
    "finetune-dropout-not-number": Case(
        "finetune", "a word for a number that may be null (finetune.dropout=high)",
        lambda fx, t: ["finetune", str(fx.run), "--task", str(fx.task), "--out", str(t / "ft")] + sets(
            FT + ["finetune.dropout=high"]),
        "finetune.dropout expects float or null, got 'high'; e.g. --set finetune.dropout=0.1"),
    "finetune-out-is-file": Case(
        "finetune", "--out that is a file",
        lambda fx, t: ["finetune", str(fx.run), "--task", str(fx.task), "--out", write(t / "ft", "x")] + sets(FT),
        "--out {tmp}/ft is a file; give a directory for the model and reports"),
    # ----------------------------------------------------------------- curve
    "curve-labels-above-the-split": Case(
        "curve", "more labels than the training split holds (80 rows: 64 for training)",
        lambda fx, t: ["curve", str(fx.run), "--task", str(fx.task), "--labels", "40", "500", "--out",
                       str(t / "curve")] + sets(FT),
        "--labels 500: the training split of reviews has only 64 examples; use at most 64 (or 'all'), or leave "
        "--labels out for counts that fit"),
    # ----------------------------------------------------------------- distill
    "distill-no-validations": Case(
        "distill", "no validation in a pass (distill.evals_per_epoch=0)",
        lambda fx, t: ["distill", str(fx.model), "--student", "preset:tiny", "--texts", write(t / "u.txt", TEXT),
                       "--out", str(t / "student"), "--set", "distill.evals_per_epoch=0"],
        "distill.evals_per_epoch must be >= 1, got 0"),
    "distill-augment-probability": Case(
        "distill", "a probability outside [0, 1] (distill.augment_mask=1.5)",
        lambda fx, t: ["distill", str(fx.model), "--student", "preset:tiny", "--texts", write(t / "u.txt", TEXT),
                       "--out", str(t / "student"), "--set", "distill.augment=2", "--set", "distill.augment_mask=1.5"],
        "distill.augment_mask is a probability in [0, 1], got 1.5"),
    "distill-augment-targets-without-copies": Case(
        "distill", "what copies learn, without copies (distill.augment_targets=source, distill.augment=0)",
        lambda fx, t: ["distill", str(fx.model), "--student", "preset:tiny", "--texts", write(t / "u.txt", TEXT),
                       "--out", str(t / "student"), "--set", "distill.augment_targets=source"],
        "distill.augment_targets=source chooses what distill.augment's copies learn, and distill.augment=0 makes "
        "none; set distill.augment=N (copies of each pool text), or drop distill.augment_targets"),
    "distill-tfidf-weight": Case(
        "distill", "a TF-IDF share outside [0, 1] (distill.tfidf_weight=2)",
        lambda fx, t: ["distill", str(fx.model), "--student", "preset:tiny", "--texts", write(t / "u.txt", TEXT),
                       "--out", str(t / "student"), "--set", "distill.tfidf_weight=2"],
        "distill.tfidf_weight is TF-IDF + LR's share of the soft labels, in [0, 1] (0: the teacher alone), got 2.0"),
    "distill-confident-share": Case(
        "distill", "no share of the pool kept (distill.confident_share=0)",
        lambda fx, t: ["distill", str(fx.model), "--student", "preset:tiny", "--texts", write(t / "u.txt", TEXT),
                       "--out", str(t / "student"), "--set", "distill.confident_share=0"],
        "distill.confident_share is the share of the unlabelled pool kept, the texts the soft labels are surest of, "
        "in (0, 1] (1: all of it), got 0.0"),
    # ----------------------------------------------------------------- evaluate
    "evaluate-unknown-label": Case(
        "evaluate", "a test file with a label the model was not trained on",
        lambda fx, t: ["evaluate", str(fx.model), "--task", write(
            t / "t.csv", "text,label\n" + "".join(f"text {i},{('pos', 'neg', 'maybe')[i % 3]}\n" for i in range(60))),
            "--out", str(t / "eval")],
        "has label 'maybe', which the model at {model} does not know (its labels: ['neg', 'pos'])"),
    "evaluate-missing-model": Case(
        "evaluate", "a model directory that does not exist",
        lambda fx, t: ["evaluate", str(t / "model")],
        "{tmp}/model: no such model directory; give the --out of `pretrainlab finetune`"),
    "evaluate-pretraining-run": Case(
        "evaluate", "a pre-training run instead of a fine-tuned model",
        lambda fx, t: ["evaluate", str(fx.run)],
        "{run} is not a fine-tuned model (no classifier.json) (that is a pre-training run: fine-tune it first with "
        "`pretrainlab finetune`)"),
    "evaluate-damaged-weights": Case(
        "evaluate", "a model whose model.safetensors is not safetensors",
        lambda fx, t: ["evaluate", damaged_model(fx, t, "model.safetensors", b"not safetensors at all")],
        "{tmp}/ft/model.safetensors is missing or not a safetensors file (Error while deserializing header: "
        "header too large); fine-tune again into a new --out"),
    # ----------------------------------------------------------------- predict
    "predict-missing-model": Case(
        "predict", "a model directory that does not exist",
        lambda fx, t: ["predict", str(t / "model"), "a fine film"],
        "{tmp}/model: no such model directory; give the --out of `pretrainlab finetune`"),
    "predict-pairs-mismatch": Case(
        "predict", "two texts but one --pair",
        lambda fx, t: ["predict", str(fx.model), "a fine film", "a dull one", "--pair", "really"],
        "got 2 texts but 1 pair texts; give one --pair per text"),
    "predict-damaged-classifier": Case(
        "predict", "a model whose classifier.json is damaged",
        lambda fx, t: ["predict", damaged_model(fx, t, "classifier.json", b"{cut"), "a fine film"],
        "{tmp}/ft: classifier.json or config.yaml is missing or unreadable"),
    # ----------------------------------------------------------------- export
    "export-no-checkpoint": Case(
        "export", "a run with no checkpoint",
        lambda fx, t: ["export", empty_run(fx, t), "--out", str(t / "hf")],
        "{tmp}/run has no checkpoint: nothing to export yet"),
    "export-target-not-empty": Case(
        "export", "an --out directory that is not empty",
        lambda fx, t: ["export", str(fx.model), "--out", str(Path(write(t / "hf" / "notes.txt", "mine")).parent)],
        "--out {tmp}/hf is not empty; pass --overwrite to replace its contents"),
    "export-target-is-file": Case(
        "export", "an --out that is a file",
        lambda fx, t: ["export", str(fx.model), "--out", write(t / "hf.txt", "mine")],
        "--out {tmp}/hf.txt is a file; give a directory"),
    "export-missing-source": Case(
        "export", "a source directory that does not exist",
        lambda fx, t: ["export", str(t / "nothing"), "--out", str(t / "hf")],
        "{tmp}/nothing is neither a pre-training run (config.yaml + checkpoints/) nor a fine-tuned model"),
    "export-damaged-weights": Case(
        "export", "a model whose model.safetensors is not safetensors",
        lambda fx, t: ["export", damaged_model(fx, t, "model.safetensors", b"\x00" * 64), "--out", str(t / "hf")],
        "{tmp}/ft/model.safetensors is not a readable safetensors file"),
    # ----------------------------------------------------------------- explain
    "explain-empty-text": Case(
        "explain", "an empty --text",
        lambda fx, t: ["explain", str(fx.model), "--text", "", "--out", str(t / "r.html")],
        "--text number 1 is empty; give the sentence to explain, e.g. --text 'a gripping film'"),
    "explain-nothing": Case(
        "explain", "neither --text nor --file",
        lambda fx, t: ["explain", str(fx.model), "--out", str(t / "r.html")],
        "nothing to explain: give --text (one or more) and/or --file (a labelled task file)"),
    "explain-missing-model": Case(
        "explain", "a model directory that does not exist",
        lambda fx, t: ["explain", str(t / "model"), "--text", "a fine film", "--out", str(t / "r.html")],
        "{tmp}/model: no such model directory; give a fine-tuned model directory or a pre-training run directory"),
    "explain-missing-task-file": Case(
        "explain", "a --file that does not exist",
        lambda fx, t: ["explain", str(fx.model), "--file", str(t / "t.csv"), "--out", str(t / "r.html")],
        "{tmp}/t.csv: task file not found"),
    "explain-max-examples": Case(
        "explain", "--max-examples 0",
        lambda fx, t: ["explain", str(fx.model), "--file", str(fx.task), "--max-examples", "0", "--out",
                       str(t / "r.html")],
        "--max-examples must be at least 1, got 0"),
}


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """The Hugging Face hub is out of reach (and `datasets` may or may not be installed): no network."""
    monkeypatch.setitem(sys.modules, "datasets", None)


SEEN: dict[str, str] = {}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_a_clear_error(name, fx, tmp_path, capsys):
    case = CASES[name]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in case.argv(fx, tmp_path)]
    code = main(argv)
    out, err = capsys.readouterr()
    expected = case.message.format(tmp=tmp_path, run=fx.run, model=fx.model, corpus=fx.corpus)
    assert code == 2, err
    assert "Traceback" not in out + err
    start = re.search(r"(?m)^error: ", err)  # after any progress lines the command printed before it
    assert start, err
    message = err[start.end():].rstrip("\n")
    assert expected in message, err
    SEEN[name] = message.replace(str(tmp_path) + "/", "").replace(str(tmp_path), ".") \
        .replace(str(fx.model), "runs/ft").replace(str(fx.run), "runs/pre").replace(str(fx.corpus), "corpus")


def test_argparse_errors_also_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--out", "x"])  # --corpus missing
    assert e.value.code == 2
    assert "the following arguments are required: --corpus" in capsys.readouterr().err


def test_catalogue_is_large_and_covers_every_command():
    commands = {c.command.split()[0] for c in CASES.values()}
    assert len(CASES) >= 30
    assert commands >= {"prepare", "tokenizer", "data", "pretrain", "finetune", "curve", "evaluate", "predict",
                        "export", "explain"}


def test_docs_errors_md_is_this_catalogue():
    """docs/errors.md's table is exactly this file's cases with the messages this run saw: a message changed in the
    code, or a row edited by hand, fails here. PRETRAINLAB_ERRORS_MD=path (re)writes that file's table instead."""
    if set(SEEN) != set(CASES):
        pytest.skip("the table is compared only when the whole file ran (a -k selection leaves cases out)")
    rows = ["| command | bad input | what the user sees (`error: ...`, exit code 2) |", "|---|---|---|"]
    for name, case in CASES.items():
        message = SEEN[name].replace("|", "\\|").replace("\n", "<br>")
        rows.append(f"| `{case.command}` | {case.bad} | {message} |")
    target = os.environ.get("PRETRAINLAB_ERRORS_MD")
    path = Path(target) if target else Path(__file__).parents[1] / "docs" / "errors.md"
    marker = "<!-- table -->"
    text = path.read_text(encoding="utf-8")
    table = marker + "\n\n" + "\n".join(rows) + "\n"
    if target:
        path.write_text(text.split(marker)[0] + table, encoding="utf-8")
        return
    written = text.split(marker, 1)[1].strip().splitlines()
    stale = [row for row in written if row not in rows]
    missing = [row for row in rows if row not in written]
    assert not stale and not missing, (
        f"docs/errors.md's table differs from the catalogue: {len(stale)} row(s) not seen here, e.g. "
        f"{stale[:1]}, and {len(missing)} seen here but not written, e.g. {missing[:1]}; rewrite it with "
        "PRETRAINLAB_ERRORS_MD=docs/errors.md pytest tests/test_bad_inputs.py")
