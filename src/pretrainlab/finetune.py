"""The fine-tuning recipe: a pre-training run's backbone + a classification head, trained on a task.

    result = finetune("runs/mini", "mr", cfg, out_dir="runs/mini/finetune-mr", seeds=(0, 1, 2))
    result.accuracy.mean, result.macro_f1.std       # over seeds; the best-validation seed's model is saved

Per seed (`finetune_seed`): a fresh copy of the run's backbone + a head (models.build_classifier),
trained by the one loop `loop.fit` for a budget of optimizer steps (finetune.steps, or finetune.epochs
epochs with a floor of finetune.min_steps for small tasks), validated every epoch, stopped early
after finetune.patience evaluations without a better validation accuracy (`EarlyStopping`); the
best-validation weights are restored before the test split is scored. `random_init=True` trains the
same architecture from scratch (what pre-training buys is the difference).

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
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import Budget, ConfigError, RunConfig
from .data.encoding import Encoded, collate, encode_split
from .data.tasks import BUILTIN_TASKS, Task, as_task
from .errors import TaskError
from .evaluate import predict_logits
from .loop import BudgetSchedule, LoopSettings, fit, make_optimizer, pick_device, pick_dtype, set_seed
from .metrics import FinetuneResult, Metrics, SeedResult, Summary, score
from .models import build_classifier, head_kind
from .reports import write_reports
from .runs import Pretrained, load_pretrained, save_classifier

# --------------------------------------------------------------------------- the recipe


@dataclass
class EarlyStopping:
    """The best validation so far: highest accuracy, ties broken by lower loss (so a plateau in
    accuracy while the loss still falls does not count against the patience), and its weights."""

    patience: int
    """Stop after this many evaluations without a better one; 0 never stops early."""
    min_steps: int = 0
    """Evaluations before this step never count against the patience: a pretrained model can sit on a
    validation plateau for its first steps before it improves (finetune.min_steps)."""
    key: tuple[float, float] | None = None
    """(accuracy, -loss) of the best evaluation."""
    accuracy: float = 0.0
    macro_f1: float = 0.0
    step: int = 0
    weights: dict[str, Tensor] | None = None
    since: int = 0
    """Evaluations since the best one."""

    @property
    def loss(self) -> float:
        return -self.key[1]

    def update(self, metrics: Metrics, loss: float, step: int, model: nn.Module) -> None:
        key = (metrics.accuracy, -loss)
        if self.key is None or key > self.key:
            self.key, self.step, self.since = key, step, 0
            self.accuracy, self.macro_f1 = metrics.accuracy, metrics.macro_f1
            self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif step >= self.min_steps:
            self.since += 1

    def should_stop(self, _: dict[str, float] | None = None) -> bool:
        return self.patience > 0 and self.since >= self.patience


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
    eval_every: int

    quiet: bool = False

    @property
    def total_steps(self) -> int:
        """finetune.steps, or epochs x steps per epoch with a floor of finetune.min_steps (small tasks)."""
        ft = self.cfg.finetune
        return ft.steps or max(ft.epochs * self.steps_per_epoch, ft.min_steps)


@dataclass
class SeedRun:
    """One seed's outcome, with what picking the best seed needs."""

    result: SeedResult
    best: EarlyStopping
    test_logits: Tensor


class EpochBatches:
    """Batches of the training split, reshuffled at the start of every epoch."""

    def __init__(self, enc: Encoded, batch_size: int, pad_id: int, segments: bool, gen: torch.Generator):
        self.enc, self.batch_size, self.pad_id, self.segments, self.gen = enc, batch_size, pad_id, segments, gen
        self.order: list[int] = []
        self.pos = 0

    def __call__(self) -> dict[str, Tensor]:
        if self.pos >= len(self.order):  # a new epoch: a new shuffle
            self.order, self.pos = torch.randperm(len(self.enc), generator=self.gen).tolist(), 0
        idx = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return collate(self.enc, idx, self.pad_id, self.segments)


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
) -> FinetuneResult:
    """Fine-tune a pre-training run's backbone on a task, once per seed.

    cfg supplies the finetune section (columns, epochs, lr, ...) and train settings (precision,
    device, warm-up, weight decay, clipping); the architecture always comes from the run.
    eval_every: validate every N steps (default: once per epoch). quiet: no progress bar, no per-seed line.
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

    runs: list[SeedRun] = []
    best: SeedRun | None = None  # the seed with the best validation so far; only its weights are kept
    for seed in seeds:
        r = finetune_seed(setup, seed, random_init)
        runs.append(r)
        if best is None or r.best.key > best.best.key:
            if best is not None:
                best.best.weights = None
            best = r
            best.best.weights = {k: v.cpu() for k, v in r.best.weights.items()}
        else:
            r.best.weights = None
    assert best is not None
    results = [r.result for r in runs]
    test = score(setup.enc["test"].labels, best.test_logits.argmax(-1).tolist(), setup.task.label_names)
    result = FinetuneResult(
        task=setup.task.name, run=run_name, init="random" if random_init else "pretrained", seeds=results,
        accuracy=Summary.of([r.accuracy for r in results]), macro_f1=Summary.of([r.macro_f1 for r in results]),
        best_seed=best.result.seed, test=test, label_names=list(setup.task.label_names),
    )
    if out_dir is not None:
        _save(Path(out_dir), setup, result, best.best.weights, seeds)
    return result


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
    has_positions = model_cfg.backbone in ("transformer", "decoder", "encoder-decoder")  # positions cap the length
    max_len = min(ft.max_len, model_cfg.max_len) if has_positions else ft.max_len
    device = pick_device(cfg.train.device)
    dtype = pick_dtype(cfg.train.precision, device)
    enc = {s: encode_split(pre.tokenizer, task.split(s), max_len) for s in ("train", "validation", "test")}
    if len(enc["validation"]) == 0:
        raise TaskError(f"task {task.name}: the validation split is empty; raise finetune.val_fraction")
    warn_unknown_tokens(enc["train"], pre.special.unk, task.name)
    steps_per_epoch = math.ceil(len(enc["train"]) / ft.batch_size)
    return FinetuneSetup(pre, task, cfg, head, head == "bert", max_len, device, dtype, enc, steps_per_epoch,
                         eval_every or steps_per_epoch)


UNK_WARN_RATE = 0.05


def unknown_token_rate(enc: Encoded, unk_id: int) -> float:
    """Share of a split's tokens (special tokens included) that the tokenizer mapped to [UNK]."""
    total = sum(len(ids) for ids in enc.ids)
    return sum(ids.count(unk_id) for ids in enc.ids) / max(1, total)


def warn_unknown_tokens(enc: Encoded, unk_id: int, task_name: str) -> float:
    rate = unknown_token_rate(enc, unk_id)
    if rate > UNK_WARN_RATE:
        print(f"warning: the run's tokenizer maps {rate:.1%} of {task_name}'s training tokens to [UNK] "
              f"(over {UNK_WARN_RATE:.0%}): is the task in another language or script than the pre-training "
              "corpus, or the tokenizer the wrong one?", file=sys.stderr)
    return rate


def finetune_seed(setup: FinetuneSetup, seed: int, random_init: bool = False) -> SeedRun:
    """Train one classifier from the run's backbone with this seed; score its best-validation weights on test."""
    pre, task, ft, tc = setup.pre, setup.task, setup.cfg.finetune, setup.cfg.train
    device, dtype, pad_id, enc = setup.device, setup.dtype, pre.special.pad, setup.enc
    set_seed(seed, tc.deterministic)
    backbone = _fresh_backbone(pre, random_init, ft.dropout)
    drop = pre.config.model.dropout if ft.dropout is None else ft.dropout
    model = build_classifier(backbone, task.n_labels, ft.pooling, setup.head, drop, eos_id=pre.special.sep).to(device)
    settings = LoopSettings(grad_accum=1, clip=tc.clip, on_nan=tc.on_nan, log_every=max(1, setup.steps_per_epoch // 4),
                            eval_every=setup.eval_every, progress=tc.progress and not setup.quiet)
    optimizer = make_optimizer(model, ft.lr, tc.weight_decay, device)
    schedule = BudgetSchedule(optimizer, Budget(steps=setup.total_steps), tc.warmup, tokens_per_step=0)
    next_batch = EpochBatches(enc["train"], ft.batch_size, pad_id, setup.segments, torch.Generator().manual_seed(seed))

    def step_loss(m: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        out = m(batch["input_ids"], batch["mask"], batch.get("segment_ids"), batch["labels"])
        return out.loss, {"acc": (out.logits.argmax(-1) == batch["labels"]).float().mean().detach()}

    best = EarlyStopping(ft.patience, ft.min_steps)

    def validate(m: nn.Module) -> dict[str, float]:
        logits = predict_logits(m, enc["validation"], pad_id, setup.segments, device, dtype)
        y = torch.tensor(enc["validation"].labels)
        metrics = score(y.tolist(), logits.argmax(-1).tolist(), task.label_names)
        loss = float(nn.functional.cross_entropy(logits, y))
        best.update(metrics, loss, schedule.step_count, m)
        return {"val_loss": loss, "val_acc": metrics.accuracy, "val_macro_f1": metrics.macro_f1}

    t0 = time.perf_counter()
    loop = fit(model, next_batch, step_loss, settings, device=device, dtype=dtype, optimizer=optimizer,
               schedule=schedule, evaluate=validate, should_stop=best.should_stop,
               desc=f"finetune {task.name} seed {seed}")
    model.load_state_dict(best.weights)  # the best-validation weights
    test_logits = predict_logits(model, enc["test"], pad_id, setup.segments, device, dtype)
    on_test = score(enc["test"].labels, test_logits.argmax(-1).tolist(), task.label_names)
    result = SeedResult(seed, on_test.accuracy, on_test.macro_f1, best.accuracy, best.macro_f1, best.loss,
                        loop.steps, best.step, loop.stopped_early, round(time.perf_counter() - t0, 2), loop.history)
    if not setup.quiet:
        print(f"seed {seed}: test accuracy {on_test.accuracy:.4f}, macro-F1 {on_test.macro_f1:.4f} "
              f"(best validation accuracy {best.accuracy:.4f} at step {best.step} of {loop.steps})", file=sys.stderr)
    return SeedRun(result, best, test_logits)


def _save(out: Path, setup: FinetuneSetup, result: FinetuneResult, weights: dict[str, Tensor],
          seeds: tuple[int, ...]) -> None:
    """The best seed's classifier (runs.save_classifier) and the reports, in out."""
    pre, task, ft = setup.pre, setup.task, setup.cfg.finetune
    model_cfg = pre.config.model
    model = build_classifier(_fresh_backbone(pre, True), task.n_labels, ft.pooling, setup.head, model_cfg.dropout,
                             eos_id=pre.special.sep)
    model.load_state_dict(weights)
    task_ref = task.name if task.name in BUILTIN_TASKS else task.source
    used = RunConfig(model=model_cfg, data=pre.config.data, objective=pre.config.objective, train=setup.cfg.train,
                     finetune=replace(ft, task=task_ref, max_len=setup.max_len, seeds=seeds))
    meta = {"task": task.name, "task_source": task_ref, "source_run": result.run, "init": result.init,
            "seed": result.best_seed, "head": setup.head, "pooling": model.pooling, "max_len": setup.max_len,
            "pairs": task.has_pairs, "segments": setup.segments, "split": task.split_kind}
    save_classifier(out, model, pre.tokenizer, used, task.label_names, meta)
    result.out_dir = out
    write_reports(out, result, result.test, title=f"{task.name}: {Path(result.run).name} ({result.init} init)")


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
