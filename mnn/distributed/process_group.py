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

The rendezvous runs inside torch's C++ code, where no Python exception can stop it,
and torch's own deadline there is not a bound: its client retries after the timeout,
and waits without end on a listener that accepts the connection and never answers
(another program on ``MASTER_PORT``). So ``init_process_group`` keeps the bound
itself, as torch's NCCL watchdog does for collectives: past ``timeout_s`` a watchdog
thread prints one line and ends the process (``within_deadline``).

torch is imported here only when a function needs it, never by ``import mnn.distributed``;
where it cannot be imported, the first call says which package to install.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import importlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mnn.errors import MnnError

#: Seconds a rank waits for the others (rendezvous, each collective) before it gives up.
#: torch's own default is 30 minutes; a digits epoch takes about a second.
DEFAULT_TIMEOUT_S = 120.0
#: What torchrun sets, and what a rank needs to join its job.
ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: The variable through which ``mnn.distributed.launch`` gives its ranks its pid, so that
#: each rank ends when the launcher does (``follow_launcher``).
LAUNCHER_PID = "MNN_LAUNCHER_PID"
#: What to install where torch is missing: the extra of mnn that pins it.
INSTALL_TORCH = 'pip install "manual-nn[torch]"'
#: How often a rank without Linux's parent-death signal checks that its launcher runs.
PARENT_POLL_S = 0.5


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
    """``torch.distributed``, imported on first use; ``DistributedError`` naming the package
    to install where it cannot be imported."""
    try:
        return importlib.import_module("torch.distributed")
    except ImportError as error:
        raise DistributedError(f"data-parallel training runs on torch.distributed, and torch "
                               f"cannot be imported here ({_first_line(error)}); install it "
                               f"with: {INSTALL_TORCH}") from None


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
    variable raises ``DistributedError``, and so do ranks that do not all arrive, where
    torch reports it in time; where it does not, the process ends after ``timeout_s``
    with one line (``within_deadline``). A rank started by ``mnn.distributed.launch``
    also ends when the launcher ends (``follow_launcher``).
    """
    global _job
    missing = [name for name in ENVIRONMENT if name not in os.environ]
    if missing:
        raise DistributedError(f"init_process_group: torchrun's variables {', '.join(missing)} "
                               f"are not set; start the ranks with torchrun (or mnn train "
                               f"--nproc N), which sets them")
    if not timeout_s > 0:
        raise ValueError(f"init_process_group: timeout_s must be positive, got {timeout_s}")
    follow_launcher()
    if torch_distributed().is_initialized():
        raise DistributedError("init_process_group: this process has joined a job already; "
                               "call destroy_process_group() first")
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    backend = backend or default_backend()
    local_rank, torch = int(os.environ["LOCAL_RANK"]), importlib.import_module("torch")
    if backend.endswith("nccl") and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)  # NCCL's current device: this rank's own GPU
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"

    def not_met(why: str) -> str:
        return (f"rank {rank} of {world_size}: could not meet the other ranks at {where} "
                f"({why}); are all {world_size} ranks started, with the same MASTER_ADDR and "
                f"MASTER_PORT?")

    try:
        with within_deadline(timeout_s, not_met(f"no answer within {timeout_s:g} s")):
            torch_distributed().init_process_group(
                backend, timeout=datetime.timedelta(seconds=timeout_s), init_method="env://")
    except RuntimeError as error:  # the rendezvous timed out, or the address is wrong
        raise DistributedError(not_met(_first_line(error))) from None
    _job = Job(rank, world_size, local_rank, backend, timeout_s)
    return _job


@contextlib.contextmanager
def within_deadline(timeout_s: float, message: str) -> Iterator[None]:
    """Run the body for at most ``timeout_s``; past it, end the process (status 1) with the
    line ``mnn: error: <message>``.

    A watchdog thread keeps the deadline, since the body blocks in C++, out of reach of
    Python's exceptions and signal handlers. While the body runs, what it writes to
    stderr (torch's C++ log: every retry of the rendezvous, each with a stack trace)
    goes to a temporary file: printed afterwards where the body succeeds, dropped where
    it fails, since its error then says what went wrong, in one line.
    """
    lock = threading.Lock()
    finished = False

    def give_up() -> None:
        with lock:  # held until the process ends: the body's own error cannot follow
            if not finished:  # one write, the whole line: ranks that fail at once share stderr
                os.write(saved_stderr, f"mnn: error: {message}\n".encode())
                os._exit(1)

    sys.stderr.flush()
    saved_stderr = os.dup(2)
    succeeded = False
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        watchdog = threading.Timer(timeout_s, give_up)
        watchdog.daemon = True
        watchdog.start()
        try:
            yield
            succeeded = True
        finally:
            with lock:
                finished = True
            watchdog.cancel()
            sys.stderr.flush()
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            if succeeded:
                held.seek(0)
                for line in held:
                    sys.stderr.write(line.decode(errors="replace"))


def follow_launcher() -> None:
    """End this process when the ``mnn.distributed.launch`` that started it ends.

    The launcher stops its ranks itself when it fails, is interrupted or gets SIGTERM
    or SIGHUP, but SIGKILL ends it at once. So each rank asks the kernel for SIGKILL
    when its parent ends (Linux's ``prctl(PR_SET_PDEATHSIG)``, through ctypes); elsewhere a
    daemon thread checks every ``PARENT_POLL_S`` that its parent is still the launcher
    (an orphan gets another parent). A launcher that ended before this call is noticed
    at once. Processes that this one starts do not follow the launcher: the variable
    ``MNN_LAUNCHER_PID`` is removed. A process started otherwise (by torchrun, whose
    agent watches its workers, or by hand) is left alone.
    """
    launcher = os.environ.pop(LAUNCHER_PID, None)
    if launcher is None:
        return
    if not _ask_for_parent_death_signal(signal.SIGKILL):
        threading.Thread(target=watch_parent, args=(int(launcher),), daemon=True).start()
    if os.getppid() != int(launcher):
        os.kill(os.getpid(), signal.SIGKILL)


def watch_parent(parent: int, poll_s: float = PARENT_POLL_S) -> None:
    """Kill this process (SIGKILL) once its parent is no longer ``parent``."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    os.kill(os.getpid(), signal.SIGKILL)


def _ask_for_parent_death_signal(signum: int) -> bool:
    """Linux's ``prctl(PR_SET_PDEATHSIG, signum)``: ``signum`` when the parent ends. Whether
    it is in force (False on other systems)."""
    if not sys.platform.startswith("linux"):
        return False
    pr_set_pdeathsig = 1  # from <linux/prctl.h>
    try:
        return ctypes.CDLL(None).prctl(pr_set_pdeathsig, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):  # no C library to load, or no prctl in it
        return False


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
