"""Every MLP benchmark contender does the whole step: its weights equal the floor's after it.

A contender that skipped work (no bias update, a missing 1/B, gradients that pile
up across steps) would look fast; this catches it. float64, so that 1e-6 is loose
for honest arithmetic and tight for any missing piece.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import import_benchmark

mlp = import_benchmark("mlp")
TRAINERS = [name for name, (*_, trains) in mlp.TRAINERS.items() if trains and name != "floor"]


def _value(loss) -> float:
    """A loss of any library as a Python float (a torch loss is detached first)."""
    return float(loss.detach() if hasattr(loss, "detach") else loss)


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("name", TRAINERS)
def test_weights_after_a_step_match_the_floor(name, batch):
    reason = mlp.missing(name)
    if reason:
        pytest.skip(f"contender {name}: {reason}")
    problem = mlp.make_problem(batch, seed=1)
    floor, other = mlp.build("floor", problem, "float64"), mlp.build(name, problem, "float64")
    for step in (1, 2):  # the second step catches gradients that are not reset between steps
        loss_floor, loss_other = floor(), other()
        np.testing.assert_allclose(_value(loss_other), _value(loss_floor), rtol=1e-9)
        expected, got = floor.weights(), other.weights()
        assert expected.keys() == got.keys()
        for key, start in problem.weights.items():
            moved = expected[key] - start
            assert np.abs(moved).max() > 1e-6, f"the floor did not move {key}"
            np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-6,
                                       err_msg=f"{name}, step {step}, {key}")
            # stronger: the update itself, to 1e-6 of its size
            np.testing.assert_allclose(got[key] - start, moved, rtol=0,
                                       atol=1e-6 * np.abs(moved).max(),
                                       err_msg=f"{name}, step {step}, update of {key}")


def test_the_floor_is_one_sgd_step_of_the_mean_cross_entropy():
    """The floor itself, against the gradient written out in plain float64 NumPy."""
    problem = mlp.make_problem(8, seed=2)
    w = problem.weights
    z1 = problem.x @ w["0.w"].T + w["0.b"]
    h = np.maximum(z1, 0)
    z2 = h @ w["2.w"].T + w["2.b"]
    p = np.exp(z2 - z2.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(10)[problem.labels]
    loss = -np.mean(np.log(p[np.arange(8), problem.labels]))
    d2 = (p - onehot) / 8
    d1 = (d2 @ w["2.w"]) * (z1 > 0)
    grads = {"2.w": d2.T @ h, "2.b": d2.sum(0), "0.w": d1.T @ problem.x, "0.b": d1.sum(0)}
    floor = mlp.build("floor", problem, "float64")
    np.testing.assert_allclose(float(floor()), loss, rtol=1e-12)
    got = floor.weights()
    for key, grad in grads.items():
        np.testing.assert_allclose(got[key], w[key] - mlp.LR * grad, rtol=0, atol=1e-12)


def test_gemms_do_the_floors_matrix_products():
    """The GEMM-only contender multiplies the same shapes as the floor (it trains nothing)."""
    problem = mlp.make_problem(4)
    gemms = mlp.build("gemms", problem, "float64")
    gemms()
    np.testing.assert_allclose(gemms.h, problem.x @ problem.weights["0.w"].T, rtol=1e-12)
