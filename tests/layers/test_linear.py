"""LinearLayer: gradients, forward vs NumPy, float32 vs float64, errors, torch.autograd."""

import array_api_compat
import numpy as np
import pytest
from helpers import assert_float32_matches_float64

import mnn
from mnn.testing import gradcheck


@pytest.mark.parametrize("shape", [(5, 4), (1, 4), (2, 3, 4)],
                         ids=["batch", "batch1", "leading-dims"])
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(target, rng, shape, bias):
    layer = mnn.LinearLayer(4, 3, bias=bias, rng=0)
    assert gradcheck(layer, target.asarray(rng.standard_normal(shape)))


def test_forward_matches_numpy_reference(target, rng):
    layer = mnn.LinearLayer(6, 5, rng=0)
    w, b = layer.params["w"].copy(), rng.standard_normal(5)
    layer.params["b"] = b
    x = rng.standard_normal((7, 6))
    out = target.to_host(layer(target.asarray(x)))
    np.testing.assert_allclose(out, x @ w.T + b, rtol=1e-12, atol=1e-12)


def test_float32_agrees_with_float64(target, rng):
    x = rng.standard_normal((8, 16))
    g = rng.standard_normal((8, 10))
    assert_float32_matches_float64(target, lambda: mnn.LinearLayer(16, 10, rng=0), (x,), g,
                                   rtol=1e-5, atol=1e-5)


def test_same_seed_same_weights():
    np.testing.assert_array_equal(mnn.LinearLayer(5, 3, rng=7).params["w"],
                                  mnn.LinearLayer(5, 3, rng=7).params["w"])
    mnn.manual_seed(3)
    first = mnn.LinearLayer(5, 3).params["w"]
    mnn.manual_seed(3)
    np.testing.assert_array_equal(first, mnn.LinearLayer(5, 3).params["w"])


def test_he_initialisation_keeps_variance():
    w = mnn.LinearLayer(1000, 500, rng=0).params["w"]
    assert w.var() == pytest.approx(2 / 1000, rel=0.05)
    w = mnn.LinearLayer(1000, 500, init="glorot", rng=0).params["w"]
    assert w.var() == pytest.approx(2 / 1500, rel=0.05)


def test_parameters_follow_the_inputs(target, rng):
    layer = mnn.LinearLayer(4, 3, rng=0)
    layer(target.asarray(rng.standard_normal((2, 4)), "float32"))
    w = layer.params["w"]
    assert target.backend.owns(w)
    assert mnn.base.dtype_name(w.dtype) == "float32"
    assert array_api_compat.device(w) == target.device


def test_wrong_feature_size_is_a_clear_error(target, rng):
    layer = mnn.LinearLayer(4, 3, rng=0)
    with pytest.raises(mnn.ShapeError,
                       match=r"LinearLayer: expected inputs with at least 1 dimension and "
                             r"size 4 along axis -1"):
        layer(target.asarray(rng.standard_normal((2, 5))))


def test_scalar_input_is_a_clear_error(target):
    with pytest.raises(mnn.ShapeError, match=r"LinearLayer: expected inputs with at least 1 dim"):
        mnn.LinearLayer(4, 3, rng=0)(target.asarray(1.0))

def test_non_array_is_a_clear_error():
    with pytest.raises(mnn.DTypeError, match=r"LinearLayer: expected inputs to be an array.*list"):
        mnn.LinearLayer(4, 3, rng=0)([[1.0, 2.0, 3.0, 4.0]])

def test_other_dtype_after_first_forward_names_both_sides_and_the_fix(target, rng):
    layer = mnn.LinearLayer(4, 3, rng=0)
    layer(target.asarray(rng.standard_normal((2, 4)), "float32"))
    with pytest.raises(mnn.PlacementError, match=r"dtype float32.*dtype float64.*layer\.to\("):
        layer(target.asarray(rng.standard_normal((2, 4)), "float64"))


def test_other_namespace_after_first_forward_is_a_clear_error(target, rng):
    layer = mnn.LinearLayer(4, 3, rng=0)
    layer(target.asarray(rng.standard_normal((2, 4))))
    other = "array_api_strict" if target.backend.name == "numpy" else "numpy"
    other_target = type(target)(mnn.backends.get(other), mnn.backends.get(other).devices()[0])
    with pytest.raises(mnn.PlacementError, match=rf"{target.backend.name} arrays.*{other} arrays"):
        layer(other_target.asarray(rng.standard_normal((2, 4))))


def test_to_moves_parameters_and_returns_the_layer(rng):
    layer = mnn.LinearLayer(4, 3, rng=0)
    assert layer.to(xp="array_api_strict", device="device2", dtype="float32") is layer
    xs = pytest.importorskip("array_api_strict")
    assert layer.params["w"].device == xs.Device("device2")
    assert layer.params["w"].dtype == xs.float32
    out = layer(xs.asarray(rng.standard_normal((2, 4)), dtype=xs.float32,
                           device=xs.Device("device2")))
    assert out.device == xs.Device("device2")
    with pytest.raises(mnn.PlacementError, match="device device2.*device CPU_DEVICE"):
        layer(xs.asarray(rng.standard_normal((2, 4)), dtype=xs.float32))


def test_matches_torch_autograd(rng):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    layer = mnn.LinearLayer(6, 4, rng=0)
    x, g = rng.standard_normal((3, 2, 6)), rng.standard_normal((3, 2, 4))
    out = layer(x)
    grad_in = layer.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(layer.params["w"], requires_grad=True)
    tb = torch.tensor(layer.params["b"], requires_grad=True)
    tout = torch.nn.functional.linear(tx, tw, tb)
    tout.backward(torch.tensor(g))
    for ours, theirs in [(out, tout), (grad_in, tx.grad), (layer.grads["w"], tw.grad),
                         (layer.grads["b"], tb.grad)]:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_load_weights_into_a_single_layer(target, rng):
    trained = mnn.LinearLayer(4, 3, rng=0)
    trained.params["b"] = rng.standard_normal(3)
    fresh = mnn.LinearLayer(4, 3, rng=1)
    fresh(target.asarray(rng.standard_normal((2, 4))))  # placed on the target first
    assert fresh.load_weights(trained.state_dict(), trained.config()) is fresh
    for key in ("w", "b"):
        np.testing.assert_array_equal(target.to_host(fresh.params[key]), trained.params[key])
    with pytest.raises(mnn.CheckpointError, match=r"missing key 'b'"):
        fresh.load_weights({"w": trained.params["w"]})
