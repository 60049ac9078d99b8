"""MaxPool2d and AvgPool2d: agreement with torch.nn.functional in float64, gradients, the
max pool's tie rule, arguments and checkpoints."""

import numpy as np
import pytest

import mnn
from mnn.testing import gradcheck

torch = pytest.importorskip("torch", reason="the pools are checked against torch.nn.functional")
F = torch.nn.functional

#: (constructor arguments, input shape): overlapping and side-by-side windows, oblong
#: kernels, padding, odd sizes, batch 1.
CONFIGS = {
    "side-by-side": (dict(kernel_size=2), (2, 3, 8, 7)),
    "overlapping-padded": (dict(kernel_size=3, stride=2, padding=1), (2, 2, 7, 9)),
    "oblong": (dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0)), (1, 3, 5, 8)),
    "stride-larger-than-kernel": (dict(kernel_size=2, stride=3, padding=1), (1, 1, 9, 10)),
}
POOLS = {mnn.MaxPool2d: F.max_pool2d, mnn.AvgPool2d: F.avg_pool2d}


@pytest.mark.parametrize("cls", POOLS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_matches_torch(target, rng, cls, config):
    arguments, shape = config
    layer = cls(**arguments)
    x = rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    expected = POOLS[cls](tx, **arguments)
    g = rng.standard_normal(tuple(expected.shape))
    expected.backward(torch.tensor(g))
    out = layer(target.asarray(x))
    grad = layer.backward(target.asarray(g))
    np.testing.assert_allclose(target.to_host(out), expected.detach().numpy(), rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(target.to_host(grad), tx.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cls", POOLS, ids=lambda cls: cls.__name__)
def test_gradcheck(target, rng, cls):
    layer = cls((3, 2), stride=(1, 2), padding=1)
    assert gradcheck(layer, target.asarray(rng.standard_normal((1, 2, 5, 5))))


def test_a_tie_sends_the_gradient_to_the_first_maximum_in_row_major_order(target):
    """Windows of 2x2, stride 1, over a constant image: every window is a tie, and each
    output's gradient goes to its window's top-left entry; as torch does on the CPU."""
    x = np.zeros((1, 1, 3, 4))
    g = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    layer = mnn.MaxPool2d(2, stride=1)
    layer(target.asarray(x))
    grad = target.to_host(layer.backward(target.asarray(g)))
    expected = np.zeros((1, 1, 3, 4))
    expected[..., :2, :3] = g
    np.testing.assert_array_equal(grad, expected)
    tx = torch.tensor(x, requires_grad=True)
    F.max_pool2d(tx, 2, stride=1).backward(torch.tensor(g))
    np.testing.assert_array_equal(grad, tx.grad.numpy())


def test_a_tie_later_in_the_window_goes_to_the_earlier_of_the_two(target):
    """Equal maxima at (0, 1) and (1, 0) of a 2x2 window: (0, 1) comes first row by row."""
    x = np.array([[[[0.0, 5.0], [5.0, 1.0]]]])
    layer = mnn.MaxPool2d(2)
    layer(target.asarray(x))
    grad = target.to_host(layer.backward(target.asarray(np.full((1, 1, 1, 1), 3.0))))
    np.testing.assert_array_equal(grad, [[[[0.0, 3.0], [0.0, 0.0]]]])


def test_a_window_with_nan_gives_nan_and_its_gradient_goes_to_the_first_nan(target):
    x = np.array([[[[1.0, np.nan], [np.nan, 2.0]]]])
    layer = mnn.MaxPool2d(2)
    out = target.to_host(layer(target.asarray(x)))
    assert np.isnan(out).all()
    grad = target.to_host(layer.backward(target.asarray(np.ones((1, 1, 1, 1)))))
    np.testing.assert_array_equal(grad, [[[[0.0, 1.0], [0.0, 0.0]]]])


def test_padding_counts_in_the_average(target):
    """count_include_pad=True, torch's default: a corner window of 2x2 with padding 1 holds
    one entry of the image and three zeros."""
    layer = mnn.AvgPool2d(2, padding=1)
    out = target.to_host(layer(target.asarray(np.full((1, 1, 2, 2), 4.0))))
    np.testing.assert_array_equal(out, np.ones((1, 1, 2, 2)))


@pytest.mark.parametrize("cls", POOLS, ids=lambda cls: cls.__name__)
def test_stride_defaults_to_the_kernel_size(cls):
    assert cls((2, 3)).stride == (2, 3)
    assert cls(2, stride=1).stride == (1, 1)


@pytest.mark.parametrize("cls", POOLS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("arguments, error, message", [
    (dict(kernel_size=0), mnn.errors.ArgumentError,
     r"expected kernel_size to be a positive int or a pair of them, got 0"),
    (dict(kernel_size=2, stride=0), mnn.errors.ArgumentError,
     r"expected stride to be a positive int or a pair of them, got 0"),
    (dict(kernel_size=3, padding=(1, 2)), mnn.errors.ArgumentError,
     r"expected padding at most half of kernel_size, got padding=\(1, 2\) and "
     r"kernel_size=\(3, 3\)"),
    (dict(kernel_size="2"), mnn.errors.ArgumentTypeError,
     r"expected kernel_size to be a positive int or a pair of them, got '2'"),
])
def test_bad_arguments_are_mnn_errors(cls, arguments, error, message):
    with pytest.raises(error, match=rf"{cls.__name__}: {message}"):
        cls(**arguments)


@pytest.mark.parametrize("cls", POOLS, ids=lambda cls: cls.__name__)
def test_a_kernel_larger_than_the_padded_input_is_a_shape_error(target, cls):
    with pytest.raises(mnn.ShapeError, match=rf"{cls.__name__}: expected inputs with at least 3 "
                                             r"entries along axis 2"):
        cls(5, padding=1)(target.asarray(np.zeros((1, 1, 2, 8))))


@pytest.mark.parametrize("cls", POOLS, ids=lambda cls: cls.__name__)
def test_save_and_load_round_trip(tmp_path, rng, cls):
    layer = cls((3, 2), stride=(2, 1), padding=(1, 0))
    mnn.save(layer, tmp_path / "pool.safetensors")
    loaded = mnn.load(tmp_path / "pool.safetensors")
    assert type(loaded) is cls and loaded.config() == layer.config()
    x = rng.standard_normal((2, 3, 6, 5))
    np.testing.assert_array_equal(loaded(x), layer(x))
