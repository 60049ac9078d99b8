"""One training step of a 1-layer LSTM language model, three ways, from the same weights and data.

The model is ``mnn.RecurrentLM`` with one layer (``mnn train-lm --model lstm --layers 1``):
an embedding of a character vocabulary of 103 (the default corpus's) into 128 numbers, an
LSTM of hidden size 128 and a Linear head to the vocabulary, trained on batches of 32
sequences of 64 characters with the cross-entropy over (batch, time, vocab) and AdamW
(lr 1e-3). One step: zero the gradients, forward, backward, optimizer step.

The contenders:

* ``torch.nn``: the reference, ``nn.Embedding``, ``nn.LSTM(batch_first=True)`` (one fused
  C++ kernel for the whole sequence) and ``nn.Linear``, ``F.cross_entropy``,
  ``loss.backward()`` and ``torch.optim.AdamW``;
* ``mnn-torch`` / ``mnn-numpy``: ``mnn.RecurrentLM`` + ``CrossEntropyLossLayer(axis=-1)`` +
  ``mnn.optim.AdamW`` on PyTorch / NumPy arrays: the LSTM's loop over time in Python, the
  input projection of all steps as one matrix product (Eq. (1) of ``mnn.layers.recurrent``).

Peak memory of one step (after a warm-up step, so that AdamW's moments exist), beyond what
existed before it: ``tracemalloc`` for NumPy arrays; for PyTorch on the CPU, the running sum
of the profiler's allocations and frees (``torch.profiler``, ``profile_memory=True``) in the
order they happened. The two counters see different allocators: compare each mnn contender
with torch.nn through the same counter (mnn-torch), and mnn-numpy as a size only.

Threads: ``--threads`` (default 1) limits NumPy's BLAS and PyTorch alike, and all three
contenders are timed round-robin in one process.

Every trainer is callable (one step, returning the loss) and has ``weights()``: host float64
arrays named as in ``mnn.RecurrentLM.state_dict()``; ``tests/tooling/test_bench_lstm.py``
checks in float64 that they agree after two steps.

Run: ``python -m benchmarks.lstm --json out.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass

import numpy as np

from benchmarks.gpt import limit_threads
from benchmarks.harness import (
    Contender,
    add_timing_arguments,
    compare,
    peak_bytes_numpy,
    write_result,
)

#: The issue's LSTM workload: 1 layer, hidden 128, batch 32, sequence 64.
SHAPE = {"vocab_size": 103, "context": 64, "hidden_size": 128, "num_layers": 1}
BATCH = 32
LR = 1e-3
#: mnn's parameter names -> torch.nn's, in ``TorchLM``'s ``ModuleList`` (the LSTM keeps its own).
TORCH_NAMES = {"tokens.w": "0.weight", "head.w": "2.weight", "head.b": "2.bias"}


def torch_name(key: str) -> str:
    return TORCH_NAMES.get(key, key.replace("rnn.", "1.", 1))


@dataclass
class Problem:
    """Token ids, next-token labels and the initial weights (mnn's names), host arrays."""

    ids: np.ndarray  # (batch, context) int64
    labels: np.ndarray  # (batch, context) int64
    weights: dict


def make_problem(batch: int = BATCH, seed: int = 0) -> Problem:
    import mnn

    rng = np.random.default_rng(seed)
    model = mnn.RecurrentLM(**SHAPE, cell="lstm", rng=rng)
    stream = rng.integers(0, SHAPE["vocab_size"], size=(batch, SHAPE["context"] + 1))
    return Problem(ids=stream[:, :-1], labels=stream[:, 1:],
                   weights={k: np.array(v) for k, v in model.state_dict().items()})


class TorchNN:
    """Embedding, LSTM, Linear + ``F.cross_entropy`` + ``loss.backward()`` + AdamW."""

    def __init__(self, problem: Problem, dtype: str, device: str = "cpu"):
        import torch
        from torch import nn

        self.torch = torch
        size, hidden = SHAPE["vocab_size"], SHAPE["hidden_size"]
        self.model = nn.ModuleList([nn.Embedding(size, hidden),
                                    nn.LSTM(hidden, hidden, SHAPE["num_layers"], batch_first=True),
                                    nn.Linear(hidden, size)]).to(device=device,
                                                                 dtype=getattr(torch, dtype))
        with torch.no_grad():
            for key, value in problem.weights.items():
                self.model.get_parameter(torch_name(key)).copy_(torch.from_numpy(value))
        self.names = list(problem.weights)  # mnn's, in its order
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=LR)
        self.ids = torch.tensor(problem.ids, device=device)
        self.labels = torch.tensor(problem.labels, device=device)

    def __call__(self):
        embedding, lstm, head = self.model
        self.optimizer.zero_grad(set_to_none=True)
        logits = head(lstm(embedding(self.ids))[0])
        loss = self.torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                      self.labels.reshape(-1))
        loss.backward()
        self.optimizer.step()
        return loss

    def weights(self) -> dict:
        theirs = {n: p.detach().cpu().double().numpy() for n, p in self.model.named_parameters()}
        return {key: theirs[torch_name(key)] for key in self.names}


class Mnn:
    """``mnn.RecurrentLM`` + ``CrossEntropyLossLayer(axis=-1)`` + ``mnn.optim.AdamW``."""

    def __init__(self, problem: Problem, dtype: str, backend: str = "numpy", device: str = "cpu"):
        import mnn

        self.backend = mnn.backends.get(backend)
        where = mnn.backends.Placement.named(self.backend, device, dtype)
        with mnn.initializers.skip_init():  # placeholders: load_weights fills them
            self.lm = mnn.RecurrentLM(**SHAPE, cell="lstm")
        self.lm.load_weights(problem.weights)
        self.model = mnn.SequentialLayers([self.lm, mnn.CrossEntropyLossLayer(axis=-1)])
        self.model.to(xp=backend, device=device, dtype=dtype)
        self.optimizer = mnn.optim.AdamW(self.model, lr=LR)
        self.ids, self.labels = where.from_host(problem.ids), where.from_host(problem.labels)

    def __call__(self):
        self.optimizer.zero_grad()
        loss = self.model(self.ids, self.labels)
        self.model.backward()
        self.optimizer.step()
        return loss

    def weights(self) -> dict:
        return {k: np.array(self.backend.to_host(v), dtype=np.float64)
                for k, v in self.lm.state_dict().items()}


#: name -> (trainer class, extra keyword arguments, module it needs, what allocates its arrays)
TRAINERS = {
    "torch.nn": (TorchNN, {}, "torch", "torch"),
    "mnn-torch": (Mnn, {"backend": "torch"}, "torch", "torch"),
    "mnn-numpy": (Mnn, {"backend": "numpy"}, "numpy", "numpy"),
}


def missing(name: str) -> str | None:
    """Why trainer ``name`` cannot run here, or None."""
    module = TRAINERS[name][2]
    return f"{module} is not installed" if importlib.util.find_spec(module) is None else None


def build(name: str, problem: Problem, dtype: str):
    cls, kwargs, _, _ = TRAINERS[name]
    return cls(problem, dtype, **kwargs)


def peak_bytes_torch_cpu(work) -> int:
    """Peak bytes PyTorch's CPU allocator holds during ``work()`` beyond what it held before:
    the running sum of the profiler's allocations (each op's own) and frees, in time order."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        work()
    events = sorted(profiler.events(), key=lambda event: event.time_range.start)
    held = peak = 0
    for event in events:
        held += event.self_cpu_memory_usage
        peak = max(peak, held)
    return peak


def peak_bytes(name: str, problem: Problem, dtype: str) -> int:
    """Peak bytes of one step of trainer ``name``, after one warm-up step."""
    step = build(name, problem, dtype)
    step()  # AdamW's moments and lazy imports are not the step's memory
    if TRAINERS[name][3] == "numpy":
        return peak_bytes_numpy(lambda: None, lambda _: step())
    return peak_bytes_torch_cpu(step)


def contenders(dtype: str, batch: int = BATCH) -> list[Contender]:
    problem = make_problem(batch)
    return [Contender(name, build=lambda n=name: build(n, problem, dtype), skip=missing(name))
            for name in TRAINERS]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--threads", type=int, default=1)
    add_timing_arguments(parser)
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    result = compare(contenders(args.dtype, args.batch), reference="torch.nn",
                     repeats=args.repeats, warmup=args.warmup, sample_s=args.sample_s)
    problem = make_problem(args.batch)
    for entry in result["results"]:
        if "skipped" not in entry:
            entry["peak_bytes"] = peak_bytes(entry["name"], problem, args.dtype)
            entry["peak_counter"] = TRAINERS[entry["name"]][3]
    shape = ", ".join(f"{k} {v}" for k, v in SHAPE.items())
    write_result(result, args.json, kind="lstm",
                 title=f"LSTM language model training step ({shape}), batch {args.batch}, "
                       f"{args.dtype}, {args.threads} thread{'s' * (args.threads != 1)}",
                 params={"batch": args.batch, "dtype": args.dtype, "threads": args.threads,
                         **SHAPE})


if __name__ == "__main__":
    main()
