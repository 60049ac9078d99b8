"""Softmax and log-softmax backward: time and peak memory, which must stay O(B n).

Through the n x n Jacobian, softmax backward at B = 256, n = 32768 would need
256 * 32768^2 floats (1 TiB in float32). Through the vector-Jacobian product
(``SoftmaxLayer`` Eq. (4): ``s * (g - <g, s>)``; ``LogSoftmaxLayer`` Eq. (4):
``g - s * sum(g)``) it needs a few arrays of the input's size. We measure:

* time, round-robin against a hand-written NumPy floor (one temporary, in place);
* peak memory that ``backward`` allocates beyond what existed before it ran
  (``tracemalloc`` for NumPy; ``torch.cuda.max_memory_allocated`` on a GPU;
  PyTorch's CPU allocator is invisible to both, so it is not measured);
* ``peak / input``: that peak over the size of one ``(B, n)`` input
  (the incoming gradient). It counts the result too, so 1.0 is the least possible.

Run one comparison: ``python -m benchmarks.softmax_memory --op softmax --n 1024``.
"""

from __future__ import annotations

import argparse
import importlib.util

import numpy as np

from benchmarks.harness import (
    Contender,
    add_timing_arguments,
    compare,
    peak_bytes_numpy,
    write_result,
)

BATCH = 256


def floor_softmax_vjp(s, g):
    out = g * s
    inner = out.sum(axis=1, keepdims=True)
    np.subtract(g, inner, out=out)
    out *= s
    return out


def floor_log_softmax_vjp(s, g):
    out = s * g.sum(axis=1, keepdims=True)
    np.subtract(g, out, out=out)
    return out


FLOORS = {"softmax": floor_softmax_vjp, "log-softmax": floor_log_softmax_vjp}


def host_data(n: int, batch: int = BATCH, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, n)), rng.standard_normal((batch, n))


class Case:
    """One contender's forward done once; ``backward()`` is what is timed and measured.

    ``kind`` is ``"floor"`` (NumPy by hand), ``"mnn"`` (the layer on ``backend``) or
    ``"autograd"`` (torch: the graph of ``torch.softmax`` / ``log_softmax``, kept).
    """

    def __init__(self, op: str, kind: str, n: int, dtype: str, backend: str = "numpy",
                 device: str = "cpu", batch: int = BATCH):
        self.op, self.kind = op, kind
        x, g = host_data(n, batch)
        if kind == "floor":
            self.x, self.g = x.astype(dtype), g.astype(dtype)
            shifted = self.x - self.x.max(axis=1, keepdims=True)
            self.s = np.exp(shifted)
            self.s /= self.s.sum(axis=1, keepdims=True)
            self.backward = lambda: FLOORS[op](self.s, self.g)
        elif kind == "mnn":
            import mnn

            self.be = mnn.backends.get(backend)
            where, as_dtype = self.be.device(device), self.be.dtype(dtype)
            layer = mnn.SoftmaxLayer() if op == "softmax" else mnn.LogSoftmaxLayer()
            self.x, self.g = (self.be.from_host(a, where, as_dtype) for a in (x, g))
            layer.forward(self.x)
            self.backward = lambda: layer.backward(self.g, retain_graph=True)
        elif kind == "autograd":
            import torch

            as_dtype = getattr(torch, dtype)
            self.x = torch.tensor(x, dtype=as_dtype, device=device, requires_grad=True)
            self.g = torch.tensor(g, dtype=as_dtype, device=device)
            f = torch.softmax if op == "softmax" else torch.log_softmax
            y = f(self.x, dim=1)
            self.backward = lambda: torch.autograd.grad(y, self.x, self.g, retain_graph=True)[0]
        else:
            raise ValueError(f"unknown kind {kind!r}")

    def input_bytes(self) -> int:
        g = self.g
        return g.nbytes if hasattr(g, "nbytes") else g.numel() * g.element_size()


def peak_bytes(case: Case) -> int | None:
    """Peak bytes its backward allocates, or None where no tool sees the allocator."""
    case.backward()  # warm-up: lazy imports and caches are not the backward's memory
    if isinstance(case.g, np.ndarray):
        return peak_bytes_numpy(lambda: None, lambda _: case.backward())
    if type(case.g).__module__.startswith("torch") and case.g.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        result = case.backward()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        del result
        return peak
    return None


def contenders(op: str, n: int, dtype: str) -> list[tuple[Contender, dict]]:
    """(contender, its constructor arguments); the floor first: it is the reference."""
    plans = [("floor (NumPy)", {"kind": "floor"}, "numpy"),
             ("mnn-numpy", {"kind": "mnn", "backend": "numpy"}, "numpy"),
             ("mnn-torch", {"kind": "mnn", "backend": "torch"}, "torch"),
             ("torch autograd", {"kind": "autograd"}, "torch")]
    sync = lambda: None  # noqa: E731
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            sync = torch.cuda.synchronize
            plans += [("mnn-torch-cuda", {"kind": "mnn", "backend": "torch", "device": "cuda"},
                       "torch"),
                      ("torch autograd-cuda", {"kind": "autograd", "device": "cuda"}, "torch")]
    out = []
    for name, kwargs, module in plans:
        skip = None if importlib.util.find_spec(module) else f"{module} is not installed"
        out.append((Contender(name, build=lambda k=kwargs: Case(op, n=n, dtype=dtype, **k).backward,
                              sync=sync, skip=skip), kwargs))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--op", default="softmax", choices=sorted(FLOORS))
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    add_timing_arguments(parser)
    args = parser.parse_args(argv)
    plans = contenders(args.op, args.n, args.dtype)
    result = compare([c for c, _ in plans], reference="floor (NumPy)", repeats=args.repeats,
                     warmup=args.warmup, sample_s=args.sample_s)
    for (_, kwargs), entry in zip(plans, result["results"], strict=True):
        if "skipped" in entry:
            continue
        case = Case(args.op, n=args.n, dtype=args.dtype, **kwargs)
        peak, size = peak_bytes(case), case.input_bytes()
        entry.update(peak_bytes=peak, input_bytes=size,
                     peak_over_input=None if peak is None else peak / size)
    write_result(result, args.json, kind="softmax",
                 title=f"{args.op} backward, B={BATCH}, n={args.n}, {args.dtype}",
                 params={"op": args.op, "batch": BATCH, "n": args.n, "dtype": args.dtype})

if __name__ == "__main__":
    main()
