r"""Seeded host random numbers and scaled initialisations.

Every layer draws its initial parameters on the host from a NumPy generator, so
the same seed gives the same network on every backend and device. The first
``forward`` then moves them to wherever the inputs live.

Why scaled: with unit-variance weights (the original mnn's ``randn``) each layer
multiplies the variance of its activations by ``fan_in``, so a deep network's
outputs explode. For a weight matrix with entries of variance :math:`\sigma^2`,

.. math::

    \operatorname{Var}[y_i] = \sum_{j=1}^{n_{in}} \operatorname{Var}[W_{ij}]\,
    \operatorname{E}[x_j^2] = n_{in}\, \sigma^2\, \operatorname{E}[x^2].

* He (Kaiming): ReLU zeroes half of its inputs, :math:`E[x^2] = \operatorname{Var}[z]/2`,
  so :math:`\sigma^2 = 2 / n_{in}` keeps the variance constant through ReLU layers.
* Glorot (Xavier): for linear or tanh-like layers, the compromise between the
  forward and backward pass, :math:`\sigma^2 = 2 / (n_{in} + n_{out})`.

Both are drawn uniform on :math:`[-a, a]`, whose variance is :math:`a^2/3`, so
:math:`a = \sqrt{3}\,\sigma`.

Seeds and threads: ``manual_seed`` seeds one generator for the whole process,
as ``torch.manual_seed`` does. Threads that build layers at the same time share
it, so which thread gets which numbers depends on timing. The per-thread (and
per-layer) way is the ``rng=`` argument of every constructor: an int seed or a
``numpy.random.Generator`` of the thread's own.

``skip_init()`` builds layers without drawing anything (as torch's meta device
does): every parameter is a zero-memory placeholder of the right shape, to be
replaced by ``load_weights``. ``mnn.load`` builds a checkpoint's model this way,
so a file that asks for a huge layer costs nothing before its shapes are checked.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
from collections.abc import Iterator

import numpy as np

from mnn.errors import ArgumentError, ArgumentTypeError

# The process-wide generator of manual_seed, made on first use: importing numpy.random
# is a good part of what import mnn would otherwise cost.
_global_generator: np.random.Generator | None = None
_global_lock = threading.Lock()
_skipping = contextvars.ContextVar("mnn_skip_init", default=False)


def manual_seed(seed: int) -> None:
    """Seed the process-wide host generator that layers use when given no ``rng=``.

    One generator for every thread, as in torch; pass ``rng=`` to a constructor for
    numbers that do not depend on what other threads draw.
    """
    global _global_generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ArgumentError(f"manual_seed: expected a non-negative int, got {seed!r}")
    _global_generator = np.random.default_rng(int(seed))


def _shared_generator() -> np.random.Generator:
    global _global_generator
    with _global_lock:
        if _global_generator is None:
            _global_generator = np.random.default_rng(0)
        return _global_generator


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Inside this block, new layers get placeholder parameters and draw no numbers."""
    token = _skipping.set(True)
    try:
        yield
    finally:
        _skipping.reset(token)


def _placeholder(shape: tuple[int, ...]) -> np.ndarray:
    """A read-only float64 array of ``shape`` that takes no memory (one zero, broadcast)."""
    return np.broadcast_to(np.float64(0.0), shape)


def zeros(shape: tuple[int, ...]) -> np.ndarray:
    """Zeros (a bias), or a placeholder inside ``skip_init()``."""
    return _placeholder(shape) if _skipping.get() else np.zeros(shape)


def ones(shape: tuple[int, ...]) -> np.ndarray:
    """Ones (a LayerNorm scale), or a placeholder inside ``skip_init()``."""
    return _placeholder(shape) if _skipping.get() else np.ones(shape)


def normal(shape: tuple[int, ...], std: float, rng: np.random.Generator) -> np.ndarray:
    """Normal with mean 0 and standard deviation ``std`` (``torch.nn.Embedding`` uses 1)."""
    if _skipping.get():
        return _placeholder(shape)
    return std * rng.standard_normal(shape)


def host_generator(rng: int | np.random.Generator | None = None) -> np.random.Generator:
    """The generator a constructor should draw from: ``rng`` if given, else the global one."""
    if rng is None:
        return _shared_generator()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ArgumentTypeError(
        f"rng: expected a non-negative int seed or a numpy.random.Generator, got {rng!r}")


def he_uniform(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform on [-a, a] with variance 2 / fan_in (He et al., 2015)."""
    if _skipping.get():
        return _placeholder(shape)
    bound = math.sqrt(3.0) * math.sqrt(2.0 / fan_in)
    return rng.uniform(-bound, bound, size=shape)


def glorot_uniform(shape: tuple[int, ...], fan_in: int, fan_out: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Uniform on [-a, a] with variance 2 / (fan_in + fan_out) (Glorot & Bengio, 2010)."""
    if _skipping.get():
        return _placeholder(shape)
    bound = math.sqrt(3.0) * math.sqrt(2.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape)
