"""The fine-tuning recipe: a pre-training run's backbone + a classification head, trained on a task.

    result = finetune("runs/mini", "mr", cfg, out_dir="runs/mini/finetune-mr", seeds=(0, 1, 2))
    result.accuracy.mean, result.macro_f1.std       # over seeds; the best-validation seed's model is saved

Per seed (`finetune_seed`): a fresh copy of the run's backbone + a head (models.build_classifier),
trained by the one loop `loop.fit` for a budget (`finetune_budget`: finetune.budget in steps, time or
tokens; by default finetune.epochs epochs with a floor of finetune.min_steps for small tasks and a
finetune.max_minutes cap for large ones, the LR schedule ending with whichever comes first), validated
finetune.evals times (`validation_interval`), and, with finetune.patience, stopped early after that many
validations without a better accuracy; the best-validation weights are restored before the test split
is scored (`seeds.train_seed`, which distillation shares). With an output directory every seed
checkpoints there and a killed fine-tuning continues (`resume=True`, `pretrainlab finetune --resume`).
`random_init=True` trains the same architecture from scratch (what pre-training buys is the difference).

Why the whole budget by default: the schedule decays the LR to 0 at the budget's end, and early
stopping cut it while the LR was still high, the more so the more labels (at 300 labels the 200-step
floor left patience nothing to cut; at 1,000 it could stop from step 250 of 500 on, at about half the
peak LR), so a curve compared annealed models at few labels with unannealed ones at more
(docs/finetuning.md).

Inputs are the run's tokenizer output (data/encoding.py): `[CLS] A [SEP]`, or `[CLS] A [SEP] B [SEP]`
for pairs with segment ids 0 then 1, cut to finetune.max_len tokens. The modern style gets no
segment ids (as ModernBERT has none) and a LayerNorm after the pooler (as ModernBERT's head has), so
that both styles export to Hugging Face with equal logits. A decoder gets no segment ids either and
classifies from its last real token, the [SEP] that ends the input (models.LastTokenClassifier, as
LlamaForSequenceClassification and GPT2ForSequenceClassification do). The encoder-decoder classifies
from its decoder's state at the last [SEP], as BartForSequenceClassification does
(models.Seq2SeqClassifier: finetune.pooling does not apply), with no segment ids.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .backbones.spec import BACKBONES
from .config import Budget, ConfigError, FinetuneConfig, RunConfig
from .data.encoding import Encoded, encode_split
from .data.tasks import BUILTIN_TASKS, Task, as_task
from .errors import TaskError
from .loop import pick_device, pick_dtype
from .metrics import FinetuneResult, Summary, bootstrap_interval, score, small_test_warning
from .models import build_classifier, head_kind
from .reports import write_reports
from .runs import Pretrained, load_pretrained, save_classifier
from .seeds import EpochBatches, ReplayedShuffles, SeedRun, SeedScoring, SeedSettings, best_seed, train_seed

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- the recipe


@dataclass
class FinetuneSetup:
    """What every seed of one fine-tuning shares: the run, the task encoded, the head, the step counts."""

    pre: Pretrained
    task: Task
    cfg: RunConfig
    head: str
    """bert, modern, decoder or bart (models.head_kind)."""
    segments: bool
    max_len: int
    device: torch.device
    dtype: torch.dtype | None
    enc: dict[str, Encoded]
    """train, validation and test, encoded."""
    steps_per_epoch: int
    budget: Budget
    """Of each seed (finetune_budget)."""
    eval_every: int

    quiet: bool = False


def finetune_budget(ft: FinetuneConfig, steps_per_epoch: int) -> Budget:
    """finetune.steps or finetune.budget as given; auto: epochs x steps per epoch, at least min_steps (a small
    task), ended sooner by the max_minutes cap (a large one). The LR schedule spans whichever ends first."""
    if ft.steps:
        return Budget(steps=ft.steps)
    if ft.budget != "auto":
        return Budget.parse(ft.budget, "finetune.budget")
    return Budget(steps=max(ft.epochs * steps_per_epoch, ft.min_steps), seconds=ft.max_minutes * 60 or None)


def validation_interval(ft: FinetuneConfig, budget: Budget, steps_per_epoch: int) -> int:
    """Steps between validations: the budget's steps / finetune.evals (the same number of them at every task
    size), or one epoch (finetune.evals=0, or a budget of time or tokens only)."""
    if ft.evals and budget.steps is not None:
        return max(1, budget.steps // ft.evals)
    return steps_per_epoch


def finetune(
    run: str | Path | Pretrained,
    task: str | Path | Task | None = None,
    cfg: RunConfig | None = None,
    out_dir: str | Path | None = None,
    seeds: Sequence[int] | None = None,
    *,
    random_init: bool = False,
    eval_every: int | None = None,
    quiet: bool = False,
    resume: bool = False,
) -> FinetuneResult:
    """Fine-tune a pre-training run's backbone on a task, once per seed.

    cfg supplies the finetune section (columns, epochs, lr, ...) and train settings (precision,
    device, warm-up, weight decay, clipping); the architecture always comes from the run.
    eval_every: validate every N steps (default: validation_interval). quiet: no progress bar, no per-seed line.
    With out_dir, every seed checkpoints into out_dir/seeds/ (train.checkpoint_minutes / checkpoint_every,
    and when it is stopped); resume: continue the fine-tuning killed there (finished seeds are read back,
    the others continue from their checkpoints); the seeds' files go once the model is saved.
    """
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a directory for the model and reports")
    pre = run if isinstance(run, Pretrained) else load_pretrained(run)
    run_name = str(pre.run_dir) if pre.run_dir else "?"
    cfg = cfg or pre.config
    seeds = tuple(seeds if seeds is not None else cfg.finetune.seeds)
    if not seeds:
        raise ConfigError("finetune.seeds is empty; give at least one seed")
    setup = prepare_finetune(pre, task if task is not None else cfg.finetune.task, cfg, eval_every)
    setup.quiet = quiet
    if not quiet:
        log.info(f"{setup.task.name}: {split_sizes(setup)}\n{describe_budget(setup)}")
        if warning := small_test_warning(len(setup.enc["test"])):
            log.warning(warning)
    seeds_dir = None
    if out_dir is not None:
        seeds_dir = _seeds_dir(Path(out_dir), _resume_settings(setup, run_name, random_init), resume, quiet)

    runs: list[SeedRun] = []
    t0 = time.perf_counter()
    for i, seed in enumerate(seeds):
        runs.append(finetune_seed(setup, seed, random_init, seeds_dir / f"seed-{seed}" if seeds_dir else None))
        best = best_seed(runs)
        for r in runs:
            if r is not best:
                r.weights = None  # only the best seed's weights are kept
        if not quiet and i + 1 < len(seeds):
            left = len(seeds) - i - 1
            log.info(f"~{clock((time.perf_counter() - t0) / (i + 1) * left)} left for {left} more seed(s)")
    y = torch.tensor(setup.enc["test"].labels)
    for r in runs:  # a seed finished before the intervals (read back by --resume) has none: from its test logits
        if r.result.accuracy_ci is None:
            r.result.accuracy_ci = bootstrap_interval((r.test_logits.argmax(-1) == y).numpy())
    results = [r.result for r in runs]
    test = score(y.tolist(), best.test_logits.argmax(-1).tolist(), setup.task.label_names)
    right = torch.stack([r.test_logits.argmax(-1) == y for r in runs]).double().mean(0)  # (N,) share of seeds right
    result = FinetuneResult(
        task=setup.task.name, run=run_name, init="random" if random_init else "pretrained", seeds=results,
        accuracy=Summary.of([r.accuracy for r in results]), macro_f1=Summary.of([r.macro_f1 for r in results]),
        best_seed=best.result.seed, test=test, label_names=list(setup.task.label_names),
        accuracy_ci=bootstrap_interval(right.numpy()), splits={s: len(e) for s, e in setup.enc.items()},
    )
    if out_dir is not None:
        out = Path(out_dir)
        save_finetuned(out, setup, best.best_weights(), result.init, result.best_seed, seeds)
        result.out_dir = out
        write_reports(out, result, result.test, title=f"{setup.task.name}: {Path(result.run).name} ({result.init} init)")
        shutil.rmtree(seeds_dir, ignore_errors=True)
        (out / SETTINGS_FILE).unlink(missing_ok=True)
    return result


SETTINGS_FILE = "finetune-settings.json"
"""In a fine-tuning's --out while its seeds run: what a resumed fine-tuning must share with it."""


def _resume_settings(setup: FinetuneSetup, run_name: str, random_init: bool) -> dict[str, Any]:
    ft, tc = setup.cfg.finetune, setup.cfg.train
    return {"run": run_name, "checkpoint": str(setup.pre.checkpoint), "task": setup.task.name,
            "task_source": str(setup.task.source), "random_init": random_init, "eval_every": setup.eval_every,
            "finetune": {k: v for k, v in asdict(ft).items() if k != "seeds"},
            "train": {k: getattr(tc, k) for k in ("precision", "deterministic", "warmup", "weight_decay", "clip")}}


def _seeds_dir(out: Path, settings: dict[str, Any], resume: bool, quiet: bool) -> Path:
    """out/seeds: continued with resume (the same settings only), else started afresh."""
    saved_file, seeds_dir = out / SETTINGS_FILE, out / "seeds"
    settings = json.loads(json.dumps(settings, default=str))
    if saved_file.is_file() and resume:
        from .runs import config_diff

        diff = config_diff(json.loads(saved_file.read_text(encoding="utf-8")), settings)
        if diff:
            raise ConfigError(f"cannot resume {out}: it holds a fine-tuning with other settings; give another --out, "
                              "or the same settings:\n  " + "\n  ".join(diff))
        return seeds_dir
    if saved_file.is_file() and not quiet:
        log.info(f"note: {out} holds an interrupted fine-tuning; starting again (pass --resume to continue it)")
    shutil.rmtree(seeds_dir, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    saved_file.write_text(json.dumps(settings, indent=1), encoding="utf-8")
    return seeds_dir


def finetune_random_init(run: str | Path | Pretrained, task: str | Path | Task | None = None,
                         cfg: RunConfig | None = None, out_dir: str | Path | None = None,
                         seeds: Sequence[int] | None = None, **kw: Any) -> FinetuneResult:
    """The same architecture and recipe, randomly initialised: the baseline pre-training must beat."""
    return finetune(run, task, cfg, out_dir, seeds, random_init=True, **kw)


def prepare_finetune(pre: Pretrained, task: str | Path | Task, cfg: RunConfig, eval_every: int | None) -> FinetuneSetup:
    """Read and encode the task for the run's tokenizer; pick the head, device and step counts."""
    ft, model_cfg = cfg.finetune, pre.config.model
    task = as_task(task, ft)
    head = head_kind(model_cfg)
    max_len = input_max_len(model_cfg, ft.max_len)
    device = pick_device(cfg.train.device)
    dtype = pick_dtype(cfg.train.precision, device)
    enc = {s: encode_split(pre.tokenizer, task.split(s), max_len) for s in ("train", "validation", "test")}
    if len(enc["validation"]) == 0:
        raise TaskError(f"task {task.name}: the validation split is empty; raise finetune.val_fraction")
    warn_unknown_tokens(enc["train"], pre.special.unk, task.name)
    steps_per_epoch = math.ceil(len(enc["train"]) / ft.batch_size)
    budget = finetune_budget(ft, steps_per_epoch)
    return FinetuneSetup(pre, task, cfg, head, head == "bert", max_len, device, dtype, enc, steps_per_epoch, budget,
                         eval_every or validation_interval(ft, budget, steps_per_epoch))


def input_max_len(model_cfg, max_len: int) -> int:
    """The classifier's input length: finetune.max_len, capped at model.max_len where the backbone has
    position embeddings (the kind's row in backbones/spec.py: a Transformer of any kind; the RNN and the CNN read
    any length)."""
    return BACKBONES[model_cfg.backbone].input_len(max_len, model_cfg.max_len)


def split_sizes(setup: FinetuneSetup) -> str:
    """'320 training / 40 validation / 40 test examples (stratified split)': what a result rests on."""
    enc = setup.enc
    return (f"{len(enc['train'])} training / {len(enc['validation'])} validation / {len(enc['test'])} test examples "
            f"({setup.task.split_kind} split)")


def describe_budget(setup: FinetuneSetup) -> str:
    """'budget per seed: 500 steps (20.0 epochs of 25) or 5m 00s, whichever ends first; ...': what a seed will do."""
    b, ft, per_epoch = setup.budget, setup.cfg.finetune, setup.steps_per_epoch
    limits = [f"{b.steps} steps ({b.steps / per_epoch:.1f} epochs of {per_epoch})" if b.steps is not None else "",
              f"{b.tokens:,} tokens" if b.tokens is not None else "", clock(b.seconds) if b.seconds is not None else ""]
    limits = [x for x in limits if x]
    stop = (f"early stopping after {ft.patience} validations without a better accuracy" if ft.patience else
            "no early stopping (the LR decays to 0; the best validation's weights are kept)")
    return (f"budget per seed: {' or '.join(limits)}{', whichever ends first' if len(limits) > 1 else ''}; "
            f"validation every {setup.eval_every} steps; {stop}")


def clock(seconds: float) -> str:
    """90 -> '1m 30s'; 4000 -> '1h 6m'."""
    s = round(seconds)
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"
    return f"{s // 3600}h {s % 3600 // 60}m"


UNK_WARN_RATE = 0.05


def unknown_token_rate(enc: Encoded, unk_id: int) -> float:
    """Share of a split's tokens (special tokens included) that the tokenizer mapped to [UNK]."""
    total = sum(len(ids) for ids in enc.ids)
    return sum(ids.count(unk_id) for ids in enc.ids) / max(1, total)


def warn_unknown_tokens(enc: Encoded, unk_id: int, task_name: str) -> float:
    rate = unknown_token_rate(enc, unk_id)
    if rate > UNK_WARN_RATE:
        log.warning(f"warning: the run's tokenizer maps {rate:.1%} of {task_name}'s training tokens to [UNK] "
                    f"(over {UNK_WARN_RATE:.0%}): is the task in another language or script than the pre-training "
                    "corpus, or the tokenizer the wrong one?")
    return rate


def finetune_seed(setup: FinetuneSetup, seed: int, random_init: bool = False, seed_dir: Path | None = None) -> SeedRun:
    """Train one classifier from the run's backbone with this seed; score its best-validation weights on test.
    seed_dir: checkpoint there, continue its checkpoint, or read its finished result (seeds.train_seed)."""
    pre, task, ft, tc = setup.pre, setup.task, setup.cfg.finetune, setup.cfg.train
    pad_id, enc = pre.special.pad, setup.enc

    def build() -> nn.Module:
        backbone = _fresh_backbone(pre, random_init, ft.dropout)
        drop = pre.config.model.dropout if ft.dropout is None else ft.dropout
        return build_classifier(backbone, task.n_labels, ft.pooling, setup.head, drop, eos_id=pre.special.sep)

    def step_loss(m: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        out = m(batch["input_ids"], batch["mask"], batch.get("segment_ids"), batch["labels"])
        return out.loss, {"acc": (out.logits.argmax(-1) == batch["labels"]).float().mean().detach()}

    settings = SeedSettings(ft.lr, setup.budget, ft.patience, ft.min_steps, setup.eval_every,
                            max(1, setup.steps_per_epoch // 4), tc.weight_decay, tc.warmup, tc.clip, tc.on_nan,
                            tc.deterministic, tc.checkpoint_every, tc.checkpoint_minutes, tc.progress)
    scoring = SeedScoring(enc["validation"], enc["test"], list(task.label_names), pad_id, setup.segments,
                          setup.device, setup.dtype)
    batches = EpochBatches(enc["train"], ft.batch_size, pad_id, setup.segments, ReplayedShuffles(len(enc["train"]), seed))
    return train_seed(seed, build, step_loss, batches, settings, scoring, seed_dir=seed_dir,
                      desc=f"finetune {task.name} seed {seed}", quiet=setup.quiet)


def save_finetuned(out: Path, setup: FinetuneSetup, weights: dict[str, Tensor], init: str, seed: int,
                   seeds: tuple[int, ...], extra_meta: dict[str, Any] | None = None) -> Path:
    """A classifier with these weights, as a fine-tuned model directory (runs.save_classifier)."""
    pre, task, ft = setup.pre, setup.task, setup.cfg.finetune
    model_cfg = pre.config.model
    model = classifier_with(setup, weights)
    task_ref = task.name if task.name in BUILTIN_TASKS else task.source
    used = RunConfig(model=model_cfg, data=pre.config.data, objective=pre.config.objective, train=setup.cfg.train,
                     finetune=replace(ft, task=task_ref, max_len=setup.max_len, seeds=seeds))
    meta = {"task": task.name, "task_source": task_ref, "source_run": str(pre.run_dir) if pre.run_dir else "?",
            "init": init, "seed": seed, "head": setup.head, "pooling": model.pooling, "max_len": setup.max_len,
            "pairs": task.has_pairs, "segments": setup.segments, "split": task.split_kind, **(extra_meta or {})}
    return save_classifier(out, model, pre.tokenizer, used, task.label_names, meta)


def classifier_with(setup: FinetuneSetup, weights: dict[str, Tensor]) -> nn.Module:
    """The setup's classifier (the run's architecture, its pre-training dropout) holding these weights."""
    pre = setup.pre
    model = build_classifier(_fresh_backbone(pre, True), setup.task.n_labels, setup.cfg.finetune.pooling, setup.head,
                             pre.config.model.dropout, eos_id=pre.special.sep)
    model.load_state_dict(weights)
    return model


def _fresh_backbone(pre: Pretrained, random_init: bool, dropout: float | None = None) -> nn.Module:
    """A copy of the run's backbone (or the same architecture, randomly initialised), with the
    fine-tuning dropout when one is given."""
    if not random_init and (dropout is None or dropout == pre.config.model.dropout):
        return copy.deepcopy(pre.backbone)
    from .backbones import backbone_from_config

    model_cfg = pre.config.model if dropout is None else replace(pre.config.model, dropout=dropout)
    backbone = backbone_from_config(model_cfg, pre.tokenizer.get_vocab_size(), pad_id=pre.special.pad)
    if not random_init:
        backbone.load_state_dict(pre.backbone.state_dict())
    return backbone
