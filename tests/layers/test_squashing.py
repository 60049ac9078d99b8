"""The squashing functions Sigmoid and Tanh: gradients, a long-double NumPy reference,
saturation at extreme inputs, float32 against float64, torch.autograd.

The tests the two layers share come first, parametrized over both (ids ``sigmoid`` and
``tanh``); each layer's own tests follow, named after it.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from helpers import assert_float32_matches_float64, assert_matches_torch_autograd

import mnn
from mnn.testing import gradcheck


def sigmoid_reference(x):
    """1 / (1 + e^-x) and its derivative y (1 - y), in NumPy's long double where it has
    one, rounded to float64."""
    y = 1 / (1 + np.exp(-np.asarray(x, dtype=np.longdouble)))
    return y.astype(np.float64), (y * (1 - y)).astype(np.float64)


def tanh_reference(x):
    """tanh(x) and its derivative 1 - y^2, in NumPy's long double where it has one,
    rounded to float64."""
    y = np.tanh(np.asarray(x, dtype=np.longdouble))
    return y.astype(np.float64), (1 - y * y).astype(np.float64)


@dataclass(frozen=True)
class Squashing:
    """One layer under test, its reference, and its twin in ``torch.nn.functional``."""

    layer: type[mnn.BaseLayer]
    reference: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # x -> (y, dy/dx)
    functional: str  # the name of the same function in torch.nn.functional


LAYERS = [pytest.param(Squashing(mnn.Sigmoid, sigmoid_reference, "sigmoid"), id="sigmoid"),
          pytest.param(Squashing(mnn.Tanh, tanh_reference, "tanh"), id="tanh")]

# One tolerance per kind of comparison, the same for both layers:
# - an output against the reference: each layer is one elementwise function, accurate to
#   a few units in the last place, even where the output is tiny;
OUTPUT = {"rtol": 1e-15, "atol": 0.0}
# - a gradient against the reference: 1 - y in y (1 - y), and 1 - y^2, cancel as y nears
#   1, so the float64 result keeps an absolute error of about one unit in the last place
#   of 1;
GRADIENT = {"rtol": 1e-13, "atol": 1e-15}
# - float32 against float64: the same cancellation, at float32's precision;
FLOAT32 = {"rtol": 1e-5, "atol": 1e-6}
# - float64 against torch.autograd.
TORCH = {"rtol": 1e-14, "atol": 1e-15}


def inputs(rng, shape):
    """Inputs reaching into both tails, where the outputs near their bounds."""
    return 3 * rng.standard_normal(shape)


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (7,), ()],
                         ids=["batch", "leading-dims", "1-d", "0-d"])
@pytest.mark.parametrize("squashing", LAYERS)
def test_gradcheck(target, rng, squashing, shape):
    assert gradcheck(squashing.layer(), target.asarray(inputs(rng, shape)))


@pytest.mark.parametrize("squashing", LAYERS)
def test_forward_and_backward_match_numpy_reference(target, rng, squashing):
    x, g = inputs(rng, (6, 5)), rng.standard_normal((6, 5))
    layer = squashing.layer()
    out = target.to_host(layer(target.asarray(x)))
    grad = target.to_host(layer.backward(target.asarray(g)))
    y, dy = squashing.reference(x)
    np.testing.assert_allclose(out, y, **OUTPUT)
    np.testing.assert_allclose(grad, g * dy, **GRADIENT)


@pytest.mark.parametrize("squashing", LAYERS)
def test_extreme_inputs_saturate_without_warnings(target, squashing):
    """No overflow warning anywhere; from x = 40 up the output is 1 and the gradient 0
    exactly, and at x = 0 both are the reference's exactly."""
    x = np.array([-1e4, -1000.0, -40.0, -1.0, 0.0, 1.0, 40.0, 1000.0, 1e4])
    layer = squashing.layer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "overflow encountered in exp"
        out = target.to_host(layer(target.asarray(x)))
        grad = target.to_host(layer.backward(target.asarray(np.ones_like(x))))
    y, dy = squashing.reference(x)
    # sigma(-1000) = 5e-435 is 0 in float64; the standard-only form gives about 3e-308
    # (Backend.sigmoid caps the exponent), a library's own sigmoid 0: both at the bottom
    np.testing.assert_allclose(out, y, rtol=OUTPUT["rtol"], atol=1e-300)
    np.testing.assert_allclose(grad, dy, **GRADIENT)
    assert np.all(np.isfinite(grad))
    top = x >= 40
    np.testing.assert_array_equal(out[top], 1.0)
    np.testing.assert_array_equal(grad[top], 0.0)
    middle = x == 0
    assert out[middle] == y[middle] and grad[middle] == dy[middle]


@pytest.mark.parametrize("squashing", LAYERS)
def test_float32_agrees_with_float64(target, rng, squashing):
    x, g = inputs(rng, (8, 16)), rng.standard_normal((8, 16))
    assert_float32_matches_float64(target, squashing.layer, (x,), g, **FLOAT32)


@pytest.mark.parametrize("squashing", LAYERS)
def test_integer_inputs_are_a_clear_error(target, squashing):
    with pytest.raises(mnn.DTypeError,
                       match=rf"{squashing.layer.__name__}: expected floating-point inputs"):
        squashing.layer()(target.asarray(np.arange(3)))


@pytest.mark.parametrize("squashing", LAYERS)
def test_matches_torch_autograd(rng, squashing):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    x, g = inputs(rng, (4, 6)), rng.standard_normal((4, 6))
    assert_matches_torch_autograd(squashing.layer(),
                                  getattr(torch.nn.functional, squashing.functional), x, g,
                                  **TORCH)


def test_sigmoid_keeps_tiny_outputs_of_very_negative_inputs(target):
    """Both branches of Eq. (2): e^-40 is not rounded to 0, and at x = -1000 the output
    sits at the bottom of float64 without e^1000 overflowing."""
    out = target.to_host(mnn.Sigmoid()(target.asarray(np.array([-1000.0, -40.0]))))
    assert out[1] > 0 and out[1] == pytest.approx(np.exp(-40.0), rel=1e-14)
    assert 0.0 <= out[0] < 1e-300


def test_tanh_saturates_at_minus_one_exactly(target):
    layer = mnn.Tanh()
    out = target.to_host(layer(target.asarray(np.array([-1e4, -1000.0, -40.0]))))
    grad = target.to_host(layer.backward(target.asarray(np.ones(3))))
    np.testing.assert_array_equal(out, -1.0)
    np.testing.assert_array_equal(grad, 0.0)
