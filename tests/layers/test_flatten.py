"""Flatten: torch.flatten's shapes, the inverse reshape in backward, errors, checkpoints."""

import numpy as np
import pytest

import mnn
from mnn.testing import gradcheck


@pytest.mark.parametrize("start, end, expected", [
    (1, -1, (2, 60)), (0, -1, (120,)), (1, 2, (2, 12, 5)), (-2, -1, (2, 3, 20)),
    (2, 2, (2, 3, 4, 5)),
])
def test_shapes_are_torch_flattens_and_values_row_major(target, rng, start, end, expected):
    x = rng.standard_normal((2, 3, 4, 5))
    layer = mnn.Flatten(start, end)
    out = layer(target.asarray(x))
    np.testing.assert_array_equal(target.to_host(out), x.reshape(expected))
    g = rng.standard_normal(expected)
    np.testing.assert_array_equal(target.to_host(layer.backward(target.asarray(g))),
                                  g.reshape(x.shape))


def test_gradcheck(target, rng):
    assert gradcheck(mnn.Flatten(), target.asarray(rng.standard_normal((1, 2, 3, 2))))


def test_an_empty_batch_flattens(target):
    out = mnn.Flatten()(target.asarray(np.zeros((0, 3, 2))))
    assert tuple(out.shape) == (0, 6)


def test_start_after_end_is_a_shape_error(target):
    with pytest.raises(mnn.ShapeError, match=r"Flatten: expected start_dim 2 to come no later "
                                             r"than end_dim 1"):
        mnn.Flatten(2, 1)(target.asarray(np.zeros((2, 3, 4))))


def test_an_axis_out_of_range_is_a_shape_error(target):
    with pytest.raises(mnn.ShapeError, match=r"Flatten: axis 3 is out of range for inputs with "
                                             r"2 dimensions"):
        mnn.Flatten(3)(target.asarray(np.zeros((2, 3))))


def test_a_non_integer_axis_is_an_argument_error():
    with pytest.raises(mnn.errors.ArgumentTypeError, match=r"Flatten: expected axis to be an "
                                                           r"int, got 1.5"):
        mnn.Flatten(1.5)


def test_save_and_load_round_trip(tmp_path):
    mnn.save(mnn.Flatten(0, 2), tmp_path / "flatten.safetensors")
    loaded = mnn.load(tmp_path / "flatten.safetensors")
    assert type(loaded) is mnn.Flatten and loaded.config() == mnn.Flatten(0, 2).config()
