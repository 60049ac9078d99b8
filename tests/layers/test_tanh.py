"""Tanh: gradients, forward against NumPy, saturation, float32 against float64, torch.autograd."""

import warnings

import numpy as np
import pytest
from helpers import assert_float32_matches_float64, assert_matches_torch_autograd

import mnn
from mnn.testing import gradcheck


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (7,), ()],
                         ids=["batch", "leading-dims", "1-d", "0-d"])
def test_gradcheck(target, rng, shape):
    assert gradcheck(mnn.Tanh(), target.asarray(2 * rng.standard_normal(shape)))


def test_forward_and_backward_match_numpy_reference(target, rng):
    x, g = 3 * rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    layer = mnn.Tanh()
    out = target.to_host(layer(target.asarray(x)))
    grad = target.to_host(layer.backward(target.asarray(g)))
    np.testing.assert_allclose(out, np.tanh(x), rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(grad, g / np.cosh(x) ** 2, rtol=1e-12, atol=1e-15)  # 1 - tanh^2


def test_large_inputs_saturate_without_warnings(target):
    layer = mnn.Tanh()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = target.to_host(layer(target.asarray(np.array([-1e4, -40.0, 40.0, 1e4]))))
        grad = target.to_host(layer.backward(target.asarray(np.ones(4))))
    np.testing.assert_array_equal(out, [-1.0, -1.0, 1.0, 1.0])
    np.testing.assert_array_equal(grad, np.zeros(4))


def test_float32_agrees_with_float64(target, rng):
    x, g = rng.standard_normal((8, 16)), rng.standard_normal((8, 16))
    assert_float32_matches_float64(target, mnn.Tanh, (x,), g, rtol=1e-5, atol=1e-6)


def test_integer_inputs_are_a_clear_error(target):
    with pytest.raises(mnn.DTypeError, match=r"Tanh: expected floating-point inputs"):
        mnn.Tanh()(target.asarray(np.arange(3)))


def test_matches_torch_autograd(rng):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    x, g = 2 * rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    assert_matches_torch_autograd(mnn.Tanh(), torch.tanh, x, g, rtol=1e-14, atol=1e-15)
