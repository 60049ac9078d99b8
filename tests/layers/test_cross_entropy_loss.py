"""CrossEntropyLossLayer: gradients, NumPy reference, class axis, large logits, errors, torch."""

import array_api_compat
import numpy as np
import pytest
from helpers import assert_float32_matches_float64

import mnn
from mnn.layers.build import build
from mnn.testing import gradcheck

# (logits shape, class axis): the labels have the logits' shape without the class axis
CASES = [((5, 4), 1), ((1, 4), 1), ((2, 3, 4), 1), ((2, 3, 4), -1), ((3, 2, 4), 0)]
CASE_IDS = ["batch", "batch1", "3d-axis1", "3d-last", "3d-axis0"]


def make(rng, shape, axis, scale=3.0):
    """Logits and valid labels for a case."""
    label_shape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    return scale * rng.standard_normal(shape), rng.integers(0, shape[axis], size=label_shape)


def reference(x, labels, axis):
    """float64 NumPy loss and gradient: class axis moved last, log-sum-exp by np.logaddexp."""
    moved = np.moveaxis(x, axis, -1)
    log_p = moved - np.logaddexp.reduce(moved, axis=-1, keepdims=True)
    onehot = np.eye(x.shape[axis])[labels]
    loss = -np.sum(onehot * log_p) / labels.size
    grad = (np.exp(log_p) - onehot) / labels.size
    return loss, np.moveaxis(grad, -1, axis)


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_gradcheck(target, rng, shape, axis):
    x, labels = make(rng, shape, axis, scale=1.0)
    assert gradcheck(mnn.CrossEntropyLossLayer(axis=axis), target.asarray(x),
                     target.asarray(labels))


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_forward_and_backward_match_numpy_reference(target, rng, shape, axis):
    x, labels = make(rng, shape, axis)
    layer = mnn.CrossEntropyLossLayer(axis=axis)
    loss = layer(target.asarray(x), target.asarray(labels))
    assert loss.shape == () and target.backend.owns(loss)
    assert array_api_compat.device(loss) == target.device
    expected_loss, expected_grad = reference(x, labels, axis)
    np.testing.assert_allclose(target.to_host(loss), expected_loss, rtol=1e-13)
    np.testing.assert_allclose(target.to_host(layer.backward()), expected_grad,
                               rtol=1e-12, atol=1e-16)


def test_equals_log_softmax_then_nll(target, rng):
    x, labels = make(rng, (2, 5, 3), 1)
    fused = mnn.CrossEntropyLossLayer()
    log_softmax, nll = mnn.LogSoftmaxLayer(), mnn.NllLossLayer()
    loss = fused(target.asarray(x), target.asarray(labels))
    chained = nll(log_softmax(target.asarray(x)), target.asarray(labels))
    np.testing.assert_allclose(target.to_host(loss), target.to_host(chained), rtol=1e-14)
    np.testing.assert_allclose(target.to_host(fused.backward()),
                               target.to_host(log_softmax.backward(nll.backward())),
                               rtol=1e-12, atol=1e-16)


def test_float32_agrees_with_float64(target, rng):
    x, labels = make(rng, (8, 10), 1)
    assert_float32_matches_float64(target, mnn.CrossEntropyLossLayer, (x, labels), None,
                                   rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_logits_stay_finite_and_correct(target, rng, dtype):
    x, labels = make(rng, (4, 6), 1, scale=1e4)
    x[0], labels[0] = [1e4, 1e4 - 1.0, -1e4, 0.0, 5e3, -5e3], 2  # label at softmax ~ 0
    layer = mnn.CrossEntropyLossLayer()
    loss = target.to_host(layer(target.asarray(x, dtype), target.asarray(labels)))
    grad_in = target.to_host(layer.backward()).astype(np.float64)
    assert np.isfinite(loss) and np.isfinite(grad_in).all()
    expected_loss, expected_grad = reference(x.astype(dtype).astype(np.float64), labels, 1)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
    np.testing.assert_allclose(grad_in, expected_grad, rtol=1e-5, atol=1e-7)
    assert expected_loss > 2e4 / 4  # sample 0 alone contributes about 2e4 / 4


def test_sample_shape_is_checked_when_given(target, rng):
    x, labels = make(rng, (2, 3, 4), 1)
    layer = mnn.CrossEntropyLossLayer(3, 4)
    layer(target.asarray(x), target.asarray(labels))
    with pytest.raises(mnn.ShapeError, match=r"CrossEntropyLossLayer: expected inputs of shape "
                                             r"\(\*, 3, 4\), got"):
        layer(target.asarray(rng.standard_normal((2, 3, 5))), target.asarray(labels))


def test_config_rebuilds_the_same_layer():
    layer = mnn.CrossEntropyLossLayer(10, axis=-1)
    assert layer.config() == {"type": "CrossEntropyLossLayer",
                              "args": {"sample_shape": (10,), "axis": -1}}
    rebuilt = build(layer.config())
    assert (type(rebuilt), rebuilt.shape, rebuilt.axis) == (type(layer), (10,), -1)


def test_wrong_rank_is_a_clear_error(target, rng):
    with pytest.raises(mnn.ShapeError, match=r"CrossEntropyLossLayer: expected inputs with at "
                                             r"least 2 dimensions, got .*shape \(4,\)"):
        mnn.CrossEntropyLossLayer()(target.asarray(rng.standard_normal(4)),
                                    target.asarray(np.array(1)))

@pytest.mark.parametrize("bad", [[0, 4, 1], [0, -1, 1]], ids=["too-large", "negative"])
def test_labels_out_of_range_are_a_clear_error(target, rng, bad):
    with pytest.raises(mnn.LabelError, match=r"CrossEntropyLossLayer: expected labels in "
                                             r"\[0, 4\) for 4 classes"):
        mnn.CrossEntropyLossLayer()(target.asarray(rng.standard_normal((3, 4))),
                                    target.asarray(np.array(bad)))


def test_labels_of_the_wrong_shape_are_a_clear_error(target, rng):
    with pytest.raises(mnn.LabelError, match=r"CrossEntropyLossLayer: expected labels of shape "
                                             r"\(2, 3\) \(one per sample\), got .*\(2, 4\)"):
        mnn.CrossEntropyLossLayer(axis=-1)(target.asarray(rng.standard_normal((2, 3, 4))),
                                           target.asarray(np.zeros((2, 4), dtype=np.int64)))


def test_float_labels_are_a_clear_error(target, rng):
    with pytest.raises(mnn.DTypeError, match=r"CrossEntropyLossLayer: expected integer class "
                                             r"labels, got .*float64"):
        mnn.CrossEntropyLossLayer()(target.asarray(rng.standard_normal((3, 4))),
                                    target.asarray(np.array([0.0, 1.0, 2.0])))

@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_matches_torch_autograd(rng, shape, axis):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    x, labels = make(rng, shape, axis)
    layer = mnn.CrossEntropyLossLayer(axis=axis)
    loss = layer(x, labels)
    grad_in = layer.backward()
    tx = torch.tensor(x, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(torch.movedim(tx, axis, 1), torch.tensor(labels),
                                              reduction="mean")
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.detach().numpy(), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(grad_in, tx.grad.numpy(), rtol=1e-9, atol=1e-15)
