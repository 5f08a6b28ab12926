"""One process or many: the rank, world size and collectives that the training loop needs.

Under ``torchrun`` the environment carries RANK, LOCAL_RANK and WORLD_SIZE, and
training joins a process group: NCCL on GPUs, gloo on CPUs. Without it, the
same code runs as a world of one and the collectives do nothing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the training job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """Wrap in DistributedDataParallel when there is more than one process; it averages gradients."""
        if not self.enabled:
            return module
        device_ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)

    def gather(self, value: object) -> list[object]:
        """Collect one picklable value from every rank, in rank order."""
        if not self.enabled:
            return [value]
        values: list[object] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def broadcast(self, value: object) -> object:
        """Send rank 0's value to every rank."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_true(self, flag: bool) -> bool:
        """Return True on every rank when ``flag`` is True on every rank."""
        return all(self.gather(bool(flag)))

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup(device_name: str) -> tuple[Distributed, str]:
    """Join the process group when launched by torchrun; return the context and the device to use."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(), device_name
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    else:
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    log.info("rank %d of %d (local rank %d) joined the %s process group", rank, world_size, local_rank, backend)
    if rank != 0:
        # Rank 0 reports progress for the whole job, so other ranks log only warnings and errors.
        logging.getLogger("dcgan").setLevel(logging.WARNING)
    return Distributed(rank, local_rank, world_size), device_name


def teardown(context: Distributed) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
