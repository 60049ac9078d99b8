"""mnn.distributed with real processes: two ranks on 127.0.0.1 over gloo, on every target.

The ranks run this file as a script (``python test_distributed.py worker ...``), started
by ``mnn.distributed.launch`` with torchrun's environment. One job per target computes
what two tests check, so each target pays for one start of two processes:

* the bucketed all-reduce (several bucket sizes) against one all-reduce per parameter,
  with ``None`` gradients on one rank and on both;
* BatchNorm's running statistics, rank 0's on every rank after the constructor and before
  a forward in training;
* 20 SGD steps in float64, 2 ranks x batch 16, against 1 process x batch 32.

Without torch (the jax and array-api-strict nox sessions), these tests skip: torch.distributed
is the engine. The rest of mnn.distributed's tests: test_distributed_batches.py (data),
test_distributed_buckets.py (packing, in one process), test_distributed_cli.py (mnn train
--nproc, torchrun, a rank killed or stalled mid-run).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import mnn
from mnn.data import Batches, load_digits

pytestmark = pytest.mark.distributed
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed: torch.distributed is the "
                                        "engine of mnn.distributed")
WORLD, BATCH, STEPS, LR, SEED = 2, 16, 20, 0.1, 5
CAPS_MB = (0.0, 0.004, 25.0)  # one bucket per parameter; a few; one
_RESULTS: dict[str, dict] = {}


def make_model(rng):
    return mnn.SequentialLayers([mnn.LinearLayer(64, 32, rng=rng), mnn.ReluLayer(),
                                 mnn.LinearLayer(32, 10, rng=rng), mnn.CrossEntropyLossLayer()])


def train_steps(model, step, batches) -> None:
    """``STEPS`` SGD steps; ``step(inputs, labels)`` runs forward and backward."""
    optimizer = mnn.optim.SGD(model, lr=LR)
    for _, (inputs, labels) in zip(range(STEPS), batches, strict=False):
        optimizer.zero_grad()
        step(inputs, labels)
        optimizer.step()


SHAPES = {name: array.shape for name, array in make_model(rng=0).state_dict().items()}


def rank_gradients(rank: int) -> dict:
    """Host gradients that differ between the ranks; ``"0.b"`` is None on rank 0 only and
    ``"2.b"`` on every rank (None counts as zeros; None everywhere stays None)."""
    grads = {}
    for i, (name, shape) in enumerate(SHAPES.items()):
        value = np.random.default_rng(100 * rank + i).standard_normal(shape)
        grads[name] = None if name == "2.b" or (name == "0.b" and rank == 0) else value
    return grads


# --- the ranks --------------------------------------------------------------------------------

def worker(backend_name: str, device: str, out: str) -> None:
    """One rank: the all-reduce checks, then the 20 steps; writes ``<out><rank>.npz``."""
    import torch
    import torch.distributed as dist

    import mnn.distributed as md

    job = md.init_process_group(timeout_s=60)
    backend = mnn.backends.get(backend_name)
    backend.library()
    backend.enable_float64()
    where = mnn.backends.Placement.named(backend, device, "float64")
    results = {}

    model = make_model(rng=0).to(backend_name, device, "float64")
    for cap in CAPS_MB:  # bucketed, with the gradients this rank holds
        ddp = md.DistributedDataParallel(model, bucket_cap_mb=cap, broadcast=False)
        grads = rank_gradients(job.rank)
        for name, layer, key in model.parameters():
            layer.grads[key] = None if grads[name] is None else where.from_host(grads[name])
        ddp.all_reduce_gradients()
        for name, layer, key in model.parameters():
            grad = layer.grads[key]
            results[f"bucketed/{cap}/{name}"] = np.array(
                np.nan if grad is None else where.to_host(grad))
    for name, value in rank_gradients(job.rank).items():  # one all-reduce per parameter
        tensor = torch.from_numpy(np.zeros(SHAPES[name]) if value is None else value)
        dist.all_reduce(tensor)
        results[f"per_parameter/{name}"] = tensor.numpy() / job.world_size

    # BatchNorm's running statistics: rank 0's after the constructor, and before every
    # forward in training (each rank starts from its own first)
    normed = mnn.SequentialLayers([mnn.LinearLayer(64, 8, rng=0), mnn.BatchNorm1d(8)])
    normed.to(backend_name, device, "float64")
    statistics = normed.layers[1].buffers
    statistics["running_mean"] = where.from_host(np.full(8, 1.0 + job.rank))
    ddp = md.DistributedDataParallel(normed)
    results["buffers/constructed"] = where.to_host(statistics["running_mean"])
    statistics["running_var"] = where.from_host(np.full(8, 1.0 + job.rank))
    ddp(where.from_host(np.linspace(-1.0, 1.0, 4 * 64).reshape(4, 64)))  # the same on both
    results["buffers/forward"] = where.to_host(statistics["running_var"])

    train, _ = load_digits()
    model = make_model(rng=job.rank)  # different weights per rank: the broadcast must fix it
    ddp = md.DistributedDataParallel(model)

    def step(inputs, labels):
        ddp(inputs, labels)
        ddp.backward()

    batches = mnn.data.DistributedBatches(train.to(backend, device, "float64"),
                                          batch_size=BATCH, rng=SEED)
    train_steps(model, step, batches)
    results |= {f"trained/{name}": where.to_host(value)
                for name, value in model.state_dict().items()}
    np.savez(f"{out}{job.rank}.npz", **results)
    md.destroy_process_group()


@pytest.fixture
def job(target, tmp_path_factory) -> list[dict]:
    """The results of both ranks of the job on ``target`` (one job per target)."""
    key = str(target)
    if key not in _RESULTS:
        from mnn.distributed import launch

        folder = tmp_path_factory.mktemp(f"job-{key}")
        launch([sys.executable, __file__, "worker", target.backend.name, target.device_name,
                str(folder / "rank")], WORLD)
        _RESULTS[key] = [dict(np.load(folder / f"rank{r}.npz")) for r in range(WORLD)]
    return _RESULTS[key]


# --- the tests --------------------------------------------------------------------------------

@needs_torch
def test_bucketed_all_reduce_equals_one_all_reduce_per_parameter(job):
    for rank, results in enumerate(job):
        for name in SHAPES:
            reference = results[f"per_parameter/{name}"]
            for cap in CAPS_MB:
                got = results[f"bucketed/{cap}/{name}"]
                if name == "2.b":  # None on every rank: stays None (stored as nan)
                    assert np.isnan(got).all(), (rank, cap, name)
                    continue
                np.testing.assert_allclose(got, reference, rtol=0, atol=1e-12,
                                           err_msg=f"rank {rank}, cap {cap} MB, {name}")
        # None on rank 0 only: the average of rank 1's gradient and rank 0's zeros
        expected = rank_gradients(1)["0.b"] / WORLD
        np.testing.assert_allclose(results["bucketed/25.0/0.b"], expected, atol=1e-12)


@needs_torch
def test_every_rank_has_rank_0s_buffers_after_the_constructor_and_before_a_forward(job):
    """BatchNorm's running statistics: the constructor copies rank 0's (1.0) to every rank,
    and a forward in training starts from rank 0's: the same batch on both ranks then
    leaves the same statistics, where rank 1's own (2.0) would have left others."""
    for rank, results in enumerate(job):
        np.testing.assert_array_equal(results["buffers/constructed"], np.full(8, 1.0),
                                      err_msg=f"rank {rank}")
    np.testing.assert_array_equal(job[1]["buffers/forward"], job[0]["buffers/forward"])
    assert not np.allclose(job[0]["buffers/forward"], 1.0)  # the forward updated them


@needs_torch
def test_two_ranks_with_batch_16_train_as_one_process_with_batch_32(job, target):
    train, _ = load_digits()
    model = make_model(rng=0)  # rank 0's initial weights

    def step(inputs, labels):
        model(inputs, labels)
        model.backward()

    train_steps(model, step, Batches(train.to(target.backend, target.device_name, "float64"),
                                     batch_size=WORLD * BATCH, rng=SEED))
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(job[0][f"trained/{name}"], target.to_host(value),
                                   rtol=0, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(job[1][f"trained/{name}"], job[0][f"trained/{name}"],
                                      err_msg=f"{name}: the ranks hold different weights")
    moved = np.abs(job[0]["trained/0.w"] - make_model(rng=0).state_dict()["0.w"]).max()
    assert moved > 1e-3, "the weights did not move: the comparison would prove nothing"


def test_import_mnn_distributed_does_not_import_torch():
    code = ("import sys, mnn, mnn.distributed, mnn.data; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(*sys.argv[2:5])
