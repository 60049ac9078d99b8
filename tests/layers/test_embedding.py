"""Embedding: lookups, gradients that add up over repeated ids without a one-hot, errors, torch."""

import tracemalloc

import numpy as np
import pytest

import mnn
from mnn.testing import gradcheck


@pytest.mark.parametrize("shape", [(2, 4), (7,), (2, 2, 3), (0,)],
                         ids=["batch", "1-d", "3-d", "empty"])
def test_gradcheck(target, rng, shape):
    layer = mnn.Embedding(4, 3, rng=rng)
    assert gradcheck(layer, target.asarray(rng.integers(0, 4, size=shape)))


def test_forward_picks_rows_and_backward_adds_them_up(target, rng):
    layer = mnn.Embedding(6, 3, rng=rng)
    weights = layer.params["w"].copy()
    ids = np.array([[5, 1, 5], [0, 5, 1]])  # 5 three times, 1 twice, the others never
    g = rng.standard_normal((2, 3, 3))
    out = target.to_host(layer(target.asarray(ids)))
    assert layer.backward(target.asarray(g)) is None  # integers have no gradient
    np.testing.assert_array_equal(out, weights[ids])
    expected = np.zeros((6, 3))
    np.add.at(expected, ids.reshape(-1), g.reshape(-1, 3))
    np.testing.assert_allclose(target.to_host(layer.grads["w"]), expected, rtol=1e-14)
    assert np.all(target.to_host(layer.grads["w"])[[2, 3, 4]] == 0)


def test_gradients_accumulate_over_backwards(target, rng):
    layer = mnn.Embedding(3, 2, rng=rng)
    ids, g = target.asarray(np.array([2, 2, 0])), target.asarray(np.ones((3, 2)))
    for _ in range(2):
        layer(ids)
        layer.backward(g)
    np.testing.assert_array_equal(target.to_host(layer.grads["w"]), [[2, 2], [0, 0], [4, 4]])


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "int8"])
def test_every_integer_dtype_works(target, rng, dtype):
    layer = mnn.Embedding(5, 2, rng=rng)
    ids = np.array([4, 0, 3], dtype=dtype)
    weights = layer.params["w"].copy()
    out = layer(target.asarray(ids))
    np.testing.assert_array_equal(target.to_host(out), weights[ids.astype(np.int64)])
    layer.backward(target.asarray(np.ones((3, 2))))
    np.testing.assert_array_equal(target.to_host(layer.grads["w"])[:, 0], [1, 0, 0, 1, 1])


def test_backward_builds_no_one_hot(target, rng):
    """Eq. (3) by scatter-add: the peak memory of a backward is about the gradient's own size.

    The one-hot matrix of 40,000 ids x 2,000 tokens would take 640 MB in float64.
    """
    if target.backend.name not in ("numpy", "array_api_strict"):
        pytest.skip("peak memory is measured with tracemalloc, which sees NumPy buffers only")
    vocabulary, tokens, width = 40_000, 2_000, 2
    layer = mnn.Embedding(vocabulary, width, rng=rng)
    ids = target.asarray(rng.integers(0, vocabulary, size=tokens))
    g = target.asarray(rng.standard_normal((tokens, width)))
    layer(ids)
    tracemalloc.start()
    try:
        layer.backward(g)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    gradient_bytes = vocabulary * width * 8
    assert peak < 4 * gradient_bytes + 100 * tokens * 8, f"peak {peak / 2**20:.1f} MiB"


def test_ids_out_of_range_are_a_clear_error(target):
    layer = mnn.Embedding(5, 2, rng=0)
    for bad in ([0, 5], [-1, 2]):
        with pytest.raises(mnn.LabelError, match=r"Embedding: expected ids in \[0, 5\), got "
                                                 rf"values from {min(bad)} to {max(bad)}"):
            layer(target.asarray(np.array(bad)))


def test_float_ids_are_a_clear_error(target):
    with pytest.raises(mnn.DTypeError, match=r"Embedding: expected integral inputs, got .*float"):
        mnn.Embedding(5, 2, rng=0)(target.asarray(np.array([1.0, 2.0])))


def test_parameters_keep_their_dtype_and_move_to_the_ids(target, rng):
    layer = mnn.Embedding(5, 2, rng=rng).to(xp=target.backend.name, device=target.device_name,
                                            dtype="float32")
    out = layer(target.asarray(np.array([1, 2])))
    assert mnn.backends.dtype_name(out.dtype) == "float32" and target.backend.owns(out)


@pytest.mark.parametrize("args", [{"num_embeddings": 0, "embedding_dim": 2},
                                  {"num_embeddings": 3, "embedding_dim": 1.5}])
def test_bad_constructor_arguments_are_a_clear_error(args):
    with pytest.raises(ValueError, match=r"Embedding: expected \w+ to be a positive int"):
        mnn.Embedding(**args)


def test_initial_weights_are_standard_normal_as_in_torch():
    w = mnn.Embedding(1000, 100, rng=0).params["w"]
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1) < 0.01


def test_matches_torch_embedding(rng):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    layer = mnn.Embedding(7, 4, rng=rng)
    reference = torch.nn.Embedding(7, 4, dtype=torch.float64)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(layer.params["w"]))
    ids, g = rng.integers(0, 7, size=(3, 5)), rng.standard_normal((3, 5, 4))
    out = layer(torch.tensor(ids))
    layer.backward(torch.tensor(g))
    tout = reference(torch.tensor(ids))
    tout.backward(torch.tensor(g))
    np.testing.assert_array_equal(out.numpy(), tout.detach().numpy())
    np.testing.assert_allclose(layer.grads["w"].numpy(), reference.weight.grad.numpy(),
                               rtol=1e-14, atol=1e-15)
