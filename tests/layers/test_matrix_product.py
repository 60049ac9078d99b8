"""MatrixProduct: gradients, forward against NumPy, float32 vs float64, errors, torch.autograd."""

import re

import numpy as np
import pytest
from helpers import assert_float32_matches_float64

import mnn
from mnn.errors import describe
from mnn.testing import gradcheck

SHAPES = {"matrices": ((3, 4), (4, 2)), "batch1": ((1, 4), (4, 1)),
          "stacks": ((2, 3, 4), (2, 4, 5)), "two-leading-dims": ((2, 1, 2, 3), (2, 1, 3, 2))}


@pytest.mark.parametrize("shapes", SHAPES.values(), ids=SHAPES.keys())
def test_gradcheck(target, rng, shapes):
    q, p = (target.asarray(rng.standard_normal(s)) for s in shapes)
    assert gradcheck(mnn.MatrixProduct(), (q, p))


def test_forward_matches_numpy_reference(target, rng):
    q, p = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 5))
    expected = np.zeros((2, 3, 5))
    for b in range(2):  # Eq. (1), one sum per entry
        for i in range(3):
            for j in range(5):
                expected[b, i, j] = sum(q[b, i, k] * p[b, k, j] for k in range(4))
    out = mnn.MatrixProduct()((target.asarray(q), target.asarray(p)))
    np.testing.assert_allclose(target.to_host(out), expected, rtol=1e-12, atol=1e-12)


def test_backward_is_the_transposed_products(target, rng):
    q, p, g = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal((3, 2))
    layer = mnn.MatrixProduct()
    layer((target.asarray(q), target.asarray(p)))
    grad_q, grad_p = layer.backward(target.asarray(g))
    np.testing.assert_allclose(target.to_host(grad_q), g @ p.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(target.to_host(grad_p), q.T @ g, rtol=1e-12, atol=1e-12)


def test_float32_agrees_with_float64(target, rng):
    q, p, g = (rng.standard_normal(s) for s in [(2, 6, 8), (2, 8, 5), (2, 6, 5)])
    assert_float32_matches_float64(target, mnn.MatrixProduct, ((q, p),), g, rtol=1e-5, atol=1e-5)


def test_not_a_pair_is_a_clear_error(target, rng):
    q = target.asarray(rng.standard_normal((3, 4)))
    with pytest.raises(mnn.DTypeError,
                       match=r"MatrixProduct: expected inputs to be a pair \(Q, P\).*array"):
        mnn.MatrixProduct()(q)
    with pytest.raises(mnn.DTypeError, match=r"MatrixProduct: expected .* tuple of 3 items"):
        mnn.MatrixProduct()((q, q, q))


def test_inner_dimension_mismatch_is_a_clear_error(target, rng):
    q, p = target.asarray(rng.standard_normal((3, 4))), target.asarray(rng.standard_normal((5, 2)))
    with pytest.raises(mnn.ShapeError,
                       match=r"MatrixProduct: inner dimensions differ: Q of shape \(3, 4\) has 4 "
                             r"columns, P of shape \(5, 2\) has 5 rows"):
        mnn.MatrixProduct()((q, p))


def test_leading_dimension_mismatch_is_a_clear_error(target, rng):
    q, p = (target.asarray(rng.standard_normal(s)) for s in [(2, 3, 4), (3, 4, 2)])
    with pytest.raises(mnn.ShapeError, match=r"MatrixProduct: expected Q and P with the same lead"):
        mnn.MatrixProduct()((q, p))


def test_vector_is_a_clear_error(target, rng):
    q, p = target.asarray(rng.standard_normal(4)), target.asarray(rng.standard_normal((4, 2)))
    with pytest.raises(mnn.ShapeError, match=r"MatrixProduct: expected Q with at least 2 dim"):
        mnn.MatrixProduct()((q, p))


def test_integer_inputs_are_a_clear_error(target, rng):
    q = target.asarray(rng.standard_normal((3, 4)))
    p = target.asarray(np.ones((4, 2), dtype=np.int64))
    with pytest.raises(mnn.DTypeError,
                       match=r"MatrixProduct: expected floating-point P, got .*int"):
        mnn.MatrixProduct()((q, p))


def test_different_dtypes_are_a_clear_error(target, rng):
    q = target.asarray(rng.standard_normal((3, 4)), "float32")
    p = target.asarray(rng.standard_normal((4, 2)), "float64")
    with pytest.raises(mnn.PlacementError,
                       match=r"MatrixProduct: .*the Q is .*float32.*the P is .*float64"):
        mnn.MatrixProduct()((q, p))


def test_different_namespaces_name_both(target, rng):
    other = "array_api_strict" if target.backend.name == "numpy" else "numpy"
    other_target = type(target)(mnn.backends.get(other), mnn.backends.get(other).devices()[0])
    q = target.asarray(rng.standard_normal((3, 4)))
    p = other_target.asarray(rng.standard_normal((4, 2)))
    both = rf"the Q is {re.escape(describe(q))} and the P is {re.escape(describe(p))}"
    with pytest.raises(mnn.PlacementError, match=rf"MatrixProduct: .*{both}"):
        mnn.MatrixProduct()((q, p))


def test_different_devices_name_both():
    xs = pytest.importorskip("array_api_strict", reason="fake devices come from array-api-strict")
    q = xs.ones((3, 4), dtype=xs.float64, device=xs.Device("device1"))
    p = xs.ones((4, 2), dtype=xs.float64, device=xs.Device("device2"))
    with pytest.raises(mnn.PlacementError,
                       match=r"MatrixProduct: .*Q is .*device1.*P is .*device2"):
        mnn.MatrixProduct()((q, p))

def test_matches_torch_autograd(rng):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    q, p, g = (rng.standard_normal(s) for s in [(2, 3, 4), (2, 4, 5), (2, 3, 5)])
    layer = mnn.MatrixProduct()
    out = layer((q, p))
    grad_q, grad_p = layer.backward(g)
    tq, tp = torch.tensor(q, requires_grad=True), torch.tensor(p, requires_grad=True)
    tout = tq @ tp
    tout.backward(torch.tensor(g))
    for ours, theirs in [(out, tout), (grad_q, tq.grad), (grad_p, tp.grad)]:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-9, atol=1e-12)
