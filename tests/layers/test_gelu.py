"""GELU, exact (erf) and tanh form: gradients, references, extreme inputs, errors, torch."""

import math
import warnings

import numpy as np
import pytest
from helpers import assert_float32_matches_float64, assert_matches_torch_autograd

import mnn
from mnn.testing import gradcheck

FORMS = ["none", "tanh"]


def reference(x, approximate):
    """GELU in plain float64 NumPy: x Phi(x) with math.erf, or GPT-2's tanh form."""
    x = np.asarray(x, dtype=np.float64)
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    return x * 0.5 * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))


def has_erf(target) -> bool:
    try:
        target.backend.erf(target.asarray(np.zeros(1)))
    except NotImplementedError:
        return False
    return True


def gelu_on(target, approximate):
    """``GELU(approximate)``, or a skip saying why the exact form cannot run on ``target``."""
    if approximate == "none" and not has_erf(target):
        pytest.skip(f"{target.backend.name} has no erf (the exact form's error is tested below)")
    return mnn.GELU(approximate)


@pytest.mark.parametrize("approximate", FORMS)
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (7,)], ids=["batch", "leading-dims", "1-d"])
def test_gradcheck(target, rng, approximate, shape):
    layer = gelu_on(target, approximate)
    assert gradcheck(layer, target.asarray(2 * rng.standard_normal(shape)))


@pytest.mark.parametrize("approximate", FORMS)
def test_forward_and_backward_match_numpy_reference(target, rng, approximate):
    layer = gelu_on(target, approximate)
    x, g = 3 * rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    out = target.to_host(layer(target.asarray(x)))
    grad = target.to_host(layer.backward(target.asarray(g)))
    np.testing.assert_allclose(out, reference(x, approximate), rtol=1e-13, atol=1e-15)
    h = 1e-6  # the derivative by central differences of the float64 reference
    slope = (reference(x + h, approximate) - reference(x - h, approximate)) / (2 * h)
    np.testing.assert_allclose(grad, g * slope, rtol=1e-7, atol=1e-8)


def test_the_two_forms_agree_to_the_approximation(target, rng):
    if not has_erf(target):
        pytest.skip(f"{target.backend.name} has no erf")
    x = target.asarray(np.linspace(-6, 6, 101))
    exact, approximate = (target.to_host(mnn.GELU(form)(x)) for form in FORMS)
    assert np.abs(exact - approximate).max() < 5e-4  # the tanh form is good to ~1e-3


@pytest.mark.parametrize("approximate", FORMS)
def test_extreme_inputs_stay_finite_without_warnings(target, approximate):
    layer = gelu_on(target, approximate)
    x = np.array([-1e4, -100.0, -10.0, 0.0, 10.0, 100.0, 1e4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "overflow encountered in exp"
        out = target.to_host(layer(target.asarray(x)))
        grad = target.to_host(layer.backward(target.asarray(np.ones(7))))
    np.testing.assert_allclose(out, [0, 0, reference(-10.0, approximate), 0, 10, 100, 1e4],
                               rtol=1e-12, atol=1e-30)
    np.testing.assert_allclose(grad, [0, 0, grad[2], 0.5, 1, 1, 1], rtol=1e-12, atol=1e-20)


def test_exact_form_without_erf_is_a_clear_error(target, rng):
    if has_erf(target):
        pytest.skip(f"{target.backend.name} has erf")
    with pytest.raises(mnn.MissingFunctionError,
                       match=r"GELU: approximate='none' needs the error function erf, and "
                             rf"{target.backend.name} has no erf function.*"
                             r"GELU\(approximate='tanh'\)"):
        mnn.GELU()(target.asarray(rng.standard_normal(3)))


def test_bad_approximate_is_a_clear_error():
    with pytest.raises(ValueError, match=r"GELU: expected approximate='none' or "
                                         r"approximate='tanh', got 'erf'"):
        mnn.GELU("erf")


def test_config_keeps_the_form():
    assert mnn.GELU().config() == {"type": "GELU", "args": {"approximate": "none"}}
    assert mnn.GELU("tanh").config() == {"type": "GELU", "args": {"approximate": "tanh"}}


@pytest.mark.parametrize("approximate", FORMS)
def test_float32_agrees_with_float64(target, rng, approximate):
    gelu_on(target, approximate)
    x, g = 2 * rng.standard_normal((8, 16)), rng.standard_normal((8, 16))
    assert_float32_matches_float64(target, lambda: mnn.GELU(approximate), (x,), g,
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("approximate", FORMS)
def test_matches_torch_autograd(rng, approximate):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    if approximate == "none":
        pytest.importorskip("scipy", reason="NumPy's erf comes from scipy")
    x, g = 3 * rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    assert_matches_torch_autograd(
        mnn.GELU(approximate), lambda t: torch.nn.functional.gelu(t, approximate=approximate),
        x, g, rtol=1e-13, atol=1e-15)


def test_tanh_form_in_float16_matches_torch_far_from_zero(target):
    """float16's sigmoid of 2u reaches 0 below x = -5 and 1 above x = 3: the gradient must
    follow, 0 and 1 as torch gives, and stay finite where x^2 and x^3 overflow."""
    torch = pytest.importorskip("torch", reason="the torch comparison needs torch")
    if not hasattr(target.xp, "float16"):
        pytest.skip(f"{target.backend.name} has no float16")
    x = np.array([-6e4, -300.0, -40.0, -25.56, -20.2, -5.676, -4.0, -3.0, 0.5, 3.0, 20.0,
                  300.0, 6e4], dtype=np.float16)
    tx = torch.tensor(x, requires_grad=True)
    expected = torch.nn.functional.gelu(tx, approximate="tanh")
    expected.backward(torch.ones_like(tx))
    layer = mnn.GELU("tanh")
    with np.errstate(over="ignore"):  # 2u = 2c (1 + a x^2) x overflows to +-inf: s is 0 or 1
        out = layer(target.asarray(x, "float16"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow in the backward pass
        grad = layer.backward(target.asarray(np.ones_like(x), "float16"))
    np.testing.assert_allclose(target.to_host(out).astype(np.float64),
                               expected.detach().numpy(), rtol=5e-3, atol=1e-4)
    np.testing.assert_allclose(target.to_host(grad).astype(np.float64), tx.grad.numpy(),
                               rtol=5e-3, atol=1e-4)
