"""Data parallelism through torch.distributed, launched by torchrun (gloo on CPU, nccl on GPU).

`pretrainlab pretrain` runs unchanged under `torchrun --nproc_per_node N`: each rank reads its
own rows, DDP all-reduces the gradients (or, with train.parallel=fsdp, FSDP2 shards the model
and reduce-scatters them), rank 0 alone writes checkpoints, metrics and plots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .config import ConfigError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    """This rank's device: where it trains and where its collectives' tensors live (a GPU under nccl,
    the CPU under gloo)."""

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def max(self, x: float) -> float:
        """The largest value of x over all ranks (all ranks must call it)."""
        if not self.enabled:
            return x
        t = torch.tensor([float(x)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t)

    def gather(self, t: Tensor) -> Tensor:
        """(world, *t.shape): every rank's t, in rank order, on t's device (all ranks must call it, with
        tensors of one shape and dtype). One collective, however many values t carries."""
        if not self.enabled:
            return t[None]
        local = t.to(self.device).reshape(-1)
        out = torch.empty(self.world * local.numel(), dtype=t.dtype, device=self.device)
        dist.all_gather_into_tensor(out, local)
        return out.view(self.world, *t.shape).to(t.device)


def choose_backend(device: torch.device, local_rank: int, local_world: int, n_gpus: int) -> tuple[str, torch.device]:
    """-> (the process group's backend, this rank's device) for a rank that trains on `device`'s type.

    The backend follows the device, not what the host has: gloo for the CPU (also on a GPU host),
    nccl for GPUs. A rank's GPU is its local rank's when the node shows every rank its GPUs, and the
    one it sees when it sees one (one GPU per process, SLURM-style CUDA_VISIBLE_DEVICES).
    """
    if device.type != "cuda":
        return "gloo", torch.device("cpu")
    if n_gpus == 1:
        return "nccl", torch.device("cuda", 0)
    if local_world <= n_gpus:
        return "nccl", torch.device("cuda", local_rank)
    raise ConfigError(f"{local_world} processes on this node but {n_gpus} GPUs visible to each: NCCL needs one GPU "
                      f"per process; start at most {n_gpus} (torchrun --nproc_per_node {n_gpus}), show each process "
                      "its own GPU with CUDA_VISIBLE_DEVICES, or train on the CPU with --set train.device=cpu")


def init_from_env(device: torch.device = torch.device("cpu")) -> Dist:
    """Join the process group torchrun describes in the environment; a single process otherwise.
    `device`: where the run trains (loop.pick_device of train.device), which decides the backend."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    n_gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    backend, mine = choose_backend(device, local, local_world, n_gpus)
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(mine)
        dist.init_process_group(backend=backend)
    return Dist(rank, world, local, mine)


def global_count(n: int | Tensor, device: torch.device) -> int | Tensor:
    """Sum of n over all ranks, at least 1 (max(n, 1) when not distributed): for losses averaged over the
    whole global batch, so that N ranks x batch B train exactly like 1 process x batch N*B.

    n a number (a length: known on the host), or a count still on the device. Distributed, or given a
    tensor, the answer is a tensor on `device`, all-reduced without waiting for it: the host never waits
    for the device here (torch.full launches a fill, no copy from host memory)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return n.clamp_min(1) if torch.is_tensor(n) else max(n, 1)
    backend_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = n.to(backend_device, torch.int64) if torch.is_tensor(n) else torch.full((), n, dtype=torch.int64,
                                                                               device=backend_device)
    dist.all_reduce(t)
    return t.to(device, non_blocking=True).clamp_min(1)


def end_distributed(wait: bool = True) -> None:
    """Leave the process group before the process exits (torchrun's ranks): with `wait`, first until
    every rank is done (rank 0 writes the summary and plots after the others have finished training).
    A rank that exits with the group still up can abort in gloo's threads ("terminate called without
    an active exception") and take the whole run down with it."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait:
        dist.barrier()
    dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def shard(model: nn.Module, blocks: list[nn.Module], device: torch.device) -> nn.Module:
    """FSDP2 (`fully_shard`), in place: each rank keeps 1/world of every parameter, of its gradient
    and of its optimizer state; a unit's full parameters exist only during its forward and backward.

    One unit per block in `blocks`, then the root, which keeps all the rest (embeddings, the heads
    tied to them, final norms) in one unit, so that tied weights are never split between two.
    Gradients are reduce-scattered and averaged over the ranks, as DDP averages them. Parameters
    still on the CPU move to `device` unit by unit, so the whole model never has to fit on one device.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    for p in model.parameters():
        if not p.is_contiguous():  # FSDP shards contiguous parameters only (not the CNN's channels-last kernels)
            p.data = p.data.contiguous()
    mesh = init_device_mesh(device.type, (world_size(),))
    for block in blocks:
        fully_shard(block, mesh=mesh)
        if hasattr(block, "two_stream"):  # PLM's query stream calls it instead of forward
            register_fsdp_forward_method(block, "two_stream")
    fully_shard(model, mesh=mesh)
    return model


def is_sharded(model: nn.Module) -> bool:
    """Sharded by FSDP: its state exists whole only when every rank gathers it together."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)
