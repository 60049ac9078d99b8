"""MSELossLayer: gradients, NumPy reference, float32 against float64, errors, torch.autograd."""

import array_api_compat
import numpy as np
import pytest
from helpers import assert_float32_matches_float64

import mnn
from mnn.testing import gradcheck

SHAPES = [(5, 4), (1, 4), (2, 3, 4), (6,)]
SHAPE_IDS = ["batch", "batch1", "leading-dims", "1d"]


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_gradcheck(target, rng, shape):
    x, y = rng.standard_normal(shape), rng.standard_normal(shape)
    assert gradcheck(mnn.MSELossLayer(), target.asarray(x), target.asarray(y))


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_forward_and_backward_match_numpy_reference(target, rng, shape):
    x, y = rng.standard_normal(shape), rng.standard_normal(shape)
    layer = mnn.MSELossLayer()
    loss = layer(target.asarray(x), target.asarray(y))
    assert loss.shape == () and target.backend.owns(loss)
    assert array_api_compat.device(loss) == target.device
    batch = shape[0]
    per_sample = ((x - y) ** 2).reshape(batch, -1).sum(axis=1)
    np.testing.assert_allclose(target.to_host(loss), per_sample.mean(), rtol=1e-13)
    np.testing.assert_allclose(target.to_host(layer.backward()), 2 * (x - y) / batch,
                               rtol=1e-13, atol=1e-16)


def test_float32_agrees_with_float64(target, rng):
    x, y = rng.standard_normal((8, 10)), rng.standard_normal((8, 10))
    assert_float32_matches_float64(target, mnn.MSELossLayer, (x, y), None, rtol=1e-6, atol=1e-7)


def test_scalar_input_is_a_clear_error(target):
    with pytest.raises(mnn.ShapeError, match=r"MSELossLayer: expected inputs with at least 1 "
                                             r"dimension, got .*shape \(\)"):
        mnn.MSELossLayer()(target.asarray(1.0), target.asarray(1.0))

def test_integer_targets_are_a_clear_error(target):
    with pytest.raises(mnn.DTypeError,
                       match=r"MSELossLayer: expected floating-point targets, got .*int64"):
        mnn.MSELossLayer()(target.asarray(np.ones((2, 3))),
                           target.asarray(np.ones((2, 3), dtype=np.int64)))


@pytest.mark.parametrize("shape", [(2, 4), (3, 2), (2, 3, 1), (6,)])
def test_targets_of_the_wrong_shape_are_a_clear_error(target, rng, shape):
    with pytest.raises(mnn.ShapeError, match=r"MSELossLayer: expected targets of the same shape "
                                             r"as the inputs \(2, 3\), got .*shape"):
        mnn.MSELossLayer()(target.asarray(rng.standard_normal((2, 3))),
                           target.asarray(rng.standard_normal(shape)))


def test_missing_targets_are_a_clear_error(target, rng):
    with pytest.raises(mnn.DTypeError, match=r"MSELossLayer: expected targets to be an array.*"
                                             r"NoneType"):
        mnn.MSELossLayer()(target.asarray(rng.standard_normal((2, 3))))


def test_targets_in_another_dtype_are_a_clear_error(target, rng):
    with pytest.raises(mnn.PlacementError, match=r"MSELossLayer: expected targets from the same "
                                                  r"library, device and dtype as the inputs"):
        mnn.MSELossLayer()(target.asarray(rng.standard_normal((2, 3))),
                           target.asarray(rng.standard_normal((2, 3)), "float32"))

@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4), (1, 7)])
def test_matches_torch_autograd(rng, shape):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    x, y = rng.standard_normal(shape), rng.standard_normal(shape)
    layer = mnn.MSELossLayer()
    loss = layer(x, y)
    grad_in = layer.backward()
    tx = torch.tensor(x, requires_grad=True)
    tloss = torch.nn.functional.mse_loss(tx, torch.tensor(y), reduction="sum") / shape[0]
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.detach().numpy(), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(grad_in, tx.grad.numpy(), rtol=1e-9, atol=1e-15)
