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
"""

from __future__ import annotations

import math

import numpy as np

_global_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Seed the global host generator that layers use when given no ``rng=``."""
    global _global_generator
    _global_generator = np.random.default_rng(seed)


def host_generator(rng: int | np.random.Generator | None = None) -> np.random.Generator:
    """The generator a constructor should draw from: ``rng`` if given, else the global one."""
    if rng is None:
        return _global_generator
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng: expected an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def he_uniform(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform on [-a, a] with variance 2 / fan_in (He et al., 2015)."""
    bound = math.sqrt(3.0) * math.sqrt(2.0 / fan_in)
    return rng.uniform(-bound, bound, size=shape)


def glorot_uniform(shape: tuple[int, ...], fan_in: int, fan_out: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Uniform on [-a, a] with variance 2 / (fan_in + fan_out) (Glorot & Bengio, 2010)."""
    bound = math.sqrt(3.0) * math.sqrt(2.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape)
