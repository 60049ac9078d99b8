"""The small examples that ``gradcheck`` checks: every registered layer's ``example``.

A layer class provides ``example(rng)``, a classmethod that returns ``(layer,
inputs, feedbacks)``: a fresh layer and host (NumPy) arrays, float64 inputs (a
tuple of them for layers that take several) and the feedbacks a loss needs
(labels, targets) or ``None``. Shapes are small, so that ``gradcheck`` compares
the full Jacobian entry by entry. ``mnn check``, mnn's contract tests and the
pytest plugin find every example through the layer registry: a layer of your own
gets checked as soon as its class is defined (or its package's entry point is
loaded).

``place(case, placement)`` moves a case's arrays to a backend, device and dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from mnn.backends import Placement
from mnn.base import BaseLayer, Example
from mnn.initializers import host_generator
from mnn.registry import LAYERS

#: What a case returns: the layer, its host inputs and its host feedbacks (or None).
Case = Example
#: What a case is made by: a function of a generator.
MakeCase = Callable[[np.random.Generator], Case]


def cases() -> Mapping[str, MakeCase]:
    """Layer name -> its ``example``, for every registered layer class that defines one
    (a subclass that inherits its parent's example is the parent's case, not its own)."""
    found = {}
    for name in LAYERS.known():
        cls = LAYERS.get(name)
        if issubclass(cls, BaseLayer) and "example" in vars(cls):
            found[name] = cls.example
    return found


def make_case(name: str, rng: int | np.random.Generator = 0) -> Case:
    """The example of layer ``name``, drawn from ``rng`` (an int seed or a
    ``numpy.random.Generator``)."""
    return LAYERS.get(name).example(host_generator(rng))


def place(case: Case, placement: Placement) -> Case:
    """The case with its arrays moved to ``placement`` (floats in its dtype, integers kept)."""
    layer, inputs, feedbacks = case
    if isinstance(inputs, tuple):
        inputs = tuple(placement.from_host(x) for x in inputs)
    else:
        inputs = placement.from_host(inputs)
    return layer, inputs, None if feedbacks is None else placement.from_host(feedbacks)



