"""SoftmaxLayer and LogSoftmaxLayer: gradients, NumPy reference, explicit Jacobian, large
logits, errors, config, torch.autograd, memory.

The tests the two layers share come first, parametrized over both (ids ``softmax`` and
``log_softmax``); each layer's own tests follow, named after it (``softmax_vjp``, the
function attention reuses, is SoftmaxLayer's).
"""

import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from helpers import assert_float32_matches_float64, assert_matches_torch_autograd

import mnn
from mnn.layers.softmax import softmax_vjp
from mnn.serialization import build
from mnn.testing import gradcheck


def log_softmax_reference(x, axis):
    """float64 NumPy log-softmax through np.logaddexp (another route than the layers'
    max shift)."""
    return x - np.logaddexp.reduce(x, axis=axis, keepdims=True)


def softmax_reference(x, axis):
    """float64 NumPy softmax: the exponential of ``log_softmax_reference``."""
    return np.exp(log_softmax_reference(x, axis))


@dataclass(frozen=True)
class Softmax:
    """One layer under test: its reference, its Jacobian, and its twin in torch.nn.functional."""

    layer: type[mnn.BaseLayer]
    reference: Callable[[np.ndarray, int], np.ndarray]  # (x, axis) -> output
    jacobian: Callable[[np.ndarray], np.ndarray]  # one sample's softmax s -> J[i, j] = dy_i/dx_j
    functional: str  # the name of the same function in torch.nn.functional
    # the first three outputs for the logits 1e4, 1e4 - 1, -1e4, ..., worked out by hand
    large_by_hand: np.ndarray


# In the row of logits 1e4, 1e4 - 1, -1e4, 0, 1e4 - 2, 5e3, -5e3 only the three near 1e4
# count (the others are e^-5000 or less below the top): the sum of exp(x - 1e4) is
# 1 + e^-1 + e^-2, and exp(-2e4) is 0 at any precision.
LOG_SUM = np.log1p(np.exp(-1) + np.exp(-2))
SOFTMAX = Softmax(mnn.SoftmaxLayer, softmax_reference,
                  lambda s: np.diag(s) - np.outer(s, s), "softmax",
                  np.array([1, np.exp(-1), 0]) / (1 + np.exp(-1) + np.exp(-2)))
LOG_SOFTMAX = Softmax(mnn.LogSoftmaxLayer, log_softmax_reference,
                      lambda s: np.eye(len(s)) - np.outer(np.ones(len(s)), s), "log_softmax",
                      np.array([-LOG_SUM, -1 - LOG_SUM, -2e4 - LOG_SUM]))
LAYERS = [pytest.param(SOFTMAX, id="softmax"), pytest.param(LOG_SOFTMAX, id="log_softmax")]

CASES = [((5, 4), 1), ((1, 4), 1), ((2, 3, 4), -1), ((2, 3, 4), 0), ((2, 3, 4), 1), ((6,), 0)]
CASE_IDS = ["batch", "batch1", "3d-last", "3d-axis0", "3d-axis1", "1d"]

# One tolerance per kind of comparison, the same for both layers:
# - float64 against a float64 reference (the reference functions, an explicit Jacobian):
#   a sum of exponentials rounds on both sides, and log-softmax near 0 keeps an absolute
#   error of a few units in the last place of logits of size 10 (2e-15 each);
REFERENCE = {"rtol": 1e-14, "atol": 1e-14}
# - float32 against float64;
FLOAT32 = {"rtol": 1e-5, "atol": 1e-7}
# - logits of size 1e4 against the reference: the max shift keeps every result to its
#   dtype's relative precision, even log-probabilities of size 4e4;
LARGE = {"float32": {"rtol": 1e-6, "atol": 0.0}, "float64": {"rtol": 1e-11, "atol": 0.0}}
# - float64 against torch.autograd.
TORCH = {"rtol": 1e-14, "atol": 1e-15}


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("softmax", LAYERS)
def test_gradcheck(target, rng, softmax, shape, axis):
    assert gradcheck(softmax.layer(axis=axis), target.asarray(rng.standard_normal(shape)))


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("softmax", LAYERS)
def test_forward_matches_numpy_reference(target, rng, softmax, shape, axis):
    x = 3 * rng.standard_normal(shape)
    out = target.to_host(softmax.layer(axis=axis)(target.asarray(x)))
    np.testing.assert_allclose(out, softmax.reference(x, axis), **REFERENCE)


@pytest.mark.parametrize("softmax", LAYERS)
def test_backward_matches_explicit_jacobian(rng, softmax):
    """Eq. (4) against Eq. (3) built as an n x n matrix, on a tiny example (test only)."""
    x, g = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    layer = softmax.layer()
    layer(x)
    jacobians = [softmax.jacobian(s) for s in softmax_reference(x, 1)]
    expected = np.stack([jac.T @ gi for jac, gi in zip(jacobians, g, strict=True)])
    np.testing.assert_allclose(layer.backward(g), expected, **REFERENCE)


@pytest.mark.parametrize("softmax", LAYERS)
def test_float32_agrees_with_float64(target, rng, softmax):
    x, g = 2 * rng.standard_normal((8, 16)), rng.standard_normal((8, 16))
    assert_float32_matches_float64(target, softmax.layer, (x,), g, **FLOAT32)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("softmax", LAYERS)
def test_large_logits_stay_finite_and_correct(target, rng, softmax, dtype):
    x = 1e4 * rng.standard_normal((4, 7))
    x[0] = [1e4, 1e4 - 1.0, -1e4, 0.0, 1e4 - 2.0, 5e3, -5e3]  # exp(1e4) overflows any float
    layer = softmax.layer()
    out = layer(target.asarray(x, dtype))
    grad_in = layer.backward(target.asarray(np.ones_like(x), dtype))
    host = target.to_host(out).astype(np.float64)
    assert np.isfinite(host).all() and np.isfinite(target.to_host(grad_in)).all()
    expected = softmax.reference(x.astype(dtype).astype(np.float64), 1)
    np.testing.assert_allclose(host, expected, **LARGE[dtype])
    np.testing.assert_allclose(host[0, :3], softmax.large_by_hand, **LARGE[dtype])


@pytest.mark.parametrize("softmax", LAYERS)
def test_scalar_input_is_a_clear_error(target, softmax):
    with pytest.raises(mnn.ShapeError, match=rf"{softmax.layer.__name__}: expected inputs with "
                                             r"at least 1 dim"):
        softmax.layer()(target.asarray(1.0))


@pytest.mark.parametrize(("shape", "axis"), [((4,), 1), ((2, 3, 4), -4)],
                         ids=["1d-axis1", "3d-axis-4"])
@pytest.mark.parametrize("softmax", LAYERS)
def test_axis_out_of_range_is_a_clear_error(target, rng, softmax, shape, axis):
    with pytest.raises(mnn.ShapeError, match=rf"{softmax.layer.__name__}: axis {axis} is out "
                                             rf"of range for inputs with {len(shape)} dim"):
        softmax.layer(axis=axis)(target.asarray(rng.standard_normal(shape)))


@pytest.mark.parametrize("softmax", LAYERS)
def test_non_array_is_a_clear_error(softmax):
    with pytest.raises(mnn.DTypeError, match=rf"{softmax.layer.__name__}: expected inputs to "
                                             r"be an array.*list"):
        softmax.layer()([[1.0, 2.0]])


@pytest.mark.parametrize("softmax", LAYERS)
def test_is_not_a_loss(softmax):
    assert not softmax.layer.is_loss


@pytest.mark.parametrize(("layer", "config"), [
    pytest.param(mnn.SoftmaxLayer(axis=-1), {"type": "SoftmaxLayer", "args": {"axis": -1}},
                 id="softmax"),
    pytest.param(mnn.LogSoftmaxLayer(10, axis=-1),
                 {"type": "LogSoftmaxLayer", "args": {"sample_shape": (10,), "axis": -1}},
                 id="log_softmax")])
def test_config_rebuilds_the_same_layer(layer, config):
    assert layer.config() == config
    rebuilt = build(config)
    assert type(rebuilt) is type(layer)
    assert {name: getattr(rebuilt, name) for name in config["args"]} == config["args"]


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("softmax", LAYERS)
def test_matches_torch_autograd(rng, softmax, shape, axis):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    x, g = 3 * rng.standard_normal(shape), rng.standard_normal(shape)
    function = getattr(torch.nn.functional, softmax.functional)
    assert_matches_torch_autograd(softmax.layer(axis=axis), lambda t: function(t, dim=axis),
                                  x, g, **TORCH)


@pytest.mark.parametrize("softmax", LAYERS)
def test_backward_memory_is_linear_in_the_input(rng, softmax):
    """B=64, n=4096: the n x n Jacobians would take 8 GiB; the VJP stays a few input sizes."""
    x, g = rng.standard_normal((64, 4096)), rng.standard_normal((64, 4096))
    layer = softmax.layer()
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


def test_softmax_vjp_is_the_exported_function_attention_uses(rng):
    s = softmax_reference(rng.standard_normal((2, 3, 5)), -1)
    g = rng.standard_normal((2, 3, 5))
    expected = s * g - s * np.sum(g * s, axis=-1, keepdims=True)
    np.testing.assert_allclose(softmax_vjp(np, s, g, -1), expected, **REFERENCE)


def test_log_softmax_stable_log_softmax_returns_log_softmax_and_softmax(target, rng):
    x = 3 * rng.standard_normal((4, 5, 3))
    log_p, s = mnn.LogSoftmaxLayer.stable_log_softmax(target.asarray(x), -1)
    assert target.backend.owns(log_p) and target.backend.owns(s)
    np.testing.assert_allclose(target.to_host(log_p), log_softmax_reference(x, -1), **REFERENCE)
    np.testing.assert_allclose(target.to_host(s), softmax_reference(x, -1), **REFERENCE)


def test_log_softmax_sample_shape_is_checked_when_given(target, rng):
    layer = mnn.LogSoftmaxLayer(3, 4, axis=-1)
    assert layer.sample_shape == (3, 4)
    out = layer(target.asarray(rng.standard_normal((2, 3, 4))))
    assert tuple(out.shape) == (2, 3, 4)
    with pytest.raises(mnn.ShapeError, match=r"LogSoftmaxLayer: expected inputs of shape "
                                             r"\(\*, 3, 4\), got .*shape \(2, 4, 3\)"):
        layer(target.asarray(rng.standard_normal((2, 4, 3))))
    mnn.LogSoftmaxLayer()(target.asarray(rng.standard_normal((2, 4, 3))))  # no shape: anything


def test_log_softmax_sample_shape_given_twice_is_a_clear_error():
    with pytest.raises(ValueError, match=r"LogSoftmaxLayer: give the sample shape once"):
        mnn.LogSoftmaxLayer(10, sample_shape=(10,))
