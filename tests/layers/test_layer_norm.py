"""LayerNorm: gradients, forward against NumPy, torch.nn.LayerNorm, options, errors."""

import warnings

import numpy as np
import pytest
from helpers import assert_float32_matches_float64

import mnn
from mnn.serialization import build
from mnn.testing import gradcheck


def layer_norm(shape=5, rng=None, **options):
    """A LayerNorm; with ``rng``, a scale and shift other than 1 and 0, so that both matter."""
    layer = mnn.LayerNorm(shape, **options)
    if rng is not None:
        for key in layer.params:
            layer.params[key] = rng.standard_normal(layer.params[key].shape) + (key == "w")
    return layer


def reference(x, axes, w=None, b=None, eps=1e-5):
    """Eqs. (1), (2) in NumPy: mean and biased variance over the last ``axes`` axes."""
    over = tuple(range(x.ndim - axes, x.ndim))
    mean = x.mean(axis=over, keepdims=True)
    y = (x - mean) / np.sqrt(x.var(axis=over, keepdims=True) + eps)
    return y if w is None else y * w + (0 if b is None else b)


@pytest.mark.parametrize(("shape", "normalized"), [((4, 5), 5), ((2, 3, 5), 5), ((2, 2, 3), (2, 3)),
                                                   ((5,), 5)],
                         ids=["batch", "leading-dims", "two-axes", "one-sample"])
def test_gradcheck(target, rng, shape, normalized):
    layer = layer_norm(normalized, rng)
    assert gradcheck(layer, target.asarray(3 * rng.standard_normal(shape) + 1))


@pytest.mark.parametrize("options", [{"elementwise_affine": False}, {"bias": False}],
                         ids=["no-affine", "no-bias"])
def test_gradcheck_without_parameters(target, rng, options):
    layer = layer_norm(4, rng, **options)
    assert sorted(layer.params) == ([] if "elementwise_affine" in options else ["w"])
    assert gradcheck(layer, target.asarray(rng.standard_normal((3, 4))))


def test_forward_matches_numpy_reference(target, rng):
    layer = layer_norm((3, 4), rng, eps=1e-3)
    w, b = layer.params["w"].copy(), layer.params["b"].copy()
    x = 5 * rng.standard_normal((2, 5, 3, 4)) - 2
    out = target.to_host(layer(target.asarray(x)))
    np.testing.assert_allclose(out, reference(x, 2, w, b, eps=1e-3), rtol=1e-12, atol=1e-13)


def test_each_sample_has_mean_0_and_variance_1_before_the_affine_map(target, rng):
    x = 10 * rng.standard_normal((6, 32)) + 3
    out = target.to_host(mnn.LayerNorm(32, eps=0.0, elementwise_affine=False)(target.asarray(x)))
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-14)
    np.testing.assert_allclose(out.var(axis=1), 1, rtol=1e-12)


def test_a_constant_sample_gives_zeros_not_nan(target):
    """Variance 0: eps keeps r finite, x - mu is 0, and so are the output and its gradient."""
    layer = mnn.LayerNorm(4, elementwise_affine=False)
    out = target.to_host(layer(target.asarray(np.full((2, 4), 7.0))))
    grad = target.to_host(layer.backward(target.asarray(np.ones((2, 4)))))
    np.testing.assert_array_equal(out, 0)
    np.testing.assert_allclose(grad, 0, atol=1e-12)


def test_float32_agrees_with_float64(target, rng):
    x, g = rng.standard_normal((8, 16)) + 2, rng.standard_normal((8, 16))
    assert_float32_matches_float64(target, lambda: layer_norm(16, np.random.default_rng(3)), (x,),
                                   g, rtol=2e-4, atol=2e-5)


def test_wrong_normalized_shape_is_a_clear_error(target, rng):
    with pytest.raises(mnn.ShapeError, match=r"LayerNorm: expected inputs with at least 2 "
                                             r"dimensions and size 3 along axis -2 and size 4"):
        mnn.LayerNorm((3, 4))(target.asarray(rng.standard_normal((2, 4, 3))))


@pytest.mark.parametrize(("args", "message"), [
    ({"normalized_shape": 0}, "expected every entry of normalized_shape to be a positive int"),
    ({"normalized_shape": ()}, "expected normalized_shape to name at least one axis"),
    ({"normalized_shape": 4, "eps": -1.0}, "expected eps to be finite and >= 0"),
    ({"normalized_shape": 4, "bias": 1}, "expected bias to be True or False")])
def test_bad_constructor_arguments_are_a_clear_error(args, message):
    with pytest.raises(ValueError, match=rf"LayerNorm: {message}"):
        mnn.LayerNorm(**args)


def test_config_rebuilds_it():
    layer = mnn.LayerNorm((2, 3), eps=1e-6, bias=False)
    rebuilt = build(layer.config())
    assert rebuilt.config() == layer.config() and rebuilt.normalized_shape == (2, 3)
    assert rebuilt.eps == 1e-6 and sorted(rebuilt.params) == ["w"]


@pytest.mark.parametrize("normalized", [6, (2, 6)], ids=["last-axis", "two-axes"])
def test_matches_torch_layer_norm(rng, normalized):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    layer = layer_norm(normalized, rng, eps=1e-4)
    reference_layer = torch.nn.LayerNorm(normalized, eps=1e-4, dtype=torch.float64)
    with torch.no_grad():
        reference_layer.weight.copy_(torch.tensor(layer.params["w"]))
        reference_layer.bias.copy_(torch.tensor(layer.params["b"]))
    x, g = 3 * rng.standard_normal((3, 2, 6)) + 1, rng.standard_normal((3, 2, 6))
    out, grad = layer(x), layer.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    tout = reference_layer(tx)
    tout.backward(torch.tensor(g))
    for ours, theirs in [(out, tout), (grad, tx.grad),
                         (layer.grads["w"], reference_layer.weight.grad),
                         (layer.grads["b"], reference_layer.bias.grad)]:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-13)


def test_a_variance_that_overflows_gives_nan_not_a_wrong_value(target):
    """(1e30)^2 overflows float32: that sample is nan (as in torch), the others are right."""
    x = np.array([[0.2, -0.5, 1.0, -1e30], [0.2, -0.5, 1.0, 3.0]])
    layer = mnn.LayerNorm(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy says "overflow": it is one
        out = target.to_host(layer(target.asarray(x, "float32")))
    assert np.all(np.isnan(out[0]))
    np.testing.assert_allclose(out[1], reference(x[1:], 1)[0], rtol=1e-5, atol=1e-6)
