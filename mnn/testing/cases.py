"""Small, fixed examples of every layer: the one list that ``mnn check``, mnn's contract
test (tests/layers/test_contract.py) and your own tests share.

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
    layer = mnn.MultiHeadAttention(d=2, heads=2, bias=True, output_projection=True, causal=True,
                                   rng=rng)
    return layer, _normal(rng, 2, 3, 4), None


@layer_case("Tanh")
def _tanh(rng):
    return mnn.Tanh(), _normal(rng, 3, 4), None


@layer_case("Sigmoid")
def _sigmoid(rng):
    return mnn.Sigmoid(), 3 * _normal(rng, 3, 4), None


@layer_case("GELU")
def _gelu(rng):
    return mnn.GELU(approximate="tanh"), 2 * _normal(rng, 3, 4), None  # erf: tests/layers/test_gelu.py


@layer_case("LayerNorm")
def _layer_norm(rng):
    # the initial scale 1 and shift 0 (tests/layers/test_layer_norm.py checks others too)
    return mnn.LayerNorm(5), 2 * _normal(rng, 3, 5) + 1, None


@layer_case("Dropout")
def _dropout(rng):
    return mnn.Dropout(0.4, rng=rng), _normal(rng, 3, 5), None  # training mode: masks drawn


@layer_case("Embedding")
def _embedding(rng):
    return mnn.Embedding(5, 3, rng=rng), rng.integers(0, 5, size=(2, 4)), None  # repeated ids


@layer_case("Residual")
def _residual(rng):
    block = mnn.SequentialLayers([mnn.LayerNorm(4), mnn.LinearLayer(4, 4, rng=rng), mnn.Tanh()])
    return mnn.Residual(block), _normal(rng, 3, 4), None


@layer_case("TransformerBlock")
def _transformer_block(rng):
    block = mnn.TransformerBlock(4, heads=2, hidden=6, dropout=0.2, rng=rng)
    return block, _normal(rng, 2, 3, 4), None


@layer_case("GPT")
def _gpt(rng):
    # 2 x 6 x 23 = 276 logits: more than gradcheck's full_jacobian_max, so random projections
    # check every parameter (its parts have full-Jacobian cases of their own).
    model = mnn.GPT(vocab_size=23, context=8, d_model=4, heads=2, layers=1, hidden=6, rng=rng)
    return model, rng.integers(0, 23, size=(2, 6)), None


@layer_case("SequentialLayers")
def _sequential(rng):
    net = mnn.SequentialLayers([mnn.LinearLayer(4, 5, rng=rng), mnn.ReluLayer(),
                                mnn.LinearLayer(5, 3, rng=rng), mnn.CrossEntropyLossLayer()])
    return net, _normal(rng, 3, 4), _labels(rng, 3, 3)
