"""mnn.testing.gradcheck: it passes correct layers and catches each kind of wrong one.

Every check here makes a layer wrong on purpose and asserts that gradcheck says
where: the layer, the variable, the backend, device and dtype, the index, and the
analytic and numeric values against the tolerance.
"""

import numpy as np
import pytest

import mnn
from mnn.testing import GradcheckError, GradcheckPrecisionWarning, gradcheck


class ScaledWeightGradient(mnn.LinearLayer):
    """A LinearLayer whose weight gradient is off by a factor at one entry."""

    def __init__(self, *args, factor=1.01, **kwargs):
        super().__init__(*args, **kwargs)
        self.factor = factor

    def compute_backward(self, xp, gradients, inputs):
        where = self.placement
        before = np.zeros(self.params["w"].shape) if self.grads["w"] is None else (
            where.to_host(self.grads["w"]).copy())
        returned = super().compute_backward(xp, gradients, inputs)
        wrong = where.to_host(self.grads["w"]).copy()
        # scale only this call's contribution to entry (1, 2), so accumulation stays right
        wrong[1, 2] += (self.factor - 1.0) * (wrong[1, 2] - before[1, 2])
        self.grads["w"] = where.from_host(wrong)
        return returned


class WrongInputGradient(mnn.ReluLayer):
    """ReLU whose input gradient forgets the mask: the identity's gradient."""

    def compute_backward(self, xp, gradients, active):
        return gradients


class ForgetsToAccumulate(mnn.LinearLayer):
    """Overwrites the weight gradient instead of adding to it."""

    def compute_backward(self, xp, gradients, inputs):
        self.grads["w"] = None
        return super().compute_backward(xp, gradients, inputs)


class WritesIntoItsInputs(mnn.ReluLayer):
    """Zeroes the negative entries of its input array in place (NumPy only)."""

    def compute_forward(self, xp, inputs, feedbacks):
        out = super().compute_forward(xp, inputs, feedbacks)
        inputs[inputs < 0] = 0.0
        return out


class ReturnsAnotherGradient(mnn.ReluLayer):
    """ReLU whose backward returns ``make(correct_gradient)`` instead of the gradient."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def compute_backward(self, xp, gradients, active):
        return self.make(super().compute_backward(xp, gradients, active))


def test_correct_layers_pass(target, rng):
    x = target.asarray(rng.standard_normal((3, 5)) + 0.1)
    assert gradcheck(mnn.LinearLayer(5, 4, rng=0), x)
    labels = target.asarray(np.array([0, 3, 1]))
    assert gradcheck(mnn.CrossEntropyLossLayer(), target.asarray(rng.standard_normal((3, 4))),
                     labels)


def test_wrong_parameter_gradient_names_everything(target, rng):
    layer = ScaledWeightGradient(5, 4, rng=0, factor=1.01)
    with pytest.raises(GradcheckError) as caught:
        gradcheck(layer, target.asarray(rng.standard_normal((3, 5))))
    message = str(caught.value)
    assert "ScaledWeightGradient" in message
    assert "parameter 'w'" in message
    assert target.backend.name in message and "float64" in message
    assert f"device {target.device_name}" in message
    assert "w index (1, 2)" in message  # the one wrong entry
    assert "analytic" in message and "numeric" in message and "tolerance" in message


def test_wrong_input_gradient_is_caught(target, rng):
    x = target.asarray(np.array([[-1.0, 0.5, 2.0], [0.3, -0.7, 1.2]]))
    with pytest.raises(GradcheckError, match=r"WrongInputGradient.*respect to inputs is wrong"):
        gradcheck(WrongInputGradient(), x)


def test_large_inputs_use_random_projections(target, rng):
    layer = ScaledWeightGradient(40, 30, rng=0, factor=1.5)  # 1200 weights: beyond the full check
    with pytest.raises(GradcheckError, match=r"random projection 0"):
        gradcheck(layer, target.asarray(rng.standard_normal((8, 40))), full_jacobian_max=64)
    assert gradcheck(mnn.LinearLayer(40, 30, rng=0), target.asarray(rng.standard_normal((8, 40))),
                     full_jacobian_max=64)


def test_gradients_that_do_not_accumulate_are_caught(rng):
    with pytest.raises(GradcheckError, match=r"did not accumulate parameter 'w' twice"):
        gradcheck(ForgetsToAccumulate(4, 3, rng=0), rng.standard_normal((2, 4)))


def test_writing_into_the_inputs_is_caught(rng):
    with pytest.raises(GradcheckError, match=r"wrote into its inputs"):
        gradcheck(WritesIntoItsInputs(), rng.standard_normal((3, 4)))


def test_low_precision_warns_and_uses_its_own_tolerances(target, rng):
    x = target.asarray(rng.standard_normal((3, 5)), "float32")
    with pytest.warns(GradcheckPrecisionWarning, match="float32"):
        assert gradcheck(mnn.LinearLayer(5, 4, rng=0), x)


def test_layer_without_input_gradient_checks_its_parameters(rng):
    layer = ScaledWeightGradient(5, 4, rng=0)
    layer.input_grad = False
    with pytest.raises(GradcheckError, match=r"parameter 'w'"):
        gradcheck(layer, rng.standard_normal((3, 5)))
    layer = mnn.LinearLayer(5, 4, rng=0)
    layer.input_grad = False
    assert gradcheck(layer, rng.standard_normal((3, 5)))


def _another_device(target):
    """A device of the target's library other than the target's, or None."""
    others = [d for d in target.backend.devices() if d != target.device_name]
    return others[0] if others else None


@pytest.mark.parametrize("wrong", ["shape", "dtype", "device", "None", "list"])
def test_a_gradient_that_does_not_fit_its_input_is_a_failure_with_a_message(target, rng, wrong):
    """Not a raw exception from deep inside the comparison: a GradcheckError that says why."""
    xp = target.xp
    if wrong == "device" and _another_device(target) is None:
        pytest.skip(f"{target.backend.name} has one device here")
    make = {
        "shape": lambda g: xp.reshape(g, (-1,)),
        "dtype": lambda g: xp.astype(g, xp.float32),
        "device": lambda g: target.backend.from_host(target.to_host(g), target.backend.device(
            _another_device(target)), g.dtype),
        "None": lambda g: None,
        "list": lambda g: target.to_host(g).tolist(),
    }[wrong]
    expected = {"shape": r"is .*shape \(6,\).*; expected .*shape \(2, 3\)",
                "dtype": r"is .*float32.*; expected .*float64",
                "device": r"is .*on device .*; expected .*on device",
                "None": r"is None; expected an array like",
                "list": r"is not an array: got an object of type list"}[wrong]
    with pytest.raises(GradcheckError, match=r"ReturnsAnotherGradient .*the gradient of inputs "
                                             + expected):
        gradcheck(ReturnsAnotherGradient(make), target.asarray(rng.standard_normal((2, 3))))


class EmbeddingWithoutRepeats(mnn.Embedding):
    """Writes each row's gradient instead of adding them up: repeated ids lose all but one."""

    def compute_backward(self, xp, gradients, ids):
        host_ids = self.placement.to_host(ids)
        rows = self.placement.to_host(gradients).reshape(len(host_ids), -1)
        grad = np.zeros(self.params["w"].shape)
        grad[host_ids] = rows  # fancy assignment: the last write of a repeated id wins
        self.add_grad("w", self.placement.from_host(grad))


def test_a_layer_of_integer_inputs_is_checked_in_its_parameters(target):
    """Embedding takes token ids only: gradcheck checks its table, in the table's dtype."""
    ids = target.asarray(np.array([[1, 3, 1], [0, 1, 2]]))
    assert gradcheck(mnn.Embedding(4, 2, rng=0), ids)
    with pytest.raises(GradcheckError, match=r"EmbeddingWithoutRepeats on .*float64: gradient "
                                             r"with respect to parameter 'w' is wrong"):
        gradcheck(EmbeddingWithoutRepeats(4, 2, rng=0), ids)


class RedrawingDropout(mnn.Dropout):
    """A Dropout that hides its draws from gradcheck: a new mask at every forward."""

    def compute_forward(self, xp, inputs, feedbacks):
        self._hidden = getattr(self, "_hidden", 0) + 1
        self.draws = self._hidden
        return super().compute_forward(xp, inputs, feedbacks)


def test_random_draws_are_repeated_for_every_forward(target, rng):
    x = target.asarray(rng.standard_normal((3, 4)))
    assert gradcheck(mnn.SequentialLayers([mnn.LinearLayer(4, 4, rng=0), mnn.Dropout(0.5, rng=0)]),
                     x)
    with pytest.raises(GradcheckError):  # without the reset, the masks differ between forwards
        gradcheck(RedrawingDropout(0.5, rng=0), x)


def test_nothing_to_check_is_a_clear_error(target):
    with pytest.raises(TypeError, match=r"gradcheck: ReluLayer got no floating-point inputs and "
                                        r"has no parameters"):
        gradcheck(mnn.ReluLayer(), target.asarray(np.array([1, 2])))


@pytest.mark.parametrize("where, message", [
    ("inputs", r"inputs of LinearLayer is not finite at 1 of its 12 entries, the first nan at "
               r"index \(1, 2\)"),
    ("parameter", r"parameter 'b' of LinearLayer is not finite at 1 of its 3 entries, the first "
                  r"inf at index \(0,\)"),
])
def test_a_nan_or_an_infinity_is_named_before_any_difference(target, rng, where, message):
    """Not "different input gradients" (NaN != NaN): the NaN itself, where it is."""
    layer = mnn.LinearLayer(4, 3, rng=0)
    x = rng.standard_normal((3, 4))
    if where == "inputs":
        x[1, 2] = np.nan
    else:
        layer.params["b"][0] = np.inf
    layer.to(xp=target.backend.name, device=target.device_name)
    with pytest.raises(mnn.errors.ArgumentError, match=rf"^gradcheck: {message}; finite "
                                                       r"differences need finite numbers$"):
        gradcheck(layer, target.asarray(x))


def test_nan_targets_are_named(rng):
    inputs, targets = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    targets[0, 0] = np.nan
    with pytest.raises(mnn.errors.ArgumentError, match=r"gradcheck: targets of MSELossLayer is "
                                                       r"not finite at 1 of its 6 entries"):
        gradcheck(mnn.MSELossLayer(), inputs, targets)
