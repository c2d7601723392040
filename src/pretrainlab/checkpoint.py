"""Checkpoints that are never half-written and never loaded unchecked.

A checkpoint is a directory `checkpoints/step_0000123/` holding
  model.safetensors   the weights (safetensors: no pickle); with a weight EMA (train.ema) their average
  training_weights.safetensors   with a weight EMA only: the weights being trained (what --resume continues)
  optimizer.pt        optimizer + scheduler state (tensors and numbers only; loaded with weights_only=True)
  rng.safetensors     RNG states
  state.json          step, tokens, elapsed time, data position, hashes of the files above
It is written under a temporary name and renamed into place when complete; the file
`checkpoints/latest` (also replaced atomically) names the newest complete one.

A model sharded by FSDP is saved in the same format: its whole state is gathered first (by every
rank together, `gather_full_state`) and written by rank 0, and loaded whole into the shards; so a
run continues under FSDP, DDP or one process alike.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, save_model

from .distributed import is_sharded
from .ema import WeightEMA
from .errors import CheckpointError
from .files import sha256_file

KEEP = 2  # complete checkpoints kept on disk
TRAINING_WEIGHTS = "training_weights.safetensors"
"""With a weight EMA, the weights being trained; model.safetensors holds their average (what the run exports)."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unavailable."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except Exception:
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    return renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0


def _disk_full(e: BaseException, where: Path) -> bool:
    """ENOSPC as each writer reports it: an OSError, safetensors' "os error 28", or torch's bare
    "unexpected pos" (then only the free space tells)."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if "No space left on device" in str(e) or "os error 28" in str(e):
        return True
    try:
        return shutil.disk_usage(where).free < 1 << 16
    except OSError:
        return False


@dataclass
class FullState:
    """A sharded model's whole state, as one unsharded process holds it."""

    weights: dict[str, torch.Tensor]
    """model.state_dict(): every name, tied ones included (CPU tensors)."""
    optimizer: dict[str, Any]
    """optimizer.state_dict(): state keyed by parameter number, as torch.optim writes it."""


def gather_full_state(model: torch.nn.Module, optimizer) -> FullState | None:
    """The whole state of an FSDP model and its optimizer: a collective that every rank must call at
    the same point. Rank 0 receives it (on the CPU); the other ranks get None."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # cpu_offload: only rank 0 keeps it
    weights = get_model_state_dict(model, options=options)
    opt = get_optimizer_state_dict(model, optimizer, options=options) if optimizer is not None else {}
    if not weights:
        return None
    # the optimizer's state comes keyed by parameter name; checkpoints key it by number, as optimizer.state_dict() does
    number = _parameter_numbers(model, optimizer) if optimizer is not None else {}
    by_number = {"state": {number[name]: s for name, s in opt.get("state", {}).items()},
                 "param_groups": optimizer.state_dict()["param_groups"]} if opt else {}
    return FullState(weights, by_number)


def _parameter_numbers(model: torch.nn.Module, optimizer) -> dict[str, int]:
    """Each parameter name (a tied parameter under each of its names) -> its number in optimizer.state_dict()."""
    number = {id(p): i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
    return {name: number[id(p)] for name, p in model.named_parameters(remove_duplicate=False) if id(p) in number}


def _tied_names(model: torch.nn.Module) -> dict[str, list[str]]:
    """Names of one tensor in model.state_dict(), grouped: the first in sorted order (the one safetensors'
    save_model keeps) -> the others. E.g. the MLM decoder's weight is the token embedding's."""
    names: dict[int, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        names.setdefault(id(t), []).append(name)
    return {min(group): sorted(group)[1:] for group in names.values()}


def _save_full_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Write gathered weights exactly as save_model writes the unsharded model: each tied tensor once,
    under its first name, the other names recorded in the metadata."""
    weights, metadata = dict(weights), {}
    for kept, others in _tied_names(model).items():
        for name in others:
            del weights[name]
            metadata[name] = kept
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path), metadata=metadata or None)


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer, scheduler, state: dict[str, Any],
                    full: FullState | None = None, ema: WeightEMA | None = None,
                    rng: dict[str, torch.Tensor] | None = None, scaler=None) -> Path:
    """Write a complete checkpoint atomically; returns its directory.

    For a sharded model, `full` is its state, gathered beforehand by every rank (gather_full_state).
    With `ema`, model.safetensors holds the average and TRAINING_WEIGHTS the weights being trained.
    `rng`: the RNG states to save (`gather_rng_states`: every rank's); None saves this process's CPU
    generator. `scaler`: fp16's gradient scaler, whose state is saved beside the optimizer's.
    """
    ckpts = Path(run_dir) / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    name = f"step_{state['step']:07d}"
    final, tmp = ckpts / name, ckpts / (name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        if full is not None:
            _save_full_weights(model, full.weights, tmp / "model.safetensors")
        elif ema is None:
            save_model(_unwrap(model), str(tmp / "model.safetensors"))
        else:
            save_model(_unwrap(model), str(tmp / TRAINING_WEIGHTS))
            with ema.applied():
                save_model(_unwrap(model), str(tmp / "model.safetensors"))
        optimizer_state = full.optimizer if full is not None else optimizer.state_dict() if optimizer is not None else {}
        torch.save({"optimizer": optimizer_state,
                    "scheduler": scheduler.state_dict() if scheduler is not None else {},
                    "scaler": scaler.state_dict() if scaler is not None else {}}, tmp / "optimizer.pt")
        save_file(rng if rng is not None else {"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        names = ("model.safetensors", "optimizer.pt", "rng.safetensors") + ((TRAINING_WEIGHTS,) if ema else ())
        files = {f: sha256_file(tmp / f) for f in names}
        (tmp / "state.json").write_text(json.dumps({**state, "files": files}, indent=1), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        # The same step saved again (the end of a run right after a step checkpoint): swap the new copy
        # in, so that `latest` never names a missing or half-deleted directory, then delete the old one.
        swapped = final.exists() and _exchange(tmp, final)
        if not swapped:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        _fsync_dir(ckpts)
        write_text_atomic(ckpts / "latest", name + "\n")
        if swapped:
            shutil.rmtree(tmp)
    except BaseException as e:
        full = isinstance(e, Exception) and _disk_full(e, ckpts)  # before the partial files are removed
        shutil.rmtree(tmp, ignore_errors=True)
        if not (full or isinstance(e, OSError)):
            raise
        prev = latest_checkpoint(run_dir)
        kept = f"the last complete checkpoint, {prev}, is intact" if prev else "no checkpoint was completed before it"
        why = "the disk is full (no space left on device)" if full else f"{e.strerror or e} ({e.filename})"
        raise CheckpointError(f"cannot write checkpoint {final}: {why}; {kept}. "
                              "Free some space, then continue with --resume") from e
    for old in sorted(p for p in ckpts.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = Path(run_dir) / "checkpoints"
    pointer = ckpts / "latest"
    if not pointer.is_file():
        return None
    path = ckpts / pointer.read_text().strip()
    return path if path.is_dir() else None


def read_state(ckpt: Path, verify: bool = True) -> dict[str, Any]:
    """state.json of a checkpoint, after checking every file against its recorded hash."""
    try:
        state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{ckpt}: state.json is missing or unreadable ({e}); the checkpoint is incomplete") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpt}: state.json is not a checkpoint description (a JSON {type(state).__name__}); "
                              "delete this checkpoint directory to fall back to an earlier one")
    if verify:
        if not isinstance(state.get("files"), dict) or "model.safetensors" not in state["files"]:
            raise CheckpointError(f"{ckpt}: state.json lists no sha256 for model.safetensors, so the files cannot be "
                                  "verified; delete this checkpoint directory to fall back to an earlier one")
        for name, digest in state["files"].items():
            f = ckpt / name
            if not f.is_file():
                raise CheckpointError(f"{ckpt}: {name} is missing; the checkpoint is incomplete")
            if sha256_file(f) != digest:
                raise CheckpointError(
                    f"{ckpt}: {name} does not match its recorded sha256 (corrupt or truncated); "
                    "delete this checkpoint directory to fall back to an earlier one"
                )
    return state


Rename = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
"""Saved weight names -> the model's (weights saved by an older layout of the model: models.renamed_weights)."""


def load_weights(ckpt: Path, model: torch.nn.Module, strict: bool = True, name: str = "model.safetensors",
                 rename: Rename | None = None) -> None:
    """The checkpoint's weights (file `name`) into the model, their names mapped by `rename` first."""
    f = Path(ckpt) / name
    if not f.is_file():
        raise CheckpointError(f"{ckpt}: no {name}")
    try:
        weights = load_file(str(f))
    except SafetensorError as e:
        raise CheckpointError(f"{f} is not a safetensors file ({e}); it was not loaded") from None
    missing, unexpected = load_state(_unwrap(model), rename(weights) if rename else weights)
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{f}: weights do not fit the model (missing: {sorted(missing)[:5]}, unexpected: {sorted(unexpected)[:5]}); "
            "was it trained with another configuration?"
        )


def load_state(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """model.load_state_dict(weights, strict=False) -> (missing, unexpected), where a tied tensor saved under one
    of its names (save_model keeps one) is not missing under the others."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    group: dict[str, tuple[str, ...]] = {}
    for first, others in _tied_names(model).items():
        for n in (first, *others):
            group[n] = (first, *others)
    return [n for n in missing if not any(other in weights for other in group[n])], list(unexpected)


def _load_sharded_weights(ckpt: Path, model: torch.nn.Module, rename: Rename | None = None) -> None:
    """Every rank reads the whole weights and keeps its own shards (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    f = Path(ckpt) / "model.safetensors"
    try:
        weights = load_file(str(f))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{f} is not a readable safetensors file ({e}); it was not loaded") from None
    weights = rename(weights) if rename else weights
    tied = _tied_names(model)
    expected = set(model.state_dict()) - {name for others in tied.values() for name in others}
    missing, unexpected = expected - set(weights), set(weights) - expected
    if missing or unexpected:
        raise CheckpointError(
            f"{f}: weights do not fit the model (missing: {sorted(missing)[:5]}, unexpected: {sorted(unexpected)[:5]}); "
            "was it trained with another configuration?"
        )
    # each tied tensor under one name, its first in the module tree (the only one set_model_state_dict
    # distributes; loading it loads the others); strict=False: the other names are absent on purpose
    first = {id(t): n for n, t in [*model.named_parameters(), *model.named_buffers()]}
    weights = {first[id(t)]: weights[saved] for saved, t in model.state_dict(keep_vars=True).items() if saved in tied}
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=False))


def _load_sharded_optimizer(model: torch.nn.Module, optimizer, saved: dict[str, Any]) -> None:
    """Every rank reads the whole optimizer state (keyed by number) and keeps its own shards (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    name: dict[int, str] = {}
    for n, i in _parameter_numbers(model, optimizer).items():
        name.setdefault(i, n)  # a tied parameter under its first name
    by_name = {"state": {name[i]: s for i, s in saved["state"].items()},
               "param_groups": [{**g, "params": [name[i] for i in g["params"]]} for g in saved["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))


def load_training_state(ckpt: Path, model, optimizer, scheduler, ema: WeightEMA | None = None, *,
                        device: torch.device | None = None, rank: int = 0, scaler=None,
                        rename: Rename | None = None) -> dict[str, Any]:
    """Restore weights (names mapped by `rename`, as load_weights), optimizer, scheduler (and fp16's gradient
    scaler) and this rank's RNG states (and the weight average into `ema`); returns state.json. `device`: where
    this rank trains (its GPU's generator is restored).

    A sharded model (FSDP) takes its shards of the same whole state: every rank must call this.
    """
    state = read_state(ckpt)
    sharded = is_sharded(model)
    if ema is not None:
        if not (ckpt / TRAINING_WEIGHTS).is_file():
            raise CheckpointError(f"{ckpt} was saved without a weight EMA (no {TRAINING_WEIGHTS}); resume it "
                                  "with train.ema=0, as it was trained")
        load_weights(ckpt, model, rename=rename)  # the average, taken into the EMA; then the weights being trained
        ema.take_from_model(state["step"])
        load_weights(ckpt, model, name=TRAINING_WEIGHTS, rename=rename)
    elif sharded:
        _load_sharded_weights(ckpt, model, rename)
    else:
        load_weights(ckpt, model, rename=rename)
    try:
        opt = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as e:
        raise CheckpointError(f"{ckpt}/optimizer.pt holds something other than plain tensors and numbers; it was "
                              f"refused unread ({type(e).__name__}); delete this checkpoint directory") from None
    if optimizer is not None and opt.get("optimizer") and sharded:
        _load_sharded_optimizer(model, optimizer, opt["optimizer"])
    elif optimizer is not None and opt.get("optimizer"):
        optimizer.load_state_dict(opt["optimizer"])
    if scheduler is not None and opt.get("scheduler"):
        scheduler.load_state_dict(opt["scheduler"])
    if scaler is not None and opt.get("scaler"):
        scaler.load_state_dict(opt["scaler"])
    restore_rng(rank_rng(load_file(str(ckpt / "rng.safetensors")), rank, device), device)
    return state


# --------------------------------------------------------------------------- RNG states
# rng.safetensors holds "torch" (rank 0's CPU generator, what a single process restores), "rank{r}.torch"
# for the other ranks, and "rank{r}.cuda" for each rank that trained on a GPU (that GPU's generator).
# Checkpoints written before per-rank states hold "cuda0", "cuda1", ...: every GPU rank 0's process saw.


def rng_state(device: torch.device | None) -> dict[str, torch.Tensor]:
    """This process's generators that training draws from: the CPU's, and its GPU's when it trains on one."""
    rng = {"torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def restore_rng(rng: dict[str, torch.Tensor], device: torch.device | None) -> None:
    """Set the generators `rng_state` read. A GPU state is restored only when this process trains on a GPU
    (a GPU run continues on the CPU without it)."""
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)


def rank_rng(saved: dict[str, torch.Tensor], rank: int, device: torch.device | None) -> dict[str, torch.Tensor]:
    """Rank `rank`'s states among a checkpoint's, as `rng_state` gives them. A rank the checkpoint has no
    states for (more ranks now than then) takes rank 0's CPU state; a GPU whose state is missing keeps its
    own (a checkpoint from a machine with fewer GPUs, or from the CPU)."""
    rng = {"torch": saved.get(f"rank{rank}.torch", saved["torch"])}
    if device is not None and device.type == "cuda":
        cuda = saved.get(f"rank{rank}.cuda")
        if cuda is None:  # an older checkpoint: rank 0's copy of every GPU it saw, "cuda0", "cuda1", ...
            cuda = saved.get(f"cuda{device.index if device.index is not None else torch.cuda.current_device()}")
        if cuda is not None:
            rng["cuda"] = cuda
    return rng


def rank_rng_states(rng: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """One rank's states (`rng_state`) as a checkpoint stores them."""
    return {"torch" if (rank, k) == (0, "torch") else f"rank{rank}.{k}": v for k, v in rng.items()}


def gather_rng_states(rng: dict[str, torch.Tensor], dist) -> dict[str, torch.Tensor]:
    """Every rank's states (`rng_state`), as a checkpoint stores them: one collective that every rank calls
    (a single process: its own)."""
    if not dist.enabled:
        return rank_rng_states(rng, 0)
    names = sorted(rng)
    flat = torch.cat([rng[k].reshape(-1) for k in names])  # uint8, the same layout on every rank
    rows = dist.gather(flat).cpu()  # (world, n)
    out: dict[str, torch.Tensor] = {}
    for r in range(dist.world):
        at = 0
        for k in names:
            n = rng[k].numel()
            out.update(rank_rng_states({k: rows[r, at:at + n].clone()}, r))
            at += n
    return out
