"""Start the ranks of a job on this machine, torchrun's way, and watch them.

``launch(command, nproc)`` runs ``command`` ``nproc`` times, each process with
torchrun's environment for one rank (``rank_environment``), and waits. If a rank
fails (a non-zero exit status, or a signal such as SIGKILL), the launcher stops
the others at once and raises one ``DistributedError`` that names the failed
ranks, as torchrun's agent does. (The others would stop by themselves too: they
see the lost connection, or wait ``timeout_s`` at most; the launcher does not
rely on it.) ``mnn train --nproc N`` is ``launch`` of ``mnn train`` without
``--nproc``.

Across machines, use torchrun itself: it sets the same variables from its
rendezvous (``torchrun --nnodes 2 --nproc-per-node 2 --rdzv-backend c10d
--rdzv-endpoint HOST:PORT -m mnn train``), see docs/distributed.md.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence

from mnn.distributed.process_group import DistributedError

#: How long stopped ranks get to exit after SIGTERM before they are killed.
GRACE_S = 5.0


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
    ``DistributedError``."""
    if nproc < 1:
        raise ValueError(f"launch: nproc must be at least 1, got {nproc}")
    port = free_port()
    ranks = [subprocess.Popen(list(command), env=rank_environment(rank, nproc, port))
             for rank in range(nproc)]
    try:
        while True:
            statuses = [process.poll() for process in ranks]
            failed = [(rank, status) for rank, status in enumerate(statuses)
                      if status not in (None, 0)]
            if failed:
                break
            if all(status == 0 for status in statuses):
                return
            time.sleep(poll_s)
    finally:  # a failure, or this process interrupted (Ctrl-C): no rank outlives the launcher
        stopped = stop(ranks)
    reasons = "; ".join(f"rank {rank} (pid {ranks[rank].pid}) {describe_status(status)}"
                        for rank, status in failed)
    others = f"; stopped the {len(stopped)} other rank(s) still running" if stopped else ""
    raise DistributedError(f"{reasons}{others}")


def stop(processes: Sequence[subprocess.Popen]) -> list[int]:
    """SIGTERM to those still running, SIGKILL after ``GRACE_S``; their indices."""
    running = [i for i, process in enumerate(processes) if process.poll() is None]
    for i in running:
        processes[i].terminate()
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
