"""Data-parallel gradient passes with ``torch.distributed`` (``gradients.nproc``).

One code path for one process and many: a pass hands each process whole batches of the
single-process batch layout (``share``: batch ``i`` to rank ``i mod world``; the retain loss is
contrastive within a batch, so batches are never cut), each process sums its batches' weighted
gradients, and ``all_sum`` adds the processes' sums. Without a process group every function here
is the identity, so a one-process run computes exactly what it did before.

A stage asks for ``nproc`` processes with ``relaunch``: when it was not started by a launcher, it
runs itself again under ``torchrun`` (``python -m torch.distributed.run --standalone``) and exits
with its exit code. Inside, ``joined`` makes the process group (``gloo`` on CPU, ``nccl`` on CUDA,
one GPU per process) and rank 0 alone writes the outputs (``is_main``).

    gradients.nproc: 4      # params.yaml; `dvc repro` then runs the gradients stage on 4 GPUs
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Sequence

import torch
import torch.distributed as dist

from .errors import ParamsError

LAUNCHED = "LOCAL_RANK"  # set by torchrun in every process it starts


def rank_world() -> tuple[int, int]:
    """This process's rank and the number of processes (``(0, 1)`` without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes the outputs: rank 0, or the only process."""
    return rank_world()[0] == 0


def share(items: Sequence) -> list:
    """This process's share of ``items`` (whole batches): every ``world``-th from its rank."""
    rank, world = rank_world()
    return list(items[rank::world])


def all_sum(tensors: dict[str, torch.Tensor], *scalars: float) -> list[float]:
    """Add every process's ``tensors`` in place (a no-op for one process) and return the sums of
    ``scalars`` over the processes."""
    if rank_world()[1] == 1:
        return list(scalars)
    for k in sorted(tensors):  # the same order on every rank
        dist.all_reduce(tensors[k], op=dist.ReduceOp.SUM)
    s = torch.tensor(scalars, dtype=torch.float64, device=next(iter(tensors.values())).device)
    dist.all_reduce(s, op=dist.ReduceOp.SUM)
    return s.tolist()


def _backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def relaunch(nproc: int, device: torch.device) -> None:
    """For ``nproc`` > 1, when this process was not started by a launcher: run the same module
    with the same arguments under ``torchrun`` as ``nproc`` processes on this host, then exit
    with its exit code. Refuses more CUDA processes than GPUs before anything starts."""
    if nproc <= 1 or LAUNCHED in os.environ:
        return
    if _backend(device) == "nccl" and device.index is not None:
        raise ParamsError(f"gradients.nproc {nproc} takes one GPU per process; use device: cuda "
                          f"or auto, not {device}")
    if _backend(device) == "nccl" and torch.cuda.device_count() < nproc:
        raise ParamsError(f"gradients.nproc {nproc} on {device} needs {nproc} GPUs; this machine "
                          f"has {torch.cuda.device_count()}")
    module = sys.modules["__main__"].__spec__.name
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", module, *sys.argv[1:]]
    rc = subprocess.call(cmd)
    if rc:
        print(f"error: {module.rsplit('.', 1)[-1]}: {nproc} processes under torchrun failed "
              f"(exit {rc}); the first error is above", file=sys.stderr)
    sys.exit(rc)


@contextlib.contextmanager
def joined(device: torch.device):
    """The process group of a ``torchrun`` launch (nothing without one); on CUDA each process
    takes the GPU of its local rank."""
    if LAUNCHED not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        yield
        return
    backend = _backend(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ[LAUNCHED]))
    dist.init_process_group(backend)
    try:
        yield
    finally:
        dist.destroy_process_group()
