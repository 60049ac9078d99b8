"""Swish on every backend and device present: mnn's pytest plugin (``-p mnn`` in
pyproject.toml) runs each test that takes ``target`` (or ``xp``, ``device``, ``dtype``) once
per target, e.g. ``test_gradients[numpy-cpu]``, ``test_gradients[torch-cpu]``."""

import subprocess
import sys

import numpy as np
import pytest
from mnn_example import Swish

import mnn
from mnn.testing import gradcheck, make_case, place


def test_gradients(target):
    layer, inputs, feedbacks = place(make_case("Swish"), target.placement)
    assert gradcheck(layer, inputs, feedbacks)


def test_forward_is_x_times_sigmoid_of_beta_x(xp, device, dtype, rng):
    host = rng.standard_normal((5, 3)) * 10
    outputs = Swish(3, beta=1.5)(xp.asarray(host, device=device, dtype=dtype))
    assert outputs.dtype == dtype and mnn.backends.Placement.of(outputs).device == device
    expected = host / (1 + np.exp(-1.5 * host))
    rtol = 1e-6 if mnn.backends.dtype_name(dtype) == "float32" else 1e-14
    np.testing.assert_allclose(mnn.backends.to_host(outputs), expected, rtol=rtol, atol=rtol)


def test_large_inputs_stay_finite(target):
    host = np.array([[-1000.0, -30.0, 0.0, 30.0, 1000.0]])
    layer = Swish(5)
    outputs = target.to_host(layer(target.asarray(host)))
    np.testing.assert_allclose(outputs, [[0.0, -30.0 / (1 + np.exp(30.0)), 0.0, 30.0, 1000.0]],
                               rtol=1e-12, atol=1e-300)
    gradients = target.to_host(layer.backward(target.asarray(np.ones((1, 5)))))
    assert np.isfinite(gradients).all()


def test_wrong_inputs_are_a_clear_error(target):
    with pytest.raises(mnn.ShapeError, match=r"Swish: expected inputs with at least 1 dimension "
                                             r"and size 3 along axis -1"):
        Swish(3)(target.asarray(np.ones((2, 4))))


def test_trains_in_a_network_and_round_trips_a_checkpoint(target, tmp_path):
    net = mnn.SequentialLayers([mnn.LinearLayer(4, 8, rng=0), Swish(8),
                                mnn.LinearLayer(8, 3, rng=1), mnn.CrossEntropyLossLayer()])
    inputs, labels = target.asarray(np.eye(4)[[0, 1, 2, 3, 0, 1]]), target.asarray(
        np.array([0, 1, 2, 0, 0, 1]))
    optimizer = mnn.optim.Adam(net, lr=0.05)
    first = float(target.to_host(net(inputs, labels)))
    for _ in range(10):
        optimizer.zero_grad()
        net(inputs, labels)
        net.backward()
        optimizer.step()
    assert float(target.to_host(net(inputs, labels))) < first / 4
    mnn.save(net, tmp_path / "net.safetensors")
    loaded = mnn.load(tmp_path / "net.safetensors")
    assert loaded.config() == net.config()
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], target.to_host(value))


def test_a_checkpoint_finds_swish_through_the_entry_point(tmp_path):
    """mnn.load in a fresh process that never imported mnn_example: the "mnn.layers" entry
    point in pyproject.toml names the class."""
    mnn.save(mnn.SequentialLayers([Swish(2, beta=0.5)]), tmp_path / "net.safetensors")
    code = ("import sys, mnn; net = mnn.load(sys.argv[1]); "
            "assert 'mnn_example' in sys.modules and type(net[0]).__name__ == 'Swish'; "
            "print(net[0].config()['args'])")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "net.safetensors")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'features': 2, 'beta': 0.5}"
