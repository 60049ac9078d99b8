"""SoftmaxLayer, softmax_vjp: gradients, NumPy reference, large logits, errors, torch, memory."""

import tracemalloc

import numpy as np
import pytest
from helpers import assert_float32_matches_float64, assert_matches_torch_autograd

import mnn
from mnn.layers.softmax import softmax_vjp
from mnn.testing import gradcheck

CASES = [((5, 4), 1), ((1, 4), 1), ((2, 3, 4), -1), ((2, 3, 4), 0), ((2, 3, 4), 1), ((6,), 0)]
CASE_IDS = ["batch", "batch1", "3d-last", "3d-axis0", "3d-axis1", "1d"]


def reference_softmax(x, axis):
    """float64 NumPy softmax through log-sum-exp (another route than the layer's max shift)."""
    return np.exp(x - np.logaddexp.reduce(x, axis=axis, keepdims=True))


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_gradcheck(target, rng, shape, axis):
    assert gradcheck(mnn.SoftmaxLayer(axis=axis), target.asarray(rng.standard_normal(shape)))


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_forward_matches_numpy_reference(target, rng, shape, axis):
    x = 3 * rng.standard_normal(shape)
    out = target.to_host(mnn.SoftmaxLayer(axis=axis)(target.asarray(x)))
    np.testing.assert_allclose(out, reference_softmax(x, axis), rtol=1e-12, atol=1e-15)


def test_backward_matches_explicit_jacobian(rng):
    """Eq. (4) against Eq. (3) built as an n x n matrix, on a tiny example (test only)."""
    x, g = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    layer = mnn.SoftmaxLayer()
    s = layer(x)
    jacobians = [np.diag(si) - np.outer(si, si) for si in s]  # J[i, j] = dS_i / dx_j
    expected = np.stack([jac.T @ gi for jac, gi in zip(jacobians, g, strict=True)])
    np.testing.assert_allclose(layer.backward(g), expected, rtol=1e-12, atol=1e-15)


def test_float32_agrees_with_float64(target, rng):
    x, g = 2 * rng.standard_normal((8, 16)), rng.standard_normal((8, 16))
    assert_float32_matches_float64(target, mnn.SoftmaxLayer, (x,), g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_logits_stay_finite_and_correct(target, rng, dtype):
    x = 1e4 * rng.standard_normal((4, 7))
    x[0] = [1e4, 1e4 - 1.0, -1e4, 0.0, 1e4 - 2.0, 5e3, -5e3]  # exp(1e4) overflows any float
    layer = mnn.SoftmaxLayer()
    out = layer(target.asarray(x, dtype))
    grad_in = layer.backward(target.asarray(np.ones_like(x), dtype))
    host = target.to_host(out).astype(np.float64)
    assert np.isfinite(host).all() and np.isfinite(target.to_host(grad_in)).all()
    expected = reference_softmax(x.astype(dtype).astype(np.float64), 1)
    np.testing.assert_allclose(host, expected, rtol=1e-5, atol=1e-6)
    by_hand = np.array([1, np.exp(-1), 0]) / (1 + np.exp(-1) + np.exp(-2))
    np.testing.assert_allclose(host[0, :3], by_hand, rtol=1e-5, atol=1e-7)


def test_softmax_vjp_is_the_exported_function_attention_uses(rng):
    s = reference_softmax(rng.standard_normal((2, 3, 5)), -1)
    g = rng.standard_normal((2, 3, 5))
    expected = s * g - s * np.sum(g * s, axis=-1, keepdims=True)
    np.testing.assert_allclose(softmax_vjp(np, s, g, -1), expected, rtol=1e-12, atol=1e-15)


def test_scalar_input_is_a_clear_error(target):
    with pytest.raises(mnn.ShapeError, match=r"SoftmaxLayer: expected inputs with at least 1 dim"):
        mnn.SoftmaxLayer()(target.asarray(1.0))


def test_axis_out_of_range_is_a_clear_error(target, rng):
    with pytest.raises(mnn.ShapeError,
                       match=r"SoftmaxLayer: axis 1 is out of range for inputs with 1 dim"):
        mnn.SoftmaxLayer()(target.asarray(rng.standard_normal(4)))
    with pytest.raises(mnn.ShapeError,
                       match=r"SoftmaxLayer: axis -4 is out of range for inputs with 3 dim"):
        mnn.SoftmaxLayer(axis=-4)(target.asarray(rng.standard_normal((2, 3, 4))))

def test_non_array_is_a_clear_error():
    with pytest.raises(mnn.DTypeError, match=r"SoftmaxLayer: expected inputs to be an array.*list"):
        mnn.SoftmaxLayer()([[1.0, 2.0]])

def test_config_round_trips():
    assert mnn.SoftmaxLayer(axis=-1).config() == {"type": "SoftmaxLayer", "args": {"axis": -1}}


@pytest.mark.parametrize(("shape", "axis"), [((3, 5), 1), ((2, 3, 4), 0), ((2, 3, 4), -1)])
def test_matches_torch_autograd(rng, shape, axis):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    x, g = 3 * rng.standard_normal(shape), rng.standard_normal(shape)
    assert_matches_torch_autograd(mnn.SoftmaxLayer(axis=axis),
                                  lambda t: torch.nn.functional.softmax(t, dim=axis), x, g,
                                  rtol=1e-9, atol=1e-15)


def test_backward_memory_is_linear_in_the_input(rng):
    """B=64, n=4096: the n x n Jacobians would take 8 GiB; the VJP stays a few input sizes."""
    x, g = rng.standard_normal((64, 4096)), rng.standard_normal((64, 4096))
    layer = mnn.SoftmaxLayer()
    layer(x[:1, :4])  # first call: lazy imports inside array_api_compat allocate ~8 MiB once
    layer.backward(g[:1, :4])
    tracemalloc.start()
    try:
        layer(x)
        layer.backward(g)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    mib = 2**20
    assert peak < 6 * x.nbytes, f"peak {peak / mib:.1f} MiB, input {x.nbytes / mib:.1f} MiB"
