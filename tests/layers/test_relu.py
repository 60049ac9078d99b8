"""ReluLayer: gradients, forward against NumPy, float32 against float64, errors, torch.autograd."""

import numpy as np
import pytest
from helpers import assert_float32_matches_float64, assert_matches_torch_autograd

import mnn
from mnn.testing import gradcheck


def away_from_zero(rng, shape):
    """Normal samples pushed at least 0.1 away from the kink, where no derivative exists."""
    x = rng.standard_normal(shape)
    return x + np.where(x >= 0, 0.1, -0.1)


@pytest.mark.parametrize("shape", [(5, 4), (1, 4), (2, 3, 4), (7,)],
                         ids=["batch", "batch1", "leading-dims", "1-d"])
def test_gradcheck(target, rng, shape):
    assert gradcheck(mnn.ReluLayer(), target.asarray(away_from_zero(rng, shape)))


def test_forward_and_backward_match_numpy_reference(target, rng):
    x, g = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    layer = mnn.ReluLayer()
    out = target.to_host(layer(target.asarray(x)))
    grad = target.to_host(layer.backward(target.asarray(g)))
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    np.testing.assert_array_equal(grad, g * (x > 0))


def test_subgradient_at_zero_is_zero(target):
    layer = mnn.ReluLayer()
    layer(target.asarray(np.zeros((1, 3))))
    assert np.all(target.to_host(layer.backward(target.asarray(np.ones((1, 3))))) == 0)


def test_float32_agrees_with_float64(target, rng):
    x, g = rng.standard_normal((8, 16)), rng.standard_normal((8, 16))
    assert_float32_matches_float64(target, mnn.ReluLayer, (x,), g, rtol=1e-6, atol=1e-7)

def test_matches_torch_autograd(rng):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    x, g = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    assert_matches_torch_autograd(mnn.ReluLayer(), torch.relu, x, g, rtol=1e-12)
