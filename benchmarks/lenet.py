"""One SGD training step of the LeNet-style CNN, three ways, from the same weights and data.

The network is the one ``mnn train --model cnn`` trains on MNIST, built by that command's
own ``cnn`` function (``mnn/cli/train.py``): two stages of a 5x5 convolution padded to keep
the image's size (16, then 32 channels), ReLU and a 2x2 max-pool of stride 2
(28 -> 14 -> 7 pixels a side), then a Linear layer from the 32 x 7 x 7 features to the 10
classes. Inputs: batches of 64 images of 1 x 28 x 28, in float32, with the cross-entropy
and plain SGD (lr 0.1, ``mnn train``'s default). One step: zero the gradients, forward,
backward, optimizer step. The images need no gradient, so no contender computes one.

The contenders:

* ``torch.nn``: the reference, ``nn.Conv2d``, ``nn.ReLU``, ``nn.MaxPool2d``, ``nn.Flatten``
  and ``nn.Linear`` in an ``nn.Sequential`` (built layer by layer from mnn's network, so the
  two stay the same network), ``F.cross_entropy``, ``loss.backward()`` and
  ``torch.optim.SGD``. Its convolutions are PyTorch's own CPU kernels (oneDNN where the
  build has it);
* ``mnn-torch`` / ``mnn-numpy``: mnn's network + ``CrossEntropyLossLayer`` +
  ``mnn.optim.SGD`` on PyTorch / NumPy arrays. ``mnn.Conv2d`` computes its forward, its
  weight gradient and its input gradient as three correlations (Eqs. (1), (12) and (8) of
  ``mnn.layers.conv2d``), each by ``conv2d.correlate``: on PyTorch, the adapter's
  ``Backend.correlate``, ``torch.nn.functional.conv2d`` (PyTorch's own kernels, as in the
  reference's forward; the backward is mnn's two correlations, not autograd's); on NumPy,
  which has no convolution, im2col: the windows of the channels-last image as the rows of
  one matrix, a strided view (``Backend.windows``,
  ``numpy.lib.stride_tricks.sliding_window_view``) that the reshape into the matrix copies,
  times the kernel (Eq. (13)). ``benchmarks/conv.py`` times one layer alone, with the
  adapters' paths and the portable one.

The issue's bars, on medians of the same run: mnn-torch at most 1.5x torch.nn, mnn-numpy
at most 2.0x.

Peak memory of one step (after a warm-up step), beyond what existed before it, counted as
``benchmarks/lstm.py`` counts it (``harness.peak_bytes_of_call``): ``tracemalloc`` for
NumPy arrays, the profiler's allocation events for PyTorch. Compare mnn-torch with
torch.nn (the same counter), and read mnn-numpy's as a size only.

Threads: ``--threads`` (default 1) limits NumPy's BLAS and PyTorch alike, and all three
contenders are timed round-robin in one process.

Every trainer is callable (one step, returning the loss) and has ``weights()``: host float64
arrays named as in mnn's ``state_dict()``; ``tests/tooling/test_bench_lenet.py`` checks in
float64 that they agree after two steps.

Run: ``python -m benchmarks.lenet --json out.json``.
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

#: MNIST's images: one channel, 28 x 28 pixels, 10 classes.
SIDE = 28
N_CLASSES = 10
BATCH = 64
LR = 0.1  # mnn train's default for SGD


def lenet():
    """The network of ``mnn train --model cnn`` for MNIST's images, and its shape in words."""
    from mnn.cli.train import cnn

    return cnn(SIDE)


@dataclass
class Problem:
    """Images, labels and the initial weights (mnn's names), host arrays."""

    images: np.ndarray  # (batch, 1, SIDE, SIDE) float64
    labels: np.ndarray  # (batch,) int64
    weights: dict


def make_problem(batch: int = BATCH, seed: int = 0) -> Problem:
    import mnn

    mnn.manual_seed(seed)  # the network's initial weights
    model, _ = lenet()
    rng = np.random.default_rng(seed)
    return Problem(images=rng.random((batch, 1, SIDE, SIDE)),
                   labels=rng.integers(0, N_CLASSES, size=batch),
                   weights={k: np.array(v) for k, v in model.state_dict().items()})


def torch_network(model):
    """torch.nn's ``nn.Sequential`` twin of mnn's network ``model``, its loss layer left out:
    module ``i`` is layer ``i``, so mnn's ``"i.w"`` is torch's ``"i.weight"``."""
    from torch import nn

    import mnn

    twins = {
        mnn.Conv2d: lambda conv: nn.Conv2d(conv.in_channels, conv.out_channels,
                                           conv.kernel_size, stride=conv.stride,
                                           padding=conv.padding, dilation=conv.dilation,
                                           groups=conv.groups, bias=conv.bias),
        mnn.ReluLayer: lambda _: nn.ReLU(),
        mnn.MaxPool2d: lambda pool: nn.MaxPool2d(pool.kernel_size, stride=pool.stride,
                                                 padding=pool.padding),
        mnn.Flatten: lambda flatten: nn.Flatten(flatten.start_dim, flatten.end_dim),
        mnn.LinearLayer: lambda linear: nn.Linear(linear.in_features, linear.out_features,
                                                  bias=linear.bias),
    }
    return nn.Sequential(*(twins[type(layer)](layer) for layer in model.layers
                           if not layer.is_loss))


class TorchNN:
    """``nn.Sequential`` of Conv2d, ReLU, MaxPool2d, Flatten, Linear + ``F.cross_entropy`` +
    ``loss.backward()`` + ``torch.optim.SGD``."""

    def __init__(self, problem: Problem, dtype: str):
        import torch

        import mnn

        self.torch = torch
        with mnn.initializers.skip_init():  # only its shape is needed
            model, _ = lenet()
        self.model = torch_network(model).to(dtype=getattr(torch, dtype))
        self.names = torch_names(problem.weights)  # mnn's order
        copy_into_torch(self.model, problem.weights, self.names)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.images = torch.tensor(problem.images, dtype=getattr(torch, dtype))
        self.labels = torch.tensor(problem.labels)

    def __call__(self):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.torch.nn.functional.cross_entropy(self.model(self.images), self.labels)
        loss.backward()
        self.optimizer.step()
        return loss

    def weights(self) -> dict:
        return torch_weights(self.model, self.names)


class Mnn(MnnStep):
    """``mnn train --model cnn``'s network (it ends in ``CrossEntropyLossLayer``) +
    ``mnn.optim.SGD``."""

    def __init__(self, problem: Problem, dtype: str, backend: str = "numpy"):
        import mnn

        self.backend = mnn.backends.get(backend)
        where = mnn.backends.Placement.named(self.backend, "cpu", dtype)
        with mnn.initializers.skip_init():  # placeholders: load_weights fills them
            self.model, _ = lenet()
        self.model.load_weights(problem.weights)
        self.model.to(xp=backend, device="cpu", dtype=dtype)
        self.optimizer = mnn.optim.SGD(self.model, lr=LR)
        self.inputs, self.labels = where.from_host(problem.images), where.from_host(problem.labels)

    def weights(self) -> dict:
        return host_float64(self.backend, self.model.state_dict())


#: The contenders: how each is built, and the library it needs (whose allocator holds its arrays).
TRAINERS = training_recipes(TorchNN, Mnn)


def main(argv=None) -> None:
    args = step_arguments(__doc__.splitlines()[0], BATCH).parse_args(argv)
    result = compare_steps(TRAINERS, make_problem(args.batch), args, reference="torch.nn")
    _, shape = lenet()
    write_result(result, args.json, kind="lenet",
                 title=f"LeNet-style CNN training step ({shape}), SGD, batch {args.batch}, "
                       f"{dtype_and_threads(args)}",
                 params={"batch": args.batch, "dtype": args.dtype, "threads": args.threads,
                         "side": SIDE, "classes": N_CLASSES, "lr": LR})


if __name__ == "__main__":
    main()
