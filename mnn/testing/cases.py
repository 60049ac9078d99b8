"""Small, fixed examples of every layer: the one list that ``mnn check``, mnn's contract
test (tests/test_contract.py) and your own tests share.

A case is a function of a ``numpy.random.Generator`` that returns
``(layer, inputs, feedbacks)``: a fresh layer and host (NumPy) arrays, float64
inputs (a tuple of them for layers that take several) and the feedbacks a loss
needs (labels, targets) or ``None``. Shapes are small, so that ``gradcheck``
compares the full Jacobian entry by entry. Register a case for a layer of your
own with the decorator, and ``mnn check`` checks it too::

    @mnn.testing.layer_case("Square")
    def _(rng):
        return Square(), rng.standard_normal((3, 4)), None

``place(case, placement)`` moves a case's arrays to a backend, device and dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import mnn
from mnn.backends import Placement
from mnn.deprecation import warn_deprecated
from mnn.initializers import host_generator

#: What a case returns: the layer, its host inputs and its host feedbacks (or None).
Case = tuple[mnn.BaseLayer, Any, Any]

#: What a case is made by: a function of a generator.
MakeCase = Callable[[np.random.Generator], Case]
#: Layer name -> (rng) -> Case. Every layer that mnn exports has one (a test checks).
CASES: dict[str, MakeCase] = {}


def layer_case(name: str) -> Callable[[MakeCase], MakeCase]:
    """Register the decorated function as the case of the layer called ``name``."""
    def register(make: MakeCase) -> MakeCase:
        CASES[name] = make
        return make
    return register


def make_case(name: str, rng: int | np.random.Generator = 0, *, seed: int | None = None) -> Case:
    """The case of layer ``name``, drawn from ``rng`` (an int seed or a
    ``numpy.random.Generator``); ``seed`` is its deprecated name."""
    if seed is not None:
        warn_deprecated("make_case(seed=...)", "make_case(rng=...)", since="0.1",
                        removed_in="0.3")
        rng = seed
    return CASES[name](host_generator(rng))


def place(case: Case, placement: Placement) -> Case:
    """The case with its arrays moved to ``placement`` (floats in its dtype, integers kept)."""
    layer, inputs, feedbacks = case
    if isinstance(inputs, tuple):
        inputs = tuple(placement.from_host(x) for x in inputs)
    else:
        inputs = placement.from_host(inputs)
    return layer, inputs, None if feedbacks is None else placement.from_host(feedbacks)


def _normal(rng, *shape):
    return rng.standard_normal(shape)


def _labels(rng, n, classes):
    return rng.integers(0, classes, size=n)


@layer_case("LinearLayer")
def _linear(rng):
    return mnn.LinearLayer(4, 3, rng=rng), _normal(rng, 2, 4), None


@layer_case("ReluLayer")
def _relu(rng):
    return mnn.ReluLayer(), _normal(rng, 3, 5), None


@layer_case("LogLayer")
def _log(rng):
    return mnn.LogLayer(), rng.uniform(0.5, 2.0, (3, 4)), None


@layer_case("SoftmaxLayer")
def _softmax(rng):
    return mnn.SoftmaxLayer(), _normal(rng, 3, 5), None


@layer_case("LogSoftmaxLayer")
def _log_softmax(rng):
    return mnn.LogSoftmaxLayer(), _normal(rng, 3, 5), None


@layer_case("MSELossLayer")
def _mse(rng):
    return mnn.MSELossLayer(), _normal(rng, 3, 4), _normal(rng, 3, 4)


@layer_case("NllLossLayer")
def _nll(rng):
    return mnn.NllLossLayer(), _normal(rng, 4, 5), _labels(rng, 4, 5)


@layer_case("CrossEntropyLossLayer")
def _cross_entropy(rng):
    return mnn.CrossEntropyLossLayer(), _normal(rng, 4, 5), _labels(rng, 4, 5)


@layer_case("MatrixProduct")
def _matrix_product(rng):
    return mnn.MatrixProduct(), (_normal(rng, 3, 4), _normal(rng, 4, 2)), None


@layer_case("MultiHeadAttention")
def _attention(rng):
    return mnn.MultiHeadAttention(d=2, heads=2, bias=True, rng=rng), _normal(rng, 2, 3, 4), None


@layer_case("SequentialLayers")
def _sequential(rng):
    net = mnn.SequentialLayers([mnn.LinearLayer(4, 5, rng=rng), mnn.ReluLayer(),
                                mnn.LinearLayer(5, 3, rng=rng), mnn.CrossEntropyLossLayer()])
    return net, _normal(rng, 3, 4), _labels(rng, 3, 3)
