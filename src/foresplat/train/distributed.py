"""Process-group setup for `torchrun` (gloo on CPU, NCCL on CUDA); world size 1 without torchrun.

A single process and a torchrun rank run the same code: `DistInfo` says which rank this is.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """rank, world_size, local_rank of this process and the torch.device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the one that writes files and shows progress)."""
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistInfo:
    """Initialises the process group when launched by torchrun (WORLD_SIZE > 1), else nothing.

    device "auto" = cuda when available; with cuda each rank uses cuda:LOCAL_RANK and NCCL, on
    CPU gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("TrainConfig.device='cuda' but CUDA is not available")
        dev = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, dev)


def teardown_distributed() -> None:
    """Destroys the process group if this module (or anyone) created one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer's bytes, in state_dict order (equal weights <=> equal digest)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def gather_objects(obj, info: DistInfo) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (just [obj] without a process group)."""
    if info.world_size == 1:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
