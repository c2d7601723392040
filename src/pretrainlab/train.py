"""The pre-training recipe: a prepared corpus in, a self-describing run directory out.

    run_dir = pretrain(cfg, "prepared/", "runs/mini")            # --resume continues after Ctrl-C or a crash

It opens the corpus, decides what the run directory means (`resume_policy`), builds the model
(runs.build_pretrain_model), batches and masks (batch_source + the objectives' collators), and calls
the one loop (`loop.fit`) with validation, checkpoints and the metrics sinks; plots and summary.json
at the end. Under torchrun (DDP or FSDP) every rank runs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .backbones.spec import BACKBONES
from .checkpoint import latest_checkpoint, load_training_state
from .config import SIZE_FIELDS, Budget, ConfigError, RunConfig, TrainConfig, save_config
from .data.prefetch import Prefetcher
from .distributed import Dist
from .ema import WeightEMA
from .errors import CheckpointError
from .loop import (BudgetSchedule, Engine, Hooks, LoopResult, LoopSettings, autocast, enable_tf32, fit, grad_scaler,
                   make_optimizer, pick_device, pick_dtype, set_seed, tune_allocator)
from .models import renamed_weights
from .objectives.spec import OBJECTIVES, ObjectiveSpec
from .runs import (adopt_init_model, build_pretrain_model, check_resumable, count_parameters, init_from,
                   read_run_config)
from .sizing import Sizing

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- pre-training


def pretrain(cfg: RunConfig, corpus: str | Path, out: str | Path, resume: bool = False,
             init: str | Path | None = None) -> Path:
    """Pre-train on a prepared corpus; writes a self-describing run directory and returns it.

    Under torchrun every rank runs this same function: rank 0 writes, all ranks train.
    Continued pre-training (`init`: a run or an imported model) keeps the init's architecture, and says so
    (runs.adopt_init_model), also when it resumes; its weights load strictly (runs.init_from).
    """
    from .distributed import init_from_env

    tc = cfg.train
    dist = init_from_env(pick_device(tc.device))  # the backend follows the device: gloo on the CPU, nccl on GPUs
    if init is not None:
        cfg, notes = adopt_init_model(cfg, init)
        _say(notes, dist)
    budget = Budget.parse(tc.budget)
    run_dir = Path(out)
    data = _open_corpus(cfg, corpus)
    device, dtype = _setup(tc, dist)
    scaler = grad_scaler(dtype, device)
    # model.preset=auto chooses the size here; continued pre-training (--init) keeps the init's architecture
    cfg, sizing = size_model(cfg, data, run_dir, resume, device, dtype, dist) if init is None else (cfg, None)
    check_objective_data(cfg, data.train, dist.main)
    ckpt, resume = resume_policy(run_dir, resume, cfg, data.tokenizer_hash, dist)
    dist.barrier()  # every rank has checked the run directory before rank 0 writes into it

    model = build_pretrain_model(cfg, data.vocab_size, data.special)
    head_only = _start_from_init(model, init, resume, run_dir, data, tc, dist)
    fsdp = tc.parallel == "fsdp" and dist.enabled
    if not fsdp:  # FSDP moves the model to the device unit by unit, as it shards it
        model.to(device)
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if dist.main and not resume:
        _write_run_files(run_dir, cfg, data, corpus, init, sizing)

    if cfg.objective.whole_word:
        _set_word_starts(model, data.tokenizer, data.train)
    seq_len = cfg.data.seq_len
    loader = batch_source(data.train, seq_len, tc.batch_size, data.special, model.objectives, seed=tc.seed,
                          rank=dist.rank, world=dist.world)
    if fsdp:  # in place: `model` is the sharded module from here on, and the optimizer holds its shards
        from .distributed import shard

        shard(model, _fsdp_blocks(model, cfg.model.backbone), device)
    elif tc.parallel == "fsdp" and dist.main:
        log.info("train.parallel=fsdp in a single process: nothing to shard, training the whole model here")
    optimizer = make_optimizer(model, tc.lr, tc.weight_decay, device)
    schedule = BudgetSchedule(optimizer, budget, tc.warmup, tc.batch_size * tc.grad_accum * seq_len)
    ema = weight_ema(model, tc.ema, fsdp)
    if resume:  # the same whole-model checkpoint under one process, DDP or FSDP
        state = load_training_state(ckpt, model, optimizer, None, ema, device=device, rank=dist.rank, scaler=scaler,
                                    rename=renamed_weights)
        schedule.load_state_dict(state["schedule"])
        loader.load_state_dict(state["data"])
        log.info(f"resuming from {ckpt} (step {state['step']})")
    trained = model
    if dist.enabled and not fsdp:  # gradients all-reduced across ranks; `model` stays the plain module
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    n_params = count_parameters(model.backbone)
    if dist.main:
        _print_model(cfg, model, n_params, device, dtype, dist)
    val_batches = _fixed_batches(model, data.val, seq_len, tc.batch_size, data.special, tc.eval_batches, tc.seed)
    batches = training_batches(model, loader, tc, schedule, device, varying_mask_rate=cfg.objective.mask_rate_end > 0)

    warm_head = HeadWarmup(model, head_only, schedule)

    def step_loss(m, batch):
        warm_head.apply()  # the body frozen while a fresh MLM head warms up
        out = m(batch)
        return out.loss, out.metrics

    def evaluate(m):
        with ema.applied() if ema else contextlib.nullcontext():  # with a weight EMA, the average is validated
            return evaluate_pretrain(model, val_batches, device, dtype)

    metrics = MetricsLog(run_dir, tc.tensorboard) if dist.main else MetricsLog(None)
    try:
        result = fit(trained, batches, step_loss, loop_settings(tc),
                     engine=Engine(device, dtype, optimizer, schedule, dist=dist, ema=ema, scaler=scaler),
                     hooks=Hooks(evaluate=evaluate if val_batches else None, data_state=lambda: batches.state,
                                 extra_state={"tokenizer_hash": data.tokenizer_hash}, log=metrics),
                     run_dir=run_dir if dist.main else None, desc="pretrain")
    finally:
        batches.close()
        metrics.close()
    if not dist.main:
        return run_dir
    plot_metrics(run_dir)
    _write_summary(run_dir, result, n_params)
    return run_dir


def training_batches(model: nn.Module, loader, tc: TrainConfig, schedule: BudgetSchedule, device: torch.device,
                     varying_mask_rate: bool) -> Prefetcher:
    """fit's micro-batches: packed rows, masked by the objectives; built train.prefetch ahead on a background
    thread (`prefetch_depth`), into pinned memory for a GPU.

    Micro-batch i's masking RNG is a pure function of (seed, i) and its mask rate of the budget's progress at its
    step (of i itself for a step budget): exact resume without replay, and the same batches built ahead or not.
    A mask rate that moves with a token or time budget reads the live progress, so those are built in turn.
    """
    steps, grad_accum = schedule.budget.steps, tc.grad_accum

    def make(i: int):
        gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + i)
        progress = (i // grad_accum) / steps if steps is not None else schedule.progress()
        return model.prepare(loader.next_batch(), gen, progress), loader.state_dict()

    depth = prefetch_depth(tc.prefetch, device)
    if depth and varying_mask_rate and steps is None:
        depth = 0
    return Prefetcher(make, schedule.step_count * grad_accum, loader.state_dict(), depth, pin=device.type == "cuda")


def prefetch_depth(prefetch: int, device: torch.device) -> int:
    """train.prefetch: -1 (auto) builds 2 batches ahead for a GPU, none for a CPU run (whose cores the
    training step already uses); N >= 0 as given."""
    if prefetch >= 0:
        return prefetch
    return 2 if device.type == "cuda" else 0


def weight_ema(model: nn.Module, decay: float, fsdp: bool) -> WeightEMA | None:
    """train.ema: the average of the model's weights (None when 0). Not under FSDP: each rank would hold the
    average of its own shards, which the checkpoint does not gather."""
    if decay == 0:
        return None
    if fsdp:
        raise ConfigError("train.ema does not work with train.parallel=fsdp yet (the average would be sharded); "
                          "use train.parallel=ddp, or train.ema=0")
    return WeightEMA(model, decay)


def _say(notes: list[str], dist: Dist) -> None:
    for note in notes if dist.main else ():  # once, not once a process
        log.info(f"note: {note}")


def _start_from_init(model: nn.Module, init: str | Path | None, resume: bool, run_dir: Path, data: _Corpus,
                     tc: TrainConfig, dist: Dist) -> float:
    """Continued pre-training: the init's weights into a new run (strictly, runs.init_from; a resumed run holds its
    own), and the share of the budget a fresh head trains alone (head_warmup_share) -> that share."""
    if init is not None and not resume:
        _say(init_from(model, Path(init), data.tokenizer_hash), dist)  # every process loads them
    head_only = head_warmup_share(tc, init if init is not None else recorded_init(run_dir), dist)
    if head_only and not resume:
        start_fresh_head(model)
    return head_only


def recorded_init(run_dir: Path) -> Path | None:
    """The model a run was started from (its corpus.json), so that a resumed run treats it as the first did."""
    info = run_dir / "corpus.json"
    init = json.loads(info.read_text(encoding="utf-8")).get("init") if info.is_file() else None
    return Path(init) if init else None


def head_warmup_share(tc: TrainConfig, init: str | Path | None, dist: Dist) -> float:
    """train.head_warmup when the init is an imported model whose MLM head was initialised fresh (imported.json
    says so: all-MiniLM-L6-v2 ships none), else 0."""
    info = Path(init) / "imported.json" if init is not None else None
    if not tc.head_warmup or info is None or not info.is_file():
        return 0.0
    if json.loads(info.read_text(encoding="utf-8")).get("mlm_head") != "initialised":
        return 0.0
    if dist.enabled:
        if dist.main:
            log.info("note: train.head_warmup runs in one process only; under torchrun the body moves from the start")
        return 0.0
    return tc.head_warmup


def start_fresh_head(model: nn.Module) -> None:
    """A fresh MLM head's starting point: its transform the identity on the body's output (dense = I, bias 0;
    then GELU and the LayerNorm), its decoder the word embeddings it is tied to, so that it first scores a token
    by how well its embedding matches the normalised output, rather than through a random projection."""
    head = model.lm_head if "mlm" in model.objectives else None
    if head is None:
        return
    with torch.no_grad():
        head.dense.weight.copy_(torch.eye(head.dense.weight.shape[0]))
        head.dense.bias.zero_()


class HeadWarmup:
    """For the first `share` of the budget only the heads train: the body's parameters stop requiring gradients,
    so that AdamW skips them (no update, no weight decay) and a random head cannot scramble the trained body in
    its first steps; then the body moves too. A function of the schedule's progress: a resumed run agrees."""

    def __init__(self, model: nn.Module, share: float, schedule: BudgetSchedule):
        self.body, self.share, self.schedule = model.backbone, share, schedule
        self.frozen: bool | None = None

    def apply(self) -> None:
        if not self.share:
            return
        frozen = self.schedule.progress() < self.share
        if frozen != self.frozen:
            self.body.requires_grad_(not frozen)
            self.frozen = frozen


SIZING_FILE = "sizing.json"
"""In a run directory: what model.preset=auto chose and why (sizing.Sizing.to_dict); summary.json repeats it."""


def size_model(cfg: RunConfig, data: _Corpus, run_dir: Path, resume: bool, device: torch.device,
               dtype: torch.dtype | None, dist: Dist) -> tuple[RunConfig, Sizing | None]:
    """model.preset=auto: -> (cfg sized by the preset chosen for this budget and corpus, the choice: sizing.py).
    --resume takes the preset the run chose at its start (its config.yaml), so it continues the same model."""
    from .sizing import RULE, auto_size, is_auto, probe_throughput, say

    if not is_auto(cfg):
        return cfg, None
    if resume and (run_dir / "config.yaml").is_file():
        saved = read_run_config(run_dir).model
        sizes = {k: getattr(saved, k) for k in SIZE_FIELDS}
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, preset=saved.preset, **sizes)), None

    def measure(c: RunConfig) -> tuple[int, float | None]:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the run's init stays
            model = build_pretrain_model(c, data.vocab_size, data.special)
            params = count_parameters(model.backbone)
            if Budget.parse(c.train.budget).seconds is None:
                return params, None
            if c.objective.whole_word:
                _set_word_starts(model, data.tokenizer, data.train)
            loader = batch_source(data.train, c.data.seq_len, c.train.batch_size, data.special, model.objectives,
                                  seed=c.train.seed, rank=dist.rank, world=dist.world)
            gen = torch.Generator().manual_seed(c.train.seed)
            rate = probe_throughput(model, lambda: model.prepare(loader.next_batch(), gen, 0.0), device=device,
                                    dtype=dtype, lr=c.train.lr, seconds=RULE.probe_seconds)
        # every rank the same figure (the ranks' mean), so every rank makes the same choice
        return params, float(dist.gather(torch.tensor([rate], dtype=torch.float64)).mean())

    cfg, sizing = auto_size(cfg, data.train.n_tokens, measure, dist.world)
    if dist.main:
        say(sizing)
    return cfg, sizing


def loop_settings(tc: TrainConfig) -> LoopSettings:
    """The train section's settings that the loop itself uses."""
    return LoopSettings(grad_accum=tc.grad_accum, clip=tc.clip, on_nan=tc.on_nan, log_every=tc.log_every,
                        eval_every=tc.eval_every, checkpoint_every=tc.checkpoint_every,
                        checkpoint_minutes=tc.checkpoint_minutes, progress=tc.progress)


@dataclass
class _Corpus:
    """A prepared corpus opened for pre-training: its splits and tokenizer."""

    path: Path
    tokenizer_path: Path
    tokenizer_hash: str
    tokenizer: Any
    special: Any
    vocab_size: int
    train: Any
    val: Any
    tokenizer_changed: bool = False
    """The run's tokenizer is the corpus's plus tokens of the objective's (span's sentinels): saved, not copied."""


def _open_corpus(cfg: RunConfig, corpus: str | Path) -> _Corpus:
    from .data.corpus import open_corpus
    from .tokenizer import load_tokenizer, special_ids, with_sentinels

    corp = open_corpus(corpus)
    tok = load_tokenizer(corp.tokenizer_path)
    special = special_ids(tok, str(corp.tokenizer_path))
    settings = asdict(cfg.objective)
    sentinels = sum(settings[spec.sentinels_setting] for spec in _objectives_on(cfg) if spec.sentinels_setting)
    changed = sentinels > 0
    if changed:  # T5's sentinels <extra_id_0> ... join the run's vocabulary (the corpus's ids stay as they are)
        tok = with_sentinels(tok, sentinels)
    vocab_size = tok.get_vocab_size()
    if cfg.model.vocab_size and cfg.model.vocab_size != vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} but the corpus tokenizer has {vocab_size} tokens")
    return _Corpus(Path(corpus), Path(corp.tokenizer_path), corp.tokenizer_hash, tok, special, vocab_size,
                   corp.split("train"), corp.split("val"), changed)


def check_objective_data(cfg: RunConfig, train, say: bool = True) -> None:
    """Refuse, before any work, a corpus or setting an objective cannot use, as its row says (objectives/spec.py):
    permute on documents that all have one sentence, span rows needing more spans than sentinels."""
    on = {spec.name for spec in _objectives_on(cfg)}
    for spec in _objectives_on(cfg):
        check = spec.data_check()
        if check is not None:
            check(train, seq_len=cfg.data.seq_len, settings=asdict(cfg.objective), on=on, say=say)


def _objectives_on(cfg: RunConfig) -> list[ObjectiveSpec]:
    """The rows (objectives/spec.py) of the objectives with weight > 0."""
    return [OBJECTIVES[name] for name, w in cfg.objective.weights.items() if w > 0]


def resume_policy(run_dir: Path, resume: bool, cfg: RunConfig, tokenizer_hash: str,
                  dist: Dist) -> tuple[Path | None, bool]:
    """-> (the checkpoint to continue, whether to resume). Decides what `--out` (and `--resume`) means:

    a new or empty directory starts a run; --resume continues its latest checkpoint when the
    configuration allows it (runs.check_resumable); a run killed before its first checkpoint starts
    again from step 0; any other existing run is an error (never overwritten).
    """
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
        log.info(f"{run_dir} has no checkpoint yet: starting it again from step 0")
        resume = False
        if dist.main:
            for name in METRICS_FILES:
                (run_dir / name).unlink(missing_ok=True)
    elif resume:
        if ckpt is None:
            raise CheckpointError(f"--resume: {run_dir} has no checkpoint to resume from; drop --resume to start anew")
        check_resumable(run_dir, ckpt, cfg, tokenizer_hash, dist.world)
    elif ckpt is not None or (run_dir.exists() and any(run_dir.iterdir())):
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out")
    return ckpt, resume


def _setup(tc: TrainConfig, dist: Dist) -> tuple[torch.device, torch.dtype | None]:
    """Seed, device (this rank's under torchrun), its settings (the allocator on a CPU, TF32 on a GPU)
    and autocast dtype."""
    set_seed(tc.seed, tc.deterministic)
    device = dist.device if dist.enabled else pick_device(tc.device)
    if device.type == "cpu":
        tune_allocator()
    enable_tf32(device)
    return device, pick_dtype(tc.precision, device)


def _write_run_files(run_dir: Path, cfg: RunConfig, data: _Corpus, corpus: str | Path, init,
                     sizing: Sizing | None) -> None:
    """What makes the run directory self-describing: config.yaml, tokenizer.json, corpus.json (and sizing.json:
    what model.preset=auto chose and why)."""
    save_config(cfg, run_dir / "config.yaml")
    if sizing is not None:
        (run_dir / SIZING_FILE).write_text(json.dumps(sizing.to_dict(), indent=1), encoding="utf-8")
    if data.tokenizer_changed:
        data.tokenizer.save(str(run_dir / "tokenizer.json"))
    else:
        shutil.copyfile(data.tokenizer_path, run_dir / "tokenizer.json")
    (run_dir / "corpus.json").write_text(json.dumps(
        {"path": str(Path(corpus).resolve()), "tokenizer_hash": data.tokenizer_hash,
         "train_tokens": data.train.n_tokens, "val_tokens": data.val.n_tokens, "init": str(init) if init else None},
        indent=1), encoding="utf-8")


def _fsdp_blocks(model: nn.Module, kind: str) -> list[nn.Module]:
    """What FSDP shards as units of their own: each block of the backbone (the RTD generator's too), as the
    kind's row in backbones/spec.py names them. The RNN's layers stay in the root unit."""
    blocks = BACKBONES[kind].block_classes()
    return [m for m in model.modules() if isinstance(m, blocks)]


def _print_model(cfg: RunConfig, model: nn.Module, n_params: int, device, dtype, dist: Dist) -> None:
    tc, m, o = cfg.train, cfg.model, cfg.objective
    variant = BACKBONES[m.backbone].describe(m)
    log.info(f"model: {cfg.model.backbone}{variant} {n_params / 1e6:.2f}M backbone parameters, "
             f"objectives {', '.join(model.objectives)}, device {device}, precision {dtype or 'fp32'}"
             + (f", weight EMA {tc.ema}" if tc.ema else "")
             + (f", mask rate {o.mask_rate} -> {o.mask_rate_end}" if o.mask_rate_end else "")
             + (f", {dist.world} processes ({tc.parallel})" if dist.enabled else ""))


METRICS_FILES = ("metrics.jsonl", "metrics.csv")


class MetricsLog:
    """The run's logging sinks: metrics.jsonl (one JSON record per line), the same numbers in metrics.csv
    (`step,metric,value`: one row per step and metric, as spreadsheets and pandas read them; a record's keys vary
    between training and validation steps) and, optionally, TensorBoard.
    With run_dir None (a rank other than 0) it writes nothing."""

    def __init__(self, run_dir: Path | None, tensorboard: bool = False):
        self.file = self.csv = None
        if run_dir is not None:
            self.file = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")
            new = not (run_dir / "metrics.csv").is_file()
            self.csv = open(run_dir / "metrics.csv", "a", encoding="utf-8", newline="")
            if new:
                self.csv.write("step,metric,value\n")
        self.tb = _tensorboard(run_dir) if tensorboard and run_dir is not None else None

    def __call__(self, record: dict[str, Any]) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}  # final: 1
        self.csv.writelines(f"{record['step']},{k},{int(v) if isinstance(v, bool) else v!r}\n"
                            for k, v in numbers.items())
        self.csv.flush()
        if self.tb:
            for k, v in numbers.items():
                self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        for f in (self.file, self.csv):
            if f:
                f.close()
        if self.tb:
            self.tb.close()


def _write_summary(run_dir: Path, result: LoopResult, n_params: int) -> None:
    final = [h for h in result.history if h.get("final")]
    summary = {"steps": result.steps, "tokens": result.tokens, "seconds": round(result.seconds, 1),
               "tok_per_s": round(result.tokens / max(result.seconds, 1e-9), 1),
               "backbone_parameters": n_params, **(final[-1] if final else {})}
    if (run_dir / SIZING_FILE).is_file():
        summary["sizing"] = json.loads((run_dir / SIZING_FILE).read_text(encoding="utf-8"))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    log.info(f"pretrained {result.steps} steps, {result.tokens:,} tokens in {result.seconds:.0f}s "
             f"({summary['tok_per_s']:,.0f} tok/s); " +
             ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if k.startswith("val_")))


def batch_source(split, seq_len, batch_size, special, objectives, seed=0, shuffle=True, rank=0, world=1):
    """The batches `objectives` ({name: Objective}) read: sentence pairs of an objective's kind (nsp, sop), or
    packed rows, with the sentence starts marked where one reads them (permute).

    Both give next_batch(), state_dict() / load_state_dict() and rows_per_epoch.
    """
    from .data.packing import PackedLoader
    from .data.pairs import PairLoader

    reads = {obj.reads for obj in objectives.values()}
    pairs = [obj.name for obj in objectives.values() if obj.reads == "pairs"]
    if pairs:
        return PairLoader(split, seq_len, batch_size, special, kind=pairs[0], seed=seed, shuffle=shuffle,
                          rank=rank, world=world)
    return PackedLoader(split, seq_len, batch_size, special, seed=seed, shuffle=shuffle, rank=rank, world=world,
                        sentences="sentences" in reads)


def _set_word_starts(model, tok, split, n_docs: int = 500) -> None:
    """Whole-word masking: learn which tokens begin a word from the tokenizer's offsets on a
    sample of the corpus (decoded back to text), for any tokenizer kind."""
    from .tokenizer import word_start_table

    texts = [tok.decode(split.doc(i).tolist()) for i in range(min(n_docs, split.n_docs))]
    table = word_start_table(tok, texts)
    for obj in model.objectives.values():  # every Objective has the attribute; those that mask tokens read it
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
    written.append(_save_plot(plt, fig, ax, run_dir / "loss.png"))
    acc_keys = sorted({k for r in val for k in r if k.endswith("_acc")})
    if acc_keys:
        fig, ax = plt.subplots(figsize=(7, 4))
        for k in acc_keys:
            ax.plot([r["tokens"] for r in val if k in r], [r[k] for r in val if k in r], "o-", label=k)
        ax.set_xlabel("tokens")
        ax.set_ylabel("accuracy")
        written.append(_save_plot(plt, fig, ax, run_dir / "accuracy.png"))
    return written


def _save_plot(plt, fig, ax, path: Path) -> Path:
    """Legend, light grid, tight layout; write the figure to path and free it."""
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
