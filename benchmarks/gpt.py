"""One training step of a small GPT, three ways, from the same weights and data.

The model is the one of ``mnn train-lm``: 4 pre-norm Transformer blocks, d_model 128,
4 heads, context 64, a character vocabulary of 103 (the size of the default corpus's),
trained on batches of 32 sequences with the cross-entropy over (batch, time, vocab)
and AdamW (lr 1e-3). One step: zero the gradients, forward, backward, optimizer step.

The contenders:

* ``torch.nn``: the reference. ``TorchGPT`` below, written as a PyTorch user would
  (nanoGPT's layout: one fused query-key-value ``Linear``,
  ``F.scaled_dot_product_attention(is_causal=True)``, ``F.cross_entropy``), with
  ``loss.backward()`` and ``torch.optim.AdamW``;
* ``mnn-torch`` / ``mnn-numpy``: ``mnn.GPT`` + ``CrossEntropyLossLayer(axis=-1)`` +
  ``mnn.optim.AdamW`` on PyTorch / NumPy arrays.

Threads: ``--threads`` (default 1, as the reference training run) limits NumPy's BLAS
and PyTorch alike. With one thread each, PyTorch starts no OpenMP workers, so
``torch.nn`` can share the NumPy contender's process and be timed round-robin beside
it (with more threads, run.py keeps the libraries in separate processes, as for the MLP).

Every trainer is callable (one step, returning the loss) and has ``weights()``: host
float64 arrays named as in ``mnn.GPT.state_dict()``. ``tests/layers/test_gpt.py`` checks in
float64 that three AdamW steps of ``torch.nn`` and mnn give the same losses and weights.

Run one comparison: ``python -m benchmarks.gpt --library numpy --json out.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass

import numpy as np

from benchmarks.harness import (
    Contender,
    MnnStep,
    add_timing_arguments,
    compare,
    host_float64,
    limit_threads,
    write_result,
)

#: The model of the issue's training target (and of ``mnn train-lm``'s defaults).
SHAPE = {"vocab_size": 103, "context": 64, "d_model": 128, "heads": 4, "layers": 4}
BATCH = 32
LR = 1e-3


@dataclass
class Problem:
    """Token ids, next-token labels and the initial weights (mnn's names), host arrays."""

    ids: np.ndarray  # (batch, context) int64
    labels: np.ndarray  # (batch, context) int64
    weights: dict
    shape: dict


def make_problem(batch: int = BATCH, seed: int = 0, **shape) -> Problem:
    import mnn

    shape = {**SHAPE, **shape}
    rng = np.random.default_rng(seed)
    model = mnn.GPT(**shape, rng=rng)
    stream = rng.integers(0, shape["vocab_size"], size=(batch, shape["context"] + 1))
    return Problem(ids=stream[:, :-1], labels=stream[:, 1:],
                   weights={k: np.array(v) for k, v in model.state_dict().items()}, shape=shape)


# --- torch.nn + autograd ---------------------------------------------------------------


def torch_gpt_class():
    """``TorchGPT``, defined when asked for (``import torch`` only then)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        """Pre-norm: x + proj(attn(ln1(x))), then + fc2(gelu(fc1(ln2(x))))."""

        def __init__(self, d_model, heads, hidden, dropout, approximate):
            super().__init__()
            self.heads, self.approximate = heads, approximate
            self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
            self.qkv = nn.Linear(d_model, 3 * d_model)
            self.proj = nn.Linear(d_model, d_model)
            self.fc1, self.fc2 = nn.Linear(d_model, hidden), nn.Linear(hidden, d_model)
            self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

        def forward(self, x):
            batch, length, width = x.shape
            q, k, v = (t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)
                       for t in self.qkv(self.ln1(x)).split(width, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.drop1(self.proj(y.transpose(1, 2).reshape(batch, length, width)))
            return x + self.drop2(self.fc2(F.gelu(self.fc1(self.ln2(x)),
                                                  approximate=self.approximate)))

    class TorchGPT(nn.Module):
        def __init__(self, vocab_size, context, d_model, heads, layers, hidden=None,
                     dropout=0.0, approximate="tanh"):
            super().__init__()
            self.tokens, self.positions = (nn.Embedding(vocab_size, d_model),
                                           nn.Embedding(context, d_model))
            self.drop = nn.Dropout(dropout)
            self.blocks = nn.Sequential(*[Block(d_model, heads, hidden or 4 * d_model, dropout,
                                                approximate) for _ in range(layers)])
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, vocab_size, bias=False)

        def forward(self, ids):
            positions = torch.arange(ids.shape[1], device=ids.device)
            x = self.drop(self.tokens(ids) + self.positions(positions))
            return self.head(self.norm(self.blocks(x)))

        def load_mnn(self, weights: dict) -> None:
            """Copy weights named as in ``mnn.GPT.state_dict()`` (host arrays)."""
            with torch.no_grad():
                for name, value in torch_names(weights, len(self.blocks)).items():
                    self.get_parameter(name).copy_(torch.from_numpy(np.asarray(value)))

        def mnn_weights(self) -> dict:
            """The weights as host float64 arrays, named as in ``mnn.GPT.state_dict()``."""
            mine = {n: p.detach().cpu().double().numpy() for n, p in self.named_parameters()}
            return mnn_names(mine, len(self.blocks))

    return TorchGPT


#: mnn's name -> the torch parameter it is, in block ``i`` (qkv is three of mnn's at once).
BLOCK_NAMES = {"attention.block.0.w": "ln1.weight", "attention.block.0.b": "ln1.bias",
               "attention.block.1.W_out.w": "proj.weight", "attention.block.1.W_out.b": "proj.bias",
               "mlp.block.0.w": "ln2.weight", "mlp.block.0.b": "ln2.bias",
               "mlp.block.1.w": "fc1.weight", "mlp.block.1.b": "fc1.bias",
               "mlp.block.3.w": "fc2.weight", "mlp.block.3.b": "fc2.bias"}
QKV = ("W_qry", "W_key", "W_val")
OUTER_NAMES = {"tokens.w": "tokens.weight", "positions.w": "positions.weight",
               "norm.w": "norm.weight", "norm.b": "norm.bias", "head.w": "head.weight"}


def torch_names(weights: dict, layers: int) -> dict:
    """mnn-named weights as TorchGPT's: renamed, and W_qry, W_key, W_val stacked into qkv."""
    out = {OUTER_NAMES[k]: v for k, v in weights.items() if k in OUTER_NAMES}
    for i in range(layers):
        mine = f"blocks.{i}."
        out.update({f"blocks.{i}.{theirs}": weights[mine + ours]
                    for ours, theirs in BLOCK_NAMES.items()})
        for key, kind in (("w", "weight"), ("b", "bias")):
            out[f"blocks.{i}.qkv.{kind}"] = np.concatenate(
                [weights[f"{mine}attention.block.1.{part}.{key}"] for part in QKV])
    return out


def mnn_names(weights: dict, layers: int) -> dict:
    """The inverse of ``torch_names``."""
    out = {ours: weights[theirs] for ours, theirs in OUTER_NAMES.items()}
    for i in range(layers):
        mine = f"blocks.{i}."
        out.update({mine + ours: weights[f"blocks.{i}.{theirs}"]
                    for ours, theirs in BLOCK_NAMES.items()})
        for key, kind in (("w", "weight"), ("b", "bias")):
            for part, block in zip(QKV, np.split(weights[f"blocks.{i}.qkv.{kind}"], 3),
                                   strict=True):
                out[f"{mine}attention.block.1.{part}.{key}"] = block
    return out


class TorchNN:
    """``TorchGPT`` + ``F.cross_entropy`` + ``loss.backward()`` + ``torch.optim.AdamW``."""

    def __init__(self, problem: Problem, dtype: str, device: str = "cpu"):
        import torch
        from torch.nn import functional as F

        self.cross_entropy = F.cross_entropy
        self.model = torch_gpt_class()(**problem.shape).to(device=device,
                                                           dtype=getattr(torch, dtype))
        self.model.load_mnn(problem.weights)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=LR)
        self.ids = torch.tensor(problem.ids, device=device)
        self.labels = torch.tensor(problem.labels, device=device)

    def __call__(self):
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(self.ids)
        loss = self.cross_entropy(logits.reshape(-1, logits.shape[-1]), self.labels.reshape(-1))
        loss.backward()
        self.optimizer.step()
        return loss

    def weights(self) -> dict:
        return self.model.mnn_weights()


# --- mnn ----------------------------------------------------------------------------------


class Mnn(MnnStep):
    """``mnn.GPT`` + ``CrossEntropyLossLayer(axis=-1)`` + ``mnn.optim.AdamW``."""

    def __init__(self, problem: Problem, dtype: str, backend: str = "numpy", device: str = "cpu"):
        import mnn

        self.backend = mnn.backends.get(backend)
        where = mnn.backends.Placement.named(self.backend, device, dtype)
        with mnn.initializers.skip_init():  # placeholders: load_weights fills them
            self.gpt = mnn.GPT(**problem.shape)
        self.gpt.load_weights(problem.weights)
        self.model = mnn.SequentialLayers([self.gpt, mnn.CrossEntropyLossLayer(axis=-1)])
        self.model.to(xp=backend, device=device, dtype=dtype)
        self.optimizer = mnn.optim.AdamW(self.model, lr=LR)
        self.inputs, self.labels = where.from_host(problem.ids), where.from_host(problem.labels)

    def weights(self) -> dict:
        return host_float64(self.backend, self.gpt.state_dict())


# --- the comparison -------------------------------------------------------------------

#: name -> (trainer class, extra keyword arguments, module it needs)
TRAINERS = {
    "torch.nn": (TorchNN, {}, "torch"),
    "mnn-torch": (Mnn, {"backend": "torch"}, "torch"),
    "mnn-numpy": (Mnn, {"backend": "numpy"}, "numpy"),
}
#: The contenders timed in one process: each mnn backend beside the torch.nn reference.
LIBRARIES = {"torch": ("torch.nn", "mnn-torch"), "numpy": ("torch.nn", "mnn-numpy")}


def missing(name: str) -> str | None:
    """Why trainer ``name`` cannot run here, or None."""
    module = TRAINERS[name][2]
    return f"{module} is not installed" if importlib.util.find_spec(module) is None else None


def build(name: str, problem: Problem, dtype: str):
    cls, kwargs, _ = TRAINERS[name]
    return cls(problem, dtype, **kwargs)


def contenders(dtype: str, library: str = "all", batch: int = BATCH) -> list[Contender]:
    problem = make_problem(batch)
    names = list(TRAINERS) if library == "all" else LIBRARIES[library]
    return [Contender(name, build=lambda n=name: build(n, problem, dtype), skip=missing(name))
            for name in names]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--threads", type=int, default=1)
    add_timing_arguments(parser)
    parser.add_argument("--library", default="all", choices=["all", *LIBRARIES],
                        help="the torch.nn reference and one library's mnn contender")
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    chosen = contenders(args.dtype, args.library, args.batch)
    result = compare(chosen, reference="torch.nn", repeats=args.repeats, warmup=args.warmup,
                     sample_s=args.sample_s)
    shape = ", ".join(f"{k} {v}" for k, v in SHAPE.items())
    write_result(result, args.json, kind="gpt",
                 title=f"GPT training step ({shape}), batch {args.batch}, {args.dtype}, "
                       f"{args.threads} thread{'s' * (args.threads != 1)}"
                 + ("" if args.library == "all" else f", {args.library} contenders"),
                 params={"batch": args.batch, "dtype": args.dtype, "threads": args.threads,
                         "library": args.library, **SHAPE})


if __name__ == "__main__":
    main()
