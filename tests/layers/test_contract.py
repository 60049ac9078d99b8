"""The layer contract (docs/design.md), checked alike for every layer in mnn.testing.CASES.

Each layer's own file tests its math against references; this file tests what the
template in ``BaseLayer`` promises of every layer, on every target: gradients
that agree with finite differences, the checks in forward and backward, one
backward per forward, gradients that add up, and a config that rebuilds it.
"""

import numpy as np
import pytest

import mnn
from mnn.serialization import build
from mnn.testing import cases, gradcheck, make_case, place

NAMES = sorted(cases())


def placed_case(name, target):
    return place(make_case(name), target.placement)


def output_gradient(target, outputs, rng):
    return target.asarray(rng.standard_normal(tuple(outputs.shape)), mnn.backends.dtype_name(
        outputs.dtype))


def backward(layer, target, outputs, rng):
    return layer.backward() if layer.is_loss else layer.backward(
        output_gradient(target, outputs, rng))


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(target, name):
    assert gradcheck(*placed_case(name, target))


@pytest.mark.parametrize("name", NAMES)
def test_backward_before_forward_is_a_clear_error(target, name):
    layer, _, _ = placed_case(name, target)
    with pytest.raises(mnn.BackwardBeforeForwardError, match=rf"{name}: backward\(\) was called "
                                                            r"before forward\(\)"):
        layer.backward() if layer.is_loss else layer.backward(target.asarray(np.ones(2)))


@pytest.mark.parametrize("name", NAMES)
def test_a_second_backward_needs_a_second_forward(target, name, rng):
    """As torch: one backward per forward, unless retain_graph=True; gradients add up."""
    layer, inputs, feedbacks = placed_case(name, target)
    outputs = layer(inputs, feedbacks)
    backward(layer, target, outputs, rng)
    with pytest.raises(mnn.BackwardTwiceError, match=rf"{name}: backward\(\) was called twice"):
        backward(layer, target, outputs, rng)
    layer.zero_grads()
    outputs = layer(inputs, feedbacks)
    gradients = None if layer.is_loss else output_gradient(target, outputs, rng)
    layer.backward(gradients, retain_graph=True)
    once = {key: target.to_host(value).copy() for key, value in _grads(layer).items()}
    layer.backward(gradients)  # retained: a second backward is allowed, and adds
    for key, value in _grads(layer).items():
        np.testing.assert_allclose(target.to_host(value), 2 * once[key], rtol=1e-12)


@pytest.mark.parametrize("name", [n for n in NAMES if not make_case(n)[0].is_loss])
@pytest.mark.parametrize("wrong", ["shape", "dtype", "library"])
def test_gradients_unlike_the_output_are_a_clear_error(target, name, wrong, rng):
    """Every layer refuses in backward what ReluLayer once took silently."""
    layer, inputs, feedbacks = placed_case(name, target)
    outputs = layer(inputs, feedbacks)
    host = rng.standard_normal(tuple(outputs.shape))
    if wrong == "shape":
        gradients, error = target.asarray(np.stack([host, host])), mnn.ShapeError
    elif wrong == "dtype":
        gradients, error = target.asarray(host, "float32"), mnn.PlacementError
    else:
        if target.backend.name == "numpy":
            pytest.skip("the numpy target: a gradient from another library is tested elsewhere")
        gradients, error = host, mnn.PlacementError
    with pytest.raises(error, match=rf"{name}: expected gradients like the output of the last "
                                    r"forward"):
        layer.backward(gradients)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "MatrixProduct"])
def test_inputs_of_the_wrong_kind_are_a_clear_error(target, name):
    """Integers where a layer computes on floats, and floats where it looks up token ids."""
    layer, inputs, feedbacks = placed_case(name, target)
    if target.xp.isdtype(inputs.dtype, "integral"):
        wrong, expected = target.asarray(np.ones(tuple(inputs.shape))), "integral inputs"
    else:
        wrong = target.asarray(np.ones(tuple(inputs.shape), dtype=np.int64))
        expected = "floating-point inputs"
    with pytest.raises(mnn.DTypeError, match=rf"expected {expected}"):  # a container: its part
        layer(wrong, feedbacks)


@pytest.mark.parametrize("name", NAMES)
def test_config_rebuilds_the_same_layer(name):
    layer, _, _ = make_case(name)
    rebuilt = build(layer.config())
    assert type(rebuilt) is type(layer) and rebuilt.config() == layer.config()
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in layer.state_dict().items()}


def test_linear_refuses_a_gradient_that_matches_only_the_last_axis(target, rng):
    """(2, 2, 1) gradients for a (2, 1) output once gave a weight gradient 4x too large."""
    layer = mnn.LinearLayer(3, 1, rng=0)
    layer(target.asarray(rng.standard_normal((2, 3))))
    with pytest.raises(mnn.ShapeError, match=r"LinearLayer: expected gradients like the output "
                                             r"of the last forward \(.*shape \(2, 1\)"):
        layer.backward(target.asarray(np.ones((2, 2, 1))))


def _grads(layer):
    return {name: owner.grads[key] for name, owner, key in layer.parameters()}
