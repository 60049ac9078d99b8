"""The losses CrossEntropyLossLayer, NllLossLayer and MSELossLayer: gradients, NumPy
reference, class axis, large inputs, label and target checks, errors, torch.autograd.

The tests every loss shares come first, parametrized over the three (ids
``cross_entropy``, ``nll`` and ``mse``); then those of the two losses over class labels,
parametrized over cross-entropy and NLL; then each layer's own tests, named after it.
"""

from collections.abc import Callable
from dataclasses import dataclass

import array_api_compat
import numpy as np
import pytest
from helpers import assert_float32_matches_float64

import mnn
from mnn.serialization import build
from mnn.testing import gradcheck


def class_labels(rng, shape, axis):
    """Valid labels for inputs of ``shape`` with classes along ``axis``: one per position of
    the other axes."""
    label_shape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    return rng.integers(0, shape[axis], size=label_shape)


def logits(rng, shape, axis):
    """Logits and valid labels for a case."""
    return 3.0 * rng.standard_normal(shape), class_labels(rng, shape, axis)


def log_probabilities(rng, shape, axis):
    """Log-probabilities along ``axis`` and valid labels for a case."""
    x = rng.standard_normal(shape)
    return x - np.logaddexp.reduce(x, axis=axis, keepdims=True), class_labels(rng, shape, axis)


def regression(rng, shape, axis):
    """Predictions and float targets of ``shape`` (MSE has no class axis)."""
    return rng.standard_normal(shape), rng.standard_normal(shape)


def cross_entropy_reference(x, labels, axis):
    """float64 NumPy loss and gradient: class axis moved last, log-sum-exp by np.logaddexp."""
    moved = np.moveaxis(x, axis, -1)
    log_p = moved - np.logaddexp.reduce(moved, axis=-1, keepdims=True)
    onehot = np.eye(x.shape[axis])[labels]
    loss = -np.sum(onehot * log_p) / labels.size
    grad = (np.exp(log_p) - onehot) / labels.size
    return loss, np.moveaxis(grad, -1, axis)


def nll_reference(log_p, labels, axis):
    """float64 NumPy loss, -mean over label positions of log_p at the label, by moving the
    class axis last; the gradient is -1 / (number of labels) at each label, 0 elsewhere."""
    moved = np.moveaxis(log_p, axis, -1).reshape(-1, log_p.shape[axis])
    loss = -np.mean(moved[np.arange(moved.shape[0]), labels.reshape(-1)])
    grad = np.zeros(log_p.shape)
    np.put_along_axis(grad, np.expand_dims(labels, axis), -1.0 / labels.size, axis)
    return loss, grad


def mse_reference(x, y, axis):
    """float64 NumPy loss, the squared error summed per sample and averaged over the batch,
    and its gradient."""
    batch = x.shape[0]
    return ((x - y) ** 2).reshape(batch, -1).sum(axis=1).mean(), 2 * (x - y) / batch


@dataclass(frozen=True)
class Loss:
    """One loss under test: valid inputs, its reference, and the same loss in torch."""

    layer: type[mnn.BaseLayer]
    make: Callable  # (rng, shape, axis) -> (inputs, feedbacks), host arrays
    reference: Callable  # (inputs, feedbacks, axis) -> (loss, input gradient), float64
    torch_loss: Callable  # (torch, inputs, feedbacks, axis) -> the loss as a torch tensor
    cases: dict  # case id -> (inputs shape, class axis or None)

    def build(self, axis):
        return self.layer() if axis is None else self.layer(axis=axis)


# (inputs shape, class axis): the labels have the inputs' shape without the class axis
LABEL_CASES = {"batch": ((5, 4), 1), "batch1": ((1, 4), 1), "3d-axis1": ((2, 3, 4), 1),
               "3d-last": ((2, 3, 4), -1), "3d-axis0": ((3, 2, 4), 0)}
# inputs shape, and no class axis: the targets have the inputs' shape
TARGET_CASES = {"batch": ((5, 4), None), "batch1": ((1, 4), None),
                "leading-dims": ((2, 3, 4), None), "1d": ((6,), None)}

CROSS_ENTROPY = Loss(
    mnn.CrossEntropyLossLayer, logits, cross_entropy_reference,
    lambda torch, x, labels, axis: torch.nn.functional.cross_entropy(
        torch.movedim(x, axis, 1), labels, reduction="mean"),
    LABEL_CASES)
NLL = Loss(
    mnn.NllLossLayer, log_probabilities, nll_reference,
    lambda torch, log_p, labels, axis: torch.nn.functional.nll_loss(
        torch.movedim(log_p, axis, 1), labels, reduction="mean"),
    LABEL_CASES)
MSE = Loss(
    mnn.MSELossLayer, regression, mse_reference,
    lambda torch, x, y, axis: torch.nn.functional.mse_loss(x, y, reduction="sum") / x.shape[0],
    TARGET_CASES)

NAMED = {"cross_entropy": CROSS_ENTROPY, "nll": NLL, "mse": MSE}
LOSSES = [pytest.param(loss, id=name) for name, loss in NAMED.items()]
LABEL_LOSSES = [pytest.param(loss, id=name) for name, loss in NAMED.items() if loss is not MSE]
# every loss with each of its cases
LOSS_CASES = [pytest.param(loss, shape, axis, id=f"{name}-{case}")
              for name, loss in NAMED.items() for case, (shape, axis) in loss.cases.items()]

# One tolerance per kind of comparison, the same for every loss:
# - a float64 loss against the float64 reference;
LOSS = {"rtol": 1e-13, "atol": 0.0}
# - a float64 gradient against the float64 reference: p - 1 at a label rounds to one unit
#   in the last place of 1, which is all that is left where p is near 1;
GRADIENT = {"rtol": 1e-13, "atol": np.finfo(np.float64).eps}
# - float32 against float64;
FLOAT32 = {"rtol": 1e-6, "atol": 1e-7}
# - inputs of size 1e4 against the reference, in each dtype;
LARGE = {"float32": {"rtol": 1e-6, "atol": 1e-7}, "float64": {"rtol": 1e-12, "atol": 1e-16}}
# - float64 against torch.autograd.
TORCH = {"rtol": 1e-14, "atol": 1e-15}


# --- every loss -------------------------------------------------------------------------


@pytest.mark.parametrize(("loss", "shape", "axis"), LOSS_CASES)
def test_gradcheck(target, rng, loss, shape, axis):
    x, feedbacks = loss.make(rng, shape, axis)
    assert gradcheck(loss.build(axis), target.asarray(x), target.asarray(feedbacks))


@pytest.mark.parametrize(("loss", "shape", "axis"), LOSS_CASES)
def test_forward_and_backward_match_numpy_reference(target, rng, loss, shape, axis):
    x, feedbacks = loss.make(rng, shape, axis)
    layer = loss.build(axis)
    value = layer(target.asarray(x), target.asarray(feedbacks))
    assert value.shape == () and target.backend.owns(value)
    assert array_api_compat.device(value) == target.device
    expected_loss, expected_grad = loss.reference(x, feedbacks, axis)
    np.testing.assert_allclose(target.to_host(value), expected_loss, **LOSS)
    np.testing.assert_allclose(target.to_host(layer.backward()), expected_grad, **GRADIENT)


@pytest.mark.parametrize("loss", LOSSES)
def test_float32_agrees_with_float64(target, rng, loss):
    x, feedbacks = loss.make(rng, (8, 10), 1)
    assert_float32_matches_float64(target, loss.layer, (x, feedbacks), None, **FLOAT32)


@pytest.mark.parametrize(("loss", "shape", "axis"), LOSS_CASES)
def test_matches_torch_autograd(rng, loss, shape, axis):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    x, feedbacks = loss.make(rng, shape, axis)
    layer = loss.build(axis)
    value = layer(x, feedbacks)
    grad_in = layer.backward()
    tx = torch.tensor(x, requires_grad=True)
    tloss = loss.torch_loss(torch, tx, torch.tensor(feedbacks), axis)
    tloss.backward()
    np.testing.assert_allclose(value, tloss.detach().numpy(), **TORCH)
    np.testing.assert_allclose(grad_in, tx.grad.numpy(), **TORCH)


@pytest.mark.parametrize("loss", LOSSES)
def test_is_a_loss(loss):
    assert loss.layer.is_loss


@pytest.mark.parametrize(("loss", "x", "feedbacks", "message"), [
    pytest.param(mnn.CrossEntropyLossLayer, np.ones(4), np.array(1),
                 r"at least 2 dimensions, got .*shape \(4,\)", id="cross_entropy"),
    pytest.param(mnn.NllLossLayer, np.ones(4), np.array(1),
                 r"at least 2 dimensions, got .*shape \(4,\)", id="nll"),
    pytest.param(mnn.MSELossLayer, np.array(1.0), np.array(1.0),
                 r"at least 1 dimension, got .*shape \(\)", id="mse")])
def test_too_few_dimensions_are_a_clear_error(target, loss, x, feedbacks, message):
    with pytest.raises(mnn.ShapeError, match=rf"{loss.__name__}: expected inputs with {message}"):
        loss()(target.asarray(x), target.asarray(feedbacks))


@pytest.mark.parametrize(("loss", "message"), [
    pytest.param(mnn.CrossEntropyLossLayer, r"expected integer class labels, got an object of "
                 r"type NoneType", id="cross_entropy"),
    pytest.param(mnn.NllLossLayer, r"expected integer class labels, got an object of type "
                 r"NoneType", id="nll"),
    pytest.param(mnn.MSELossLayer, r"expected targets to be an array.*NoneType", id="mse")])
def test_missing_feedbacks_are_a_clear_error(target, rng, loss, message):
    with pytest.raises(mnn.DTypeError, match=rf"{loss.__name__}: {message}"):
        loss()(target.asarray(rng.standard_normal((3, 4))))


# --- the losses over class labels: cross-entropy and NLL --------------------------------


@pytest.mark.parametrize("label_dtype", ["int32", "int64", "uint8"])
@pytest.mark.parametrize("loss", LABEL_LOSSES)
def test_any_integer_label_dtype(target, rng, loss, label_dtype):
    x, labels = loss.make(rng, (6, 5), 1)
    value = loss.layer()(target.asarray(x), target.asarray(labels.astype(label_dtype)))
    np.testing.assert_allclose(target.to_host(value), loss.reference(x, labels, 1)[0],
                               **LOSS)


@pytest.mark.parametrize("loss", LABEL_LOSSES)
def test_small_integer_labels_are_range_checked_without_overflow(target, loss):
    """The range check compares labels with the number of classes in int64: -100 (torch's
    ignore index) as int8 stays -100 rather than wrapping to class 156, and uint8 labels
    up to 255 are valid for 300 classes."""
    x = np.zeros((2, 300))
    with pytest.raises(mnn.LabelError, match=r"expected labels in \[0, 300\) for 300 classes, "
                                             r"got values from -100 to 3"):
        loss.layer()(target.asarray(x), target.asarray(np.array([3, -100], dtype=np.int8)))
    labels = np.array([255, 7], dtype=np.uint8)
    value = loss.layer()(target.asarray(x), target.asarray(labels))
    np.testing.assert_allclose(float(target.to_host(value)), loss.reference(x, labels, 1)[0],
                               **LOSS)


@pytest.mark.parametrize("loss", LABEL_LOSSES)
def test_no_classes_is_a_clear_error_and_no_samples_a_nan_loss(target, loss):
    """An empty class axis has no right answer: a ShapeError, not a raw reduction error. An
    empty batch is the mean of nothing: nan, as torch gives, and an empty gradient."""
    with pytest.raises(mnn.ShapeError, match=rf"{loss.layer.__name__}: expected at least one "
                                             r"class along axis 1"):
        loss.layer()(target.asarray(np.zeros((3, 0))),
                     target.asarray(np.zeros(3, dtype=np.int64)))
    layer = loss.layer()
    with np.errstate(invalid="ignore"):
        value = layer(target.asarray(np.zeros((0, 4))), target.asarray(np.zeros(0, np.int64)))
        gradient = layer.backward()
    assert np.isnan(float(target.to_host(value)))
    assert tuple(gradient.shape) == (0, 4)


def large_logits(rng):
    """Logits of size 1e4; sample 0's label sits where the softmax is about e^-2e4."""
    x, labels = 1e4 * rng.standard_normal((4, 6)), rng.integers(0, 6, size=4)
    x[0], labels[0] = [1e4, 1e4 - 1.0, -1e4, 0.0, 5e3, -5e3], 2
    return x, labels


def large_log_probabilities(rng):
    """Log-probabilities between -1e4 and -5e3."""
    return -1e4 * rng.uniform(0.5, 1.0, size=(4, 6)), np.array([0, 5, 2, 2])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("loss", "make_large"), [
    pytest.param(CROSS_ENTROPY, large_logits, id="cross_entropy"),
    pytest.param(NLL, large_log_probabilities, id="nll")])
def test_large_inputs_stay_finite_and_correct(target, rng, loss, make_large, dtype):
    x, labels = make_large(rng)
    layer = loss.layer()
    value = target.to_host(layer(target.asarray(x, dtype), target.asarray(labels)))
    grad_in = target.to_host(layer.backward()).astype(np.float64)
    assert np.isfinite(value) and np.isfinite(grad_in).all()
    expected_loss, expected_grad = loss.reference(x.astype(dtype).astype(np.float64), labels, 1)
    np.testing.assert_allclose(value, expected_loss, **LARGE[dtype])
    np.testing.assert_allclose(grad_in, expected_grad, **LARGE[dtype])
    assert expected_loss > 2e4 / 4  # the inputs do reach a large loss


@pytest.mark.parametrize("bad", [[0, 4, 1], [0, -1, 1]], ids=["too-large", "negative"])
@pytest.mark.parametrize("loss", LABEL_LOSSES)
def test_labels_out_of_range_are_a_clear_error(target, rng, loss, bad):
    with pytest.raises(mnn.LabelError, match=rf"{loss.layer.__name__}: expected labels in "
                                             r"\[0, 4\) for 4 classes, got values from -?\d "
                                             r"to \d"):
        loss.layer()(target.asarray(rng.standard_normal((3, 4))), target.asarray(np.array(bad)))


@pytest.mark.parametrize(("shape", "axis", "label_shape", "expected"), [
    ((3, 4), 1, (3, 1), r"\(3,\)"), ((2, 3, 4), 1, (2, 3), r"\(2, 4\)"),
    ((2, 3, 4), -1, (2, 4), r"\(2, 3\)")], ids=["2d", "3d-axis1", "3d-last"])
@pytest.mark.parametrize("loss", LABEL_LOSSES)
def test_labels_of_the_wrong_shape_are_a_clear_error(target, rng, loss, shape, axis, label_shape,
                                                     expected):
    got = r"\(" + ", ".join(map(str, label_shape)) + r"\)"
    with pytest.raises(mnn.LabelError, match=rf"{loss.layer.__name__}: expected labels of shape "
                                             rf"{expected} \(one per sample\), got .*shape {got}"):
        loss.layer(axis=axis)(target.asarray(rng.standard_normal(shape)),
                              target.asarray(np.zeros(label_shape, dtype=np.int64)))


@pytest.mark.parametrize("loss", LABEL_LOSSES)
def test_float_labels_are_a_clear_error(target, rng, loss):
    with pytest.raises(mnn.DTypeError, match=rf"{loss.layer.__name__}: expected integer class "
                                             r"labels, got .*float64"):
        loss.layer()(target.asarray(rng.standard_normal((3, 4))),
                     target.asarray(np.array([0.0, 1.0, 2.0])))


@pytest.mark.parametrize("loss", LABEL_LOSSES)
def test_labels_from_another_library_are_a_clear_error(target, rng, loss):
    other = "array_api_strict" if target.backend.name == "numpy" else "numpy"
    other_target = type(target)(mnn.backends.get(other), mnn.backends.get(other).devices()[0])
    with pytest.raises(mnn.PlacementError, match=rf"{loss.layer.__name__}: expected labels from "
                                                  rf"the same library and device as the "
                                                  rf"inputs.*{other}"):
        loss.layer()(target.asarray(rng.standard_normal((3, 4))),
                     other_target.asarray(np.array([0, 1, 2])))


@pytest.mark.parametrize("loss", LABEL_LOSSES)
def test_labels_on_another_device_are_a_clear_error(rng, loss):
    xs = pytest.importorskip("array_api_strict", reason="needs array_api_strict's fake devices")
    x = xs.asarray(rng.standard_normal((3, 4)), device=xs.Device("device1"))
    with pytest.raises(mnn.PlacementError, match=r"labels from the same library and device.*"
                                                  r"device1.*CPU_DEVICE"):
        loss.layer()(x, xs.asarray([0, 1, 2]))


# --- CrossEntropyLossLayer --------------------------------------------------------------


def test_cross_entropy_equals_log_softmax_then_nll(target, rng):
    x, labels = logits(rng, (2, 5, 3), 1)
    fused = mnn.CrossEntropyLossLayer()
    log_softmax, nll = mnn.LogSoftmaxLayer(), mnn.NllLossLayer()
    loss = fused(target.asarray(x), target.asarray(labels))
    chained = nll(log_softmax(target.asarray(x)), target.asarray(labels))
    np.testing.assert_allclose(target.to_host(loss), target.to_host(chained), rtol=1e-14)
    np.testing.assert_allclose(target.to_host(fused.backward()),
                               target.to_host(log_softmax.backward(nll.backward())),
                               rtol=1e-12, atol=1e-16)


def test_cross_entropy_sample_shape_is_checked_when_given(target, rng):
    x, labels = logits(rng, (2, 3, 4), 1)
    layer = mnn.CrossEntropyLossLayer(3, 4)
    layer(target.asarray(x), target.asarray(labels))
    with pytest.raises(mnn.ShapeError, match=r"CrossEntropyLossLayer: expected inputs of shape "
                                             r"\(\*, 3, 4\), got"):
        layer(target.asarray(rng.standard_normal((2, 3, 5))), target.asarray(labels))


def test_cross_entropy_config_rebuilds_the_same_layer():
    layer = mnn.CrossEntropyLossLayer(10, axis=-1)
    assert layer.config() == {"type": "CrossEntropyLossLayer",
                              "args": {"sample_shape": (10,), "axis": -1}}
    rebuilt = build(layer.config())
    assert (type(rebuilt), rebuilt.sample_shape, rebuilt.axis) == (type(layer), (10,), -1)


# --- NllLossLayer -----------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "axis"), LABEL_CASES.values(), ids=LABEL_CASES.keys())
def test_nll_gradient_is_exactly_minus_one_over_the_label_count(target, rng, shape, axis):
    """Nothing is rounded: -1 / (number of labels) at each label, 0 elsewhere."""
    log_p, labels = log_probabilities(rng, shape, axis)
    layer = mnn.NllLossLayer(axis=axis)
    layer(target.asarray(log_p), target.asarray(labels))
    np.testing.assert_array_equal(target.to_host(layer.backward()),
                                  nll_reference(log_p, labels, axis)[1])


def test_nll_minus_infinity_at_unlabelled_classes_gives_a_finite_loss(target, rng):
    """log p = -inf where a class is impossible: the loss picks the labels only, no 0 * -inf."""
    log_p, labels = log_probabilities(rng, (4, 5), 1)
    impossible = np.ones_like(log_p, dtype=bool)
    impossible[np.arange(4), labels] = False
    log_p[impossible & (rng.uniform(size=log_p.shape) < 0.5)] = -np.inf
    layer = mnn.NllLossLayer()
    loss = target.to_host(layer(target.asarray(log_p), target.asarray(labels)))
    np.testing.assert_allclose(loss, nll_reference(log_p, labels, 1)[0], **LOSS)
    assert np.isfinite(target.to_host(layer.backward())).all()


# --- MSELossLayer -----------------------------------------------------------------------


def test_mse_integer_targets_are_a_clear_error(target):
    with pytest.raises(mnn.DTypeError,
                       match=r"MSELossLayer: expected floating-point targets, got .*int64"):
        mnn.MSELossLayer()(target.asarray(np.ones((2, 3))),
                           target.asarray(np.ones((2, 3), dtype=np.int64)))


@pytest.mark.parametrize("shape", [(2, 4), (3, 2), (2, 3, 1), (6,)])
def test_mse_targets_of_the_wrong_shape_are_a_clear_error(target, rng, shape):
    with pytest.raises(mnn.ShapeError, match=r"MSELossLayer: expected targets of the same shape "
                                             r"as the inputs \(2, 3\), got .*shape"):
        mnn.MSELossLayer()(target.asarray(rng.standard_normal((2, 3))),
                           target.asarray(rng.standard_normal(shape)))


def test_mse_targets_in_another_dtype_are_a_clear_error(target, rng):
    with pytest.raises(mnn.PlacementError, match=r"MSELossLayer: expected targets from the same "
                                                  r"library, device and dtype as the inputs"):
        mnn.MSELossLayer()(target.asarray(rng.standard_normal((2, 3))),
                           target.asarray(rng.standard_normal((2, 3)), "float32"))
