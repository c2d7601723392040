"""From a user's own data to the best small model, in one command: `pretrainlab pipeline`.

    result = pipeline(["notes/"], "my.csv", "out/", cfg, budget="10m", reference="runs/minilm")
    result.chosen.model, result.model_dir        # the row chosen on validation, its fine-tuned model directory

1. prepare   the corpus and the task's training texts (task-adaptive; never a validation or test text) -> OUT/corpus
2. pretrain  the package's recipe for the budget -> OUT/run
3. curve     every labelled training example (a fifth of them for validation): pretrained, random init, TF-IDF,
             majority; X+self-train, X->student and X+self-train->student (a student of the self-trained X) for
             each fine-tuned X over the pool (the corpus cut into pieces of the task's length, plus any training
             text outside the labels); the reference and reference+dapt when a checkpoint is given -> OUT/curve
             (curve.csv, curve.md, curve.png, each row's model)
4. choose    the row with the best validation accuracy, mean over seeds (ties: fewer parameters), among the models
             of at most max_parameters; its seed best on validation -> OUT/model, a fine-tuned model directory that
             predict, evaluate and export take. Nothing but validation decides; the test split only reports.
             OUT/pipeline.md (and .json) says which stage paid: pre-training, self-training, the checkpoint, its
             adaptation, distillation.

Every step resumes: run the same command again after a stop.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig
from .curve import DETAILS_FILE, CurvePoint, read_details, run_curve, stages_table
from .curve_rows import CurveExtras

log = logging.getLogger(__name__)

BASELINES = ("tfidf", "majority")
"""Rows that are no model directory: they are reported, never chosen."""
POOL_TEXTS = 20_000
"""At most this many corpus pieces join the pool (a fixed sample by text hash): the teacher labels each once."""
STAGES = (("pre-training", "pretrained", "random-init"), ("self-training", "pretrained+self-train", "pretrained"),
          ("the checkpoint", "reference", "pretrained"), ("its adaptation", "reference+dapt", "reference"),
          ("self-training the checkpoint", "reference+self-train", "reference"),
          ("distillation", "pretrained->student", "pretrained"),
          ("distilling the self-trained model", "pretrained+self-train->student", "pretrained+self-train"),
          ("distilling the checkpoint", "reference->student", "reference"),
          ("distilling the self-trained checkpoint", "reference+self-train->student", "reference+self-train"))
"""(stage, the row with it, the row without it): what each stage adds."""


@dataclass
class Choice:
    """The row chosen on validation and the seed of it that is saved."""

    model: str
    seed: int
    val_accuracy: float
    """The row's mean validation accuracy over seeds (what chose it)."""
    test_accuracy: float
    """The row's mean test accuracy over seeds (reported, never used to choose)."""
    parameters: int
    texts_per_s: float


@dataclass
class PipelineResult:
    chosen: Choice
    model_dir: str
    curve_dir: str
    run_dir: str
    stages: list[dict[str, Any]]
    """Each stage's gain: the row with it against the row without it, on validation and on test (means)."""
    tfidf_val_accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pipeline(corpus: Sequence[str], task: str, out: str | Path, cfg: RunConfig, *, budget: str | None = None,
             reference: str | Path | None = None, reference_cfg: RunConfig | None = None,
             reference_dapt: str | None = None, student: str | None = "preset:tiny",
             student_backbone: str | None = None, seeds: Sequence[int] | None = None,
             max_parameters: int = 0, pool_texts: int = POOL_TEXTS) -> PipelineResult:
    """Prepare, pre-train, draw the curve with every stage, choose on validation, save the chosen model.

    cfg: the settings of every step (data, model, objective, train for pre-training; finetune, selftrain, distill
    for the curve); budget: train.budget of the pre-training (default cfg's). student: preset:NAME or a run
    directory (curve --student), None for no distilled rows; student_backbone: a preset's (None: the default).
    max_parameters: only models of at most this many parameters may be chosen (0: any).
    """
    from .data.prepare import prepare_corpus
    from .train import pretrain

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory for the corpus, the run, the curve and the model")
    if not corpus:
        raise ConfigError("--corpus: give the unlabelled text to pre-train on (files, directories, built-in names)")
    cfg = replace(cfg, train=replace(cfg.train, budget=budget or cfg.train.budget),
                  distill=replace(cfg.distill, max_texts=cfg.distill.max_texts or pool_texts))
    seeds = tuple(seeds if seeds is not None else cfg.finetune.seeds)
    extras = CurveExtras(self_train=True, student=student, student_backbone=student_backbone,
                         unlabelled=tuple(map(str, corpus)), reference_dapt=reference_dapt, keep_models=True)
    _check_first(corpus, task, cfg, extras)
    _say(f"1/4 prepare {' '.join(map(str, corpus))} + task:{task} -> {out / 'corpus'}")
    log.info(prepare_corpus([*map(str, corpus), f"task:{task}"], out / "corpus", cfg.data,
                            finetune_cfg=cfg.finetune).summary())
    run = out / "run"
    if not (run / "summary.json").is_file():
        _say(f"2/4 pretrain for {cfg.train.budget} -> {run}")
        pretrain(cfg, out / "corpus", run, resume=run.is_dir())
    _say(f"3/4 learning curve with every stage -> {out / 'curve'}")
    points = run_curve(run, task, ["all"], seeds, out / "curve", cfg, reference=reference, reference_cfg=reference_cfg,
                       extras=extras)
    details = read_details(out / "curve" / DETAILS_FILE)
    chosen = choose(points, details, max_parameters)
    _say(f"4/4 chosen on validation: {chosen.model} (seed {chosen.seed}) -> {out / 'model'}")
    model_dir = out / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.copytree(out / "curve" / "models" / chosen.model / f"seed-{chosen.seed}", model_dir)
    tfidf = _mean([d["val_accuracy"] for (_, m, _), d in details.items() if m == "tfidf" and "val_accuracy" in d])
    result = PipelineResult(chosen, str(model_dir), str(out / "curve"), str(run), stage_gains(points, details), tfidf)
    (out / "pipeline.json").write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
    (out / "pipeline.md").write_text(report_markdown(result, points, details), encoding="utf-8")
    return result


def _check_first(corpus: Sequence[str], task: str, cfg: RunConfig, extras: CurveExtras) -> None:
    """Before any work: the task reads, the student can be built, and the corpus holds none of the task's test
    texts (pre-training on them would leak the test into every model) and some text beyond the task's own."""
    from .data.tasks import as_task
    from .semisup import check_student, unlabelled_inputs

    t = as_task(task, cfg.finetune)
    if t.has_pairs:
        raise ConfigError(f"pipeline: task {t.name} has text pairs; its self-training and students label single texts")
    if extras.student is not None:
        check_student(extras.student, extras.student_backbone)
    unlabelled_inputs(extras.unlabelled, t, cfg.finetune, cfg.data, 1)


def _say(text: str) -> None:
    log.info(f"pipeline: {text}")


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def choose(points: Sequence[CurvePoint], details: dict[tuple[int, str, int], dict[str, Any]],
           max_parameters: int = 0) -> Choice:
    """The model row with the best mean validation accuracy (ties: fewer parameters) among those of at most
    max_parameters (0: any), and its seed with the best validation accuracy, then loss. Test scores are not read."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for (_, model, _), d in details.items():
        if model not in BASELINES and "val_accuracy" in d and "parameters" in d:
            rows.setdefault(model, []).append(d)
    fits = {m: ds for m, ds in rows.items() if not max_parameters or ds[0]["parameters"] <= max_parameters}
    if not fits:
        sizes = ", ".join(f"{m} {ds[0]['parameters']:,}" for m, ds in rows.items())
        raise ConfigError(f"--max-parameters {max_parameters:,}: no model is that small ({sizes}); raise it")
    model = max(fits, key=lambda m: (statistics.fmean(d["val_accuracy"] for d in fits[m]), -fits[m][0]["parameters"]))
    best = max(fits[model], key=lambda d: (d["val_accuracy"], -d.get("val_loss", 0.0)))
    test = statistics.fmean(p.accuracy for p in points if p.model == model)
    return Choice(model, best["seed"], statistics.fmean(d["val_accuracy"] for d in fits[model]), test,
                  best["parameters"], best["texts_per_s"])


def stage_gains(points: Sequence[CurvePoint], details: dict[tuple[int, str, int], dict[str, Any]]) -> list[dict]:
    """Each stage of STAGES that the curve has: the row with it minus the row without it (mean over seeds)."""
    val: dict[str, list[float]] = {}
    for (_, model, _), d in details.items():
        if "val_accuracy" in d:
            val.setdefault(model, []).append(d["val_accuracy"])
    test: dict[str, list[float]] = {}
    for p in points:
        test.setdefault(p.model, []).append(p.accuracy)
    out = []
    for stage, with_it, without in STAGES:
        if with_it in test and without in test:
            v = None
            if with_it in val and without in val:
                v = statistics.fmean(val[with_it]) - statistics.fmean(val[without])
            out.append({"stage": stage, "row": with_it, "against": without, "validation": v,
                        "test": statistics.fmean(test[with_it]) - statistics.fmean(test[without])})
    return out


def report_markdown(r: PipelineResult, points: Sequence[CurvePoint],
                    details: dict[tuple[int, str, int], dict[str, Any]]) -> str:
    c = r.chosen
    stages = "\n".join(f"| {s['stage']} | {s['row']} | {s['against']} | "
                       f"{'-' if s['validation'] is None else format(s['validation'], '+.4f')} | {s['test']:+.4f} |"
                       for s in r.stages)
    tfidf = ""
    if r.tfidf_val_accuracy is not None:
        tfidf = f" TF-IDF + LR reached {r.tfidf_val_accuracy:.4f} on the same validation examples"
        tfidf += " (above the chosen model: with these labels it is the better choice)." \
            if r.tfidf_val_accuracy > c.val_accuracy else "."
    head = "| stage | row | against | validation | test |\n|---|---|---|---:|---:|"
    return (f"# Pipeline\n\nChosen on validation: **{c.model}** (seed {c.seed}): validation accuracy "
            f"{c.val_accuracy:.4f} (mean over seeds), test accuracy {c.test_accuracy:.4f}, {c.parameters / 1e6:.2f}M "
            f"parameters, {c.texts_per_s:,.0f} texts/s on the CPU (fp32, batch 32).{tfidf}\nThe model: "
            f"`{r.model_dir}` (predict, evaluate and export take it); the curve: `{r.curve_dir}`; the pre-training "
            f"run: `{r.run_dir}`.\n\n## Which stage paid\n\n{head}\n{stages}\n\n"
            f"## Every row\n\n{stages_table(points, details)}")
