"""NllLossLayer: gradients, NumPy reference, class axis, label checks, errors, torch.autograd."""

import array_api_compat
import numpy as np
import pytest
from helpers import assert_float32_matches_float64

import mnn
from mnn.testing import gradcheck

# (logits shape, class axis): the labels have the logits' shape without the class axis
CASES = [((5, 4), 1), ((1, 4), 1), ((2, 3, 4), 1), ((2, 3, 4), -1), ((3, 2, 4), 0)]
CASE_IDS = ["batch", "batch1", "3d-axis1", "3d-last", "3d-axis0"]


def make(rng, shape, axis):
    """Log-probabilities and valid labels for a case."""
    x = rng.standard_normal(shape)
    log_p = x - np.logaddexp.reduce(x, axis=axis, keepdims=True)
    label_shape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    return log_p, rng.integers(0, shape[axis], size=label_shape)


def reference_nll(log_p, labels, axis):
    """-mean over label positions of log_p at the label, by moving the class axis last."""
    moved = np.moveaxis(log_p, axis, -1).reshape(-1, log_p.shape[axis])
    return -np.mean(moved[np.arange(moved.shape[0]), labels.reshape(-1)])


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_gradcheck(target, rng, shape, axis):
    log_p, labels = make(rng, shape, axis)
    assert gradcheck(mnn.NllLossLayer(axis=axis), target.asarray(log_p), target.asarray(labels))


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_forward_and_backward_match_numpy_reference(target, rng, shape, axis):
    log_p, labels = make(rng, shape, axis)
    layer = mnn.NllLossLayer(axis=axis)
    loss = layer(target.asarray(log_p), target.asarray(labels))
    assert loss.shape == () and target.backend.owns(loss)
    assert array_api_compat.device(loss) == target.device
    np.testing.assert_allclose(target.to_host(loss), reference_nll(log_p, labels, axis),
                               rtol=1e-13)
    expected = np.zeros(shape)
    np.put_along_axis(expected, np.expand_dims(labels, axis), -1.0 / labels.size, axis)
    np.testing.assert_array_equal(target.to_host(layer.backward()), expected)


@pytest.mark.parametrize("label_dtype", ["int32", "int64", "uint8"])
def test_any_integer_label_dtype(target, rng, label_dtype):
    log_p, labels = make(rng, (6, 5), 1)
    loss = mnn.NllLossLayer()(target.asarray(log_p), target.asarray(labels.astype(label_dtype)))
    np.testing.assert_allclose(target.to_host(loss), reference_nll(log_p, labels, 1), rtol=1e-13)


@pytest.mark.parametrize("loss", [mnn.NllLossLayer, mnn.CrossEntropyLossLayer])
def test_small_integer_labels_are_range_checked_without_overflow(target, loss):
    """-100 (torch's ignore index) as int8 once read as class 156; valid uint8 labels of 300
    classes were refused. The comparison with the classes now runs in int64."""
    x = target.asarray(np.zeros((2, 300)))
    with pytest.raises(mnn.LabelError, match=r"expected labels in \[0, 300\) for 300 classes, "
                                             r"got values from -100 to 3"):
        loss()(x, target.asarray(np.array([3, -100], dtype=np.int8)))
    labels = np.array([255, 7], dtype=np.uint8)
    value = loss()(x, target.asarray(labels))
    np.testing.assert_allclose(float(target.to_host(value)), np.log(300) if
                               loss is mnn.CrossEntropyLossLayer else 0.0, rtol=1e-12)


@pytest.mark.parametrize("loss", [mnn.NllLossLayer, mnn.CrossEntropyLossLayer])
def test_no_classes_is_a_clear_error_and_no_samples_a_nan_loss(target, loss):
    """An empty class axis has no right answer: a ShapeError, not a raw reduction error. An
    empty batch is the mean of nothing: nan, as torch gives, and an empty gradient."""
    with pytest.raises(mnn.ShapeError, match=rf"{loss.__name__}: expected at least one class "
                                             r"along axis 1"):
        loss()(target.asarray(np.zeros((3, 0))), target.asarray(np.zeros(3, dtype=np.int64)))
    layer = loss()
    with np.errstate(invalid="ignore"):
        value = layer(target.asarray(np.zeros((0, 4))), target.asarray(np.zeros(0, np.int64)))
        gradient = layer.backward()
    assert np.isnan(float(target.to_host(value)))
    assert tuple(gradient.shape) == (0, 4)


def test_float32_agrees_with_float64(target, rng):
    log_p, labels = make(rng, (8, 10), 1)
    assert_float32_matches_float64(target, mnn.NllLossLayer, (log_p, labels), None,
                                   rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_log_probabilities_stay_finite_and_correct(target, rng, dtype):
    log_p = -1e4 * rng.uniform(0.5, 1.0, size=(4, 6))
    labels = np.array([0, 5, 2, 2])
    layer = mnn.NllLossLayer()
    loss = target.to_host(layer(target.asarray(log_p, dtype), target.asarray(labels)))
    assert np.isfinite(loss) and np.isfinite(target.to_host(layer.backward())).all()
    np.testing.assert_allclose(loss, reference_nll(log_p.astype(dtype), labels, 1), rtol=1e-6)


def test_minus_infinity_at_unlabelled_classes_gives_a_finite_loss(target, rng):
    """log p = -inf where a class is impossible: the loss picks the labels only, no 0 * -inf."""
    log_p, labels = make(rng, (4, 5), 1)
    impossible = np.ones_like(log_p, dtype=bool)
    impossible[np.arange(4), labels] = False
    log_p[impossible & (rng.uniform(size=log_p.shape) < 0.5)] = -np.inf
    layer = mnn.NllLossLayer()
    loss = target.to_host(layer(target.asarray(log_p), target.asarray(labels)))
    np.testing.assert_allclose(loss, reference_nll(log_p, labels, 1), rtol=1e-13)
    assert np.isfinite(target.to_host(layer.backward())).all()


def test_wrong_rank_is_a_clear_error(target, rng):
    with pytest.raises(mnn.ShapeError, match=r"NllLossLayer: expected inputs with at least 2 "
                                             r"dimensions, got .*shape \(4,\)"):
        mnn.NllLossLayer()(target.asarray(rng.standard_normal(4)), target.asarray(np.array(1)))

@pytest.mark.parametrize("bad", [[0, 4, 1], [0, -1, 1]], ids=["too-large", "negative"])
def test_labels_out_of_range_are_a_clear_error(target, rng, bad):
    with pytest.raises(mnn.LabelError, match=r"NllLossLayer: expected labels in \[0, 4\) for 4 "
                                             r"classes, got values from -?\d to \d"):
        mnn.NllLossLayer()(target.asarray(rng.standard_normal((3, 4))),
                           target.asarray(np.array(bad)))


def test_labels_of_the_wrong_shape_are_a_clear_error(target, rng):
    log_p = target.asarray(rng.standard_normal((3, 4)))
    with pytest.raises(mnn.LabelError, match=r"NllLossLayer: expected labels of shape \(3,\) "
                                             r"\(one per sample\), got .*shape \(3, 1\)"):
        mnn.NllLossLayer()(log_p, target.asarray(np.zeros((3, 1), dtype=np.int64)))
    with pytest.raises(mnn.LabelError, match=r"expected labels of shape \(2, 4\).*shape \(2, 3\)"):
        mnn.NllLossLayer()(target.asarray(rng.standard_normal((2, 3, 4))),
                           target.asarray(np.zeros((2, 3), dtype=np.int64)))


def test_float_labels_are_a_clear_error(target, rng):
    with pytest.raises(mnn.DTypeError, match=r"NllLossLayer: expected integer class labels, "
                                             r"got .*float64"):
        mnn.NllLossLayer()(target.asarray(rng.standard_normal((3, 4))),
                           target.asarray(np.array([0.0, 1.0, 2.0])))


def test_missing_labels_are_a_clear_error(target, rng):
    with pytest.raises(mnn.DTypeError, match=r"NllLossLayer: expected integer class labels, "
                                             r"got an object of type NoneType"):
        mnn.NllLossLayer()(target.asarray(rng.standard_normal((3, 4))))


def test_labels_from_another_library_are_a_clear_error(target, rng):
    other = "array_api_strict" if target.backend.name == "numpy" else "numpy"
    other_target = type(target)(mnn.backends.get(other), mnn.backends.get(other).devices()[0])
    with pytest.raises(mnn.PlacementError, match=r"NllLossLayer: expected labels from the same "
                                                  rf"library and device as the inputs.*{other}"):
        mnn.NllLossLayer()(target.asarray(rng.standard_normal((3, 4))),
                           other_target.asarray(np.array([0, 1, 2])))


def test_labels_on_another_device_are_a_clear_error(rng):
    xs = pytest.importorskip("array_api_strict", reason="needs array_api_strict's fake devices")
    log_p = xs.asarray(rng.standard_normal((3, 4)), device=xs.Device("device1"))
    with pytest.raises(mnn.PlacementError, match=r"labels from the same library and device.*"
                                                  r"device1.*CPU_DEVICE"):
        mnn.NllLossLayer()(log_p, xs.asarray([0, 1, 2]))

def test_is_a_loss():
    assert mnn.NllLossLayer.is_loss and not mnn.LogSoftmaxLayer.is_loss


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_matches_torch_autograd(rng, shape, axis):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    log_p, labels = make(rng, shape, axis)
    layer = mnn.NllLossLayer(axis=axis)
    loss = layer(log_p, labels)
    grad_in = layer.backward()
    tx = torch.tensor(log_p, requires_grad=True)
    tloss = torch.nn.functional.nll_loss(torch.movedim(tx, axis, 1), torch.tensor(labels),
                                         reduction="mean")
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.detach().numpy(), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(grad_in, tx.grad.numpy(), rtol=1e-9, atol=1e-15)
