"""Conv2d: agreement with torch.nn in float64 from the same weights, gradients, arguments,
checkpoints, and a small LeNet-style stack against torch.nn."""

import numpy as np
import pytest
from helpers import assert_float32_matches_float64

import mnn
from mnn.testing import gradcheck

torch = pytest.importorskip("torch", reason="Conv2d is checked against torch.nn.functional")

#: (constructor arguments, input shape): odd sizes, stride and dilation > 1, padding,
#: groups > 1, oblong kernels, batch 1, no bias.
CONFIGS = {
    "plain": (dict(in_channels=1, out_channels=6, kernel_size=5), (3, 1, 12, 11)),
    "stride-padding": (dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1),
                       (2, 3, 9, 7)),
    "dilation": (dict(in_channels=2, out_channels=3, kernel_size=(3, 2), dilation=(2, 3),
                      padding=(1, 2)), (2, 2, 9, 8)),
    "groups": (dict(in_channels=6, out_channels=9, kernel_size=(2, 3), stride=(2, 3),
                    padding=(2, 1), dilation=(1, 2), groups=3), (1, 6, 7, 9)),
    "depthwise-no-bias": (dict(in_channels=4, out_channels=4, kernel_size=3, groups=4,
                               bias=False), (1, 4, 5, 5)),
    "padding-wider-than-kernel": (dict(in_channels=2, out_channels=2, kernel_size=2, stride=3,
                                       padding=3), (2, 2, 4, 5)),
}


def same_weights(rng, **arguments):
    """An mnn Conv2d and a float64 torch.nn.Conv2d with the same arguments and weights (and a
    random bias, so that its gradient is not the only thing the bias tests)."""
    layer = mnn.Conv2d(**arguments, rng=0)
    module = torch.nn.Conv2d(**arguments, dtype=torch.float64)
    assert layer.params["w"].shape == tuple(module.weight.shape)  # torch's layout
    with torch.no_grad():
        module.weight.copy_(torch.tensor(layer.params["w"]))
        if layer.bias:
            layer.params["b"] = rng.standard_normal(layer.out_channels)
            module.bias.copy_(torch.tensor(layer.params["b"]))
    return layer, module


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_matches_torch(target, rng, config):
    """Forward, input gradient and weight and bias gradients, as torch.nn computes them."""
    arguments, shape = config
    layer, module = same_weights(rng, **arguments)
    x = rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    expected = module(tx)
    g = rng.standard_normal(tuple(expected.shape))
    expected.backward(torch.tensor(g))
    out = layer(target.asarray(x))
    grad = layer.backward(target.asarray(g))
    pairs = [(out, expected), (grad, tx.grad), (layer.grads["w"], module.weight.grad)]
    if layer.bias:
        pairs.append((layer.grads["b"], module.bias.grad))
    for ours, theirs in pairs:
        np.testing.assert_allclose(target.to_host(ours), theirs.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)


@pytest.mark.parametrize("config", [CONFIGS["stride-padding"], CONFIGS["depthwise-no-bias"]],
                         ids=["stride-padding", "depthwise-no-bias"])
def test_gradcheck(target, rng, config):
    arguments, _ = config
    layer = mnn.Conv2d(**arguments, rng=0)
    shape = (1, arguments["in_channels"], 5, 4)  # batch 1, odd sizes, a small Jacobian
    assert gradcheck(layer, target.asarray(rng.standard_normal(shape)))


def test_float32_agrees_with_float64(target, rng):
    x = rng.standard_normal((2, 3, 8, 7))
    g = rng.standard_normal((2, 4, 4, 4))
    assert_float32_matches_float64(
        target, lambda: mnn.Conv2d(3, 4, 3, stride=2, padding=1, rng=0), (x,), g,
        rtol=1e-5, atol=1e-5)


def test_without_input_grad_only_the_parameters_get_gradients(rng):
    layer = mnn.Conv2d(2, 3, 3, rng=0)
    layer.input_grad = False
    out = layer(rng.standard_normal((2, 2, 5, 5)))
    assert layer.backward(np.ones(out.shape)) is None
    assert layer.grads["w"].shape == (3, 2, 3, 3) and layer.grads["b"].shape == (3,)


def test_an_empty_batch_gives_an_empty_output_and_zero_weight_gradients(target):
    layer = mnn.Conv2d(2, 3, 3, padding=1, rng=0)
    out = layer(target.asarray(np.zeros((0, 2, 4, 4))))
    assert tuple(out.shape) == (0, 3, 4, 4)
    layer.backward(out)
    np.testing.assert_array_equal(target.to_host(layer.grads["w"]), np.zeros((3, 2, 3, 3)))


def test_pairs_and_ints_are_the_same_layer():
    assert mnn.Conv2d(2, 3, 3, stride=2).config() == mnn.Conv2d(2, 3, (3, 3),
                                                                stride=[2, 2]).config()


BAD_ARGUMENTS = [
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), mnn.errors.ArgumentError,
     r"Conv2d: expected groups to divide in_channels, got groups=2 and in_channels=3"),
    (dict(in_channels=4, out_channels=3, kernel_size=3, groups=2), mnn.errors.ArgumentError,
     r"Conv2d: expected groups to divide out_channels, got groups=2 and out_channels=3"),
    (dict(in_channels=2, out_channels=2, kernel_size=0), mnn.errors.ArgumentError,
     r"Conv2d: expected kernel_size to be a positive int or a pair of them, got 0"),
    (dict(in_channels=2, out_channels=2, kernel_size=3, stride=(1, 0)),
     mnn.errors.ArgumentError,
     r"Conv2d: expected stride to be a positive int or a pair of them, got \(1, 0\)"),
    (dict(in_channels=2, out_channels=2, kernel_size=3, dilation=-1), mnn.errors.ArgumentError,
     r"Conv2d: expected dilation to be a positive int or a pair of them, got -1"),
    (dict(in_channels=2, out_channels=2, kernel_size=3, padding=-1), mnn.errors.ArgumentError,
     r"Conv2d: expected padding to be an int >= 0 or a pair of them, got -1"),
    (dict(in_channels=2, out_channels=2, kernel_size=(3, 3, 3)),
     mnn.errors.ArgumentTypeError,
     r"Conv2d: expected kernel_size to be a positive int or a pair of them, got \(3, 3, 3\)"),
    (dict(in_channels=2, out_channels=2, kernel_size=2.5), mnn.errors.ArgumentTypeError,
     r"Conv2d: expected kernel_size to be a positive int or a pair of them, got 2.5"),
    (dict(in_channels=0, out_channels=2, kernel_size=3), mnn.errors.ArgumentError,
     r"Conv2d: expected in_channels to be a positive int, got 0"),
    (dict(in_channels=2, out_channels=2, kernel_size=3, bias=1), mnn.errors.ArgumentTypeError,
     r"Conv2d: expected bias to be True or False, got 1"),
]


@pytest.mark.parametrize("arguments, error, message", BAD_ARGUMENTS)
def test_bad_arguments_are_mnn_errors(arguments, error, message):
    with pytest.raises(error, match=message):
        mnn.Conv2d(**arguments)


def test_groups_are_checked_before_the_weights_are_made():
    """10^12 weights that would not fit: the groups that do not divide are what it says."""
    with pytest.raises(mnn.errors.ArgumentError, match=r"expected groups to divide in_channels"):
        mnn.Conv2d(10**6 + 1, 10**6, 3, groups=2)
    with pytest.raises(mnn.errors.AllocationError, match=r"Conv2d: parameters of shape "
                                                         r"\(1000000, 1000000, 3, 3\)"):
        mnn.Conv2d(10**6, 10**6, 3)


def test_a_kernel_larger_than_the_padded_input_is_a_shape_error(target):
    layer = mnn.Conv2d(1, 1, (3, 5), padding=(0, 1), dilation=(1, 2), rng=0)
    with pytest.raises(mnn.ShapeError, match=r"Conv2d: expected inputs with at least 7 entries "
                                             r"along axis 3 \(the kernel spans 9 with dilation "
                                             r"2, and padding adds 2\), got inputs of shape "
                                             r"\(1, 1, 4, 6\)"):
        layer(target.asarray(np.zeros((1, 1, 4, 6))))


def test_other_channels_or_rank_are_shape_errors(target):
    layer = mnn.Conv2d(3, 2, 3, rng=0)
    with pytest.raises(mnn.ShapeError, match=r"Conv2d: expected inputs of shape \(\*, 3, \*, \*\)"):
        layer(target.asarray(np.zeros((1, 2, 5, 5))))
    with pytest.raises(mnn.ShapeError, match=r"Conv2d: expected inputs of shape"):
        layer(target.asarray(np.zeros((3, 5, 5))))


def test_save_and_load_round_trip(tmp_path, rng):
    layer = mnn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2,
                       rng=0)
    layer.params["b"] = rng.standard_normal(6)
    mnn.save(layer, tmp_path / "conv.safetensors")
    loaded = mnn.load(tmp_path / "conv.safetensors")
    assert type(loaded) is mnn.Conv2d and loaded.config() == layer.config()
    for key in ("w", "b"):
        np.testing.assert_array_equal(loaded.params[key], layer.params[key], err_msg=key)
    x = rng.standard_normal((2, 4, 6, 7))
    np.testing.assert_array_equal(loaded(x), layer(x))


def test_lenet_stack_matches_torch(rng):
    """Conv, ReLU, MaxPool, Conv, ReLU, AvgPool, Flatten, Linear and a loss: the gradients
    of every parameter agree with torch.nn's, from the same weights."""
    net = mnn.SequentialLayers([
        mnn.Conv2d(1, 3, 3, padding=1, rng=0), mnn.ReluLayer(), mnn.MaxPool2d(2),
        mnn.Conv2d(3, 4, 3, rng=1), mnn.ReluLayer(), mnn.AvgPool2d(2), mnn.Flatten(),
        mnn.LinearLayer(4 * 2 * 2, 5, rng=2), mnn.CrossEntropyLossLayer()])
    reference = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AvgPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(16, 5)).double()
    ours = [net[0], net[3], net[7]]
    theirs = [reference[0], reference[3], reference[7]]
    with torch.no_grad():
        for layer, module in zip(ours, theirs, strict=True):
            module.weight.copy_(torch.tensor(layer.params["w"]))
            module.bias.copy_(torch.tensor(layer.params["b"]))
    x, labels = rng.standard_normal((3, 1, 12, 12)), rng.integers(0, 5, size=3)
    loss = net(x, labels)
    net.backward()
    expected = torch.nn.functional.cross_entropy(reference(torch.tensor(x)),
                                                 torch.tensor(labels))
    expected.backward()
    np.testing.assert_allclose(float(loss), expected.item(), rtol=1e-12)
    for layer, module in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(layer.grads["w"], module.weight.grad.numpy(), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(layer.grads["b"], module.bias.grad.numpy(), rtol=1e-9,
                                   atol=1e-12)
