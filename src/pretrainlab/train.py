"""The one training loop, used by pre-training and fine-tuning alike.

    batch = next_batch(); loss = step_loss(model, batch); loss.backward()
    clip_grad_norm_(...); optimizer.step(); scheduler.step()

Everything else here sets that loop up: device and precision, the budget (steps, tokens or
wall-clock time, with the learning-rate schedule stretched over it), validation,
checkpoints, metrics and the run directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import gather_full_state, latest_checkpoint, load_training_state, save_checkpoint
from .config import Budget, ConfigError, RunConfig, TrainConfig, save_config
from .distributed import Dist, is_sharded
from .errors import CheckpointError, TrainingError
from .runs import build_pretrain_model, check_resumable, count_parameters, init_from

# --------------------------------------------------------------------------- device & precision


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA GPU is visible; use train.device=cpu or auto")
    return torch.device(name)


def pick_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
    else:
        ok = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    if precision == "bf16" and not ok:
        raise ConfigError(f"train.precision=bf16 but this {device.type} has no fast bf16; use train.precision=auto")
    return torch.bfloat16 if ok else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def tune_allocator() -> None:
    """Keep large activation buffers on the heap instead of mmap/munmap every step (glibc).

    Measured on the project's 2-core CPU (../shared/PERF.md): ~1.5x for a bf16 training step.
    Opt out with PRETRAINLAB_MALLOC=0.
    """
    if os.environ.get("PRETRAINLAB_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except OSError:
        pass


def set_seed(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


# --------------------------------------------------------------------------- optimizer & schedule


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; no decay on biases, norms and embeddings. Fused on GPU, foreach on CPU (fused measured slower there)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if p.ndim < 2 or "norm" in name or id(p) in embeddings else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if device.type == "cuda":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6, foreach=True)


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first `warmup` share of the budget, then linear decay to 0."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return progress / warmup
    return max(0.0, (1.0 - progress) / max(1e-9, 1.0 - warmup))


class BudgetSchedule:
    """LR schedule stretched over a budget of steps, tokens or seconds (as Cramming does).

    `progress()` is the share of the budget spent; for a time budget it is elapsed / total,
    so the schedule ends exactly when the time does.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, budget: Budget, warmup: float, tokens_per_step: int):
        self.optimizer, self.budget, self.warmup = optimizer, budget, warmup
        self.tokens_per_step = tokens_per_step
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.step_count = 0
        self.tokens = 0
        self.elapsed = 0.0

    def progress(self) -> float:
        b = self.budget
        if b.steps is not None:
            return self.step_count / b.steps
        if b.tokens is not None:
            return self.tokens / b.tokens
        return self.elapsed / b.seconds

    def done(self) -> bool:
        return self.progress() >= 1.0

    def apply(self) -> float:
        f = lr_factor(self.progress(), self.warmup)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f
        return self.base_lrs[0] * f

    def step(self, tokens: int, elapsed: float) -> None:
        self.step_count += 1
        self.tokens += tokens
        self.elapsed = elapsed

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "tokens": self.tokens, "elapsed": self.elapsed}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.step_count, self.tokens, self.elapsed = s["step_count"], s["tokens"], s["elapsed"]


# --------------------------------------------------------------------------- the loop


@dataclass
class LoopResult:
    steps: int
    tokens: int
    seconds: float
    last_checkpoint: Path | None
    nan_skipped: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


class Interrupted(TrainingError):
    """Ctrl-C: a checkpoint was saved; the message says where and how to resume."""


def fit(
    model: nn.Module,
    next_batch: Callable[[], dict[str, torch.Tensor]],
    step_loss: Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]],
    tc: TrainConfig,
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    optimizer: torch.optim.Optimizer,
    schedule: BudgetSchedule,
    run_dir: Path | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    should_stop: Callable[[dict[str, float]], bool] | None = None,
    data_state: Callable[[], dict[str, Any]] | None = None,
    extra_state: dict[str, Any] | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    count_tokens: Callable[[dict[str, torch.Tensor]], int] | None = None,
    desc: str = "train",
    dist: Dist = Dist(),
) -> LoopResult:
    """Run optimizer steps until the budget is spent (or `should_stop` after an evaluation).

    Under data parallelism (`dist`), every rank takes the same decisions: a NaN anywhere skips
    or stops the step everywhere, and tokens and elapsed time are agreed on before the budget
    is checked. Only the rank given a run_dir writes checkpoints; a sharded (FSDP) model's state
    is gathered for them by every rank, at the same steps.
    """
    count_tokens = count_tokens or (lambda b: int((b["mask"] != 0).sum()) if "mask" in b else 0)
    history: list[dict[str, Any]] = []
    nan_skipped = 0
    last_ckpt: Path | None = None
    start_elapsed = schedule.elapsed
    t0 = time.perf_counter()
    last_ckpt_elapsed = schedule.elapsed
    sharded = is_sharded(model)
    joins_checkpoints = run_dir is not None or sharded  # gathering a sharded model's state takes every rank
    window_tokens, window_t = 0, t0
    bar = ProgressBar(schedule, desc) if tc.progress and dist.main else None

    def elapsed() -> float:
        return start_elapsed + time.perf_counter() - t0

    def checkpoint() -> Path | None:
        nonlocal last_ckpt
        full = gather_full_state(model, optimizer) if sharded else None  # a collective: every rank, same point
        if run_dir is None:
            return None
        state = {"step": schedule.step_count, "tokens": schedule.tokens, "elapsed": elapsed(),
                 "schedule": schedule.state_dict(), "data": data_state() if data_state else {},
                 "nan_skipped": nan_skipped, **(extra_state or {})}
        last_ckpt = save_checkpoint(run_dir, model, optimizer, None, state, full=full)
        return last_ckpt

    def emit(record: dict[str, Any]) -> None:
        history.append(record)
        if log:
            log(record)

    model.train()
    stopped_early = False
    try:
        while not schedule.done():
            lr = schedule.apply()
            step_tokens = 0
            metrics: dict[str, torch.Tensor] = {}
            loss_sum = 0.0
            bad = False
            for _ in range(tc.grad_accum):
                batch = next_batch()
                step_tokens += count_tokens(batch)
                batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
                with autocast(device, dtype):
                    loss, metrics = step_loss(model, batch)
                if dist.max(0.0 if torch.isfinite(loss) else 1.0) > 0:
                    bad = True
                    break
                (loss / tc.grad_accum).backward()
                loss_sum += float(loss.detach()) / tc.grad_accum
            if bad:
                optimizer.zero_grad(set_to_none=True)
                where = f"; last good checkpoint: {last_ckpt}" if last_ckpt else "; no checkpoint was written yet"
                if tc.on_nan == "stop":
                    raise TrainingError(
                        f"loss became {float(loss.detach())} at step {schedule.step_count + 1}{where}. "
                        "Lower train.lr, raise train.warmup, or pass --set train.on_nan=skip to drop such batches"
                    )
                nan_skipped += 1
                if nan_skipped > 100:
                    raise TrainingError(f"{nan_skipped} batches had a NaN/inf loss; stopping at step {schedule.step_count}{where}")
                continue
            if tc.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if dist.enabled:
                step_tokens = int(dist.sum(step_tokens))
            schedule.step(step_tokens, dist.max(elapsed()))
            window_tokens += step_tokens
            step = schedule.step_count
            if bar is not None:
                bar.update(step, schedule, loss_sum)
            if tc.log_every and step % tc.log_every == 0:
                now = time.perf_counter()
                emit({"step": step, "tokens": schedule.tokens, "elapsed": round(elapsed(), 2), "lr": lr,
                      "loss": loss_sum, **{k: float(v) for k, v in metrics.items()},
                      "tok_per_s": round(window_tokens / max(now - window_t, 1e-9), 1)})
                window_tokens, window_t = 0, now
            if evaluate and tc.eval_every and step % tc.eval_every == 0 and not schedule.done():
                result = evaluate(model)
                model.train()
                emit({"step": step, "tokens": schedule.tokens, "elapsed": round(elapsed(), 2), **result})
                if should_stop and should_stop(result):
                    stopped_early = True
                    break
            # schedule.elapsed is agreed on by all ranks, so they all find a checkpoint due at the same step
            due_time = tc.checkpoint_minutes > 0 and schedule.elapsed - last_ckpt_elapsed >= tc.checkpoint_minutes * 60
            due_step = tc.checkpoint_every > 0 and step % tc.checkpoint_every == 0
            if joins_checkpoints and (due_time or due_step):
                checkpoint()
                last_ckpt_elapsed = schedule.elapsed
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        # the ranks of a sharded model may not all have stopped at one point to gather its state together
        path = None if sharded else checkpoint()
        raise Interrupted(
            f"interrupted at step {schedule.step_count}; checkpoint saved at {path}; continue with --resume"
            if path else f"interrupted at step {schedule.step_count}"
        ) from None
    if bar is not None:
        bar.close()
    if evaluate:
        result = evaluate(model)
        emit({"step": schedule.step_count, "tokens": schedule.tokens, "elapsed": round(elapsed(), 2), "final": True, **result})
    if joins_checkpoints:
        checkpoint()
    return LoopResult(schedule.step_count, schedule.tokens, elapsed(), last_ckpt, nan_skipped, history, stopped_early)


class ProgressBar:
    """tqdm over the budget's share (works for steps, tokens and time alike)."""

    def __init__(self, schedule: BudgetSchedule, desc: str):
        from tqdm import tqdm

        self.bar = tqdm(total=1000, desc=desc, dynamic_ncols=True, mininterval=1.0, file=sys.stderr,
                        bar_format="{desc} {percentage:3.0f}%|{bar:20}| {elapsed}<{remaining} {postfix}")
        self.bar.n = int(1000 * min(schedule.progress(), 1.0))
        self.t0, self.tok0 = time.perf_counter(), schedule.tokens

    def update(self, step: int, schedule: BudgetSchedule, loss: float) -> None:
        self.bar.n = int(1000 * min(schedule.progress(), 1.0))
        rate = (schedule.tokens - self.tok0) / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"step {step} loss {loss:.3f} {rate:,.0f} tok/s", refresh=False)
        if step % 10 == 0:
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


# --------------------------------------------------------------------------- pre-training


def _fsdp_blocks(model: nn.Module) -> list[nn.Module]:
    """What FSDP shards as units of their own: each block of every backbone (the RTD generator's too).
    The RNN's layers stay in the root unit."""
    from .backbones.cnn import ConvBlock
    from .backbones.transformer import BertBlock, ModernBlock

    return [m for m in model.modules() if isinstance(m, (BertBlock, ModernBlock, ConvBlock))]


def pretrain(cfg: RunConfig, corpus: str | Path, out: str | Path, resume: bool = False,
             init: str | Path | None = None) -> Path:
    """Pre-train on a prepared corpus; writes a self-describing run directory and returns it.

    Under torchrun every rank runs this same function: rank 0 writes, all ranks train.
    """
    from .data.corpus import open_corpus
    from .distributed import init_from_env
    from .tokenizer import load_tokenizer, special_ids

    dist = init_from_env()
    tc = cfg.train
    budget = Budget.parse(tc.budget)
    run_dir = Path(out)
    corp = open_corpus(corpus)
    tok = load_tokenizer(corp.tokenizer_path)
    special = special_ids(tok, str(corp.tokenizer_path))
    vocab_size = tok.get_vocab_size()
    if cfg.model.vocab_size and cfg.model.vocab_size != vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} but the corpus tokenizer has {vocab_size} tokens")
    train_split, val_split = corp.split("train"), corp.split("val")

    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file; give a directory for the run")
    ckpt = latest_checkpoint(run_dir) if run_dir.exists() else None
    restart = False
    if resume and ckpt is None and run_dir.is_dir():
        pointer = run_dir / "checkpoints" / "latest"
        if pointer.is_file():
            raise CheckpointError(f"--resume: {pointer} names {pointer.read_text().strip()}, which is missing; "
                                  f"write the name of a complete checkpoint directory in {pointer.parent} into it")
        restart = (run_dir / "config.yaml").is_file()
    if restart:
        # killed before its first checkpoint: there is nothing to continue, so it starts again from step 0
        print(f"{run_dir} has no checkpoint yet: starting it again from step 0", file=sys.stderr)
        resume = False
        if dist.main:
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    elif resume:
        if ckpt is None:
            raise CheckpointError(f"--resume: {run_dir} has no checkpoint to resume from; drop --resume to start anew")
        check_resumable(run_dir, ckpt, cfg, corp.tokenizer_hash, dist.world)
    elif ckpt is not None or (run_dir.exists() and any(run_dir.iterdir())):
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out")
    dist.barrier()  # every rank has checked the run directory before rank 0 writes into it

    tune_allocator()
    set_seed(tc.seed, tc.deterministic)
    device = pick_device(tc.device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    dtype = pick_dtype(tc.precision, device)
    model = build_pretrain_model(cfg, vocab_size, special)
    if init is not None:
        init_from(model, Path(init), corp.tokenizer_hash)
    fsdp = tc.parallel == "fsdp" and dist.enabled
    if not fsdp:  # FSDP moves the model to the device unit by unit, as it shards it
        model.to(device)

    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if dist.main and not resume:
        save_config(cfg, run_dir / "config.yaml")
        shutil.copyfile(corp.tokenizer_path, run_dir / "tokenizer.json")
        (run_dir / "corpus.json").write_text(json.dumps(
            {"path": str(Path(corpus).resolve()), "tokenizer_hash": corp.tokenizer_hash,
             "train_tokens": train_split.n_tokens, "val_tokens": val_split.n_tokens, "init": str(init) if init else None},
            indent=1), encoding="utf-8")

    if cfg.objective.whole_word:
        _set_word_starts(model, tok, train_split)
    seq_len = cfg.data.seq_len
    loader = batch_source(train_split, seq_len, tc.batch_size, special, model.objectives, seed=tc.seed,
                          rank=dist.rank, world=dist.world)
    if fsdp:  # in place: `model` is the sharded module from here on, and the optimizer holds its shards
        from .distributed import shard

        shard(model, _fsdp_blocks(model), device)
    elif tc.parallel == "fsdp" and dist.main:
        print("train.parallel=fsdp in a single process: nothing to shard, training the whole model here",
              file=sys.stderr)
    optimizer = make_optimizer(model, tc.lr, tc.weight_decay, device)
    schedule = BudgetSchedule(optimizer, budget, tc.warmup, tc.batch_size * tc.grad_accum * seq_len)
    if resume:  # the same whole-model checkpoint under one process, DDP or FSDP
        state = load_training_state(ckpt, model, optimizer, None)
        schedule.load_state_dict(state["schedule"])
        loader.load_state_dict(state["data"])
        print(f"resuming from {ckpt} (step {state['step']})", file=sys.stderr)
    trained = model
    if dist.enabled and not fsdp:  # gradients all-reduced across ranks; `model` stays the plain module
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    n_params = count_parameters(model.backbone)
    if dist.main:
        variant = {"transformer": f" ({cfg.model.style})", "rnn": f" (bi-{cfg.model.rnn_cell})"}.get(cfg.model.backbone, "")
        print(f"model: {cfg.model.backbone}{variant} {n_params / 1e6:.2f}M backbone parameters, "
              f"objectives {', '.join(model.objectives)}, device {device}, precision {dtype or 'fp32'}"
              + (f", {dist.world} processes ({tc.parallel})" if dist.enabled else ""), file=sys.stderr)

    val_batches = _fixed_batches(model, val_split, seq_len, tc.batch_size, special, tc.eval_batches, tc.seed)
    step_counter = {"n": schedule.step_count * tc.grad_accum}

    def next_batch():
        # the masking RNG is a pure function of (seed, step, micro-batch): exact resume without replay
        gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + step_counter["n"])
        step_counter["n"] += 1
        return model.prepare(loader.next_batch(), gen)

    def step_loss(m, batch):
        out = m(batch)
        return out.loss, out.metrics

    def evaluate(m):
        return evaluate_pretrain(model, val_batches, device, dtype)

    metrics_file = open(run_dir / "metrics.jsonl", "a", encoding="utf-8") if dist.main else None
    tb = _tensorboard(run_dir) if tc.tensorboard and dist.main else None

    def log(record):
        if metrics_file is None:
            return
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
        if tb:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    tb.add_scalar(k, v, record["step"])

    try:
        result = fit(trained, next_batch, step_loss, tc, device=device, dtype=dtype, optimizer=optimizer,
                     schedule=schedule, run_dir=run_dir if dist.main else None,
                     evaluate=evaluate if val_batches else None,
                     data_state=loader.state_dict, extra_state={"tokenizer_hash": corp.tokenizer_hash},
                     log=log, desc="pretrain", dist=dist)
    finally:
        if metrics_file:
            metrics_file.close()
        if tb:
            tb.close()
    if not dist.main:
        return run_dir
    plot_metrics(run_dir)
    final = [h for h in result.history if h.get("final")]
    summary = {"steps": result.steps, "tokens": result.tokens, "seconds": round(result.seconds, 1),
               "tok_per_s": round(result.tokens / max(result.seconds, 1e-9), 1),
               "backbone_parameters": n_params, **(final[-1] if final else {})}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(f"pretrained {result.steps} steps, {result.tokens:,} tokens in {result.seconds:.0f}s "
          f"({summary['tok_per_s']:,.0f} tok/s); " +
          ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if k.startswith("val_")), file=sys.stderr)
    return run_dir


def batch_source(split, seq_len, batch_size, special, objectives, seed=0, shuffle=True, rank=0, world=1):
    """Sentence pairs when nsp or sop is among `objectives` (names), packed rows otherwise.

    Both give next_batch(), state_dict() / load_state_dict() and rows_per_epoch.
    """
    from .data.packing import PackedLoader
    from .data.pairs import PairLoader

    for kind in ("nsp", "sop"):
        if kind in objectives:
            return PairLoader(split, seq_len, batch_size, special, kind=kind, seed=seed, shuffle=shuffle,
                              rank=rank, world=world)
    return PackedLoader(split, seq_len, batch_size, special, seed=seed, shuffle=shuffle, rank=rank, world=world)


def _set_word_starts(model, tok, split, n_docs: int = 500) -> None:
    """Whole-word masking: learn which tokens begin a word from the tokenizer's offsets on a
    sample of the corpus (decoded back to text), for any tokenizer kind."""
    from .tokenizer import word_start_table

    texts = [tok.decode(split.doc(i).tolist()) for i in range(min(n_docs, split.n_docs))]
    table = word_start_table(tok, texts)
    for obj in model.modules():
        if hasattr(obj, "word_start_table"):
            obj.word_start_table = table


def _fixed_batches(model, split, seq_len, batch_size, special, n, seed):
    """The same validation batches (and masks) at every evaluation."""
    if split.n_tokens == 0 or n == 0:
        return []
    loader = batch_source(split, seq_len, batch_size, special, model.objectives, seed=seed, shuffle=False)
    n = max(1, min(n, loader.rows_per_epoch // batch_size))
    gen = torch.Generator().manual_seed(seed + 12345)
    return [model.prepare(loader.next_batch(), gen) for _ in range(n)]


@torch.no_grad()
def evaluate_pretrain(model, batches, device, dtype) -> dict[str, float]:
    model.eval()
    sums: dict[str, float] = {}
    for batch in batches:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with autocast(device, dtype):
            out = model(batch)
        sums["val_loss"] = sums.get("val_loss", 0.0) + float(out.loss)
        for k, v in out.metrics.items():
            sums["val_" + k] = sums.get("val_" + k, 0.0) + float(v)
    return {k: v / len(batches) for k, v in sums.items()}


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("train.tensorboard=true needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


def plot_metrics(run_dir: Path) -> list[Path]:
    """Loss curves (train and validation) as PNGs in the run directory."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_loss" in r]
    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot([r["tokens"] for r in train], [r["loss"] for r in train], label="train loss", alpha=0.7)
    if val:
        ax.plot([r["tokens"] for r in val], [r["val_loss"] for r in val], "o-", label="validation loss")
    ax.set_xlabel("tokens")
    ax.set_ylabel("loss")
    ax.set_title(f"pre-training: {run_dir.name}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / "loss.png", dpi=110)
    plt.close(fig)
    written.append(run_dir / "loss.png")
    acc_keys = sorted({k for r in val for k in r if k.endswith("_acc")})
    if acc_keys:
        fig, ax = plt.subplots(figsize=(7, 4))
        for k in acc_keys:
            ax.plot([r["tokens"] for r in val if k in r], [r[k] for r in val if k in r], "o-", label=k)
        ax.set_xlabel("tokens")
        ax.set_ylabel("accuracy")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(run_dir / "accuracy.png", dpi=110)
        plt.close(fig)
        written.append(run_dir / "accuracy.png")
    return written
