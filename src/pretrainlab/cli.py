"""The command line: parse -> config -> call a library function. No logic lives here."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import shlex
import signal
import sys
import textwrap

from . import __version__
from .config import (DAPT_LR, DEFAULT_STUDENT_BACKBONE, REFERENCE_LR, SECTIONS, STUDENT_BACKBONES, config_yaml,
                     describe, load_config)
from .errors import Interrupted, PretrainlabError
from .logs import messages_shown

log = logging.getLogger(__name__)

DATA_SETTINGS = ("data.text_field", "data.one_doc_per_line", "data.lowercase", "data.min_chars", "data.dedup",
                 "data.near_dup_threshold", "data.tokenizer_kind", "data.vocab_size", "data.seq_len",
                 "data.val_fraction", "data.encoding", "data.errors", "data.workers", "data.shard_tokens")
"""What prepare and tokenizer train read (data.corpus is pretrain's --corpus)."""
TASK_TEXT_SETTINGS = ("finetune.text_column", "finetune.text_pair_column", "finetune.label_column",
                      "finetune.group_column", "finetune.val_fraction", "finetune.test_fraction")
"""How a task file's columns and splits are read: its training texts are the ones prepare may use."""
SEEDS_HELP = "seeds to run (default: finetune.seeds, 0 1 2 unless the run or --set says otherwise)"
RUN_NOTE = " (the command starts from the run's own finetune settings, which --config and --set then change)"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose --help ends with the settings that matter to its command (`settings`: sections
    or section.key), with the values a run uses when nothing is set; built only when help is asked for."""

    settings: tuple[str, ...] = ()
    settings_note: str = ""

    def format_help(self) -> str:
        if self.settings:
            from .config import settings_help

            head = (f"settings (--set KEY=VALUE or --config FILE), with the values a run uses when nothing is set"
                    f"{self.settings_note}; each one's whole doc: pretrainlab --help-config SECTION:")
            self.epilog = textwrap.fill(head, 100) + "\n" + settings_help(self.settings)
            self.formatter_class = argparse.RawDescriptionHelpFormatter
        return super().format_help()


def _config_args(p: _Parser, *settings: str, note: str = "") -> None:
    """--config, --set and --print-config; `settings` are the ones listed in the command's --help."""
    p.add_argument("--config", help=f"YAML file with sections {', '.join(SECTIONS)}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set train.lr=3e-4 (listed below; all: --help-config)")
    p.add_argument("--print-config", action="store_true", help="print the settings this command would use (YAML, "
                   "valid as --config) and exit without running (--out, --corpus, --task are not needed)")
    p.settings, p.settings_note = settings, note


def _precision_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                   help="auto (bf16 where the CPU has fast bf16), bf16 or fp32 (exact, as the HF export); "
                   "default: the model's finetune.inference_precision")


class _Renamed(argparse.Action):
    """An option with its former names after the first (`--out`, `--to`): they still work, with a one-line notice."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string != self.option_strings[0]:  # said once messages are set up (-q / -v)
            notice = f"note: {option_string} is now {self.option_strings[0]}; the old name will go in a later release"
            setattr(namespace, "notices", [*getattr(namespace, "notices", []), notice])
        setattr(namespace, self.dest, values)


def _verbosity_args(p: argparse.ArgumentParser, default=False) -> None:
    """-q / -v, on the command and on each subcommand (pretrainlab -q finetune ... or pretrainlab finetune ... -q)."""
    p.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="warnings and errors only: no notes, no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="debug messages too")
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _verbosity_args(sub, default=argparse.SUPPRESS)  # given there, or the command's value stands


def _column_args(p: argparse.ArgumentParser, label: bool = True,
                 defaults: tuple[str, str] = ("finetune.text_column: text", "finetune.label_column: label")) -> None:
    """--text-column / --pair-column / --label-column: the same names on every command that reads a task file."""
    p.add_argument("--text-column", help=f"the task file's column holding the text (default: {defaults[0]})")
    p.add_argument("--pair-column", "--text-pair-column", action=_Renamed,
                   help="the column holding the second text of a pair (default: none, single texts)")
    if label:
        p.add_argument("--label-column", help=f"the column holding the label (default: {defaults[1]})")


def _columns(args):
    from .data.tasks import Columns

    return Columns(args.text_column, args.pair_column, getattr(args, "label_column", None))


def _overrides(args) -> list[str]:
    """--set, then the column flags (which win), as finetune.* settings."""
    return [*args.overrides, *(f"finetune.{k}={json.dumps(v)}" for k, v in _columns(args).settings().items())]


def _cfg(args):
    return load_config(args.config, args.overrides)


def _run_cfg(args, pre):
    """For commands on a run: its own finetune settings, then --config, then --set."""
    return load_config(args.config, _overrides(args), base=pre.config, base_sections=("finetune",))


def _on_run_cfg(args):
    """finetune's and curve's settings (for --print-config): the run's own (its config.yaml, which loading it reads),
    with the finetune section the command resolves."""
    from dataclasses import replace
    from pathlib import Path

    from .runs import load_pretrained, read_run_config

    run = Path(args.run)
    base = read_run_config(run) if (run / "config.yaml").is_file() else load_pretrained(run).config  # says what is wrong
    return replace(base, finetune=load_config(args.config, _overrides(args), base=base, base_sections=("finetune",)).finetune)


def _pretrain_cfg(args):
    """What pretrain runs with (--print-config): with --init, the init's architecture, as pretrain adopts it."""
    from .runs import adopt_init_model

    cfg = _cfg(args)
    return adopt_init_model(cfg, args.init)[0] if args.init else cfg


def _distill_cfg(args):
    from .distill import student_config

    return student_config(args.student, args.config, args.overrides)


# --------------------------------------------------------------------------- data


def cmd_data_list(args) -> None:
    from .data.sources import list_sources

    for line in list_sources():
        print(line)


def cmd_data_get(args) -> None:
    from .data.sources import get_source

    path = get_source(args.name, cache_dir=args.cache_dir)
    print(f"{args.name}: {path}")


def cmd_tokenizer_train(args) -> None:
    from .data.prepare import train_tokenizer_on_files

    cfg = _cfg(args)
    path = train_tokenizer_on_files(args.inputs, args.out, cfg.data)
    print(f"tokenizer written to {path}")


def cmd_prepare(args) -> None:
    from .data.prepare import prepare_corpus

    cfg = _cfg(args)
    report = prepare_corpus(args.inputs, args.out, cfg.data, tokenizer_path=args.tokenizer, finetune_cfg=cfg.finetune)
    print(report.summary())


# --------------------------------------------------------------------------- training


def cmd_pretrain(args) -> None:
    from .train import pretrain

    cfg = _cfg(args)  # with --init, pretrain takes the init's architecture (and says so)
    from .distributed import end_distributed

    try:
        run_dir = pretrain(cfg, corpus=args.corpus, out=args.out, resume=args.resume, init=args.init)
    except BaseException:
        end_distributed(wait=False)
        raise
    end_distributed()
    print(f"run directory: {run_dir}")


# --------------------------------------------------------------------------- downstream: finetune, evaluate, predict, export


def cmd_finetune(args) -> None:
    from pathlib import Path

    from .finetune import finetune
    from .runs import count_parameters, load_pretrained

    pre = load_pretrained(args.run)
    cfg = _run_cfg(args, pre)
    out = args.out or str(Path(args.run) / f"finetune-{Path(args.task).stem}{'-random' if args.random_init else ''}")
    log.info(f"model: {pre.config.model.backbone} {count_parameters(pre.backbone) / 1e6:.2f}M backbone parameters "
             f"({'random init' if args.random_init else args.run})")
    result = finetune(pre, args.task, cfg, out_dir=out, seeds=args.seeds, random_init=args.random_init,
                      resume=args.resume)
    print(f"{result.task}: test accuracy {result.accuracy} (median {result.accuracy.median:.4f}; 95% interval "
          f"{result.accuracy_ci} over {result.accuracy_ci.n} test examples), macro-F1 {result.macro_f1} "
          f"over seeds {[s.seed for s in result.seeds]}")
    print(f"model (seed {result.best_seed}) and reports written to {out}")


def cmd_distill(args) -> None:
    from .distill import distill, report_markdown

    cfg = _distill_cfg(args)
    result = distill(args.teacher, args.student, args.texts, args.out, cfg, seeds=args.seeds, task=args.task,
                     tokenizer=args.tokenizer, resume=args.resume)
    print(report_markdown(result))
    print(f"student (seed {result.best_seed}) and report.md / report.json written to {args.out}")


def cmd_curve(args) -> None:
    from .config import ConfigError
    from .curve import markdown_table, run_curve
    from .curve_rows import CurveExtras
    from .runs import load_pretrained

    pre = load_pretrained(args.run)
    cfg = _run_cfg(args, pre)
    ref_cfg = None
    if args.reference_lr is not None and not args.reference:
        raise ConfigError("--reference-lr is the --reference's fine-tuning rate; give --reference DIR with it")
    if args.reference:
        rate = [f"finetune.lr={args.reference_lr:g}"] if args.reference_lr is not None else []
        ref_cfg = load_config(args.config, [*_overrides(args), *rate], base=load_pretrained(args.reference).config,
                              base_sections=("finetune",))  # _run_cfg's settings, the rate last
    extras = CurveExtras(self_train=args.self_train, student=args.student, student_backbone=args.student_backbone,
                         unlabelled=tuple(args.unlabelled or ()), reference_dapt=args.reference_dapt,
                         dapt_lr=args.reference_dapt_lr)
    points = run_curve(pre, args.task, args.labels, args.seeds or cfg.finetune.seeds, args.out, cfg, reference=args.reference,
                       reference_cfg=ref_cfg, run_name=args.run, models=args.models, extras=extras, jobs=args.jobs)
    print(markdown_table(points))
    print(f"curve.csv, curve.md and curve.png written to {args.out}")


def _pipeline_cfg(args):
    """The pipeline's settings: --config, then --budget (train.budget), then --set and the column flags."""
    budget = [f"train.budget={args.budget}"] if args.budget else []
    return load_config(args.config, budget + _overrides(args))


def cmd_pipeline(args) -> None:
    from pathlib import Path

    from .pipeline import pipeline
    from .runs import load_pretrained

    cfg = _pipeline_cfg(args)
    ref_cfg = None
    if args.reference:
        ref_cfg = load_config(args.config, [*_overrides(args), f"finetune.lr={args.reference_lr:g}"],
                              base=load_pretrained(args.reference).config, base_sections=("finetune",))
    result = pipeline(args.corpus, args.task, args.out, cfg, reference=args.reference,
                      reference_cfg=ref_cfg, reference_dapt=args.reference_dapt,
                      student=None if args.student == "none" else args.student, student_backbone=args.student_backbone,
                      seeds=args.seeds, max_parameters=args.max_parameters, pool_texts=args.pool_texts)
    print((Path(args.out) / "pipeline.md").read_text(encoding="utf-8"))
    print(f"the chosen model ({result.chosen.model}, seed {result.chosen.seed}) is {result.model_dir}: "
          f"pretrainlab predict / evaluate / export take it")


def cmd_evaluate(args) -> None:
    from .evaluate import evaluate
    from .reports import metrics_markdown

    metrics = evaluate(args.model, args.task, out_dir=args.out, split=args.split, precision=args.precision,
                       columns=_columns(args))
    print(metrics_markdown(metrics))


def cmd_predict(args) -> None:
    from .errors import TaskError
    from .evaluate import predict, predict_file

    if args.file:
        if args.texts or not args.out:
            raise TaskError("predict --file IN needs --out OUT.csv and no texts on the command line")
        n = predict_file(args.model, args.file, args.out, args.text_column or "text", args.pair_column,
                         precision=args.precision)
        print(f"labelled {n} rows of {args.file} -> {args.out}")
        return
    if not args.texts:
        raise TaskError("give texts to label, or --file IN.csv|IN.jsonl --out OUT.csv")
    pairs = args.pair or None
    for text, (label, prob) in zip(args.texts, predict(args.model, args.texts, pairs, precision=args.precision)):
        print(f"{label}\t{prob:.4f}\t{text}")


def cmd_export(args) -> None:
    from .export import check_export, export, logits_fn

    out = export(args.run, args.out, overwrite=args.overwrite)
    print(f"exported {args.run} to {out}")
    if args.no_check:
        return
    check = check_export(out, logits_fn(args.run))
    what = {"masked_lm": "top token at [MASK]", "causal_lm": "greedy text", "seq2seq_lm": "greedy generation"}.get(
        check.kind, "label")
    print(f"transformers (offline) loads it: {what} {check.label!r}, {check.summary()}")
    if not check.ok:
        from .errors import ExportError

        raise ExportError(f"the export in {out} does not reproduce pretrainlab's logits ({check.summary()}); "
                          f"the folder is kept, marked with {out / 'EXPORT_CHECK_FAILED.txt'}")


def cmd_generate(args) -> None:
    from .generate import GenerateError, GenerationSettings, generate_run, read_prompts

    if bool(args.file) == bool(args.prompts):
        raise GenerateError("give prompts on the command line or --file PROMPTS.txt (one prompt a line), not both")
    prompts = read_prompts(args.file) if args.file else args.prompts
    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)
    for g in generate_run(args.run, prompts, settings):
        print(g.text)


# --------------------------------------------------------------------------- interpret


def cmd_explain(args) -> None:
    from .interpret import explain

    out = explain(
        args.model, args.text, args.text_pair or None, args.file, args.out,
        text_column=args.text_column or "text", label_column=args.label_column or "label",
        text_pair_column=args.pair_column,
        n_steps=args.steps, max_examples=args.max_examples, max_steps=args.max_steps,
    )
    print(f"report written to {out}")


def cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo(args.out, minutes=args.minutes, seeds=tuple(args.seeds), preset=args.preset, epochs=args.epochs,
             labels=tuple(args.labels), self_train=args.self_train, student=args.student, reference=args.reference,
             models=tuple(args.models) if args.models else None, jobs=args.jobs)


# --------------------------------------------------------------------------- import, intrinsic evaluation, benchmark grid


def cmd_import(args) -> None:
    from .export.hf_import import import_hf

    report = import_hf(args.source, args.out, overwrite=args.overwrite, seq_len=args.seq_len, quiet=True)
    print(report.summary())


def cmd_probe(args) -> None:
    from .intrinsic import probe

    result = probe(args.run, args.task, max_len=args.max_len, max_examples=args.max_examples, seed=args.seed,
                   columns=_columns(args))
    print(result.markdown())


def cmd_perplexity(args) -> None:
    from .intrinsic import perplexity, read_texts

    result = perplexity(args.run, read_texts(args.file, args.max_texts), max_len=args.max_len,
                        batch_size=args.batch_size)
    print(result.summary())


def cmd_benchmark(args) -> None:
    from .grid import run_grid

    result = run_grid(args.config, args.out)
    print(result.markdown)
    print(f"table, CSV and plots written to {result.out}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pretrainlab", description=__doc__)
    p.add_argument("--help-config", nargs="?", const="all", metavar="SECTION",
                   help="every setting (or one section's: model, data, objective, train, finetune, distill) with the "
                   "value a run uses when nothing is set, and its doc")
    p.add_argument("--version", action="version", version=f"pretrainlab {__version__}")
    sub = p.add_subparsers(dest="command")

    data = sub.add_parser("data", help="real corpora and tasks: list, get").add_subparsers(dest="data_command")
    d = data.add_parser("list", help="list the built-in corpora and tasks")
    d.set_defaults(func=cmd_data_list)
    d = data.add_parser("get", help="fetch, verify and convert a corpus or task (cached)")
    d.add_argument("name", help="a built-in source (pretrainlab data list), or hf:OWNER/NAME for a Hugging Face Hub "
                   "dataset (needs the datasets package; nothing else contacts a hub)")
    d.add_argument("--cache-dir", help="where to cache (default: the user cache dir, or $PRETRAINLAB_CACHE)")
    d.set_defaults(func=cmd_data_get)

    tok = sub.add_parser("tokenizer", help="train a tokenizer").add_subparsers(dest="tok_command")
    t = tok.add_parser("train", help="train a tokenizer (HF tokenizers) on text files")
    t.add_argument("inputs", nargs="+", help="files, directories or globs (.txt .jsonl .csv .tsv, optionally "
                   ".gz/.bz2/.xz), or a built-in corpus by name (sotu, kjv, gcide: fetched and cached as data get does)")
    t.add_argument("--out", required=True, help="directory (or .json path) for tokenizer.json")
    _config_args(t, *DATA_SETTINGS)
    t.set_defaults(func=cmd_tokenizer_train, settings=_cfg)

    t = sub.add_parser("prepare", help="normalise, split, deduplicate and tokenize a corpus into shards")
    t.add_argument("inputs", nargs="+", help="files, directories or globs (.txt: documents separated by blank "
                   "lines; .jsonl .csv .tsv: a text field; .parquet and Hugging Face save_to_disk folders), a built-in "
                   "corpus by name (sotu, kjv, gcide: fetched and cached as data get does), or task:NAME / "
                   "task:FILE.csv (a task's training texts, never its validation or test texts)")
    t.add_argument("--out", required=True, help="output directory for shards + manifest")
    t.add_argument("--tokenizer", help="tokenizer.json to use (default: train one on the corpus)")
    _config_args(t, *DATA_SETTINGS, *TASK_TEXT_SETTINGS, note=" (finetune.*: how a task:FILE input's columns and splits "
                 "are read; only its training split is used)")
    t.set_defaults(func=cmd_prepare, settings=_cfg)

    t = sub.add_parser("pretrain", help="pre-train a model on a prepared corpus")
    t.add_argument("--corpus", required=True, help="prepared corpus directory")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    t.add_argument("--init", help="start from this run directory or imported model (continued pre-training)")
    _config_args(t, "model", "objective", "train", "data.seq_len",
                 note=" (model.preset sets the sizes; a decoder's objective is clm, an encoder-decoder's infill + permute)")
    t.set_defaults(func=cmd_pretrain, settings=_pretrain_cfg)

    t = sub.add_parser("finetune", help="fine-tune a pre-training run on a labelled task (several seeds)")
    t.add_argument("run", help="pre-training run directory (or a fine-tuned model, e.g. a distilled student: its backbone)")
    t.add_argument("--task", required=True, help="built-in task (mr, tweets, wordnet-supersense, wordnet-pairs) "
                   "a .csv/.tsv/.jsonl/.parquet file (a split column, train/validation/test, fixes the splits) or a "
                   "Hugging Face save_to_disk folder")
    _column_args(t)
    t.add_argument("--out", help="directory for the model and reports (default: RUN/finetune-TASK)")
    t.add_argument("--seeds", type=int, nargs="+", help=SEEDS_HELP)
    t.add_argument("--random-init", action="store_true", help="same architecture, random weights (the baseline)")
    t.add_argument("--resume", action="store_true", help="continue the fine-tuning stopped in --out (finished seeds are "
                   "read back, the others continue from their checkpoints; the same settings only)")
    _config_args(t, "finetune", note=RUN_NOTE)
    t.set_defaults(func=cmd_finetune, settings=_on_run_cfg)

    t = sub.add_parser("distill", help="train a small, fast student on a fine-tuned teacher's soft labels over "
                       "unlabelled text (the teacher's logits are cached)")
    t.add_argument("teacher", help="fine-tuned classifier directory (from pretrainlab finetune; also of an imported model)")
    t.add_argument("--student", required=True, help="pre-training run directory (pretrained student; a fine-tuned model "
                   "gives its backbone), or preset:tiny / preset:mini (random init, a CNN: the measured best; another "
                   "backbone with --set model.backbone=rnn|transformer)")
    t.add_argument("--texts", nargs="+", required=True, help="unlabelled text: files, directories or globs, prepared "
                   "corpora, built-in corpora by name (sotu), or task:NAME (a task's training texts); cut into pieces "
                   "of the task's typical length")
    t.add_argument("--out", required=True, help="directory for the student (a fine-tuned model directory) and its report")
    t.add_argument("--seeds", type=int, nargs="+", help=SEEDS_HELP)
    t.add_argument("--task", help="the labelled task (default: the teacher's own, with its splits and columns)")
    t.add_argument("--tokenizer", help="tokenizer.json for a preset student (default: its own WordPiece of "
                   "distill.vocab_size tokens trained on the texts; distill.vocab_size=0: the teacher's)")
    t.add_argument("--resume", action="store_true", help="continue the distillation in --out (finished seeds are kept)")
    _config_args(t, "distill", "model.backbone", "model.preset", "finetune.seeds", "finetune.pooling",
                 note=" (model.*: for a preset: student only)")
    t.set_defaults(func=cmd_distill, settings=_distill_cfg)

    t = sub.add_parser("curve", help="learning curve: test accuracy vs number of labels, pretrained vs random init, "
                       "TF-IDF, majority (and a reference model)")
    t.add_argument("run", help="pre-training run directory (or a fine-tuned model, e.g. a distilled student: its backbone)")
    t.add_argument("--task", required=True, help="built-in task, a .csv/.tsv/.jsonl/.parquet file or a save_to_disk folder (as for finetune)")
    _column_args(t)
    t.add_argument("--labels", nargs="+", help="label counts: whole numbers and/or 'all' (default: 100 300 1000 "
                   "3000 ... while below the training split, then all)")
    t.add_argument("--seeds", type=int, nargs="+", help=SEEDS_HELP)
    t.add_argument("--out", required=True, help="directory for curve.csv, curve.md, curve.png (resumable)")
    t.add_argument("--reference", help="another run directory (e.g. from pretrainlab import) to fine-tune alike")
    t.add_argument("--reference-lr", type=float, help="the --reference's fine-tuning learning rate (default: "
                   f"finetune.lr, the run's; {REFERENCE_LR:g} suits an imported all-MiniLM-L6-v2)")
    t.add_argument("--models", nargs="+", metavar="MODEL",
                   help="only these of pretrained, random-init, tfidf, majority, reference, and the rows the options "
                   "below add (default: all; reference when --reference is given), e.g. "
                   "--models pretrained to add runs of other lengths to baselines computed once")
    t.add_argument("--self-train", action="store_true", help="add X+self-train for every fine-tuned X (pretrained, "
                   "reference, reference+dapt): X labels the pool (the training texts outside the N labels, labels "
                   "hidden, + --unlabelled), a student from X's pre-trained weights learns its soft labels and the N "
                   "(selftrain.*)")
    t.add_argument("--student", metavar="preset:NAME|RUN", help="add X->student, distilled from X's soft labels over "
                   "the same pool (distill.*), and with --self-train X+self-train->student, distilled from the "
                   "self-trained X: a small random-init student (e.g. preset:tiny, the run's tokenizer), or "
                   "one that starts from a pre-training run's backbone and tokenizer (e.g. the curve's RUN)")
    t.add_argument("--student-backbone", choices=STUDENT_BACKBONES,
                   help=f"a preset student's backbone (default: {DEFAULT_STUDENT_BACKBONE}, measured best on MR; "
                   "a run's is its own)")
    t.add_argument("--unlabelled", nargs="+", metavar="INPUT", help="more unlabelled text for the pool: files, "
                   "directories, prepared corpora, task:NAME (never one holding a test text)")
    t.add_argument("--reference-dapt", metavar="BUDGET", help="add reference+dapt: the --reference pre-trained further "
                   "on the run's corpus for BUDGET (e.g. 10m, 2000), then fine-tuned like the others")
    t.add_argument("--reference-dapt-lr", type=float, default=DAPT_LR,
                   help=f"peak learning rate of that continued pre-training (default: {DAPT_LR:g})")
    t.add_argument("--jobs", type=int, default=1, metavar="N", help="fine-tuning fits to run at once, each in its own "
                   "process with threads/N torch threads (default: 1; 2 on a 2-core CPU finishes sooner, as tiny models "
                   "use a second thread badly); the same curve, in the same order; 1 on a GPU")
    _config_args(t, "finetune", "selftrain", note=RUN_NOTE)
    t.set_defaults(func=cmd_curve, settings=_on_run_cfg)

    t = sub.add_parser("pipeline", help="your corpus + a few labels (+ a checkpoint) -> the best small model on "
                       "validation, and a curve of what each stage paid: prepare, pretrain, curve with self-training, "
                       "distilled students and the checkpoint, choose")
    t.add_argument("--corpus", nargs="+", required=True, metavar="INPUT", help="unlabelled text: files, directories, "
                   "globs or built-in names (pre-training and the self-training pool; never a test text)")
    t.add_argument("--task", required=True, help="your labelled examples: .csv/.tsv/.jsonl/.parquet (a split column, "
                   "or validation and test drawn by finetune.val_fraction / test_fraction)")
    _column_args(t)
    t.add_argument("--out", required=True, help="directory for corpus/, run/, curve/, model/ (the chosen one) and "
                   "pipeline.md (resumable: run the same command again)")
    t.add_argument("--budget", help="pre-training budget, e.g. 10m, 2000 steps, 3Mtok (default: train.budget; "
                   "--set train.budget wins)")
    t.add_argument("--reference", help="an imported checkpoint (pretrainlab import) to fine-tune, self-train and distil "
                   "alike")
    t.add_argument("--reference-dapt", metavar="BUDGET", help="also adapt the checkpoint to your corpus for BUDGET")
    t.add_argument("--reference-lr", type=float, default=REFERENCE_LR, help="the checkpoint's fine-tuning learning "
                   f"rate (default {REFERENCE_LR:g}, a trained model's; finetune.lr is your pre-trained model's)")
    t.add_argument("--student", default="preset:tiny", help="the distilled students: preset:NAME (their size), a "
                   "pre-training run directory (its backbone), or none (default: preset:tiny)")
    t.add_argument("--student-backbone", choices=STUDENT_BACKBONES,
                   help=f"a preset student's backbone (default: {DEFAULT_STUDENT_BACKBONE})")
    t.add_argument("--seeds", type=int, nargs="+", help=SEEDS_HELP)
    t.add_argument("--max-parameters", type=int, default=0, help="choose only among models of at most this many "
                   "parameters (default: any)")
    t.add_argument("--pool-texts", type=int, default=20_000, help="at most this many corpus pieces in the "
                   "self-training and distillation pool (default: 20000; distill.max_texts wins when set)")
    _config_args(t, "train.budget", "finetune", "selftrain", "distill")
    t.set_defaults(func=cmd_pipeline, settings=_pipeline_cfg)

    t = sub.add_parser("evaluate", help="score a fine-tuned model on a task: accuracy, macro-F1, confusion matrix")
    t.add_argument("model", help="fine-tuned model directory (from pretrainlab finetune)")
    t.add_argument("--task", help="task name or file (default: the task it was fine-tuned on)")
    _column_args(t, defaults=("the model's finetune.text_column", "the model's finetune.label_column"))
    t.add_argument("--split", default="test", choices=("train", "validation", "test"))
    t.add_argument("--out", help="report directory (default: MODEL/eval-TASK)")
    _precision_arg(t)
    t.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("predict", help="label texts with a fine-tuned model")
    t.add_argument("model", help="fine-tuned model directory")
    t.add_argument("texts", nargs="*", help="texts to label")
    t.add_argument("--pair", action="append", default=[], help="second text of a pair, one per text (repeatable)")
    t.add_argument("--file", help="label every row of a .csv (with a header) or .jsonl file instead; needs --out")
    _column_args(t, label=False, defaults=("text", ""))
    t.add_argument("--out", help="with --file: the CSV to write (text, label, one p_<label> column per class)")
    _precision_arg(t)
    t.set_defaults(func=cmd_predict)

    t = sub.add_parser("export", help="export to a Hugging Face folder and check it loads offline with equal logits")
    t.add_argument("run", help="fine-tuned model directory (-> *ForSequenceClassification) or pre-training run "
                   "(-> *ForMaskedLM; a decoder's -> LlamaForCausalLM / GPT2LMHeadModel; an encoder-decoder's -> "
                   "BartForConditionalGeneration)")
    t.add_argument("--out", "--to", action=_Renamed, required=True, help="target directory (--to: its old name)")
    t.add_argument("--overwrite", action="store_true", help="replace a non-empty target directory")
    t.add_argument("--no-check", action="store_true", help="skip loading the export back in transformers")
    t.set_defaults(func=cmd_export)

    t = sub.add_parser("generate", help="write text with a decoder run (continues each prompt) or an encoder-decoder "
                       "run (writes a text from each; KV cache; stops at the end of a text)")
    t.add_argument("run", help="pre-training run directory of a decoder or an encoder-decoder (model.backbone=decoder "
                   "| encoder-decoder)")
    t.add_argument("prompts", nargs="*", help="prompts to continue (decoder) or texts for the encoder ([MASK] marks a "
                   "gap to fill); one output line each")
    t.add_argument("--file", help="a text file of prompts, one a line (instead of prompts on the command line)")
    t.add_argument("--max-new-tokens", type=int, default=40, help="at most this many new tokens (default: 40)")
    t.add_argument("--temperature", type=float, default=1.0, help="0: greedy, deterministic; else sample from "
                   "softmax(logits / T) (default: 1.0)")
    t.add_argument("--top-k", type=int, help="sample from the K most likely tokens only")
    t.add_argument("--top-p", type=float, help="sample from the smallest set of tokens whose probability reaches P, in (0, 1]")
    t.add_argument("--seed", type=int, help="seed for sampling (each prompt is generated alone with it)")
    t.set_defaults(func=cmd_generate)

    t = sub.add_parser("explain", help="HTML report: attention, rollout, token attributions, layer probes")
    t.add_argument("model", help="fine-tuned model directory (or a pre-training run directory)")
    t.add_argument("--text", action="append", default=[], help="a text to explain (repeatable)")
    t.add_argument("--text-pair", action="append", default=[], help="second text of a pair, one per --text")
    t.add_argument("--file", "--task-file", action=_Renamed, help="labelled .csv/.tsv/.jsonl task file: layer probes and "
                   "the most influential tokens per class (--task-file: its old name)")
    _column_args(t, defaults=("text", "label"))
    t.add_argument("--steps", type=int, default=50, help="integrated-gradients steps to start from; doubled for a text "
                   "until its scores add up to the logit change within 5%% (the report flags any that do not)")
    t.add_argument("--max-steps", type=int, help="the most integrated-gradients steps for one text (default 800)")
    t.add_argument("--max-examples", type=int, default=200, help="task examples to attribute for the per-class summary")
    t.add_argument("--out", default="report.html", help="the HTML file to write")
    t.set_defaults(func=cmd_explain)

    t = sub.add_parser("demo", help="the whole path on real data: SOTU + MR text -> pre-train -> MR learning "
                       "curve -> HF export")
    t.add_argument("--out", default="runs/demo", help="where everything goes")
    t.add_argument("--minutes", type=float, default=5.0, help="pre-training budget in minutes")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning seeds")
    t.add_argument("--preset", default="auto", help="model size preset (auto: chosen from the budget and the corpus)")
    t.add_argument("--epochs", type=int, default=3, help="maximum fine-tuning epochs (early stopping may end "
                   "sooner; small label counts get finetune.min_steps)")
    t.add_argument("--labels", nargs="+", default=["300", "1000", "all"], help="label counts of the learning curve")
    t.add_argument("--self-train", action="store_true", help="also the curve's X+self-train rows (curve "
                   "--self-train)")
    t.add_argument("--student", metavar="preset:NAME|RUN", help="also the curve's X->student rows (curve --student)")
    t.add_argument("--reference", help="also a real checkpoint's rows: a run directory (pretrainlab import of "
                   f"all-MiniLM-L6-v2: make demo-checkpoint) fine-tuned on the same labels at lr {REFERENCE_LR:g}")
    t.add_argument("--models", nargs="+", metavar="MODEL", help="only these rows of the curve (curve --models)")
    t.add_argument("--jobs", type=int, metavar="N", help="the curve's fine-tuning fits at once (curve --jobs; default: "
                   "2 on a CPU with at least 2 usable cores, else 1)")
    t.set_defaults(func=cmd_demo)

    t = sub.add_parser("import", help="a local Hugging Face BERT / ModernBERT / Llama / GPT-2 folder -> a pretrainlab "
                       "run directory")
    t.add_argument("source", help="Hugging Face model folder (config.json + model.safetensors + tokenizer); no hub names")
    t.add_argument("--out", required=True, help="run directory to write")
    t.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    t.add_argument("--seq-len", type=int, default=128, help="data.seq_len recorded for continued pre-training")
    t.set_defaults(func=cmd_import)

    t = sub.add_parser("probe", help="linear probe per layer (frozen backbone, mean-pooled) on a labelled task")
    t.add_argument("run", help="pre-training run directory (own or imported)")
    t.add_argument("--task", required=True, help="built-in task, .csv/.tsv/.jsonl/.parquet file or save_to_disk folder")
    _column_args(t, defaults=("text", "label"))
    t.add_argument("--max-len", type=int, default=64, help="truncate inputs to this many tokens")
    t.add_argument("--max-examples", type=int, default=4000, help="at most this many train (and test) examples")
    t.add_argument("--seed", type=int, default=0, help="task split and subsampling seed")
    t.set_defaults(func=cmd_probe)

    t = sub.add_parser("perplexity", help="perplexity on held-out text: true (next-token) for a decoder or an rnn "
                       "trained with clm, MLM pseudo-perplexity (each token masked in turn) for an encoder")
    t.add_argument("run", help="pre-training run directory (a decoder, an rnn with clm, or a model with an MLM head)")
    t.add_argument("--file", "--text-file", action=_Renamed, required=True, help="text file, one text per line "
                   "(--text-file: its old name)")
    t.add_argument("--max-texts", type=int, default=0, help="use at most this many lines (0: all)")
    t.add_argument("--max-len", type=int, help="pseudo-perplexity: truncate each text to this many tokens (default "
                   "128); true perplexity: cut texts into pieces of this many (default: the run's data.seq_len)")
    t.add_argument("--batch-size", type=int, default=64, help="rows (masked copies, or pieces) per forward pass")
    t.set_defaults(func=cmd_perplexity)

    t = sub.add_parser("benchmark", help="run a grid (backbones x objectives x budgets x seeds) end to end: table + plots")
    t.add_argument("--config", required=True, help="grid YAML (see benchmarks/grid.yaml)")
    t.add_argument("--out", help="output directory (default: the grid's `out`); finished cells are not run again")
    t.set_defaults(func=cmd_benchmark)
    _verbosity_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if "--print-config" in argv:  # the settings need no --out, --corpus, --task (nor --texts)
        _outputs_not_required(parser)
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    with messages_shown(level):
        log.debug(f"pretrainlab {__version__}, Python {sys.version.split()[0]}: pretrainlab {shlex.join(argv)}")
        for notice in getattr(args, "notices", []):
            log.warning(notice)
        return _run(args, parser)


def _run(args, parser: argparse.ArgumentParser) -> int:
    if args.help_config:
        if args.help_config != "all" and args.help_config not in SECTIONS:
            print(f"error: --help-config {args.help_config}: no such section; choose among {', '.join(SECTIONS)} "
                  "(or give none for all)", file=sys.stderr)
            return 2
        print(describe(tuple(SECTIONS) if args.help_config == "all" else (args.help_config,)))
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _sigterm_as_interrupt():
            if getattr(args, "print_config", False):
                print(config_yaml(args.settings(args)), end="")
                return 0
            args.func(args)
    except Interrupted as e:  # stopped on purpose; the message says whether and where a checkpoint was saved
        print(e, file=sys.stderr)
        return 128 + e.signum  # 130 for Ctrl-C, 143 for SIGTERM, as a shell reports them
    except PretrainlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        terminated = isinstance(e, _Terminated)
        print("interrupted (SIGTERM)" if terminated else "interrupted", file=sys.stderr)
        return 143 if terminated else 130
    except OSError as e:  # the file system said no outside our own checks: say what, where and what to do
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 2
    return 0


def _outputs_not_required(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _outputs_not_required(sub)
        elif action.dest in ("out", "corpus", "task", "texts"):
            action.required = False


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised wherever the program is when it arrives."""


def _terminate(signum, frame) -> None:
    raise _Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (what `kill` and job schedulers send) unwinds like Ctrl-C: half-written files are removed and
    training saves a checkpoint (loop.fit takes both signals itself while it runs)."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread, where Python takes signals: nothing to do
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def os_error_message(e: OSError) -> str:
    where = f" ({e.filename})" if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device{where}. Finished files are intact (shards and checkpoints are "
                "written atomically); free some space, then run the same command again (pretrain: with --resume)")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"not allowed to write or read{where}: {e.strerror}; choose a directory you can write to (--out)"
    return f"{e.strerror or e}{where}"


if __name__ == "__main__":
    raise SystemExit(main())
