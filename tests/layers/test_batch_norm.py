"""BatchNorm1d and BatchNorm2d: gradients, torch.nn agreement in training and evaluation,
running statistics (buffers) in checkpoints and placement, errors."""

import warnings

import numpy as np
import pytest

import mnn
from mnn.errors import ArgumentError, ArgumentTypeError
from mnn.optim import SGD, Adam
from mnn.serialization import build
from mnn.testing import gradcheck

#: (layer class, torch.nn class name, input shape): each kind of input the layers take.
KINDS = [(mnn.BatchNorm1d, "BatchNorm1d", (5, 3)), (mnn.BatchNorm1d, "BatchNorm1d", (4, 3, 5)),
         (mnn.BatchNorm2d, "BatchNorm2d", (2, 3, 4, 5))]
KIND_IDS = ["1d-NC", "1d-NCL", "2d-NCHW"]


def batch_norm(cls, rng=None, **options):
    """A 3-channel layer; with ``rng``, a scale and shift other than 1 and 0, so both matter."""
    layer = cls(3, **options)
    if rng is not None:
        for key in layer.params:
            layer.params[key] = rng.standard_normal(3) + (key == "w")
    return layer


def channel_axes(x):
    return (0, *range(2, x.ndim))


def per_channel(v, x):
    return v.reshape((3,) + (1,) * (x.ndim - 2))


@pytest.mark.parametrize(("cls", "name", "shape"), KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("options", [{}, {"affine": False}, {"track_running_stats": False}],
                         ids=["default", "no-affine", "no-running-stats"])
def test_gradcheck_in_training_mode(target, rng, cls, name, shape, options):
    layer = batch_norm(cls, rng, **options)
    assert gradcheck(layer, target.asarray(3 * rng.standard_normal(shape) + 1))


@pytest.mark.parametrize(("cls", "name", "shape"), KINDS, ids=KIND_IDS)
def test_gradcheck_in_evaluation_mode(target, rng, cls, name, shape):
    layer = batch_norm(cls, rng)
    layer.buffers["running_mean"] = rng.standard_normal(3)
    layer.buffers["running_var"] = rng.uniform(0.5, 2.0, 3)
    assert gradcheck(layer.eval(), target.asarray(3 * rng.standard_normal(shape) + 1))


def test_the_input_gradient_goes_through_the_mean_and_the_variance(target, rng):
    """Eq. (10): per channel, the input gradient is orthogonal to the constants and to x-hat
    (the simplified backward, gamma * r * g, is neither)."""
    x, g = 3 * rng.standard_normal((6, 3, 4)) + 2, rng.standard_normal((6, 3, 4))
    layer = batch_norm(mnn.BatchNorm1d, affine=False, eps=0.0)
    normalized = target.to_host(layer(target.asarray(x)))
    grad = target.to_host(layer.backward(target.asarray(g)))
    np.testing.assert_allclose(grad.sum(axis=(0, 2)), 0, atol=1e-12)
    np.testing.assert_allclose((grad * normalized).sum(axis=(0, 2)), 0, atol=1e-12)


def assert_close(ours, theirs, what):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-13,
                               err_msg=what)


@pytest.mark.parametrize(("cls", "name", "shape"), KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("options", [{"momentum": 0.3}, {"momentum": 0.3, "affine": False},
                                     {"track_running_stats": False}],
                         ids=["default", "no-affine", "no-running-stats"])
def test_matches_torch_in_training_then_evaluation(target, rng, cls, name, shape, options):
    """Several training steps (outputs, gradients, running statistics), then eval()."""
    torch = pytest.importorskip("torch", reason="the torch.nn comparison needs torch")
    layer = batch_norm(cls, rng, eps=1e-3, **options)
    reference = getattr(torch.nn, name)(3, eps=1e-3, dtype=torch.float64, **options)
    if layer.affine:
        with torch.no_grad():
            reference.weight.copy_(torch.tensor(layer.params["w"]))
            reference.bias.copy_(torch.tensor(layer.params["b"]))
    for step in range(4):
        if step == 3:
            layer.eval()
            reference.eval()
        x, g = 3 * rng.standard_normal(shape) + step, rng.standard_normal(shape)
        layer.zero_grads()
        reference.zero_grad()
        out = target.to_host(layer(target.asarray(x)))
        grad = target.to_host(layer.backward(target.asarray(g)))
        tx = torch.tensor(x, requires_grad=True)
        tout = reference(tx)
        tout.backward(torch.tensor(g))
        assert_close(out, tout, f"output, step {step}")
        assert_close(grad, tx.grad, f"input gradient, step {step}")
        if layer.affine:
            assert_close(target.to_host(layer.grads["w"]), reference.weight.grad, "w gradient")
            assert_close(target.to_host(layer.grads["b"]), reference.bias.grad, "b gradient")
        for key in layer.buffers:
            assert_close(target.to_host(layer.buffers[key]), getattr(reference, key),
                         f"{key}, step {step}")
    assert sorted(layer.buffers) == ([] if "track_running_stats" in options
                                     else ["running_mean", "running_var"])


def test_evaluation_mode_normalises_with_the_running_statistics(target, rng):
    """Eq. (4) after two training steps with Eq. (3) (unbiased batch variance); in eval a
    batch of one is fine, and its output does not depend on the rest of the batch."""
    layer = batch_norm(mnn.BatchNorm2d, rng, momentum=0.25, eps=1e-4)
    running_mean, running_var = np.zeros(3), np.ones(3)
    for _ in range(2):
        x = 2 * rng.standard_normal((3, 3, 2, 2)) + 5
        layer(target.asarray(x))
        running_mean = 0.75 * running_mean + 0.25 * x.mean(axis=(0, 2, 3))
        running_var = 0.75 * running_var + 0.25 * x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(target.to_host(layer.buffers["running_mean"]), running_mean,
                               rtol=1e-13)
    np.testing.assert_allclose(target.to_host(layer.buffers["running_var"]), running_var,
                               rtol=1e-13)
    trained = {key: target.to_host(value).copy() for key, value in layer.buffers.items()}
    layer.eval()
    x = rng.standard_normal((4, 3, 2, 2))
    expected = ((x - per_channel(running_mean, x)) / np.sqrt(per_channel(running_var, x) + 1e-4)
                * per_channel(target.to_host(layer.params["w"]), x)
                + per_channel(target.to_host(layer.params["b"]), x))
    np.testing.assert_allclose(target.to_host(layer(target.asarray(x))), expected, rtol=1e-12,
                               atol=1e-13)
    np.testing.assert_allclose(target.to_host(layer(target.asarray(x[:1]))), expected[:1],
                               rtol=1e-12, atol=1e-13)
    for key, value in trained.items():  # evaluation leaves them as they are
        np.testing.assert_array_equal(target.to_host(layer.buffers[key]), value, err_msg=key)


@pytest.mark.parametrize(("momentum", "kept"), [(0.0, "initial"), (1.0, "batch")])
def test_momentum_0_keeps_and_momentum_1_replaces_the_running_statistics(rng, momentum, kept):
    layer = mnn.BatchNorm1d(3, momentum=momentum)
    x = rng.standard_normal((5, 3)) + 4
    layer(x)
    mean, var = ((np.zeros(3), np.ones(3)) if kept == "initial"
                 else (x.mean(axis=0), x.var(axis=0, ddof=1)))
    np.testing.assert_allclose(layer.buffers["running_mean"], mean, rtol=1e-14)
    np.testing.assert_allclose(layer.buffers["running_var"], var, rtol=1e-14)


def test_the_running_statistics_are_buffers_that_optimizers_leave_alone(rng):
    net = mnn.SequentialLayers([mnn.LinearLayer(4, 3, rng=0), mnn.BatchNorm1d(3),
                                mnn.CrossEntropyLossLayer(3)])
    assert [name for name, _, _ in net.parameters()] == ["0.w", "0.b", "1.w", "1.b"]
    assert list(net.state_dict()) == ["0.w", "0.b", "1.w", "1.b", "1.running_mean",
                                      "1.running_var"]
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, size=6)
    for optimizer in (SGD(net, lr=0.5, momentum=0.9), Adam(net, lr=0.5)):
        net(x, y)
        net.backward()
        after_forward = {key: value.copy() for key, value in net[1].buffers.items()}
        optimizer.step()
        net.step(lr=0.5)
        for key, value in after_forward.items():
            np.testing.assert_array_equal(net[1].buffers[key], value, err_msg=key)
        assert all(net[1].grads[key] is not None for key in ("w", "b"))


@pytest.mark.parametrize("cls", [mnn.BatchNorm1d, mnn.BatchNorm2d])
def test_a_checkpoint_keeps_the_running_statistics(tmp_path, rng, cls):
    layer = batch_norm(cls, rng, momentum=0.5)
    shape = (4, 3) if cls is mnn.BatchNorm1d else (2, 3, 2, 2)
    for _ in range(3):
        layer(rng.standard_normal(shape) * 2 + 3)
    mnn.save(layer, tmp_path / "bn.safetensors")
    loaded = mnn.load(tmp_path / "bn.safetensors")
    assert type(loaded) is cls and loaded.config() == layer.config()
    for key in ("running_mean", "running_var"):
        assert not np.allclose(layer.buffers[key], 0.0 if key == "running_mean" else 1.0)
        np.testing.assert_array_equal(loaded.buffers[key], layer.buffers[key], err_msg=key)
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(loaded.eval()(x), layer.eval()(x))


def test_a_state_dict_without_the_running_statistics_does_not_load(rng):
    layer = mnn.BatchNorm1d(3)
    state = {key: value for key, value in layer.state_dict().items() if key != "running_var"}
    with pytest.raises(mnn.CheckpointError, match=r"BatchNorm1d: the state dict does not fit the "
                                                  r"model \(1 problem\):\s+missing key "
                                                  r"'running_var'"):
        layer.load_weights(state)


def test_to_moves_the_buffers_and_the_first_forward_places_them(rng):
    torch = pytest.importorskip("torch", reason="moving to torch needs torch")
    layer = mnn.BatchNorm1d(3, affine=False).to(xp="torch", dtype="float32")
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32
               for v in layer.buffers.values())
    placed = mnn.BatchNorm1d(3, affine=False)  # no parameters: the buffers alone are placed
    placed(torch.tensor(rng.standard_normal((4, 3)), dtype=torch.float32))
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32
               for v in placed.buffers.values())


def test_a_buffer_may_not_take_a_parameters_name():
    layer = mnn.BatchNorm1d(3)
    with pytest.raises(ValueError, match=r"BatchNorm1d: 'w' is a parameter already"):
        layer.add_buffer("w", np.zeros(3))


@pytest.mark.parametrize("cls", [mnn.BatchNorm1d, mnn.BatchNorm2d])
def test_config_rebuilds_it(cls):
    layer = cls(4, eps=1e-3, momentum=0.2, affine=False, track_running_stats=False)
    rebuilt = build(layer.config())
    assert type(rebuilt) is cls and rebuilt.config() == layer.config()
    assert rebuilt.params == {} and rebuilt.buffers == {}


MOMENTUM = r"expected a probability momentum in \[0, 1\]"


@pytest.mark.parametrize(("args", "error", "message"), [
    ({"num_features": 0}, ArgumentError, "expected num_features to be a positive int"),
    ({"num_features": 2.5}, ArgumentTypeError, "expected num_features to be a positive int"),
    ({"num_features": 3, "momentum": -0.1}, ArgumentError, MOMENTUM),
    ({"num_features": 3, "momentum": 1.5}, ArgumentError, MOMENTUM),
    ({"num_features": 3, "momentum": None}, ArgumentTypeError, MOMENTUM),
    ({"num_features": 3, "eps": -1.0}, ArgumentError, "expected eps to be finite and >= 0"),
    ({"num_features": 3, "affine": 1}, ArgumentTypeError, "expected affine to be True")])
@pytest.mark.parametrize("cls", [mnn.BatchNorm1d, mnn.BatchNorm2d])
def test_bad_constructor_arguments_are_a_clear_error(cls, args, error, message):
    with pytest.raises(error, match=rf"{cls.__name__}: {message}"):
        cls(**args)


@pytest.mark.parametrize(("cls", "shape"), [(mnn.BatchNorm1d, (1, 3)),
                                            (mnn.BatchNorm1d, (1, 3, 1)),
                                            (mnn.BatchNorm2d, (1, 3, 1, 1))])
def test_one_value_per_channel_in_training_is_a_clear_error(target, cls, shape):
    """As torch: the batch's variance of one value is 0, and the unbiased one 0/0."""
    with pytest.raises(mnn.ShapeError, match=rf"{cls.__name__}: expected more than 1 value per "
                                             rf"channel in training mode .* got inputs of shape "
                                             rf"\({', '.join(map(str, shape))}\)"):
        cls(3)(target.asarray(np.ones(shape)))
    assert cls(3).eval()(target.asarray(np.ones(shape))).shape == shape  # eval: running stats


ONE_D = (r"expected inputs with at least 2 dimensions and at most 3 dimensions and size 3 "
         r"along axis 1")
TWO_D = r"expected inputs of shape \(\*, 3, \*, \*\)"


@pytest.mark.parametrize(("cls", "shape", "message"), [(mnn.BatchNorm1d, (2, 4), ONE_D),
                                                       (mnn.BatchNorm1d, (2, 3, 4, 5), ONE_D),
                                                       (mnn.BatchNorm2d, (2, 3, 4), TWO_D),
                                                       (mnn.BatchNorm2d, (2, 4, 2, 2), TWO_D)],
                         ids=["1d-channels", "1d-rank-4", "2d-rank-3", "2d-channels"])
def test_inputs_of_the_wrong_shape_are_a_clear_error(target, cls, shape, message):
    with pytest.raises(mnn.ShapeError, match=rf"{cls.__name__}: {message}, got .* shape "
                                             rf"\({', '.join(map(str, shape))}\)"):
        cls(3)(target.asarray(np.ones(shape)))


def test_a_variance_that_overflows_gives_nan_not_a_wrong_value(target):
    """(1e30)^2 overflows float32: that channel is nan (as in torch), the others are right."""
    x = np.array([[1e30, 0.2, -0.5], [0.0, 1.0, 3.0], [-1.0, 0.5, 2.0]])
    layer = mnn.BatchNorm1d(3, affine=False, track_running_stats=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy says "overflow": it is one
        out = target.to_host(layer(target.asarray(x, "float32")))
    assert np.all(np.isnan(out[:, 0]))
    expected = (x[:, 1:] - x[:, 1:].mean(axis=0)) / np.sqrt(x[:, 1:].var(axis=0) + 1e-5)
    np.testing.assert_allclose(out[:, 1:], expected, rtol=1e-5, atol=1e-6)
