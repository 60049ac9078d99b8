"""One SGD step of the MNIST MLP 784-256-10, seven ways, from the same weights and data.

The network: ``x -> Linear(784, 256) -> ReLU -> Linear(256, 10) -> softmax
cross-entropy`` (mean over the batch), then ``W <- W - lr * dL/dW`` with lr = 0.01.

The contenders:

* ``floor``: hand-written NumPy doing the least work: ``x @ W.T + b``, ReLU, the
  softmax-cross-entropy gradient in one expression, ``(softmax - onehot) / B``, no
  gradient for the input ``x`` (no one needs it), ``lr`` folded into that gradient so
  the updates are plain in-place subtractions, every buffer allocated once. It is the
  reference: everything else is reported as a ratio to it.
* ``gemms``: the five matrix products of the floor alone: the part no library can skip.
* ``torch.nn``: ``torch.nn.Sequential`` + ``CrossEntropyLoss`` + autograd + ``torch.optim.SGD``.
* ``mnn-numpy`` / ``mnn-torch``: ``mnn.SequentialLayers`` on NumPy / PyTorch arrays, on
  the path the README teaches, with nothing opted in:
  ``net.zero_grads(); loss = net(x, y); net.backward(); net.step(lr)``.
* ``mnn-numpy-optim`` / ``mnn-torch-optim``: the same network stepped by an optimizer,
  ``opt = mnn.optim.SGD(net, lr)``, then
  ``opt.zero_grad(); loss = net(x, y); net.backward(); opt.step()``.
* ``tinynn``: tinynn 0.1.1's ``Model(Net([Dense, ReLU, Dense]), SoftmaxCrossEntropy, SGD)``.

Every trainer is callable (one step, returning the loss) and has ``weights()``:
its parameters as host float64 arrays named like mnn's (``"0.w"`` is ``(256, 784)``).
``tests/tooling/test_bench_contenders.py`` checks that after a step they all equal the floor's.

Run one comparison: ``python -m benchmarks.mlp --batch 64 --dtype float32 --json out.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass

import numpy as np

from benchmarks.harness import Contender, add_timing_arguments, compare, write_result

SIZES = (784, 256, 10)
LR = 0.01


@dataclass
class Problem:
    """Host float64 data, integer labels and initial weights, shared by every contender."""

    x: np.ndarray  # (batch, 784) in [0, 1), like MNIST pixels
    labels: np.ndarray  # (batch,) int64 in [0, 10)
    weights: dict  # "0.w" (256, 784), "0.b" (256,), "2.w" (10, 256), "2.b" (10,)


def make_problem(batch: int, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    n_in, n_hidden, n_out = SIZES
    weights = {}
    for index, (fan_in, fan_out) in zip((0, 2), ((n_in, n_hidden), (n_hidden, n_out)),
                                        strict=True):
        bound = np.sqrt(6.0 / fan_in)  # He-uniform, as mnn's LinearLayer
        weights[f"{index}.w"] = rng.uniform(-bound, bound, size=(fan_out, fan_in))
        weights[f"{index}.b"] = rng.uniform(-0.1, 0.1, size=(fan_out,))  # nonzero: exercised
    return Problem(x=rng.uniform(0.0, 1.0, size=(batch, n_in)),
                   labels=rng.integers(0, n_out, size=batch), weights=weights)


# --- (a) the floor and (b) its matrix products --------------------------------------


class Floor:
    """The minimum NumPy work for one step; every array is allocated once, here."""

    def __init__(self, problem: Problem, dtype: str):
        cast = {k: np.array(v, dtype=dtype) for k, v in problem.weights.items()}
        self.w1, self.b1, self.w2, self.b2 = cast["0.w"], cast["0.b"], cast["2.w"], cast["2.b"]
        self.x = np.asarray(problem.x, dtype=dtype)
        self.labels = problem.labels
        batch = len(problem.labels)
        self.rows = np.arange(batch)
        self.h = np.empty((batch, SIZES[1]), dtype)  # hidden activations
        self.mask = np.empty((batch, SIZES[1]), bool)
        self.z = np.empty((batch, SIZES[2]), dtype)  # logits, then their gradient
        self.dh = np.empty_like(self.h)
        self.gw1, self.gw2 = np.empty_like(self.w1), np.empty_like(self.w2)
        self.gb1, self.gb2 = np.empty_like(self.b1), np.empty_like(self.b2)
        self.scale = LR / batch  # lr and the 1/B of the mean, folded into dz once

    def __call__(self):
        x, h, z, dh = self.x, self.h, self.z, self.dh
        np.matmul(x, self.w1.T, out=h)
        h += self.b1
        np.maximum(h, 0, out=h)
        np.matmul(h, self.w2.T, out=z)
        z += self.b2
        z -= z.max(axis=1, keepdims=True)  # stable softmax
        picked = z[self.rows, self.labels]
        np.exp(z, out=z)
        total = z.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(total[:, 0]) - picked)
        z /= total  # softmax
        z[self.rows, self.labels] -= 1  # dL/dz = (softmax - onehot) / B, times lr
        z *= self.scale
        np.matmul(z, self.w2, out=dh)  # before w2 changes
        np.greater(h, 0, out=self.mask)
        dh *= self.mask
        np.dot(z.T, h, out=self.gw2)  # np.dot: np.matmul is slow when the inner size is 1
        self.w2 -= self.gw2
        self.b2 -= np.sum(z, axis=0, out=self.gb2)
        np.dot(dh.T, x, out=self.gw1)  # no dh @ w1: the input needs no gradient
        self.w1 -= self.gw1
        self.b1 -= np.sum(dh, axis=0, out=self.gb1)
        return loss

    def weights(self) -> dict:
        pairs = {"0.w": self.w1, "0.b": self.b1, "2.w": self.w2, "2.b": self.b2}
        return {k: np.array(v, dtype=np.float64) for k, v in pairs.items()}


class Gemms(Floor):
    """Only the floor's five matrix products, on the same buffers: what no library can skip."""

    def __call__(self):
        np.matmul(self.x, self.w1.T, out=self.h)
        np.matmul(self.h, self.w2.T, out=self.z)
        np.matmul(self.z, self.w2, out=self.dh)
        np.dot(self.z.T, self.h, out=self.gw2)
        np.dot(self.dh.T, self.x, out=self.gw1)


# --- (c) torch.nn + autograd ---------------------------------------------------------


class TorchNN:
    """``torch.nn.Sequential`` + ``CrossEntropyLoss`` + ``loss.backward()`` + ``optim.SGD``."""

    def __init__(self, problem: Problem, dtype: str, device: str = "cpu"):
        import torch

        self.torch = torch
        as_dtype = getattr(torch, dtype)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.ReLU(),
            torch.nn.Linear(SIZES[1], SIZES[2])).to(device=device, dtype=as_dtype)
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                key = name.replace("weight", "w").replace("bias", "b")
                p.copy_(torch.from_numpy(problem.weights[key]))
        self.loss = torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.x = torch.tensor(problem.x, dtype=as_dtype, device=device)
        self.labels = torch.tensor(problem.labels, dtype=torch.int64, device=device)

    def __call__(self):
        self.optimizer.zero_grad()
        loss = self.loss(self.model(self.x), self.labels)
        loss.backward()
        self.optimizer.step()
        return loss

    def weights(self) -> dict:
        return {name.replace("weight", "w").replace("bias", "b"):
                p.detach().cpu().to(self.torch.float64).numpy()
                for name, p in self.model.named_parameters()}


# --- (d), (e) mnn ---------------------------------------------------------------------


class Mnn:
    """``mnn.SequentialLayers`` on the README's plain path: ``net.zero_grads()``, forward,
    ``net.backward()``, ``net.step(lr)``, with every setting at its default."""

    def __init__(self, problem: Problem, dtype: str, backend: str = "numpy", device: str = "cpu"):
        import mnn

        self.backend = mnn.backends.get(backend)
        where = self.backend.device(device)
        self.net = mnn.SequentialLayers([
            mnn.LinearLayer(SIZES[0], SIZES[1]), mnn.ReluLayer(),
            mnn.LinearLayer(SIZES[1], SIZES[2]), mnn.CrossEntropyLossLayer()])
        self.net.load_weights(problem.weights)
        self.x = self.backend.from_host(problem.x, where, self.backend.dtype(dtype))
        self.labels = self.backend.from_host(problem.labels, where, self.backend.dtype("int64"))

    def __call__(self):
        self.net.zero_grads()
        loss = self.net(self.x, self.labels)
        self.net.backward()
        self.net.step(LR)
        return loss

    def weights(self) -> dict:
        return {k: np.array(self.backend.to_host(v), dtype=np.float64)
                for k, v in self.net.state_dict().items()}


class MnnOptim(Mnn):
    """The same network stepped by ``mnn.optim.SGD(net, lr)``: ``opt.zero_grad()``, forward,
    ``net.backward()``, ``opt.step()``, with every setting at its default."""

    def __init__(self, problem: Problem, dtype: str, backend: str = "numpy", device: str = "cpu"):
        import mnn

        super().__init__(problem, dtype, backend, device)
        self.optimizer = mnn.optim.SGD(self.net, LR)

    def __call__(self):
        self.optimizer.zero_grad()
        loss = self.net(self.x, self.labels)
        self.net.backward()
        self.optimizer.step()
        return loss


# --- (f) tinynn -----------------------------------------------------------------------


class Tinynn:
    """tinynn 0.1.1's training step: forward, ``model.backward`` (loss and grads), ``apply_grads``.

    tinynn's ``Dense`` stores ``w`` as ``(in, out)`` and its loss takes one-hot labels.
    """

    def __init__(self, problem: Problem, dtype: str):
        from tinynn.core.layer import Dense, ReLU
        from tinynn.core.loss import SoftmaxCrossEntropy
        from tinynn.core.model import Model
        from tinynn.core.net import Net
        from tinynn.core.optimizer import SGD

        self.dense = [Dense(SIZES[1]), Dense(SIZES[2])]
        for layer, index in zip(self.dense, (0, 2), strict=True):
            layer.params["w"] = np.array(problem.weights[f"{index}.w"].T, dtype=dtype)
            layer.params["b"] = np.array(problem.weights[f"{index}.b"], dtype=dtype)
            layer.is_init = True  # tinynn would otherwise draw its own weights
        net = Net([self.dense[0], ReLU(), self.dense[1]])
        self.model = Model(net=net, loss=SoftmaxCrossEntropy(), optimizer=SGD(lr=LR))
        self.x = np.asarray(problem.x, dtype=dtype)
        self.onehot = np.eye(SIZES[2], dtype=dtype)[problem.labels]

    def __call__(self):
        predictions = self.model.forward(self.x)
        loss, grads = self.model.backward(predictions, self.onehot)
        self.model.apply_grads(grads)
        return loss

    def weights(self) -> dict:
        out = {}
        for layer, index in zip(self.dense, (0, 2), strict=True):
            out[f"{index}.w"] = np.array(layer.params["w"].T, dtype=np.float64)
            out[f"{index}.b"] = np.array(layer.params["b"], dtype=np.float64)
        return out


# --- the comparison -------------------------------------------------------------------

#: name -> (trainer class, extra keyword arguments, module it needs, whether it trains)
TRAINERS = {
    "floor": (Floor, {}, "numpy", True),
    "gemms": (Gemms, {}, "numpy", False),
    "torch.nn": (TorchNN, {}, "torch", True),
    "mnn-numpy": (Mnn, {"backend": "numpy"}, "mnn", True),
    "mnn-numpy-optim": (MnnOptim, {"backend": "numpy"}, "mnn", True),
    "mnn-torch": (Mnn, {"backend": "torch"}, "torch", True),
    "mnn-torch-optim": (MnnOptim, {"backend": "torch"}, "torch", True),
    "tinynn": (Tinynn, {}, "tinynn", True),
}
GPU_TRAINERS = {
    "torch.nn-cuda": (TorchNN, {"device": "cuda"}, "torch", True),
    "mnn-torch-cuda": (Mnn, {"backend": "torch", "device": "cuda"}, "torch", True),
    "mnn-cupy-cuda": (Mnn, {"backend": "cupy", "device": "cuda:0"}, "cupy", True),
}


def missing(name: str, table: dict = TRAINERS) -> str | None:
    """Why trainer ``name`` cannot run here, or None."""
    _, kwargs, module, _ = table[name]
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    if kwargs.get("device", "cpu") != "cpu":
        import mnn

        backend = mnn.backends.get(kwargs.get("backend", module))
        if kwargs["device"].partition(":")[0] not in {d.partition(":")[0]
                                                       for d in backend.devices()}:
            return f"no {kwargs['device']} device for {backend.name} here"
    return None


def build(name: str, problem: Problem, dtype: str, table: dict = TRAINERS):
    cls, kwargs, _, _ = table[name]
    return cls(problem, dtype, **kwargs)


def synchronizer(name: str, table: dict = TRAINERS):
    """Waits for the device work of trainer ``name`` (its library's, on its device)."""
    _, kwargs, module, _ = table[name]
    device = kwargs.get("device", "cpu")
    if device == "cpu":
        return lambda: None
    import mnn

    backend = mnn.backends.get(kwargs.get("backend", module))
    return lambda: backend.synchronize(device)


#: Contenders that share a process with no other library's threads. torch's OpenMP
#: workers keep spinning after each torch call and take the second core from OpenBLAS,
#: so NumPy contenders timed next to torch ones look slower than they are.
LIBRARIES = {"numpy": ("floor", "gemms", "mnn-numpy", "mnn-numpy-optim", "tinynn"),
             "torch": ("torch.nn", "mnn-torch", "mnn-torch-optim")}


def contenders(batch: int, dtype: str, gpu: bool = False,
               library: str = "all") -> list[Contender]:
    table = GPU_TRAINERS if gpu else TRAINERS
    problem = make_problem(batch)
    out = []
    for name in (table if library == "all" else LIBRARIES[library]):
        skip = missing(name, table)
        out.append(Contender(name, build=lambda n=name: build(n, problem, dtype, table),
                             sync=(lambda: None) if skip else synchronizer(name, table),
                             skip=skip))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--gpu", action="store_true", help="the CUDA contenders instead")
    add_timing_arguments(parser)
    parser.add_argument("--library", default="all", choices=["all", *LIBRARIES],
                        help="only the contenders of one library (one process each)")
    args = parser.parse_args(argv)
    chosen = contenders(args.batch, args.dtype, args.gpu, args.library)
    result = compare(chosen, reference="torch.nn-cuda" if args.gpu else chosen[0].name,
                     repeats=args.repeats, warmup=args.warmup, sample_s=args.sample_s)
    write_result(result, args.json, kind="mlp",
                 title=f"MLP 784-256-10 step, batch {args.batch}, {args.dtype}"
                 + (", CUDA" if args.gpu else "")
                 + ("" if args.library == "all" else f", {args.library} contenders"),
                 params={"batch": args.batch, "dtype": args.dtype, "gpu": args.gpu,
                         "library": args.library})

if __name__ == "__main__":
    main()
