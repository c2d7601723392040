"""The rows of a learning curve: how each model is trained on one label count's subsample and scored.

    rows = CurveRows(pre, ref, dapt, task, cfg, ref_cfg, out, extras, inputs)
    row = rows.score(n, seed, sub, picked, "pretrained+self-train")   # -> Row: test scores and details

The rows (curve.py's module doc has the plain ones):

    pretrained, reference, reference+dapt      fine-tuned on the N labels (finetune_seed): the teachers
    X+self-train, X->student                   taught by teacher X of the same N and seed (semisup.py)
    X+self-train->student                      taught by X+self-train of the same N and seed
    random-init, tfidf, majority               the baselines

A row checkpoints into OUT/work/N-MODEL-seedS while it trains (a killed curve continues it) and, while rows
that it teaches (teacher_of) are still to come, keeps its classifier in OUT/teachers/N-MODEL-seedS (labelled
as a distillation teacher is: its logits cached in distill.cache, default OUT/teacher-logits). A teacher that
was not kept (its row was scored before the rows it teaches were asked for) is trained again, and so is its own.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from .baselines import majority_baseline, tfidf_scores
from .config import DAPT_LR, RunConfig
from .data.encoding import encode
from .data.tasks import Task
from .distill import DistillSetup, TextPool, save_student, student_classifier, student_from_run
from .distill.report import texts_per_second
from .finetune import classifier_with, finetune, finetune_seed, prepare_finetune, save_finetuned
from .metrics import Interval
from .runs import Pretrained, count_parameters, is_classifier_dir, load_classifier
from .seeds import SeedRun
from .semisup import curve_pool, curve_student, distil_student, self_train

log = logging.getLogger(__name__)

TEACHERS = ("pretrained", "reference", "reference+dapt")
"""The fine-tuned rows that teach self-trained and distilled rows."""
SELF_TRAINED, DISTILLED = "+self-train", "->student"
ALL_MODELS = ("pretrained", "pretrained+self-train", "pretrained->student", "pretrained+self-train->student",
              "random-init", "tfidf", "majority",
              "reference", "reference+self-train", "reference->student", "reference+self-train->student",
              "reference+dapt", "reference+dapt+self-train", "reference+dapt->student",
              "reference+dapt+self-train->student")
"""Every row a curve can have, in the order of its tables (a teacher before the rows it teaches)."""


def teacher_of(model: str) -> str | None:
    """The row that teaches this one: X for X+self-train and X->student, X+self-train for X+self-train->student
    (None: it learns from the labels alone)."""
    for suffix in (SELF_TRAINED, DISTILLED):
        if model.endswith(suffix):
            return model[:-len(suffix)]
    return None


BASE_OF = {"pretrained": "random-init", "reference+dapt": "reference",
           **{m: teacher_of(m) for m in ALL_MODELS if teacher_of(m) is not None}}
"""What each row adds to: the stage that pays is the difference (pre-training, adaptation, self-training, a student
against its teacher)."""


@dataclass(frozen=True)
class CurveExtras:
    """The rows beyond fine-tuning each model on the N labels (the CLI's flags; plain values)."""

    self_train: bool = False
    """X+self-train for every fine-tuned teacher X."""
    student: str | None = None
    """preset:NAME (a random-init student) or a pre-training run directory (its backbone): the X->student rows."""
    student_backbone: str | None = None
    """A preset student's backbone (None: semisup.student_source's default); a run's is its own."""
    unlabelled: tuple[str, ...] = ()
    """Inputs whose texts join each pool (files, directories, prepared corpora, task:NAME)."""
    reference_dapt: str | None = None
    """A budget: the reference+dapt row (the reference pre-trained further on the run's corpus for it)."""
    dapt_lr: float = DAPT_LR
    keep_models: bool = False
    """Save every model row's classifier in OUT/models/MODEL/seed-S (what `pipeline` chooses from)."""

    @property
    def semi(self) -> bool:
        return self.self_train or self.student is not None


def available_models(reference: bool, extras: CurveExtras) -> list[str]:
    """The rows this curve can have, in table order."""
    teachers = ["pretrained", *(["reference"] if reference else []),
                *(["reference+dapt"] if extras.reference_dapt else [])]
    out: list[str] = []
    for m in ALL_MODELS:  # a teacher comes before the rows it teaches: a taught row needs its teacher available
        base = teacher_of(m)
        if m in teachers or m in ("random-init", "tfidf", "majority"):
            out.append(m)
        elif base in out and ((m.endswith(SELF_TRAINED) and extras.self_train) or
                              (m.endswith(DISTILLED) and extras.student is not None)):
            out.append(m)
    return out


def missing_flags(model: str, extras: CurveExtras) -> list[str]:
    """The self-training and student flags a taught row needs and the curve lacks (for messages)."""
    flags = []
    if SELF_TRAINED in model and not extras.self_train:
        flags.append("--self-train")
    if model.endswith(DISTILLED) and extras.student is None:
        flags.append("--student preset:NAME (or a run directory)")
    return flags


def reference_settings(ref_cfg: RunConfig | None, ref: Pretrained | None) -> RunConfig | None:
    """The settings the reference's rows train with: the curve's reference settings (the CLI's: the reference run's
    finetune section, then --config and --set), else (a library call without them) the reference run's own config;
    None without either. The reference+dapt rows self-train with these too (their run's config.yaml is the
    reference's with another budget and rate: adapt_reference pre-trains with these, train.head_warmup included)."""
    return ref_cfg or (ref.config if ref is not None else None)


@dataclass
class Row:
    """One model's scores on one subsample, and what the details file keeps of it."""

    accuracy: float
    macro_f1: float
    ci: Interval
    """The accuracy's 95% bootstrap interval over the test examples."""
    details: dict[str, Any]


class CurveRows:
    """Trains and scores the rows of one curve (`score`); holds what they share."""

    def __init__(self, pre: Pretrained, ref: Pretrained | None, dapt: Pretrained | None, task: Task, cfg: RunConfig,
                 ref_cfg: RunConfig | None, out: Path, extras: CurveExtras, inputs: TextPool | None,
                 piece_words: int, save_model: tuple[Path, int, int] | None = None):
        self.pre, self.ref, self.dapt, self.task, self.cfg, self.ref_cfg = pre, ref, dapt, task, cfg, ref_cfg
        self.out, self.extras, self.inputs, self.piece_words = out, extras, inputs, piece_words
        self.save_model = save_model
        """(directory, label count, seed) of the pretrained row saved with its reports (the demo's model)."""
        self.timed = task.test.texts[:cfg.distill.throughput_texts]
        self.warned: set[tuple] = set()
        """The distill settings whose unreachable distill.patience this curve has warned about: once a curve."""

    def source(self, model: str) -> tuple[Pretrained, RunConfig]:
        """The run a fine-tuned row starts from, and its settings; distill.* is always the curve's (the pool's
        copies and the teacher-logits cache, as its settings record them), whatever the reference's config says, and
        selftrain.* the reference's (`reference_settings`, as the curve's settings record it) for both its rows."""
        if model in ("pretrained", "random-init"):
            return self.pre, self.cfg
        run = self.ref if model == "reference" else self.dapt
        assert run is not None
        reference = reference_settings(self.ref_cfg, self.ref)
        assert reference is not None
        return run, replace(self.ref_cfg or run.config, distill=self.cfg.distill, selftrain=reference.selftrain)

    def work(self, n: int, model: str, seed: int) -> Path:
        return self.out / "work" / f"{n}-{model.replace('>', '')}-seed{seed}"

    def teacher_dir(self, n: int, model: str, seed: int) -> Path:
        return self.out / "teachers" / f"{n}-{model}-seed{seed}"

    def score(self, n: int, seed: int, sub: Task, picked: list[int], model: str, teaches: bool) -> Row:
        """Train (or continue) and score one row; teaches: keep its classifier as a teacher (teacher_dir)."""
        if model == "majority":
            m = majority_baseline(sub)
            return Row(m.accuracy, m.macro_f1, m.accuracy_ci, {})
        if model == "tfidf":
            m, val = tfidf_scores(sub, seed=seed)
            return Row(m.accuracy, m.macro_f1, m.accuracy_ci, {"val_accuracy": val})
        if teacher_of(model) is None:
            row = self.finetuned(n, seed, sub, model, teaches)
        else:
            row = self.taught(n, seed, sub, picked, model, teaches)
        shutil.rmtree(self.work(n, model, seed), ignore_errors=True)
        return row

    # ----------------------------------------------------------------------- fine-tuned rows

    def finetuned(self, n: int, seed: int, sub: Task, model: str, teaches: bool) -> Row:
        pre, cfg = self.source(model)
        if self.save_model is not None and model == "pretrained" and self.save_model[1:] == (n, seed):
            return self._saved(n, seed, sub, model, teaches)
        setup = prepare_finetune(pre, sub, cfg, None)
        setup.quiet = True
        run = finetune_seed(setup, seed, model == "random-init", self.work(n, model, seed))
        weights = run.best_weights()
        meta = {"curve": {"labels": n, "model": model, "seed": seed}}
        init = "random" if model == "random-init" else "pretrained"
        if teaches:
            save_finetuned(self.teacher_dir(n, model, seed), setup, weights, init, seed, (seed,), meta)
        if self.extras.keep_models:
            save_finetuned(self.out / "models" / model / f"seed-{seed}", setup, weights, init, seed, (seed,), meta)
        classifier = classifier_with(setup, weights)
        return Row(run.result.accuracy, run.result.macro_f1, run.result.accuracy_ci,
                   self._details(run, classifier, pre.tokenizer, pre.special.pad, setup.max_len, setup.segments))

    def _saved(self, n: int, seed: int, sub: Task, model: str, teaches: bool) -> Row:
        """The pretrained row whose classifier is saved with its reports (finetune with out_dir)."""
        out = self.save_model[0]
        r = finetune(self.pre, sub, self.cfg, out, seeds=[seed], quiet=True)
        for dest, wanted in ((self.teacher_dir(n, model, seed), teaches),
                             (self.out / "models" / model / f"seed-{seed}", self.extras.keep_models)):
            if wanted:
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(out, dest)
        ftm = load_classifier(out)
        s = r.seeds[0]
        details = {"val_accuracy": s.val_accuracy, "val_loss": s.val_loss, "steps": s.steps, "best_step": s.best_step,
                   "seconds": s.seconds, **self._speed(ftm.model, ftm.tokenizer, ftm.special.pad, ftm.meta["max_len"],
                                                       ftm.meta["segments"])}
        return Row(s.accuracy, s.macro_f1, s.accuracy_ci, details)

    # ----------------------------------------------------------------------- taught rows

    def teacher(self, n: int, seed: int, sub: Task, picked: list[int], model: str) -> Path:
        """The classifier directory of the row that teaches `model` (teacher_of), trained again when it was not
        kept (its row was scored before, without rows to teach then): with its own teacher, if it has one."""
        base = teacher_of(model)
        assert base is not None
        teacher = self.teacher_dir(n, base, seed)
        if not is_classifier_dir(teacher):
            log.info(f"curve: {n} labels, seed {seed}: training {base} again as the teacher of {model}")
            self.score(n, seed, sub, picked, base, teaches=True)
        return teacher

    def taught(self, n: int, seed: int, sub: Task, picked: list[int], model: str, teaches: bool) -> Row:
        """X+self-train, X->student or X+self-train->student: its teacher of this N and seed labels the pool."""
        base = teacher_of(model)
        teacher = self.teacher(n, seed, sub, picked, model)
        pool = curve_pool(self.task.train.texts, picked, self.inputs, self.piece_words,
                          self.cfg.distill.max_texts)
        work = self.work(n, model, seed)
        if model.endswith(SELF_TRAINED):
            run, setup = self_train(teacher, student_from_run(self.source(base)[0]), sub, pool, self.source(base)[1],
                                    work, seed)
        else:  # a preset reads with the run's tokenizer, as the fine-tuned rows do (which only warn about [UNK])
            cfg = replace(self.cfg, distill=replace(self.cfg.distill, max_unk=1.0))
            student = curve_student(self.extras.student, self.extras.student_backbone, cfg,
                                    Path(str(self.pre.run_dir)) / "tokenizer.json")
            run, setup = distil_student(teacher, student, sub, pool, cfg, work, seed, warned=self.warned)
        meta = {"curve": {"labels": n, "model": model, "seed": seed}}
        for dest, wanted in ((self.teacher_dir(n, model, seed), teaches),
                             (self.out / "models" / model / f"seed-{seed}", self.extras.keep_models)):
            if wanted:  # a fine-tuned classifier directory, as a teacher is (distill.load_teacher reads it)
                save_student(setup, run, (seed,), dest, meta)
        classifier = student_classifier(setup.student, len(setup.teacher.label_names), setup.cfg.finetune.pooling, None)
        classifier.load_state_dict(run.best_weights())
        details = self._details(run, classifier, setup.student.tokenizer, setup.student.special.pad, setup.max_len,
                                setup.segments)
        details.update(self._teaching(setup, pool))
        return Row(run.result.accuracy, run.result.macro_f1, run.result.accuracy_ci, details)

    def _teaching(self, setup: DistillSetup, pool: TextPool) -> dict[str, Any]:
        """Who taught the row, what the student started from, and on how many texts (the pool's, then distill.augment's
        copies of them; how many of those the student learnt, distill.confident_share's; the teacher's logits:
        computed now or read from the cache)."""
        labelled = len(setup.task.train)
        return {"teacher": str(setup.teacher.path), "teacher_hash": setup.settings["teacher_hash"],
                "student": setup.student.source, "pool": len(pool.texts), "augmented": setup.texts.augmented,
                "labelled": labelled, "learnt": len(setup.train) - labelled, "teacher_logits": setup.labels.computed,
                "teacher_logits_reused": setup.labels.reused, "teacher_seconds": setup.labels.seconds}

    # ----------------------------------------------------------------------- details

    def _details(self, run: SeedRun, classifier: nn.Module, tokenizer, pad_id: int, max_len: int,
                 segments: bool) -> dict[str, Any]:
        r = run.result
        return {"val_accuracy": r.val_accuracy, "val_loss": r.val_loss, "steps": r.steps, "best_step": r.best_step,
                "seconds": r.seconds, **self._speed(classifier, tokenizer, pad_id, max_len, segments)}

    def _speed(self, classifier: nn.Module, tokenizer, pad_id: int, max_len: int, segments: bool) -> dict[str, Any]:
        """Parameters and CPU fp32 texts/s at batch 32 on the first test texts (as distill's report times them)."""
        enc = encode(tokenizer, self.timed, None, max_len)
        classifier = classifier.cpu()
        return {"parameters": count_parameters(classifier),
                "texts_per_s": round(texts_per_second(classifier, enc, pad_id, segments, 32), 1)}
