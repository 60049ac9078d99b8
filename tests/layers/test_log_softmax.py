"""LogSoftmaxLayer: gradients, NumPy reference, large logits, sample shape, errors, torch."""

import numpy as np
import pytest
from helpers import assert_float32_matches_float64, assert_matches_torch_autograd

import mnn
from mnn.layers.build import build
from mnn.testing import gradcheck

CASES = [((5, 4), 1), ((1, 4), 1), ((2, 3, 4), -1), ((2, 3, 4), 0), ((2, 3, 4), 1), ((6,), 0)]
CASE_IDS = ["batch", "batch1", "3d-last", "3d-axis0", "3d-axis1", "1d"]


def reference_log_softmax(x, axis):
    """float64 NumPy log-softmax through np.logaddexp (another route than the layer's)."""
    return x - np.logaddexp.reduce(x, axis=axis, keepdims=True)


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_gradcheck(target, rng, shape, axis):
    assert gradcheck(mnn.LogSoftmaxLayer(axis=axis), target.asarray(rng.standard_normal(shape)))


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_forward_matches_numpy_reference(target, rng, shape, axis):
    x = 3 * rng.standard_normal(shape)
    out = target.to_host(mnn.LogSoftmaxLayer(axis=axis)(target.asarray(x)))
    np.testing.assert_allclose(out, reference_log_softmax(x, axis), rtol=1e-12, atol=1e-13)


def test_stable_log_softmax_returns_log_softmax_and_softmax(target, rng):
    x = 3 * rng.standard_normal((4, 5, 3))
    log_p, s = mnn.LogSoftmaxLayer.stable_log_softmax(target.asarray(x), -1)
    assert target.backend.owns(log_p) and target.backend.owns(s)
    expected = reference_log_softmax(x, -1)
    np.testing.assert_allclose(target.to_host(log_p), expected, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(target.to_host(s), np.exp(expected), rtol=1e-12, atol=1e-15)


def test_backward_matches_explicit_jacobian(rng):
    """Eq. (4) against Eq. (3) built as an n x n matrix, on a tiny example (test only)."""
    x, g = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    layer = mnn.LogSoftmaxLayer()
    s = np.exp(layer(x))
    jacobians = [np.eye(5) - np.outer(np.ones(5), si) for si in s]  # J[i, j] = d log S_i / dx_j
    expected = np.stack([jac.T @ gi for jac, gi in zip(jacobians, g, strict=True)])
    np.testing.assert_allclose(layer.backward(g), expected, rtol=1e-12, atol=1e-15)


def test_float32_agrees_with_float64(target, rng):
    x, g = 2 * rng.standard_normal((8, 16)), rng.standard_normal((8, 16))
    assert_float32_matches_float64(target, mnn.LogSoftmaxLayer, (x,), g, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_logits_stay_finite_and_correct(target, rng, dtype):
    x = 1e4 * rng.standard_normal((4, 7))
    x[0] = [1e4, 1e4 - 1.0, -1e4, 0.0, 1e4 - 2.0, 5e3, -5e3]  # softmax underflows to 0 at -1e4
    layer = mnn.LogSoftmaxLayer()
    out = layer(target.asarray(x, dtype))
    grad_in = layer.backward(target.asarray(np.ones_like(x), dtype))
    host = target.to_host(out).astype(np.float64)
    assert np.isfinite(host).all() and np.isfinite(target.to_host(grad_in)).all()
    expected = reference_log_softmax(x.astype(dtype).astype(np.float64), 1)
    np.testing.assert_allclose(host, expected, rtol=1e-6, atol=1e-3)
    log_z = np.log1p(np.exp(-1) + np.exp(-2))  # log of the sum, relative to the max 1e4
    np.testing.assert_allclose(host[0, :3], [-log_z, -1 - log_z, -2e4 - log_z], rtol=1e-6)


def test_sample_shape_is_checked_when_given(target, rng):
    layer = mnn.LogSoftmaxLayer(3, 4, axis=-1)
    assert layer.shape == (3, 4)
    out = layer(target.asarray(rng.standard_normal((2, 3, 4))))
    assert tuple(out.shape) == (2, 3, 4)
    with pytest.raises(mnn.ShapeError, match=r"LogSoftmaxLayer: expected inputs of shape "
                                             r"\(\*, 3, 4\), got .*shape \(2, 4, 3\)"):
        layer(target.asarray(rng.standard_normal((2, 4, 3))))
    mnn.LogSoftmaxLayer()(target.asarray(rng.standard_normal((2, 4, 3))))  # no shape: anything


def test_config_rebuilds_the_same_layer():
    layer = mnn.LogSoftmaxLayer(10, axis=-1)
    assert layer.config() == {"type": "LogSoftmaxLayer",
                              "args": {"sample_shape": (10,), "axis": -1}}
    rebuilt = build(layer.config())
    assert (rebuilt.shape, rebuilt.axis) == ((10,), -1)
    with pytest.raises(ValueError, match=r"LogSoftmaxLayer: give the sample shape once"):
        mnn.LogSoftmaxLayer(10, sample_shape=(10,))


def test_scalar_input_is_a_clear_error(target):
    with pytest.raises(mnn.ShapeError, match=r"LogSoftmaxLayer: expected inputs with at least 1"):
        mnn.LogSoftmaxLayer()(target.asarray(1.0))


def test_axis_out_of_range_is_a_clear_error(target, rng):
    with pytest.raises(mnn.ShapeError, match=r"LogSoftmaxLayer: axis 1 is out of range for "
                                             r"inputs with 1 dimensions"):
        mnn.LogSoftmaxLayer()(target.asarray(rng.standard_normal(4)))

@pytest.mark.parametrize(("shape", "axis"), [((3, 5), 1), ((2, 3, 4), 0), ((2, 3, 4), -1)])
def test_matches_torch_autograd(rng, shape, axis):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    x, g = 3 * rng.standard_normal(shape), rng.standard_normal(shape)
    assert_matches_torch_autograd(mnn.LogSoftmaxLayer(axis=axis),
                                  lambda t: torch.nn.functional.log_softmax(t, dim=axis), x, g,
                                  rtol=1e-9, atol=1e-15)
