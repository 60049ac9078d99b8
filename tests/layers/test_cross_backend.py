"""Cross-backend equivalence: the same network from the same seed, trained 20 steps on the
same data on every target, agrees with a plain NumPy float64 reference.

float64: losses and weights to 1e-10 (relative and absolute), gradients of the first step too.
float32: to FLOAT32_TOL = 1e-5 (relative and absolute). Each float32 operation rounds with a
relative error of about 6e-8; on numpy, torch, jax and array-api-strict (CPU) the 20 steps
of this 5-8-3 network ended within 1e-7 of the reference in the losses and 3.1e-7 in the
weights. The margin leaves room for other summation orders (GPU BLAS, TF32 off).
"""

import array_api_compat
import numpy as np
import pytest

import mnn
from mnn.base import dtype_name

STEPS, LR = 20, 0.1
BATCH, N_IN, N_HIDDEN, N_CLASSES = 16, 5, 8, 3
FLOAT64_TOL = 1e-10
FLOAT32_TOL = 1e-5

def _network():
    return mnn.SequentialLayers([
        mnn.LinearLayer(N_IN, N_HIDDEN, rng=0), mnn.ReluLayer(),
        mnn.LinearLayer(N_HIDDEN, N_CLASSES, rng=1), mnn.CrossEntropyLossLayer()])


def _data():
    rng = np.random.default_rng(42)
    return rng.standard_normal((BATCH, N_IN)), rng.integers(0, N_CLASSES, size=BATCH)


def _numpy_reference(params: dict, x: np.ndarray, labels: np.ndarray):
    """The same training written out in plain NumPy float64: losses, first grads, final params."""
    p = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    one_hot = np.eye(N_CLASSES)[labels]
    losses, first_grads = [], None
    for _ in range(STEPS):
        h = x @ p["0.w"].T + p["0.b"]
        a = np.maximum(h, 0.0)
        z = a @ p["2.w"].T + p["2.b"]
        z = z - z.max(axis=1, keepdims=True)
        log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        losses.append(-np.mean(log_softmax[np.arange(BATCH), labels]))
        gz = (np.exp(log_softmax) - one_hot) / BATCH
        ga = gz @ p["2.w"]
        gh = ga * (h > 0)
        grads = {"2.w": gz.T @ a, "2.b": gz.sum(axis=0), "0.w": gh.T @ x, "0.b": gh.sum(axis=0)}
        first_grads = first_grads or grads
        p = {k: p[k] - LR * grads[k] for k in p}
    return np.array(losses), first_grads, p


def _train(net, x, labels, target):
    """20 steps; returns the losses and the first step's gradients (checked, then on the host)."""
    losses, first_grads = [], None
    for _ in range(STEPS):
        net.zero_grads()
        losses.append(net(x, labels))
        net.backward()
        if first_grads is None:
            first_grads = {}
            for name, layer, key in net.parameters():
                _assert_placed(layer.grads[key], target, x.dtype)
                first_grads[name] = np.array(target.to_host(layer.grads[key]))
        net.step(LR)
    return losses, first_grads


def _assert_placed(array, target, dtype):
    """``array`` stays in the inputs' library, device and dtype."""
    assert target.backend.owns(array), f"{type(array)} is not a {target.backend.name} array"
    assert array.dtype == dtype
    assert array_api_compat.device(array) == target.device


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_training_agrees_with_numpy_float64(target, dtype):
    host_x, host_labels = _data()
    net = _network()
    initial = {name: np.array(value) for name, value in net.state_dict().items()}
    ref_losses, ref_grads, ref_params = _numpy_reference(initial, host_x, host_labels)

    x = target.asarray(host_x, dtype)
    losses, grads = _train(net, x, target.asarray(host_labels), target)

    for array in [*losses, *net.state_dict().values()]:
        _assert_placed(array, target, x.dtype)
    assert dtype_name(x.dtype) == dtype
    assert all(tuple(loss.shape) == () for loss in losses)

    tol = FLOAT64_TOL if dtype == "float64" else FLOAT32_TOL
    np.testing.assert_allclose([float(target.to_host(v)) for v in losses], ref_losses,
                               rtol=tol, atol=tol, err_msg="losses")
    for name, value in grads.items():
        np.testing.assert_allclose(value, ref_grads[name], rtol=tol, atol=tol,
                                   err_msg=f"first-step gradient {name}")
    for name, value in net.state_dict().items():
        np.testing.assert_allclose(target.to_host(value), ref_params[name], rtol=tol, atol=tol,
                                   err_msg=f"weights {name} after {STEPS} steps")
    assert ref_losses[-1] < 0.8 * ref_losses[0]  # the run did learn: the comparison means something


def test_same_seed_same_network_everywhere(target):
    host = {name: np.array(v) for name, v in _network().state_dict().items()}
    net = _network()
    net(target.asarray(_data()[0]), target.asarray(_data()[1]))
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(target.to_host(value), host[name])
