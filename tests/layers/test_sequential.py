"""SequentialLayers and build: gradients, forward against NumPy, checkpoints, errors, torch."""

import array_api_compat
import numpy as np
import pytest

import mnn
from mnn.serialization import build
from mnn.testing import gradcheck


class HalfSumOfSquares(mnn.BaseLayer):
    """A minimal loss for the tests, ``sum((x - y)**2) / 2``, so a chain can end in a loss."""

    is_loss = True

    def compute_forward(self, xp, inputs, feedbacks):
        self.save_for_backward(inputs - feedbacks)
        return xp.sum((inputs - feedbacks) ** 2) / 2

    def compute_backward(self, xp, difference):
        return difference


def mlp(seed=0):
    return mnn.SequentialLayers([mnn.LinearLayer(4, 5, rng=seed), mnn.ReluLayer(),
                                 mnn.LinearLayer(5, 3, rng=seed + 1)])


def numpy_mlp(net, x):
    w0, b0, w2, b2 = (np.asarray(net.state_dict()[k], dtype=np.float64)
                      for k in ("0.w", "0.b", "2.w", "2.b"))
    return np.maximum(x @ w0.T + b0, 0.0) @ w2.T + b2


@pytest.mark.parametrize("batch", [6, 1])
def test_gradcheck(target, rng, batch):
    net = mlp()
    for layer in net:  # nonzero biases, so a wrong bias gradient shows
        if "b" in layer.params:
            layer.params["b"] = rng.standard_normal(layer.params["b"].shape)
    assert gradcheck(net, target.asarray(rng.standard_normal((batch, 4))))


@pytest.mark.parametrize("batch", [6, 1])
def test_gradcheck_ending_in_a_loss(target, rng, batch):
    net = mnn.SequentialLayers([*mlp(), HalfSumOfSquares()])
    x, y = (target.asarray(rng.standard_normal(s)) for s in [(batch, 4), (batch, 3)])
    assert net.is_loss
    assert gradcheck(net, x, y)


@pytest.mark.parametrize("batch", [6, 1])
def test_gradcheck_ending_in_cross_entropy(target, rng, batch):
    if not hasattr(mnn, "CrossEntropyLossLayer"):
        pytest.skip("CrossEntropyLossLayer is not in mnn yet (another part of issue #2)")
    net = mnn.SequentialLayers([*mlp(), mnn.CrossEntropyLossLayer()])
    labels = target.asarray(rng.integers(0, 3, size=batch))
    assert gradcheck(net, target.asarray(rng.standard_normal((batch, 4))), labels)


def test_forward_matches_numpy_reference(target, rng):
    net = mlp()
    net[2].params["b"] = rng.standard_normal(3)
    x = rng.standard_normal((7, 4))
    expected = numpy_mlp(net, x)  # from the host weights, before the first forward moves them
    np.testing.assert_allclose(target.to_host(net(target.asarray(x))), expected,
                               rtol=1e-12, atol=1e-12)


def test_float32_agrees_with_float64(target, rng):
    x, g = rng.standard_normal((8, 4)), rng.standard_normal((8, 3))
    results = {}
    for dtype in ("float32", "float64"):
        net = mlp()
        out = net(target.asarray(x, dtype))
        grad_in = net.backward(target.asarray(g, dtype))
        results[dtype] = [target.to_host(a).astype(np.float64)
                          for a in (out, grad_in, *(net[0].grads[k] for k in "wb"))]
    for low, high in zip(results["float32"], results["float64"], strict=True):
        np.testing.assert_allclose(low, high, rtol=1e-5, atol=1e-5)


def test_parameter_names_and_container_protocol():
    net = mlp()
    assert list(net.state_dict()) == ["0.w", "0.b", "2.w", "2.b"]
    assert len(net) == 3 and isinstance(net[1], mnn.ReluLayer) and net[-1] is net.layers[2]
    assert [type(layer) for layer in net] == [mnn.LinearLayer, mnn.ReluLayer, mnn.LinearLayer]
    head = net[:2]
    assert isinstance(head, mnn.SequentialLayers) and len(head) == 2 and head[0] is net[0]


def test_config_lists_the_children():
    config = mlp().config()
    assert config == {"type": "SequentialLayers", "args": {"layers": [
        mnn.LinearLayer(4, 5).config(), {"type": "ReluLayer", "args": {}},
        mnn.LinearLayer(5, 3).config()]}}


def test_step_and_zero_grads(target, rng):
    net = mlp()
    net(target.asarray(rng.standard_normal((4, 4))))
    net.backward(target.asarray(rng.standard_normal((4, 3))))
    before = {k: target.to_host(v).copy() for k, v in net.state_dict().items()}
    grads = {f"{i}.{k}": target.to_host(g).copy() for i, layer in enumerate(net)
             for k, g in layer.grads.items()}
    assert all(np.any(g != 0) for g in grads.values())
    net.step(lr=0.5)
    for name, value in net.state_dict().items():
        np.testing.assert_allclose(target.to_host(value), before[name] - 0.5 * grads[name],
                                   rtol=1e-12, atol=1e-12)
    net.zero_grads()  # as torch 2.x: None, and the next backward stores
    assert all(g is None for layer in net for g in layer.grads.values())
    net.zero_grads(set_to_none=False)
    assert all(not np.any(target.to_host(g)) for layer in net for g in layer.grads.values())


def test_zero_grads_set_to_none(target, rng):
    """As torch's zero_grad(): None instead of zeros; backward then stores, step skips None."""
    net = mlp()
    x, g = target.asarray(rng.standard_normal((4, 4))), target.asarray(rng.standard_normal((4, 3)))
    net(x)
    net.backward(g)
    once = {name: target.to_host(layer.grads[key]).copy() for name, layer, key in net.parameters()}
    net.zero_grads(set_to_none=True)
    assert all(layer.grads[key] is None for _, layer, key in net.parameters())
    before = {k: target.to_host(v).copy() for k, v in net.state_dict().items()}
    net.step(lr=0.5)  # no gradients: nothing moves
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(target.to_host(value), before[name])
    for _ in range(2):  # the first backward stores, the second adds
        net(x)
        net.backward(g)
    for name, layer, key in net.parameters():
        np.testing.assert_allclose(target.to_host(layer.grads[key]), 2 * once[name], rtol=1e-12)
    net.zero_grads(set_to_none=True)
    net.to(dtype="float32")  # moving a net whose gradients are None keeps them None
    assert all(layer.grads[key] is None for _, layer, key in net.parameters())
    net.zero_grads(set_to_none=False)  # zero arrays back, where the parameters live
    for _, layer, key in net.parameters():
        grad = layer.grads[key]
        assert grad.shape == layer.params[key].shape and grad.dtype == layer.params[key].dtype
        assert not np.any(target.to_host(grad))


def test_build_and_load_weights_round_trip(target, rng):
    net = mlp(seed=3)
    x = target.asarray(rng.standard_normal((5, 4)))
    net(x)
    net.backward(target.asarray(rng.standard_normal((5, 3))))
    net.step(lr=0.1)  # trained weights, living on the target
    fresh = build(net.config())
    assert isinstance(fresh, mnn.SequentialLayers) and fresh.config() == net.config()
    assert fresh.load_weights(net.state_dict(), net.config()) is fresh
    for name, value in fresh.state_dict().items():  # still on the host until its first forward
        assert isinstance(value, np.ndarray)
        np.testing.assert_array_equal(value, target.to_host(net.state_dict()[name]))
    np.testing.assert_array_equal(target.to_host(fresh(x)), target.to_host(net(x)))


def test_build_nested_containers():
    inner = mnn.SequentialLayers([mnn.LinearLayer(3, 3, bias=False), mnn.ReluLayer()])
    net = mnn.SequentialLayers([inner, mnn.LinearLayer(3, 2, init="glorot")])
    rebuilt = build(net.config())
    assert rebuilt.config() == net.config()
    assert isinstance(rebuilt[0], mnn.SequentialLayers)
    assert list(rebuilt.state_dict()) == ["0.0.w", "1.w", "1.b"]


def test_load_weights_does_not_alias_the_checkpoint():
    net, weights = mlp(), {k: np.array(v) for k, v in mlp(seed=5).state_dict().items()}
    net.load_weights(weights)
    weights["0.w"][...] = 0.0
    assert np.any(net.state_dict()["0.w"] != 0)


def test_numpy_state_dict_keeps_the_models_placement(rng):
    xs = pytest.importorskip("array_api_strict", reason="placement is checked on fake devices")
    net = mlp().to(xp="array_api_strict", device="device1", dtype="float32")
    weights = mlp(seed=9).state_dict()  # NumPy float64
    net.load_weights(weights)
    for name, value in net.state_dict().items():
        assert array_api_compat.array_namespace(value) is xs
        assert value.device == xs.Device("device1") and value.dtype == xs.float32
        host = mnn.backends.get("array_api_strict").to_host(value)
        np.testing.assert_allclose(host, weights[name], rtol=1e-7)
    x = xs.asarray(rng.standard_normal((2, 4)), dtype=xs.float32, device=xs.Device("device1"))
    out = net(x)
    assert out.device == xs.Device("device1")


def test_mismatched_state_dict_lists_every_problem():
    weights = dict(mlp().state_dict())
    del weights["0.b"], weights["2.b"]
    weights["0.w"] = np.zeros((5, 5))
    weights["3.w"] = np.zeros((2, 2))
    with pytest.raises(mnn.CheckpointError) as caught:
        mlp().load_weights(weights)
    message = str(caught.value)
    assert "SequentialLayers: the state dict does not fit the model (4 problems)" in message
    for line in ["missing key '0.b'", "missing key '2.b'", "unexpected key '3.w'",
                 "shape mismatch for '0.w': the checkpoint has (5, 5), the model (5, 4)"]:
        assert line in message


def test_nothing_is_loaded_when_something_does_not_fit():
    net = mlp()
    before = {k: v.copy() for k, v in net.state_dict().items()}
    weights = dict(mlp(seed=7).state_dict())
    weights["2.b"] = np.zeros(4)
    with pytest.raises(mnn.CheckpointError, match=r"shape mismatch for '2\.b'"):
        net.load_weights(weights)
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_not_an_array_in_the_state_dict_is_a_clear_error():
    weights = dict(mlp().state_dict())
    weights["0.b"] = [0.0] * 5
    with pytest.raises(mnn.CheckpointError, match=r"'0\.b' is not an array: got .*list"):
        mlp().load_weights(weights)


def test_state_dict_that_is_not_a_mapping_is_a_clear_error():
    with pytest.raises(mnn.CheckpointError, match=r"expected a state dict .*type list"):
        mlp().load_weights(list(mlp().state_dict().values()))


def test_mismatched_config_lists_every_difference():
    other = mnn.SequentialLayers([mnn.LinearLayer(4, 6), mnn.ReluLayer(),
                                  mnn.LinearLayer(6, 3, bias=False)])
    with pytest.raises(mnn.CheckpointError) as caught:
        mlp().load_weights(mlp().state_dict(), other.config())
    message = str(caught.value)
    assert "SequentialLayers: the checkpoint's config does not match the model" in message
    for where in ["[0]['args']['out_features']: the checkpoint has 6, the model 5",
                  "[2]['args']['in_features']: the checkpoint has 6, the model 5",
                  "[2]['args']['bias']: the checkpoint has False, the model True"]:
        assert where in message


def test_build_unknown_type_is_a_clear_error():
    with pytest.raises(mnn.CheckpointError, match=r"build: unknown layer type 'os\.system'.*"
                                                  r"known layer types: .*LinearLayer"):
        build({"type": "os.system", "args": {}})
    with pytest.raises(mnn.CheckpointError, match=r"unknown layer type 'BaseLayer'"):
        build({"type": "BaseLayer", "args": {}})


def test_build_bad_config_is_a_clear_error():
    with pytest.raises(mnn.CheckpointError, match=r"build: expected a layer config"):
        build(["LinearLayer"])
    with pytest.raises(mnn.CheckpointError, match=r"build: cannot construct LinearLayer from"):
        build({"type": "LinearLayer", "args": {"in_features": 3, "colour": "red"}})

def test_backward_argument_follows_the_last_layer(target, rng):
    x, y = target.asarray(rng.standard_normal((2, 4))), target.asarray(rng.standard_normal((2, 3)))
    net = mlp()
    net(x)
    with pytest.raises(TypeError, match=r"SequentialLayers: its last layer is not a loss, so "
                                        r"backward\(gradients\) needs"):
        net.backward()
    with_loss = mnn.SequentialLayers([*mlp(), HalfSumOfSquares()])
    with_loss(x, y)
    with pytest.raises(TypeError, match=r"SequentialLayers is a loss \(or ends in one\): "
                                        r"backpropagation starts there, so backward\(\) takes no"):
        with_loss.backward(y)


def test_non_layer_is_a_clear_error():
    with pytest.raises(TypeError, match=r"SequentialLayers: expected layers .*type function at "
                                        r"position 1"):
        mnn.SequentialLayers([mnn.ReluLayer(), lambda x: x])


def _torch_mlp(torch, net):
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    model.double()
    with torch.no_grad():
        for name, value in net.state_dict().items():
            index, key = name.split(".")
            getattr(model[int(index)], {"w": "weight", "b": "bias"}[key]).copy_(torch.tensor(value))
    return model


def test_matches_torch_autograd(rng):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    net = mlp()
    net[0].params["b"] = rng.standard_normal(5)
    x, g = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    out = net(x)
    grad_in = net.backward(g)
    model = _torch_mlp(torch, net)
    tx = torch.tensor(x, requires_grad=True)
    tout = model(tx)
    tout.backward(torch.tensor(g))
    pairs = [(out, tout), (grad_in, tx.grad)]
    pairs += [(net[i].grads[k], getattr(model[i], name).grad)
              for i in (0, 2) for k, name in (("w", "weight"), ("b", "bias"))]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_matches_torch_autograd_with_cross_entropy(rng):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    net = mnn.SequentialLayers([*mlp(), mnn.CrossEntropyLossLayer()])
    x, labels = rng.standard_normal((6, 4)), rng.integers(0, 3, size=6)
    loss = net(x, labels)
    every = net.backward(all_gradients=True)  # the data's gradient too, as tx.requires_grad
    grad_in = every[0]
    model = _torch_mlp(torch, net)
    tx = torch.tensor(x, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(model(tx), torch.tensor(labels))
    tloss.backward()
    pairs = [(loss, tloss), (grad_in, tx.grad)]
    pairs += [(net[i].grads[k], getattr(model[i], name).grad)
              for i in (0, 2) for k, name in (("w", "weight"), ("b", "bias"))]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_a_network_ending_in_a_loss_skips_the_data_gradient_unless_asked(target, rng):
    """As torch computes x.grad only for x.requires_grad: backward() returns None, the first
    layer skips its input product, and the parameter gradients are the same either way."""
    net = mnn.SequentialLayers([*mlp(), mnn.CrossEntropyLossLayer()])
    x, labels = target.asarray(rng.standard_normal((6, 4))), target.asarray(rng.integers(0, 3, 6))
    net(x, labels)
    assert net.input_grad is False and net.backward() is None
    skipped = {k: target.to_host(v).copy() for k, v in net.state_dict().items()}
    grads = {k: target.to_host(net[0].grads[k]).copy() for k in ("w", "b")}
    net.zero_grads()
    net(x, labels)
    every = net.backward(all_gradients=True)
    assert [tuple(g.shape) for g in every] == [(6, 4), (6, 5), (6, 5), (6, 3)]
    assert net[0].input_grad is True  # the chain's choice lasts one backward only
    for k in ("w", "b"):
        np.testing.assert_allclose(target.to_host(net[0].grads[k]), grads[k], rtol=1e-12)
    net.input_grad = True
    net.zero_grads()
    net(x, labels)
    np.testing.assert_allclose(target.to_host(net.backward()), target.to_host(every[0]),
                               rtol=1e-12)
    assert skipped.keys() == net.state_dict().keys()
    hidden = mnn.SequentialLayers(mlp())  # no loss: a part of a larger network
    assert hidden.input_grad is True


def test_predict_runs_the_network_without_its_loss(target, rng):
    """Inference on a trained classifier: the logits, no labels needed. net[:-1] is the same."""
    net = mnn.SequentialLayers([*mlp(), mnn.CrossEntropyLossLayer()])
    host = rng.standard_normal((5, 4))
    expected = numpy_mlp(net, host)  # from the host weights, before the first forward moves them
    x = target.asarray(host)
    logits = net.predict(x)
    assert tuple(logits.shape) == (5, 3)
    np.testing.assert_allclose(target.to_host(logits), expected, rtol=1e-12)
    np.testing.assert_allclose(target.to_host(logits), target.to_host(net[:-1](x)), rtol=1e-15)
    assert mlp().predict(x).shape == mlp()(x).shape  # no loss at the end: the whole network


def test_a_trained_network_pickles_and_deep_copies(target, rng):
    """As torch modules do; a layer once kept its namespace module, which does not pickle."""
    import copy
    import pickle

    net = mnn.SequentialLayers([*mlp(), mnn.CrossEntropyLossLayer()])
    x = target.asarray(rng.standard_normal((5, 4)))
    labels = target.asarray(np.array([0, 1, 2, 1, 0]))
    net(x, labels)
    net.backward()
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        np.testing.assert_array_equal(target.to_host(clone.predict(x)),
                                      target.to_host(net.predict(x)))
        with pytest.raises(mnn.BackwardBeforeForwardError):  # nothing of the forward was copied
            clone.backward()
        clone(x, labels)
        clone.backward()
