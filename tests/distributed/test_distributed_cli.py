"""``mnn train`` data-parallel, started as users start it, and what goes wrong around it.

Real processes on 127.0.0.1 over gloo: ``mnn train --nproc 2``, ``torchrun -m mnn train``
(as ``python -m torch.distributed.run``, the same program) on one node and as two nodes,
and ranks started by hand with torchrun's environment. The faults are real too: a rank
gets SIGKILL (or SIGSTOP) mid-run, the launcher gets SIGTERM, SIGHUP or SIGKILL, a rank
finds no rank 0 or a stranger on MASTER_PORT, torch cannot be imported, ranks fail at once.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mnn
from mnn.cli import parser, train
from mnn.distributed import free_port, rank_environment

pytestmark = pytest.mark.distributed
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed: torch.distributed is the "
                                        "engine of mnn train --nproc")
linux_only = pytest.mark.skipif(sys.platform != "linux",
                                reason="a launcher's ranks are found in /proc (Linux)")
# float64 and plain SGD: the ranks must agree with one process to 1e-6, not to float32 noise
TRAIN = ["train", "--hidden", "16", "--dtype", "float64", "--optimizer", "sgd", "--plot", "none",
         "--no-progress"]
FOREVER = [*TRAIN, "--epochs", "100000"]  # until a rank is killed


def mnn_command(*args) -> list[str]:
    return [sys.executable, "-m", "mnn", *args]


def run(command, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def start(command, cwd: Path, name: str, env=None) -> subprocess.Popen:
    """Start ``command`` with its output in files ``<name>.out`` and ``<name>.err``."""
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=open(cwd / f"{name}.out", "w"),
                            stderr=open(cwd / f"{name}.err", "w"))


def wait_for_text(path: Path, text: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert process.poll() is None, f"exited with {process.returncode}: {path.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} after {timeout} s: {path.read_text()}"
        time.sleep(0.05)


def one_error_line(path: Path) -> str:
    text = path.read_text()
    assert "Traceback" not in text and "terminate called" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("mnn: error: ")]
    assert len(lines) == 1, text
    return lines[0]


def children(pid: int) -> list[int]:
    """The processes that ``pid`` started and that still run (Linux's /proc)."""
    return [int(child) for child in
            Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def running(pid: int) -> bool:
    """Whether ``pid`` runs: it exists and is no zombie (an orphan that ended waits as a
    zombie until whoever adopted it reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def still_running(pids: list[int], within: float) -> list[int]:
    """Those of ``pids`` still running after ``within`` seconds at most."""
    deadline = time.monotonic() + within
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if running(pid)]


# --- training --------------------------------------------------------------------------------

def torchrun(*args) -> list[str]:
    """``torchrun ARGS -m mnn``, as ``python -m torch.distributed.run`` (the same program)."""
    return [sys.executable, "-m", "torch.distributed.run", *args, "-m", "mnn"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> tuple[dict, str]:
    """The weights and stdout of one process with batch 32, for one epoch."""
    folder = tmp_path_factory.mktemp("one-process")
    result = run(mnn_command(*TRAIN, "--epochs", "1", "--batch-size", "32", "--save", "one.st"),
                 folder)
    assert result.returncode == 0, result.stdout + result.stderr
    return mnn.load(folder / "one.st").state_dict(), result.stdout


def check_as_one_process(result, saved: Path, one_process) -> None:
    """``result`` (rank 0's output) and its ``saved`` weights are those of ``one_process``."""
    reference, stdout = one_process
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("mnn 0.1.0: digits") == 1, "rank 0 prints, and only rank 0"
    assert "batch 16 per rank x 2 ranks (gloo, data-parallel)" in result.stdout
    assert result.stdout.count("epoch 1/1: train loss") == 1
    for name, value in mnn.load(saved).state_dict().items():
        np.testing.assert_allclose(value, reference[name], rtol=0, atol=1e-6,
                                   err_msg=f"{saved.name}: {name}")
    loss = [line for line in stdout.splitlines() if line.startswith("epoch 1/1")]
    assert loss and loss[0] in result.stdout, "the loss over every rank's samples"


@needs_torch
def test_nproc_2_and_torchrun_train_digits_as_one_process_with_twice_the_batch(tmp_path,
                                                                               one_process):
    two = run(mnn_command(*TRAIN, "--epochs", "1", "--batch-size", "16", "--nproc", "2",
                          "--save", "two.st"), tmp_path)
    check_as_one_process(two, tmp_path / "two.st", one_process)
    standalone = run([*torchrun("--standalone", "--nproc-per-node", "2"), *TRAIN, "--epochs",
                      "1", "--batch-size", "16", "--save", "torchrun.st"], tmp_path)
    check_as_one_process(standalone, tmp_path / "torchrun.st", one_process)


@needs_torch
def test_two_torchrun_nodes_train_as_one_process_with_twice_the_batch(tmp_path, one_process):
    """Two launches of torchrun, node 0 and node 1 of one job, as on two machines (docs/
    distributed.md, "On several machines"), here both on 127.0.0.1."""
    port = free_port()
    nodes = [start([*torchrun("--nnodes", "2", "--node-rank", str(node), "--nproc-per-node",
                              "1", "--master-addr", "127.0.0.1", "--master-port", str(port)),
                    *TRAIN, "--epochs", "1", "--batch-size", "16", "--save", "nodes.st"],
                   tmp_path, f"node{node}") for node in (0, 1)]
    try:
        statuses = [node.wait(timeout=120) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
            node.wait()
    outputs = [(tmp_path / f"node{node}.out").read_text() for node in (0, 1)]
    assert statuses == [0, 0], [(tmp_path / f"node{n}.err").read_text() for n in (0, 1)]
    assert outputs[1] == "", "rank 1, on node 1, prints nothing"
    check_as_one_process(subprocess.CompletedProcess([], 0, outputs[0], ""),
                         tmp_path / "nodes.st", one_process)


# --- faults ----------------------------------------------------------------------------------

def start_ranks(tmp_path: Path, timeout_s: float) -> list[subprocess.Popen]:
    """Two ranks started by hand, as torchrun would, but with no one to stop the survivor."""
    port = free_port()
    return [start(mnn_command(*FOREVER, "--timeout", str(timeout_s)), tmp_path, f"rank{rank}",
                  env=rank_environment(rank, 2, port)) for rank in range(2)]


@needs_torch
def test_a_rank_killed_mid_run_ends_the_other_with_a_clear_error_within_the_timeout(tmp_path):
    timeout_s = 30.0
    ranks = start_ranks(tmp_path, timeout_s)
    try:
        wait_for_text(tmp_path / "rank0.out", "epoch 2/", ranks[0])  # well under way
        ranks[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        status = ranks[0].wait(timeout=timeout_s + 30)
        elapsed = time.monotonic() - killed
    finally:
        for rank in ranks:
            rank.kill()
            rank.wait()
    assert status != 0
    assert elapsed < timeout_s, f"rank 0 took {elapsed:.1f} s to stop"
    line = one_error_line(tmp_path / "rank0.err")
    assert "rank 0 of 2:" in line and "another rank crashed" in line, line


@needs_torch
def test_a_rank_that_hangs_ends_the_other_after_the_timeout(tmp_path):
    timeout_s = 5.0
    ranks = start_ranks(tmp_path, timeout_s)
    try:
        wait_for_text(tmp_path / "rank0.out", "epoch 2/", ranks[0])
        ranks[1].send_signal(signal.SIGSTOP)  # alive, holding its sockets, doing nothing
        stopped = time.monotonic()
        status = ranks[0].wait(timeout=timeout_s + 60)
        elapsed = time.monotonic() - stopped
    finally:
        for rank in ranks:
            rank.kill()  # SIGKILL ends a stopped process too
            rank.wait()
    assert status != 0
    assert timeout_s - 1 < elapsed < timeout_s + 30, f"rank 0 stopped after {elapsed:.1f} s"
    line = one_error_line(tmp_path / "rank0.err")
    assert "rank 0 of 2:" in line and f"timeout ({timeout_s:g} s)" in line, line


@needs_torch
@linux_only
def test_nproc_stops_every_rank_when_one_is_killed(tmp_path):
    launcher = start(mnn_command(*FOREVER, "--nproc", "2", "--timeout", "120"), tmp_path,
                     "launcher")
    try:
        wait_for_text(tmp_path / "launcher.out", "epoch 2/", launcher)
        ranks = children(launcher.pid)
        environments = {pid: Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                        for pid in ranks}
        rank1 = next(pid for pid, env in environments.items() if b"RANK=1" in env)
        os.kill(rank1, signal.SIGKILL)
        killed = time.monotonic()
        status = launcher.wait(timeout=60)
        elapsed = time.monotonic() - killed
    finally:
        launcher.kill()
        launcher.wait()
    assert status == 1 and elapsed < 20, (status, elapsed)  # not the 120 s timeout
    lines = (tmp_path / "launcher.err").read_text().splitlines()
    assert lines[-1].startswith(f"mnn: error: rank 1 (pid {rank1}) was killed by signal "
                                f"SIGKILL"), lines
    assert not still_running(ranks, within=0), "a rank outlived the launcher"


@needs_torch
@linux_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL],
                         ids=lambda signum: signum.name)
def test_a_signal_to_nproc_ends_every_rank_and_the_old_checkpoint_stays(tmp_path, signum):
    """SIGTERM and SIGHUP are passed on to the ranks; SIGKILL reaches them through the
    parent-death signal each rank asked for. Either way no rank is left to overwrite
    ``--save`` after its epoch (1438 steps of batch 1: seconds)."""
    saved = tmp_path / "digits.st"
    model = mnn.SequentialLayers([mnn.LinearLayer(64, 16), mnn.ReluLayer(),
                                  mnn.LinearLayer(16, 10), mnn.CrossEntropyLossLayer()])
    mnn.save(model, saved)
    before = saved.read_bytes()
    launcher = start(mnn_command(*FOREVER, "--batch-size", "1", "--nproc", "2", "--save",
                                 str(saved)), tmp_path, "launcher")
    ranks: list[int] = []
    try:
        wait_for_text(tmp_path / "launcher.out", "mnn 0.1.0: digits", launcher)  # training
        ranks = children(launcher.pid)
        launcher.send_signal(signum)
        status = launcher.wait(timeout=30)
        left = still_running(ranks, within=10)
    finally:
        launcher.kill()
        launcher.wait()
        for pid in ranks:
            if running(pid):  # the test failed: end what it started
                os.kill(pid, signal.SIGKILL)
    assert len(ranks) == 2, ranks
    assert status == -signum, f"the launcher ended with {status}, not by {signum.name}"
    assert not left, f"ranks {left} of {ranks} outlived the launcher"
    assert "epoch 1/" not in (tmp_path / "launcher.out").read_text(), "signalled too late"
    assert saved.read_bytes() == before, "the old checkpoint was overwritten"


#: A rank of ``mnn train`` that has imported what it needs before it prints ``joining``:
#: the time from that line to its end is the time of its join.
JOINING = ("import sys, torch.distributed, mnn.cli; print('joining', flush=True); "
           "raise SystemExit(mnn.cli.main(sys.argv[1:]))")


@needs_torch
@pytest.mark.parametrize(("rank", "port"), [(1, "closed"), (1, "silent"), (0, "silent")],
                         ids=["no-rank-0", "a-silent-listener", "rank-0-port-taken"])
def test_a_rank_that_cannot_join_ends_within_the_timeout_with_one_line(tmp_path, rank, port):
    """The timeout bounds the whole join. Its cases: no rank 0 (nothing listens: torch
    retries past the timeout), a program on MASTER_PORT that accepts the connection and
    never answers (torch waits for it without end), and rank 0 that cannot listen there."""
    timeout_s = 3.0
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))  # the port stays taken, and nothing else gets it
        if port == "silent":
            stranger.listen()  # the kernel accepts connections into the backlog
        address = stranger.getsockname()[1]
        process = subprocess.Popen(
            [sys.executable, "-c", JOINING, *TRAIN, "--timeout", str(timeout_s)], cwd=tmp_path,
            env=rank_environment(rank, 2, address), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            assert process.stdout.readline() == "joining\n"
            began = time.monotonic()
            _, stderr = process.communicate(timeout=timeout_s + 60)
            elapsed = time.monotonic() - began
        finally:
            process.kill()
            process.wait()
    assert process.returncode == 1
    assert elapsed < timeout_s + 2, f"ended {elapsed:.1f} s after it began to join"
    line = one_error_line_of(stderr)
    assert f"rank {rank} of 2: could not meet the other ranks at 127.0.0.1:{address}" in line


@pytest.mark.parametrize("how", ["nproc", "rank"])
def test_without_torch_data_parallel_is_one_line_naming_the_extra(tmp_path, how):
    """torch cannot be imported (a failing ``torch`` module first on the path, inherited
    by any rank): one line, and with --nproc before any rank starts (a rank would print
    a line of its own)."""
    hidden = tmp_path / "hidden" / "torch"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('torch is hidden by this test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(hidden.parent), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if how == "rank":
        env = {**env, **{key: value for key, value in rank_environment(0, 1, 29500).items()
                         if key not in os.environ}}
    command = mnn_command(*TRAIN, "--nproc", "2") if how == "nproc" else mnn_command(*TRAIN)
    result = run(command, tmp_path, env=env, timeout=60)
    assert result.returncode == 1
    assert one_error_line_of(result.stderr) == (
        "mnn: error: data-parallel training runs on torch.distributed, and torch cannot be "
        "imported here (torch is hidden by this test); install it with: "
        'pip install "manual-nn[torch]"')


@needs_torch
@linux_only
def test_ranks_that_fail_at_once_write_whole_lines(tmp_path):
    """Every write to stderr is a packet of a SOCK_SEQPACKET socket, so the test sees the
    writes themselves: each must be whole lines, or the lines of ranks that fail at once
    (here both: no MNIST files) run together."""
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with reader, writer:
        result = subprocess.run(mnn_command(*TRAIN, "--nproc", "2", "--dataset", "mnist",
                                            "--data-dir", str(tmp_path / "none")),
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=writer,
                                timeout=120)
        writer.close()
        writes = list(iter(lambda: reader.recv(1 << 16), b""))
    assert result.returncode == 1
    lines = b"".join(writes).decode().splitlines()
    assert len([line for line in lines if line.startswith("mnn: error: ")]) == 3, lines
    assert [write for write in writes if not write.endswith(b"\n")] == [], writes


@needs_torch
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity to narrow")
def test_nproc_above_the_cores_warns_before_the_ranks_start(tmp_path):
    one_core = min(os.sched_getaffinity(0))
    on_one_core = [sys.executable, "-c", f"import os, sys; os.sched_setaffinity(0, {{{one_core}}});"
                   f" os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"]
    result = run([*on_one_core, "-m", "mnn", *TRAIN, "--epochs", "1", "--nproc", "2"],
                 tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0].startswith(
        "mnn: warning: --nproc 2 starts more ranks than the 1 core(s) this process may run on"
    ), result.stderr


#: A rank that follows its parent, by ``follow_launcher`` or by ``watch_parent`` in a
#: thread (argv[1]), then prints its pid and sleeps.
FOLLOWER = """
import os, sys, threading, time
from mnn.distributed import process_group

parent = os.getppid()
if sys.argv[1] == "follow_launcher":
    os.environ[process_group.LAUNCHER_PID] = str(parent)
    process_group.follow_launcher()
else:
    watch = threading.Thread(target=process_group.watch_parent, args=(parent, 0.05), daemon=True)
    watch.start()
print(os.getpid(), flush=True)
time.sleep(600)
"""
#: A launcher: runs the command of its arguments, and ends with it.
STARTER = "import subprocess, sys; raise SystemExit(subprocess.call(sys.argv[1:]))"


@linux_only
@pytest.mark.parametrize("how", ["follow_launcher", "watch_parent"])
def test_a_rank_ends_when_its_launcher_is_killed(how):
    """``follow_launcher`` asks Linux for the parent-death signal; ``watch_parent``, its
    fallback on other systems, runs here too."""
    launcher = subprocess.Popen([sys.executable, "-c", STARTER, sys.executable, "-c", FOLLOWER,
                                 how], stdout=subprocess.PIPE, text=True)
    rank = int(launcher.stdout.readline())  # "" if the rank failed: the launcher ended too
    try:
        launcher.kill()
        launcher.wait()
        assert not still_running([rank], within=5), "the rank outlived its launcher"
    finally:
        if running(rank):
            os.kill(rank, signal.SIGKILL)


def test_a_rank_whose_launcher_ended_before_it_asked_ends_at_once():
    env = {**os.environ, "MNN_LAUNCHER_PID": str(os.getpid() + 10**6)}  # not its parent
    result = subprocess.run([sys.executable, "-c", "from mnn.distributed import process_group; "
                             "process_group.follow_launcher(); print('alive')"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGKILL and "alive" not in result.stdout


# --- the command line ------------------------------------------------------------------------

def test_nproc_inside_a_torchrun_job_is_refused(tmp_path):
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2"}
    result = run(mnn_command("train", "--nproc", "2"), tmp_path, env=env)
    assert result.returncode == 1
    assert one_error_line_of(result.stderr).endswith("drop --nproc")


@pytest.mark.parametrize(("option", "value"), [("--nproc", "0"), ("--timeout", "0"),
                                               ("--timeout", "nan"), ("--timeout", "inf")])
def test_bad_nproc_and_timeout_are_one_line_errors(tmp_path, option, value):
    result = run(mnn_command("train", option, value), tmp_path)
    assert result.returncode == 1
    assert option in one_error_line_of(result.stderr)


def test_each_rank_gets_the_same_arguments_without_nproc():
    argv = ["train", "--nproc", "3", "--no-progress", "--lr", "0.5", "--save", "x.st",
            "--backend", "torch", "--timeout", "7"]
    args = parser().parse_args(argv)
    again = parser().parse_args(train.rank_argv(args))
    assert "--nproc" not in train.rank_argv(args)
    assert vars(again) == {**vars(args), "nproc": 1}


def one_error_line_of(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnn: error: "), stderr
    return lines[0]
