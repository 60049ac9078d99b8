"""MultiHeadAttention: gradients, forward against NumPy, float32 vs float64, errors, torch."""

import math

import numpy as np
import pytest
from helpers import assert_float32_matches_float64

import mnn
from mnn.layers.build import build
from mnn.testing import gradcheck


def attention(d=4, heads=2, bias=False, seed=0, rng=None):
    """A small layer; with ``rng``, nonzero biases so that their gradients are tested too."""
    layer = mnn.MultiHeadAttention(d=d, heads=heads, bias=bias, rng=seed)
    if bias and rng is not None:
        for sub in layer.sublayers.values():
            sub.params["b"] = rng.standard_normal(d * heads)
    return layer


def numpy_attention(layer, x):
    """Eqs. (1) to (5) with loops over samples and heads, from the host float64 weights."""
    d, heads = layer.d, layer.heads
    proj = {}
    for name, sub in layer.sublayers.items():
        w = np.asarray(sub.params["w"], dtype=np.float64)
        b = np.asarray(sub.params["b"], dtype=np.float64) if "b" in sub.params else 0.0
        proj[name] = x @ w.T + b
    out = np.empty_like(x)
    for n in range(x.shape[0]):
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            q, k, v = (proj[name][n, :, cols] for name in ("W_qry", "W_key", "W_val"))
            s = q @ k.T / math.sqrt(d)
            a = np.exp(s - s.max(axis=1, keepdims=True))
            a /= a.sum(axis=1, keepdims=True)
            out[n, :, cols] = a @ v
    return out


@pytest.mark.parametrize(("shape", "bias"), [((2, 3), False), ((2, 3), True), ((1, 3), False),
                                             ((2, 1), True)],
                         ids=["batch", "batch-bias", "batch1", "one-token-bias"])
def test_gradcheck(target, rng, shape, bias):
    layer = attention(bias=bias, rng=rng)
    assert gradcheck(layer, target.asarray(rng.standard_normal((*shape, 8))))


def test_gradcheck_one_head(target, rng):
    assert gradcheck(attention(d=3, heads=1), target.asarray(rng.standard_normal((2, 4, 3))))


def test_forward_matches_numpy_reference(target, rng):
    layer = attention(d=3, heads=4, bias=True, rng=rng)
    x = rng.standard_normal((3, 5, 12))
    expected = numpy_attention(layer, x)  # before the first forward moves the weights
    out = target.to_host(layer(target.asarray(x)))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_one_token_attends_to_itself(target, rng):
    layer = attention()
    x = rng.standard_normal((2, 1, 8))
    expected = x @ layer.W_val.params["w"].T  # softmax of one score is 1: the output is V
    np.testing.assert_allclose(target.to_host(layer(target.asarray(x))), expected, rtol=1e-12)


def test_float32_agrees_with_float64(target, rng):
    x, g = rng.standard_normal((2, 5, 16)), rng.standard_normal((2, 5, 16))
    assert_float32_matches_float64(target, lambda: attention(d=8, heads=2, bias=True), (x,), g,
                                   rtol=1e-4, atol=1e-5)


def test_sublayers_parameters_and_config():
    layer = mnn.MultiHeadAttention(d=4, heads=3, bias=True, rng=0)
    assert list(layer.sublayers) == ["W_qry", "W_key", "W_val"]
    assert all(isinstance(s, mnn.LinearLayer) for s in layer.sublayers.values())
    assert list(layer.state_dict()) == ["W_qry.w", "W_qry.b", "W_key.w", "W_key.b",
                                        "W_val.w", "W_val.b"]
    assert layer.W_qry.params["w"].shape == (12, 12)
    assert layer.config() == {"type": "MultiHeadAttention",
                              "args": {"d": 4, "heads": 3, "bias": True}}
    defaults = mnn.MultiHeadAttention(rng=0)
    assert (defaults.d, defaults.heads, defaults.W_key.bias) == (64, 12, False)
    assert defaults.W_key.args["init"] == "glorot"


def test_same_seed_same_weights():
    first, second = (mnn.MultiHeadAttention(d=2, heads=2, rng=5).state_dict() for _ in range(2))
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert not np.array_equal(first["W_qry.w"], first["W_key.w"])


def test_checkpoint_round_trip_inside_a_container(target, rng):
    net = mnn.SequentialLayers([attention(bias=True, rng=rng), mnn.ReluLayer()])
    x = target.asarray(rng.standard_normal((2, 3, 8)))
    out = net(x)
    fresh = build(net.config())
    fresh.load_weights(net.state_dict(), net.config())
    assert list(fresh.state_dict())[:2] == ["0.W_qry.w", "0.W_qry.b"]
    np.testing.assert_array_equal(target.to_host(fresh(x)), target.to_host(out))


def test_wrong_feature_size_is_a_clear_error(target, rng):
    with pytest.raises(mnn.ShapeError,
                       match=r"MultiHeadAttention: expected inputs of shape \(\*, \*, 8\)"):
        attention()(target.asarray(rng.standard_normal((2, 3, 6))))


@pytest.mark.parametrize("shape", [(3, 8), (1, 2, 3, 8)])
def test_wrong_rank_is_a_clear_error(target, rng, shape):
    with pytest.raises(mnn.ShapeError,
                       match=r"MultiHeadAttention: expected inputs of shape \(\*, \*, 8\), got .*"):
        attention()(target.asarray(rng.standard_normal(shape)))

@pytest.mark.parametrize("args", [{"d": 0}, {"heads": -1}, {"d": 2.0}])
def test_bad_constructor_arguments_are_a_clear_error(args):
    name = next(iter(args))
    with pytest.raises(ValueError, match=rf"MultiHeadAttention: expected {name} to be a positive"):
        mnn.MultiHeadAttention(**args)


def test_other_dtype_after_first_forward_is_a_clear_error(target, rng):
    layer = attention()
    layer(target.asarray(rng.standard_normal((2, 3, 8)), "float32"))
    with pytest.raises(mnn.PlacementError, match=r"dtype float32.*dtype float64.*\.to\("):
        layer(target.asarray(rng.standard_normal((2, 3, 8)), "float64"))


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("explicit", [False, True], ids=["sdpa", "explicit-softmax"])
def test_matches_torch_autograd(rng, bias, explicit):
    torch = pytest.importorskip("torch", reason="the torch.autograd comparison needs torch")
    d, heads, batch, length = 4, 3, 2, 5
    layer = attention(d=d, heads=heads, bias=bias, rng=rng)
    x, g = (rng.standard_normal((batch, length, d * heads)) for _ in range(2))
    names = ("W_qry", "W_key", "W_val")
    weights = {(n, k): torch.tensor(layer.sublayers[n].params[k], requires_grad=True)
               for n in names for k in layer.sublayers[n].params}
    out = layer(x)
    grad_in = layer.backward(g)

    tx = torch.tensor(x, requires_grad=True)
    q, k, v = (torch.nn.functional.linear(tx, weights[n, "w"], weights.get((n, "b")))
               .reshape(batch, length, heads, d).transpose(1, 2) for n in names)
    if explicit:
        o = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1) @ v
    else:
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    tout = o.transpose(1, 2).reshape(batch, length, d * heads)
    tout.backward(torch.tensor(g))
    pairs = [(out, tout), (grad_in, tx.grad)]
    pairs += [(layer.sublayers[n].grads[k], t.grad) for (n, k), t in weights.items()]
    assert len(pairs) == 2 + 3 * (2 if bias else 1)
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_no_tokens_give_an_empty_output_and_gradient(target, rng):
    """T = 0: nothing to attend to. A defined, empty result, not a raw reduction error."""
    layer = attention()
    x = target.asarray(np.zeros((2, 0, 8)))
    out = layer(x)
    assert tuple(out.shape) == (2, 0, 8)
    assert tuple(layer.backward(target.asarray(np.zeros((2, 0, 8)))).shape) == (2, 0, 8)
    for _, owner, key in layer.parameters():  # no tokens, no gradient: zeros, not None
        np.testing.assert_array_equal(target.to_host(owner.grads[key]), 0.0)
