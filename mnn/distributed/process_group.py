"""Joining a data-parallel job: torchrun's environment, torch.distributed's process group.

A job is N processes, its *ranks*, that run the same training script. Whoever
starts them (``torchrun``, or ``mnn train --nproc N`` through ``mnn.distributed.launch``)
gives each one torchrun's environment variables:

* ``RANK`` (0 to N-1) and ``WORLD_SIZE`` (N): which rank this is, of how many;
* ``LOCAL_RANK``: its index among the ranks of its machine (which GPU it takes);
* ``MASTER_ADDR`` and ``MASTER_PORT``: where rank 0 listens, for the rendezvous.

``init_process_group`` reads them and opens torch.distributed's default process
group: gloo for arrays in main memory, NCCL for arrays on NVIDIA GPUs (where torch
has CUDA), both in one group as torch's own default does. Its ``timeout_s`` bounds
every wait: the rendezvous, and each collective afterwards. So a rank that crashed
or hangs ends the others with a ``DistributedError`` instead of a hang. (A crashed
rank is noticed at once: the kernel closes its sockets, and gloo reads the end of
the stream. A rank that hangs is noticed after ``timeout_s``.)

torch is imported here only when a function needs it, never by ``import mnn.distributed``.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mnn.errors import MnnError

#: Seconds a rank waits for the others (rendezvous, each collective) before it gives up.
#: torch's own default is 30 minutes; a digits epoch takes about a second.
DEFAULT_TIMEOUT_S = 120.0
#: What torchrun sets, and what a rank needs to join its job.
ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(MnnError, RuntimeError):
    """A data-parallel job failed: a rank crashed or stalled, or the ranks disagree."""


@dataclass(frozen=True)
class Job:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` on its
    machine, and the torch.distributed backend(s) of the group (``"gloo"``, or
    ``"cpu:gloo,cuda:nccl"`` where torch has CUDA)."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    timeout_s: float

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints, plots and saves."""
        return self.rank == 0

    def device(self, name: str) -> str:
        """The device this rank trains on: each rank takes the GPU of its ``local_rank``
        (``cuda`` becomes ``cuda:<local_rank>``, as DDP's ``device_ids=[local_rank]``);
        CPU devices stay as they are."""
        return f"cuda:{self.local_rank}" if name.partition(":")[0] == "cuda" else name


_job: Job | None = None


def torch_distributed():
    """``torch.distributed``, imported on first use."""
    return importlib.import_module("torch.distributed")


def launched() -> bool:
    """Whether this process was started as a rank of a job (torchrun's ``RANK`` and
    ``WORLD_SIZE`` are set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def default_backend() -> str:
    """gloo for host memory; NCCL as well for GPU memory where torch has CUDA and NCCL."""
    torch = importlib.import_module("torch")
    if torch.cuda.is_available() and torch_distributed().is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def init_process_group(timeout_s: float = DEFAULT_TIMEOUT_S, backend: str | None = None) -> Job:
    """Join the job that torchrun's environment describes; returns this rank's ``Job``.

    ``timeout_s`` bounds the rendezvous and every collective later. ``backend`` is a
    torch.distributed backend string (default: ``default_backend()``). A missing
    variable or ranks that do not all arrive raise ``DistributedError``.
    """
    global _job
    missing = [name for name in ENVIRONMENT if name not in os.environ]
    if missing:
        raise DistributedError(f"init_process_group: torchrun's variables {', '.join(missing)} "
                               f"are not set; start the ranks with torchrun (or mnn train "
                               f"--nproc N), which sets them")
    if not timeout_s > 0:
        raise ValueError(f"init_process_group: timeout_s must be positive, got {timeout_s}")
    if torch_distributed().is_initialized():
        raise DistributedError("init_process_group: this process has joined a job already; "
                               "call destroy_process_group() first")
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    backend = backend or default_backend()
    local_rank, torch = int(os.environ["LOCAL_RANK"]), importlib.import_module("torch")
    if backend.endswith("nccl") and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)  # NCCL's current device: this rank's own GPU
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        torch_distributed().init_process_group(
            backend, timeout=datetime.timedelta(seconds=timeout_s), init_method="env://")
    except RuntimeError as error:  # the rendezvous timed out, or the address is wrong
        raise DistributedError(
            f"rank {rank} of {world_size}: could not meet the other ranks at {where} within "
            f"{timeout_s:g} s ({_first_line(error)}); are all {world_size} ranks started, "
            f"with the same MASTER_ADDR and MASTER_PORT?") from None
    _job = Job(rank, world_size, local_rank, backend, timeout_s)
    return _job


def current_job() -> Job:
    """The ``Job`` of ``init_process_group``; ``DistributedError`` before it."""
    if _job is None or not torch_distributed().is_initialized():
        raise DistributedError("no process group: call mnn.distributed.init_process_group() "
                               "first, in every rank")
    return _job


def destroy_process_group() -> None:
    """Leave the job (a no-op when there is none)."""
    global _job
    if _job is not None and torch_distributed().is_initialized():
        torch_distributed().destroy_process_group()
    _job = None


@contextlib.contextmanager
def collective(what: str) -> Iterator[Job]:
    """Run collectives; a failure of torch.distributed becomes one ``DistributedError``.

    The group is destroyed first: a gloo group left with a failed operation pending
    aborts the interpreter at exit ("terminate called without an active exception").
    """
    job = current_job()
    try:
        yield job
    except MnnError:
        raise
    except RuntimeError as error:  # torch.distributed.DistBackendError and gloo's errors
        destroy_process_group()
        raise DistributedError(
            f"rank {job.rank} of {job.world_size}: {what} failed: another rank crashed, or "
            f"stalled for longer than the timeout ({job.timeout_s:g} s); its own output says "
            f"why ({_first_line(error)})") from None


def sum_across_ranks(values: Sequence[float]) -> list[float]:
    """The sums over all ranks of a few numbers (the epoch's loss total and sample count)."""
    torch = importlib.import_module("torch")
    with collective("summing numbers across ranks"):
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
        torch_distributed().all_reduce(tensor)
    return tensor.tolist()


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
