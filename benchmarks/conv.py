"""One Conv2d layer's forward and backward alone: torch autograd, and mnn's two paths.

The layer: 16 -> 32 channels, a 3x3 kernel padded by 1 (the output keeps the input's
14 x 14 pixels), on a batch of 64, float32. One step: forward, then backward from a fixed
output gradient, computing the gradients of the input, the weights and the bias (a
convolution inside a network, not its first layer). The forward's output is kept and the
input's gradient returned, so no contender can skip either.

Why a layer alone: ``benchmarks/lenet.py`` times a whole training step, where the
convolutions share the time with pooling, the loss and the optimizer. Here only the
convolution's formulation decides, and mnn's fast and portable paths are timed side by
side.

The contenders:

* ``torch autograd``: the reference, ``torch.nn.functional.conv2d`` and ``backward()``;
  PyTorch's own CPU kernels (oneDNN where the build has it).
* ``mnn-torch`` / ``mnn-numpy``: ``mnn.Conv2d`` on PyTorch / NumPy arrays. Its forward,
  its weight gradient and its input gradient are three correlations (Eqs. (1), (12) and
  (8) of ``mnn.layers.conv2d``), each computed by ``conv2d.correlate``, and each library
  runs twice:

  * ``fast``: what the adapter gives. mnn-torch: PyTorch's own convolution
    (``Backend.correlate``, ``torch.nn.functional.conv2d``), the same kernels as the
    reference's forward, while the backward is mnn's two correlations. mnn-numpy: NumPy has
    no convolution, so the windows of the channels-last image are gathered as the rows of
    one matrix (im2col) and multiplied by the kernel (Eq. (13)); the windows are a strided
    view (``Backend.windows``, ``numpy.lib.stride_tricks.sliding_window_view``), and the
    reshape into a matrix is the one copy;
  * ``portable``: the ``Backend`` base class's defaults, the reference path of every
    library without a convolution or a view: ``correlate`` gives ``None`` and ``windows``
    stacks strided slices of the input (basic indexing, which every array library has,
    immutable ones too), then im2col as above. Here those defaults are called in place of
    the adapter's methods for the duration of each of these contenders' steps
    (``Mnn.__call__``).

Peak memory of one step (after a warm-up step), beyond what existed before it, counted as
``benchmarks/lstm.py`` counts it (``harness.peak_bytes_of_call``): ``tracemalloc`` for
NumPy arrays, the profiler's allocation events for PyTorch. The portable path's stacked
slices are one more copy of the windows than NumPy's view.

Threads: ``--threads`` (default 1) limits NumPy's BLAS and PyTorch alike, and all
contenders are timed round-robin in one process.

Every contender is callable (one step, returning the output) and has ``results()``: the
output and the gradients of the input, weights and bias as host float64 arrays;
``tests/tooling/test_bench_lenet.py`` checks in float64 that they agree.

Run: ``python -m benchmarks.conv --json out.json``.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import numpy as np

from benchmarks.harness import (
    StepRecipe,
    compare_steps,
    dtype_and_threads,
    host_float64,
    step_arguments,
    write_result,
)

#: The layer: channels in and out, kernel, padding, and the side of the square input images.
LAYER = {"in_channels": 16, "out_channels": 32, "kernel_size": 3, "padding": 1}
SIDE = 14
BATCH = 64


@dataclass
class Problem:
    """The input, the weights (mnn's names ``w`` and ``b``) and the output gradient, host
    float64 arrays."""

    inputs: np.ndarray  # (batch, in_channels, SIDE, SIDE)
    weights: dict
    output_gradient: np.ndarray  # (batch, out_channels, SIDE, SIDE): padding keeps the side


def make_problem(batch: int = BATCH, seed: int = 0) -> Problem:
    import mnn

    rng = np.random.default_rng(seed)
    weights = {k: np.array(v) for k, v in mnn.Conv2d(**LAYER, rng=rng).state_dict().items()}
    weights["b"] = rng.standard_normal(LAYER["out_channels"])  # not zero: its sum shows
    return Problem(inputs=rng.standard_normal((batch, LAYER["in_channels"], SIDE, SIDE)),
                   weights=weights,
                   output_gradient=rng.standard_normal((batch, LAYER["out_channels"],
                                                        SIDE, SIDE)))


class TorchAutograd:
    """``torch.nn.functional.conv2d`` forward, ``backward()`` from the output gradient."""

    def __init__(self, problem: Problem, dtype: str):
        import torch

        self.conv2d = torch.nn.functional.conv2d

        def tensor(host, requires_grad=False):
            return torch.tensor(host, dtype=getattr(torch, dtype), requires_grad=requires_grad)

        self.inputs = tensor(problem.inputs, requires_grad=True)
        self.weight = tensor(problem.weights["w"], requires_grad=True)
        self.bias = tensor(problem.weights["b"], requires_grad=True)
        self.output_gradient = tensor(problem.output_gradient)
        self.output = None

    def __call__(self):
        for leaf in (self.inputs, self.weight, self.bias):
            leaf.grad = None  # as zero_grad(set_to_none=True)
        self.output = self.conv2d(self.inputs, self.weight, self.bias,
                                  padding=LAYER["padding"])
        self.output.backward(self.output_gradient)
        return self.output

    def results(self) -> dict:
        arrays = {"output": self.output, "inputs": self.inputs.grad, "w": self.weight.grad,
                  "b": self.bias.grad}
        return {key: value.detach().double().numpy() for key, value in arrays.items()}


class Mnn:
    """``mnn.Conv2d`` forward and backward, through the adapter's ``windows`` and
    ``correlate`` (``path="fast"``) or the ``Backend`` base class's (``"portable"``)."""

    #: The adapter's methods that the portable path replaces by the base class's.
    FAST_METHODS = ("windows", "correlate")

    def __init__(self, problem: Problem, dtype: str, backend: str = "numpy",
                 path: str = "fast"):
        import mnn

        self.backend = mnn.backends.get(backend)
        where = mnn.backends.Placement.named(self.backend, "cpu", dtype)
        with mnn.initializers.skip_init():  # placeholders: load_weights fills them
            self.layer = mnn.Conv2d(**LAYER)
        self.layer.load_weights(problem.weights)
        self.layer.to(xp=backend, device="cpu", dtype=dtype)
        self.inputs = where.from_host(problem.inputs)
        self.output_gradient = where.from_host(problem.output_gradient)
        # The base class's methods bound to this adapter: set as the adapter's attributes,
        # they hide the adapter's own until deleted
        self.portable = ({name: types.MethodType(getattr(mnn.backends.Backend, name), self.backend)
                          for name in self.FAST_METHODS} if path == "portable" else {})
        self.output = self.input_gradient = None

    def __call__(self):
        for name, method in self.portable.items():
            setattr(self.backend, name, method)
        try:
            return self.forward_and_backward()
        finally:
            for name in self.portable:
                delattr(self.backend, name)  # the other contenders get the adapter's own again

    def forward_and_backward(self):
        self.layer.zero_grads()
        self.output = self.layer(self.inputs)
        self.input_gradient = self.layer.backward(self.output_gradient)
        return self.output

    def results(self) -> dict:
        return host_float64(self.backend, {"output": self.output, "inputs": self.input_gradient,
                                           **self.layer.grads})


#: The contenders: how each is built, and the library it needs (whose allocator holds its arrays).
CONTENDERS = {
    "torch autograd": StepRecipe(TorchAutograd, "torch"),
    "mnn-torch fast": StepRecipe(Mnn, "torch", {"backend": "torch", "path": "fast"}),
    "mnn-torch portable": StepRecipe(Mnn, "torch", {"backend": "torch", "path": "portable"}),
    "mnn-numpy fast": StepRecipe(Mnn, "numpy", {"backend": "numpy", "path": "fast"}),
    "mnn-numpy portable": StepRecipe(Mnn, "numpy", {"backend": "numpy", "path": "portable"}),
}


def main(argv=None) -> None:
    args = step_arguments(__doc__.splitlines()[0], BATCH).parse_args(argv)
    result = compare_steps(CONTENDERS, make_problem(args.batch), args,
                           reference="torch autograd")
    kernel = LAYER["kernel_size"]
    write_result(result, args.json, kind="conv",
                 title=f"Conv2d forward and backward ({LAYER['in_channels']} -> "
                       f"{LAYER['out_channels']} channels, {kernel}x{kernel}, padding "
                       f"{LAYER['padding']}, {SIDE}x{SIDE} images), batch {args.batch}, "
                       f"{dtype_and_threads(args)}",
                 params={"batch": args.batch, "dtype": args.dtype, "threads": args.threads,
                         "side": SIDE, **LAYER})


if __name__ == "__main__":
    main()
