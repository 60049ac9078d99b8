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
order they happened (``harness.peak_bytes_of_call``). The two counters see different
allocators: compare each mnn contender with torch.nn through the same counter (mnn-torch),
and mnn-numpy as a size only.

Threads: ``--threads`` (default 1) limits NumPy's BLAS and PyTorch alike, and all three
contenders are timed round-robin in one process.

Every trainer is callable (one step, returning the loss) and has ``weights()``: host float64
arrays named as in ``mnn.RecurrentLM.state_dict()``; ``tests/tooling/test_bench_lstm.py``
checks in float64 that they agree after two steps.

Run: ``python -m benchmarks.lstm --json out.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.harness import (
    MnnStep,
    compare_steps,
    copy_into_torch,
    dtype_and_threads,
    host_float64,
    step_arguments,
    torch_names,
    torch_weights,
    training_recipes,
    write_result,
)

#: The issue's LSTM workload: 1 layer, hidden 128, batch 32, sequence 64.
SHAPE = {"vocab_size": 103, "context": 64, "hidden_size": 128, "num_layers": 1}
BATCH = 32
LR = 1e-3
#: mnn's sublayers -> their places in ``TorchNN``'s ``ModuleList`` (the LSTM's parameters
#: have torch's names already).
TORCH_MODULES = {"tokens": "0", "rnn": "1", "head": "2"}


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
        self.names = torch_names(problem.weights, TORCH_MODULES)  # mnn's order
        copy_into_torch(self.model, problem.weights, self.names)
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
        return torch_weights(self.model, self.names)


class Mnn(MnnStep):
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
        self.inputs, self.labels = where.from_host(problem.ids), where.from_host(problem.labels)

    def weights(self) -> dict:
        return host_float64(self.backend, self.lm.state_dict())


#: The contenders: how each is built, and the library it needs (whose allocator holds its arrays).
TRAINERS = training_recipes(TorchNN, Mnn)


def main(argv=None) -> None:
    args = step_arguments(__doc__.splitlines()[0], BATCH).parse_args(argv)
    result = compare_steps(TRAINERS, make_problem(args.batch), args, reference="torch.nn")
    shape = ", ".join(f"{k} {v}" for k, v in SHAPE.items())
    write_result(result, args.json, kind="lstm",
                 title=f"LSTM language model training step ({shape}), batch {args.batch}, "
                       f"{dtype_and_threads(args)}",
                 params={"batch": args.batch, "dtype": args.dtype, "threads": args.threads,
                         **SHAPE})


if __name__ == "__main__":
    main()
