"""A data-parallel SGD step of the MNIST MLP 784-256-10: mnn against torch's DDP, 1 and 2 processes.

In each job of N processes (ranks on 127.0.0.1, gloo, one thread each), every rank
runs the same contenders on the same model, weights and per-rank batch
(``benchmarks.mlp``'s problem):

* ``torch DDP``: ``torch.nn.Sequential`` in ``torch.nn.parallel.DistributedDataParallel``
  (its defaults: 25 MB buckets, all-reduce overlapped with the backward), ``torch.optim.SGD``;
* ``mnn-torch``: ``mnn.SequentialLayers`` on torch tensors in
  ``mnn.distributed.DistributedDataParallel`` (the same bucket size, all-reduce after the
  backward), ``BaseLayer.step``, on the plain path of ``benchmarks.mlp.Mnn``;
* ``mnn-numpy``: the same on NumPy arrays, whose gradients reach gloo through DLPack.

Each contender also runs inside its ``no_sync()`` (no gradient exchange), so its
all-reduce share is ``1 - t(no_sync) / t(step)``, measured alike for both libraries.
The ranks run in lockstep: every sample is the same number of steps on every rank
(rank 0 calibrates, all agree), after a barrier; samples go round-robin over the
contenders, as in ``benchmarks.harness``. Rank 0's clock is reported. The 1-process
and 2-process jobs run one after the other.

    python -m benchmarks.distributed --batch 64 --json out.json

``benchmarks/run.py`` runs it with the other comparisons (``nox -s bench``). The runs that
docs/distributed.md shows are ``benchmarks/results/distributed-batch*.json`` and the
data-parallel comparisons of ``benchmarks/results/benchmarks.json``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import (
    add_timing_arguments,
    calibrate,
    machine_info,
    minor_faults,
    seconds_per_call,
)
from benchmarks.mlp import LR, Mnn, TorchNN, make_problem

PROCESSES = (1, 2)
REFERENCE = "torch DDP"


class MnnDataParallel(Mnn):
    """``benchmarks.mlp.Mnn`` wrapped in ``mnn.distributed.DistributedDataParallel``."""

    def __init__(self, problem, dtype: str, backend: str):
        from mnn.distributed import DistributedDataParallel

        super().__init__(problem, dtype, backend=backend)
        self.ddp = DistributedDataParallel(self.net.to(backend, "cpu", dtype))
        self.no_sync = self.ddp.no_sync

    def __call__(self):
        self.net.zero_grads()
        loss = self.ddp(self.x, self.labels)
        self.ddp.backward()  # the model's backward, then the bucketed average
        self.net.step(LR)
        return loss


class TorchDataParallel(TorchNN):
    """``benchmarks.mlp.TorchNN`` wrapped in ``torch.nn.parallel.DistributedDataParallel``."""

    def __init__(self, problem, dtype: str):
        super().__init__(problem, dtype)
        self.ddp = self.torch.nn.parallel.DistributedDataParallel(self.model)
        self.no_sync = self.ddp.no_sync

    def __call__(self):
        self.optimizer.zero_grad()
        loss = self.loss(self.ddp(self.x), self.labels)
        loss.backward()  # DDP's hooks all-reduce the buckets as their gradients are ready
        self.optimizer.step()
        return loss


CONTENDERS = {REFERENCE: lambda problem, dtype: TorchDataParallel(problem, dtype),
              "mnn-torch": lambda problem, dtype: MnnDataParallel(problem, dtype, "torch"),
              "mnn-numpy": lambda problem, dtype: MnnDataParallel(problem, dtype, "numpy")}


# --- one rank ------------------------------------------------------------------------------

def worker(args) -> None:
    """Time every contender with and without its all-reduce, in lockstep with the other ranks."""
    import torch
    import torch.distributed as dist
    from threadpoolctl import threadpool_limits

    import mnn.distributed

    job = mnn.distributed.init_process_group(timeout_s=600)
    torch.set_num_threads(1)  # the ranks share the cores, one each
    threadpool_limits(1)
    # The contenders, torch's DDP among them, live only inside _measure: when it returns they
    # are gone. A rank that destroyed the group under a live DDP while another still ran was
    # once seen to abort at exit ("terminate called without an active exception").
    samples, counts, faults = _measure(args)
    if job.is_main:
        results = []
        for name, times in samples.items():
            times = sorted(times)
            results.append({"name": name, "processes": job.world_size,
                            "min_ms": 1e3 * times[0], "median_ms": 1e3 * statistics.median(times),
                            "max_ms": 1e3 * times[-1], "number": counts[name],
                            "minor_faults_per_call": faults[name] / (counts[name] * args.repeats),
                            "samples_ms": [1e3 * t for t in samples[name]]})
        Path(args.json).write_text(json.dumps({"results": results, "machine": machine_info(),
                                               "backend": job.backend}))
    dist.barrier()  # leave together
    gc.collect()  # the contenders' reference cycles too
    mnn.distributed.destroy_process_group()


def _measure(args) -> tuple[dict, dict, dict]:
    """Samples (seconds per step), steps per sample and page faults of every contender,
    with and without its all-reduce, timed in lockstep with the other ranks."""
    import torch
    import torch.distributed as dist

    problem = make_problem(args.batch)
    trainers = {name: make(problem, args.dtype) for name, make in CONTENDERS.items()}
    runs = {}
    for name, trainer in trainers.items():
        runs[name] = trainer
        runs[f"{name}, no_sync"] = _without_sync(trainer)
    for run in runs.values():
        for _ in range(args.warmup):
            run()
    # calibrated on each rank; all take the largest count, so that every rank runs as many
    numbers = torch.tensor([calibrate(run, _cpu_done, args.sample_s) for run in runs.values()])
    dist.all_reduce(numbers, op=dist.ReduceOp.MAX)
    counts = dict(zip(runs, numbers.tolist(), strict=True))
    samples = {name: [] for name in runs}
    faults = dict.fromkeys(runs, 0)
    order = list(runs)
    for repeat in range(args.repeats):
        shift = repeat % len(order)
        for name in order[shift:] + order[:shift]:
            dist.barrier()  # untimed: every rank starts the sample together
            before = minor_faults()
            samples[name].append(seconds_per_call(runs[name], _cpu_done, counts[name]))
            faults[name] += minor_faults() - before
    return samples, counts, faults


def _cpu_done() -> None:
    """The harness's ``sync``: on the CPU a step is done when its call returns."""


def _without_sync(trainer):
    def step():
        with trainer.no_sync():
            return trainer()
    return step


# --- the comparison ----------------------------------------------------------------------------

def compare(args) -> dict:
    """Run a job per process count; merge what rank 0 of each measured."""
    from benchmarks.run import LAUNCH, ROOT
    from mnn.distributed import launch

    results, machine, notes = [], {}, []
    with tempfile.TemporaryDirectory() as folder:
        for nproc in args.processes:
            out = os.path.join(folder, f"{nproc}.json")
            launch([sys.executable, "-c", LAUNCH, str(ROOT), "benchmarks.distributed",
                    "--worker", "--batch", str(args.batch), "--dtype", args.dtype,
                    "--repeats", str(args.repeats), "--warmup", str(args.warmup),
                    "--sample-s", str(args.sample_s), "--json", out], nproc)
            job = json.loads(Path(out).read_text())
            machine = job["machine"]
            medians = {r["name"]: r["median_ms"] for r in job["results"]}
            for result in job["results"]:
                synced = result["name"].removesuffix(", no_sync")
                result["ratio"] = medians[result["name"]] / medians[
                    REFERENCE + result["name"][len(synced):]]
                if synced == result["name"]:
                    result["allreduce_share"] = 1 - medians[f"{synced}, no_sync"] / medians[synced]
                result["name"] = f"{result['name']} ({nproc} process{'es' * (nproc > 1)})"
                results.append(result)
            shares = ", ".join(f"{r['name'].split(' (')[0]} {100 * r['allreduce_share']:.0f}%"
                               for r in job["results"] if "allreduce_share" in r)
            notes.append(f"{nproc} process{'es' * (nproc > 1)} ({job['backend']}): all-reduce "
                         f"share of the step, 1 - t(no_sync) / t(step): {shares}")
    pairs = {}
    for nproc in args.processes:
        tag = f" ({nproc} process{'es' * (nproc > 1)})"
        by_name = {r["name"]: r["median_ms"] for r in results}
        for name in ("mnn-torch", "mnn-numpy"):
            if name + tag in by_name:
                pairs[f"{name} / {REFERENCE}{tag}"] = by_name[name + tag] / by_name[REFERENCE + tag]
    return {"reference": f"{REFERENCE} (same processes; no_sync runs: {REFERENCE}, no_sync)",
            "results": results, "pairs": pairs, "notes": notes, "machine": machine}


def table(comparisons: list[dict]) -> str:
    """The Markdown table of docs/distributed.md and the README: one row per contender,
    process count and batch (the step with its all-reduce, not the no_sync runs)."""
    lines = ["| per-process batch, dtype | processes | contender | step, median ms "
             "| / torch DDP | all-reduce share |", "|---" * 6 + "|"]
    for comparison in comparisons:
        params = comparison["params"]
        for r in comparison["results"]:
            if "allreduce_share" in r:
                lines.append(f"| {params['batch']}, {params['dtype']} | {r['processes']} "
                             f"| {r['name'].split(' (')[0]} | {r['median_ms']:.3g} "
                             f"| {r['ratio']:.2f}x | {100 * r['allreduce_share']:.0f}% |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="samples per rank and step")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--processes", type=int, nargs="+", default=list(PROCESSES))
    add_timing_arguments(parser)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--table", nargs="+", metavar="JSON",
                        help="print the Markdown table of these results (written by --json) "
                             "and run nothing")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.table:
        print(table([json.loads(Path(path).read_text()) for path in args.table]))
        return
    result = compare(args)
    shown = sys.argv[1:] if argv is None else argv
    result.update(command=shlex.join(["python", "-m", "benchmarks.distributed", *shown]),
                  date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                  kind="distributed", params={"batch": args.batch, "dtype": args.dtype,
                                              "processes": args.processes},
                  title=f"data-parallel MLP 784-256-10 step, batch {args.batch} per process, "
                        f"{args.dtype}, gloo on 127.0.0.1")
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
