"""Several processes, one model: DistributedDataParallel helpers for ``torchrun``.

``torchrun --nproc_per_node=N -m core train ...`` starts N copies of the trainer with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR/PORT`` set; :func:`init_from_env`
joins them into one process group (nccl on GPUs, gloo on CPU). Each step every rank builds
the same global batch from the epoch's seeded generator, then keeps its own contiguous slice
(:func:`shard`, what DistributedSampler does to an epoch's order), so N ranks x batch/N see
exactly what one process sees with the whole batch; DDP averages the gradients. Only rank 0
writes checkpoints, metrics and status (:attr:`DistInfo.is_main`).

Without those variables everything here is a no-op and training runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import distributed as dist
from torch import nn

from core.errors import DeepLanguageError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # this process among all processes of the job (0 writes files)
    world_size: int = 1  # processes in the job, over every node
    local_rank: int = 0  # this process among those on its node: its GPU
    backend: str = ""  # nccl | gloo | "" (not distributed)
    device: str = "cpu"  # where this rank's model and batches live

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()
_current = SINGLE  # what init_from_env chose for this process


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(backend: str | None = None, device: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment; single process when there is none.

    ``backend``: nccl or gloo (default: nccl when CUDA is available, else gloo). ``device``:
    default ``cuda:<LOCAL_RANK>`` with CUDA, else cpu. Calling it again returns the same group.
    """
    global _current
    world_size = env_world_size()
    cuda = torch.cuda.is_available() and backend != "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = device or (f"cuda:{local_rank}" if cuda else "cpu")
    if world_size <= 1:
        _current = DistInfo(device=device)  # one process; on its GPU when there is one
        return _current
    backend = backend or ("nccl" if cuda else "gloo")
    if backend == "nccl" and not torch.cuda.is_available():
        raise DeepLanguageError("backend nccl needs GPUs; on CPUs use gloo (the default without CUDA).")
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    _current = DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                        backend=backend, device=device)
    return _current


def current() -> DistInfo:
    """What :func:`init_from_env` set up in this process; :data:`SINGLE` (one process, CPU) if never called."""
    if _current is not SINGLE or not (dist.is_available() and dist.is_initialized()):
        return _current
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")), backend=dist.get_backend(), device=device)


def shard(batch: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's contiguous part of a global batch (first dimension); the whole batch when single.

    Parts differ in size by at most one row; every rank gets at least one when the batch has
    at least ``world_size`` rows.
    """
    if not info.enabled:
        return batch
    if len(batch) < info.world_size:
        raise DeepLanguageError(f"a batch of {len(batch)} cannot be shared by {info.world_size} processes; "
                                f"use a batch size of at least {info.world_size}.")
    return torch.tensor_split(batch, info.world_size)[info.rank]


def wrap(model: nn.Module, info: DistInfo) -> nn.Module:
    """The model on this rank's device, inside DistributedDataParallel when distributed."""
    model = model.to(info.device)
    if not info.enabled:
        return model
    device_ids = [torch.device(info.device).index] if info.device.startswith("cuda") else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DDP wrapper (its state_dict has no ``module.`` prefix)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sums of ``values`` over every rank (e.g. loss sums and counts for an epoch's metrics)."""
    if not info.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_object(value, info: DistInfo):
    """Rank 0's ``value`` on every rank (e.g. the run directory rank 0 created)."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup() -> None:
    global _current
    _current = SINGLE
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
