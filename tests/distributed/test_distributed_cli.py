"""``mnn train`` data-parallel, started as users start it, and ranks that die or hang mid-run.

Real processes on 127.0.0.1 over gloo: ``mnn train --nproc 2``, ``torchrun -m mnn train``
(as ``python -m torch.distributed.run``, the same program), and ranks started by hand
with torchrun's environment, one of which gets a real SIGKILL (or SIGSTOP) mid-run.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mnn
from mnn.cli import parser, train

pytestmark = pytest.mark.distributed
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed: torch.distributed is the "
                                        "engine of mnn train --nproc")
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


# --- training --------------------------------------------------------------------------------

@needs_torch
def test_nproc_2_and_torchrun_train_digits_as_one_process_with_twice_the_batch(tmp_path):
    one = run(mnn_command(*TRAIN, "--epochs", "1", "--batch-size", "32", "--save", "one.st"),
              tmp_path)
    two = run(mnn_command(*TRAIN, "--epochs", "1", "--batch-size", "16", "--nproc", "2",
                          "--save", "two.st"), tmp_path)
    torchrun = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node", "2", "-m", "mnn", *TRAIN, "--epochs", "1",
                    "--batch-size", "16", "--save", "torchrun.st"], tmp_path)
    reference = mnn.load(tmp_path / "one.st").state_dict()
    for result, saved in ((two, "two.st"), (torchrun, "torchrun.st")):
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("mnn 0.1.0: digits") == 1, "rank 0 prints, and only rank 0"
        assert "batch 16 per rank x 2 ranks (gloo, data-parallel)" in result.stdout
        assert result.stdout.count("epoch 1/1: train loss") == 1
        for name, value in mnn.load(tmp_path / saved).state_dict().items():
            np.testing.assert_allclose(value, reference[name], rtol=0, atol=1e-6,
                                       err_msg=f"{saved}: {name}")
    loss = [line for line in one.stdout.splitlines() if line.startswith("epoch 1/1")]
    assert loss and loss[0] in two.stdout, "the loss over every rank's samples, as one process"


# --- faults ----------------------------------------------------------------------------------

def start_ranks(tmp_path: Path, timeout_s: float) -> list[subprocess.Popen]:
    """Two ranks started by hand, as torchrun would, but with no one to stop the survivor."""
    from mnn.distributed import free_port, rank_environment

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
@pytest.mark.skipif(sys.platform != "linux", reason="the launcher's children are found in /proc")
def test_nproc_stops_every_rank_when_one_is_killed(tmp_path):
    launcher = start(mnn_command(*FOREVER, "--nproc", "2", "--timeout", "120"), tmp_path,
                     "launcher")
    try:
        wait_for_text(tmp_path / "launcher.out", "epoch 2/", launcher)
        children = [int(pid) for pid in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
                    .read_text().split()]
        environments = {pid: Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                        for pid in children}
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
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "a rank outlived it"


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
