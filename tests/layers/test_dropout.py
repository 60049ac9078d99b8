"""Dropout: training and eval mode, the mask and its scale, seeds, train()/eval() on containers."""

import numpy as np
import pytest

import mnn
from mnn.testing import gradcheck


def test_gradcheck_in_training_mode(target, rng):
    """gradcheck repeats the masks (draws is reset before every forward): one function."""
    layer = mnn.Dropout(0.3, rng=1)
    assert gradcheck(layer, target.asarray(rng.standard_normal((4, 6))))


def test_training_mode_zeroes_about_p_and_scales_the_rest(target, rng):
    x = rng.uniform(1.0, 2.0, (200, 100))
    layer = mnn.Dropout(0.25, rng=0)
    out = target.to_host(layer(target.asarray(x)))
    kept = out != 0
    assert abs(1 - kept.mean() - 0.25) < 0.01  # 20,000 draws
    np.testing.assert_allclose(out[kept], x[kept] / 0.75, rtol=1e-15)


def test_backward_uses_the_forward_mask(target, rng):
    x, g = rng.uniform(1.0, 2.0, (30, 20)), rng.standard_normal((30, 20))
    layer = mnn.Dropout(0.5, rng=3)
    out = target.to_host(layer(target.asarray(x)))
    grad = target.to_host(layer.backward(target.asarray(g)))
    np.testing.assert_allclose(grad, g * out / x, rtol=1e-14)  # the mask is out / x


def test_each_forward_draws_a_new_mask_and_a_seed_repeats_them(target, rng):
    x = target.asarray(np.ones((20, 30)))
    first = mnn.Dropout(0.5, rng=7)
    masks = [target.to_host(first(x)) for _ in range(2)]
    assert not np.array_equal(masks[0], masks[1])
    again = mnn.Dropout(0.5, rng=7)
    np.testing.assert_array_equal(target.to_host(again(x)), masks[0])
    assert first.draws == 2
    first.draws = 0  # back to the start: the same masks again
    np.testing.assert_array_equal(target.to_host(first(x)), masks[0])


def test_eval_mode_and_p_0_are_the_identity(target, rng):
    x, g = target.asarray(rng.standard_normal((5, 4))), target.asarray(rng.standard_normal((5, 4)))
    for layer in (mnn.Dropout(0.5).eval(), mnn.Dropout(0.0)):
        np.testing.assert_array_equal(target.to_host(layer(x)), target.to_host(x))
        np.testing.assert_array_equal(target.to_host(layer.backward(g)), target.to_host(g))
        assert layer.draws == 0


def test_p_1_drops_everything(target, rng):
    layer = mnn.Dropout(1.0)
    out = layer(target.asarray(rng.standard_normal((3, 4))))
    np.testing.assert_array_equal(target.to_host(out), 0)
    np.testing.assert_array_equal(target.to_host(layer.backward(target.asarray(np.ones((3, 4))))),
                                  0)


def test_train_and_eval_reach_every_layer_of_every_container(target, rng):
    inner = mnn.Dropout(0.5, rng=0)
    net = mnn.SequentialLayers([mnn.Residual(mnn.SequentialLayers([mnn.LinearLayer(4, 4), inner])),
                                mnn.Dropout(0.5, rng=1)])
    assert net.eval() is net
    assert not any(layer.training for _, layer in net.named_layers())
    x = target.asarray(rng.standard_normal((3, 4)))
    np.testing.assert_array_equal(target.to_host(net(x)), target.to_host(net(x)))  # deterministic
    net.train()
    assert all(layer.training for _, layer in net.named_layers())
    assert not np.array_equal(target.to_host(net(x)), target.to_host(net(x)))
    with pytest.raises(ValueError, match=r"SequentialLayers.train: expected mode to be True or "
                                         r"False, got 'no'"):
        net.train("no")


def test_masks_are_drawn_where_the_inputs_live(target, rng):
    out = mnn.Dropout(0.5, rng=0)(target.asarray(rng.standard_normal((3, 4)), "float32"))
    assert target.backend.owns(out) and mnn.backends.dtype_name(out.dtype) == "float32"
    assert mnn.backends.Placement.of(out).device == target.device


def test_a_numpy_generator_or_the_global_seed_fix_the_masks():
    x = np.ones((10, 10))
    first = mnn.Dropout(0.5, rng=np.random.default_rng(4))(x)
    np.testing.assert_array_equal(first, mnn.Dropout(0.5, rng=np.random.default_rng(4))(x))
    mnn.manual_seed(11)
    global_first = mnn.Dropout(0.5)(x)
    mnn.manual_seed(11)
    np.testing.assert_array_equal(mnn.Dropout(0.5)(x), global_first)


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5", True])
def test_bad_probability_is_a_clear_error(p):
    with pytest.raises(ValueError, match=r"Dropout: expected a probability p in \[0, 1\]"):
        mnn.Dropout(p)


def test_matches_torch_dropout_semantics(rng):
    """The same rule as torch.nn.Dropout: kept entries scaled by 1/(1-p), eval the identity."""
    torch = pytest.importorskip("torch", reason="the torch comparison needs torch")
    x = torch.tensor(rng.uniform(1.0, 2.0, (50, 40)))
    ours, theirs = mnn.Dropout(0.2, rng=0)(x), torch.nn.Dropout(0.2)(x)
    for out in (ours, theirs):
        values = set(np.round((out / x).numpy(), 12).ravel().tolist())
        assert values == {0.0, 1.25}
    assert torch.equal(mnn.Dropout(0.2).eval()(x), torch.nn.Dropout(0.2).eval()(x))
