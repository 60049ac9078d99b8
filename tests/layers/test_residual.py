"""Residual: y = x + f(x), its gradient g + J_f^T g, errors, and checkpoints of nested blocks."""

import numpy as np
import pytest

import mnn
from mnn.serialization import build
from mnn.testing import gradcheck


def block(rng, width=4):
    return mnn.SequentialLayers([mnn.LayerNorm(width), mnn.LinearLayer(width, width, rng=rng),
                                 mnn.Tanh()])


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4)], ids=["batch", "leading-dims"])
def test_gradcheck(target, rng, shape):
    assert gradcheck(mnn.Residual(block(rng)), target.asarray(rng.standard_normal(shape)))


def test_forward_and_backward_add_the_identity_path(target, rng):
    inner = block(rng)
    twin = build(inner.config()).load_weights(inner.state_dict())
    x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    layer = mnn.Residual(inner)
    out = target.to_host(layer(target.asarray(x)))
    grad = target.to_host(layer.backward(target.asarray(g)))
    alone = twin(target.asarray(x))
    np.testing.assert_allclose(out, x + target.to_host(alone), rtol=1e-14)  # Eq. (1)
    through = target.to_host(twin.backward(target.asarray(g)))
    np.testing.assert_allclose(grad, g + through, rtol=1e-14)  # Eq. (3)
    ours = {name: owner.grads[key] for name, owner, key in layer.parameters()}
    for name, owner, key in twin.parameters():  # the block's gradients are the same too
        np.testing.assert_allclose(target.to_host(ours[f"block.{name}"]),
                                   target.to_host(owner.grads[key]), rtol=1e-14)


def test_without_input_gradient_the_block_still_gets_its_gradients(target, rng):
    layer = mnn.Residual(block(rng))
    layer.input_grad = False
    layer(target.asarray(rng.standard_normal((3, 4))))
    assert layer.backward(target.asarray(np.ones((3, 4)))) is None
    assert all(owner.grads[key] is not None for _, owner, key in layer.parameters())


def test_a_block_that_changes_the_shape_is_a_clear_error(target, rng):
    layer = mnn.Residual(mnn.LinearLayer(4, 3, rng=rng))
    with pytest.raises(mnn.ShapeError, match=r"Residual: the block must keep the shape of its "
                                             r"inputs \(y = x \+ block\(x\)\)"):
        layer(target.asarray(rng.standard_normal((2, 4))))


def test_a_loss_or_a_non_layer_is_refused():
    with pytest.raises(ValueError, match=r"Residual: the block .* ends in a loss"):
        mnn.Residual(mnn.SequentialLayers([mnn.LinearLayer(2, 2), mnn.CrossEntropyLossLayer()]))
    with pytest.raises(TypeError, match=r"Residual: expected a block \(a BaseLayer\), got an "
                                        r"object of type function"):
        mnn.Residual(lambda x: x)


def test_checkpoint_round_trip(tmp_path, target, rng):
    net = mnn.SequentialLayers([mnn.Residual(block(rng)), mnn.LinearLayer(4, 2, rng=rng)])
    x = target.asarray(rng.standard_normal((3, 4)))
    out = target.to_host(net(x))
    mnn.save(net, tmp_path / "residual.safetensors")
    loaded = mnn.load(tmp_path / "residual.safetensors")
    assert loaded.config() == net.config()
    assert list(loaded.state_dict()) == ["0.block.0.w", "0.block.0.b", "0.block.1.w",
                                         "0.block.1.b", "1.w", "1.b"]
    np.testing.assert_allclose(target.to_host(loaded.to(xp=target.backend.name,
                                                        device=target.device_name)(x)), out,
                               rtol=1e-15)
