"""LogLayer: gradients, NumPy reference, non-positive inputs as NumPy/torch, errors, torch."""

import numpy as np
import pytest
from helpers import assert_float32_matches_float64, assert_matches_torch_autograd

import mnn
from mnn.testing import gradcheck


def positive(rng, shape):
    return rng.uniform(0.5, 3.0, size=shape)


@pytest.mark.parametrize("shape", [(5, 4), (1, 4), (2, 3, 4), (6,), ()],
                         ids=["batch", "batch1", "leading-dims", "1d", "0d"])
def test_gradcheck(target, rng, shape):
    assert gradcheck(mnn.LogLayer(), target.asarray(positive(rng, shape)))


def test_forward_and_backward_match_numpy_reference(target, rng):
    x, g = positive(rng, (7, 6)), rng.standard_normal((7, 6))
    layer = mnn.LogLayer()
    out = target.to_host(layer(target.asarray(x)))
    np.testing.assert_allclose(out, np.log(x), rtol=1e-13, atol=1e-15)
    grad_in = target.to_host(layer.backward(target.asarray(g)))
    np.testing.assert_allclose(grad_in, g / x, rtol=1e-13, atol=1e-15)


def test_float32_agrees_with_float64(target, rng):
    x, g = positive(rng, (8, 16)), rng.standard_normal((8, 16))
    assert_float32_matches_float64(target, mnn.LogLayer, (x,), g, rtol=1e-6, atol=1e-6)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_non_positive_inputs_give_inf_and_nan_like_numpy_and_torch(target):
    x = np.array([0.0, -1.0, 1.0, np.e])
    layer = mnn.LogLayer()
    out = target.to_host(layer(target.asarray(x)))
    # log(e) is 1 within a rounding: NumPy 1.26's log gives 1 - 2**-53
    np.testing.assert_allclose(out, [-np.inf, np.nan, 0.0, 1.0], rtol=1e-15, atol=0)
    grad_in = target.to_host(layer.backward(target.asarray(np.array([1.0, 1.0, 1.0, 0.0]))))
    np.testing.assert_array_equal(grad_in, [np.inf, -1.0, 1.0, 0.0])

@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_matches_torch_autograd(rng):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    x, g = positive(rng, (3, 2, 5)), rng.standard_normal((3, 2, 5))
    x[0, 0, :2] = [0.0, -2.0]  # torch: -inf and nan forward, g / x backward, no error
    assert_matches_torch_autograd(mnn.LogLayer(), torch.log, x, g, rtol=1e-9, atol=1e-15)
