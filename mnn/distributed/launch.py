"""Start the ranks of a job on this machine, torchrun's way, and watch them.

``launch(command, nproc)`` runs ``command`` ``nproc`` times, each process with
torchrun's environment for one rank (``rank_environment``), and waits. If a rank
fails (a non-zero exit status, or a signal such as SIGKILL), the launcher stops
the others at once and raises one ``DistributedError`` that names the failed
ranks, as torchrun's agent does. (The others would stop by themselves too: they
see the lost connection, or wait ``timeout_s`` at most; the launcher does not
rely on it.) ``mnn train --nproc N`` is ``launch`` of ``mnn train`` without
``--nproc``.

No rank outlives the launcher, however it ends:

* Ctrl-C: the terminal sends SIGINT to the launcher and its ranks alike; the
  launcher's ``KeyboardInterrupt`` stops those still running.
* SIGTERM or SIGHUP (``kill``, a closed terminal, a batch system's stop): the
  launcher passes the signal on to its ranks, waits for them (``GRACE_S``, then
  SIGKILL), and then ends by the same signal, as it would have without ranks.
* SIGKILL ends the launcher at once, with no chance to act: each rank has asked
  the kernel to kill it when its parent ends (``follow_launcher``, called by
  ``init_process_group``). The kernel sends that signal when the *thread* that
  started the rank ends, so ``launch`` starts the ranks and waits for them in one thread.

Across machines, use torchrun itself: it sets the same variables from its
rendezvous (``torchrun --nnodes 2 --nproc-per-node 2 --rdzv-backend c10d
--rdzv-endpoint HOST:PORT -m mnn train``), see docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence

from mnn.distributed.process_group import LAUNCHER_PID, DistributedError, torch_distributed

#: How long stopped ranks get to exit after SIGTERM (or the signal passed on) before
#: they are killed.
GRACE_S = 5.0
#: The signals that the launcher passes on to its ranks before it ends by them.
PASSED_ON = (signal.SIGTERM, signal.SIGHUP)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now (the system picks it), for rank 0's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def rank_environment(rank: int, world_size: int, master_port: int,
                     master_addr: str = "127.0.0.1") -> dict[str, str]:
    """torchrun's variables for ``rank`` of a one-machine job of ``world_size`` ranks.

    As torchrun, it sets ``OMP_NUM_THREADS=1`` unless it is set already: the ranks
    share the machine's cores.
    """
    env = {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": world_size,
           "LOCAL_WORLD_SIZE": world_size, "GROUP_RANK": 0, "ROLE_RANK": rank,
           "MASTER_ADDR": master_addr, "MASTER_PORT": master_port}
    return {**{"OMP_NUM_THREADS": "1"}, **os.environ, **{k: str(v) for k, v in env.items()}}


def launch(command: Sequence[str], nproc: int, *, poll_s: float = 0.05) -> None:
    """Run ``command`` as ranks 0 to ``nproc - 1`` of one job on this machine; return
    when all exit with status 0. A failed rank stops the others and raises
    ``DistributedError``. SIGTERM or SIGHUP is passed on to the ranks, and then ends
    this process (see the module's docstring); where torch cannot be imported, no rank
    starts: ``DistributedError`` says what to install."""
    if nproc < 1:
        raise ValueError(f"launch: nproc must be at least 1, got {nproc}")
    torch_distributed()  # every rank needs it: one error here, not a traceback from each
    port = free_port()
    environment = {LAUNCHER_PID: str(os.getpid())}
    received: list[int] = []  # the signals of PASSED_ON that arrived
    ranks: list[subprocess.Popen] = []
    with recording(PASSED_ON, received):
        try:
            for rank in range(nproc):
                if received:
                    break
                ranks.append(subprocess.Popen(list(command), env={
                    **rank_environment(rank, nproc, port), **environment}))
            failed = wait(ranks, received, poll_s)
        finally:  # a failure, a signal, or Ctrl-C: no rank outlives the launcher
            stopped = stop(ranks, received[0] if received else signal.SIGTERM)
    if received:  # end as the signal asks, now that no rank is left
        os.kill(os.getpid(), received[0])
        raise DistributedError(f"stopped by {signal.Signals(received[0]).name}, which this "
                               f"process blocks; passed it on to the ranks, which ended")
    if not failed:
        return
    reasons = "; ".join(f"rank {rank} (pid {ranks[rank].pid}) {describe_status(status)}"
                        for rank, status in failed)
    others = f"; stopped the {len(stopped)} other rank(s) still running" if stopped else ""
    raise DistributedError(f"{reasons}{others}")


@contextlib.contextmanager
def recording(signals: Sequence[int], received: list[int]) -> Iterator[None]:
    """Inside, each of ``signals`` that would end this process is appended to ``received``
    instead. Signals that are ignored (``nohup`` ignores SIGHUP) or that have a handler of
    their own keep it; so does a thread other than the main one, which cannot set any."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in signals:
            if signal.getsignal(signum) == signal.SIG_DFL:
                previous[signum] = signal.signal(signum, lambda got, _: received.append(got))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def wait(ranks: Sequence[subprocess.Popen], received: list[int],
         poll_s: float) -> list[tuple[int, int]]:
    """Until every rank has exited with status 0 (``[]``), some have failed (their ranks
    and statuses), or a signal is ``received`` (``[]``)."""
    while not received:
        statuses = [process.poll() for process in ranks]
        failed = [(rank, status) for rank, status in enumerate(statuses)
                  if status not in (None, 0)]
        if failed or all(status == 0 for status in statuses):
            return failed
        time.sleep(poll_s)
    return []


def stop(processes: Sequence[subprocess.Popen], signum: int = signal.SIGTERM) -> list[int]:
    """``signum`` to those still running, SIGKILL after ``GRACE_S``; their indices."""
    running = [i for i, process in enumerate(processes) if process.poll() is None]
    for i in running:
        processes[i].send_signal(signum)
    deadline = time.monotonic() + GRACE_S
    for i in running:
        try:
            processes[i].wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            processes[i].kill()
            processes[i].wait()
    return running


def describe_status(status: int) -> str:
    """``exited with status 1``, ``was killed by signal SIGKILL``."""
    if status < 0:
        try:
            return f"was killed by signal {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"
