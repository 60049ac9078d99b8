"""MultiHeadAttention: gradients, forward against NumPy, float32 vs float64, errors, torch."""

import math

import numpy as np
import pytest
from helpers import assert_float32_matches_float64

import mnn
from mnn.serialization import build, with_defaults
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
                              "args": {"d": 4, "heads": 3, "bias": True,
                                       "output_projection": False, "causal": False}}
    defaults = mnn.MultiHeadAttention(rng=0)
    assert (defaults.d, defaults.heads, defaults.W_key.bias) == (64, 12, False)
    assert defaults.W_key.config()["args"]["init"] == "glorot"


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


# --- output projection, causal mask, key padding masks -----------------------------------------


class PaddedAttention(mnn.MultiHeadAttention):
    """Attention with one fixed key padding mask, so that gradcheck (which calls
    ``forward(inputs)``) sees the masked function."""

    def __init__(self, padding, **kwargs):
        super().__init__(**kwargs)
        self.padding = padding

    def forward(self, inputs, feedbacks=None, *, key_padding_mask=None):
        return super().forward(inputs, feedbacks, key_padding_mask=self.padding)


def full_attention(rng, **options):
    layer = mnn.MultiHeadAttention(d=3, heads=2, bias=True, output_projection=True, rng=rng,
                                   **options)
    for sub in layer.sublayers.values():
        sub.params["b"] = rng.standard_normal(6)
    return layer


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_gradcheck_with_output_projection_and_masks(target, rng, causal):
    assert gradcheck(full_attention(rng, causal=causal),
                     target.asarray(rng.standard_normal((2, 4, 6))))
    padding = target.asarray(np.array([[False, False, True, True], [True, False, False, False]]))
    layer = PaddedAttention(padding, d=3, heads=2, bias=True, output_projection=True,
                            causal=causal, rng=0)
    assert gradcheck(layer, target.asarray(rng.standard_normal((2, 4, 6))))


def test_causal_attention_sees_no_later_position(target, rng):
    layer = full_attention(rng, causal=True)
    x = rng.standard_normal((2, 5, 6))
    changed = x.copy()
    changed[:, 2:] = rng.standard_normal((2, 3, 6))
    first, second = (target.to_host(layer(target.asarray(v))) for v in (x, changed))
    np.testing.assert_allclose(second[:, :2], first[:, :2], rtol=1e-13)
    assert not np.allclose(second[:, 2:], first[:, 2:])


def test_padding_is_ignored_and_a_query_with_nothing_to_see_gets_zeros(target, rng):
    layer = mnn.MultiHeadAttention(d=2, heads=2, causal=True, rng=0)
    x = rng.standard_normal((2, 4, 4))
    padding = np.array([[False, False, True, True], [True, False, False, False]])
    out = target.to_host(layer(target.asarray(x), key_padding_mask=target.asarray(padding)))
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[1, 0], 0)  # sees only key 0, which is padding
    changed = x.copy()
    changed[0, 2:] = rng.standard_normal((2, 4))  # the padding of sample 0: nobody sees it
    again = target.to_host(layer(target.asarray(changed),
                                 key_padding_mask=target.asarray(padding)))
    np.testing.assert_allclose(again[0, :2], out[0, :2], rtol=1e-13)
    grad = target.to_host(layer.backward(target.asarray(np.ones((2, 4, 4)))))
    assert np.all(np.isfinite(grad))


def test_an_empty_sequence_gives_an_empty_output(target, rng):
    layer = full_attention(rng, causal=True)
    x = target.asarray(np.zeros((2, 0, 6)))
    out = layer(x)
    assert tuple(out.shape) == (2, 0, 6)
    assert tuple(layer.backward(target.asarray(np.zeros((2, 0, 6)))).shape) == (2, 0, 6)


@pytest.mark.parametrize(("mask", "error", "message"), [
    (np.zeros((2, 4), dtype=np.int64), mnn.DTypeError, "expected key_padding_mask to be a "
                                                       "boolean array"),
    (np.zeros((2, 3), dtype=bool), mnn.ShapeError, r"expected key_padding_mask of shape \(2, 4\)")])
def test_bad_key_padding_mask_is_a_clear_error(target, rng, mask, error, message):
    with pytest.raises(error, match=rf"MultiHeadAttention: {message}"):
        attention(d=2, heads=2)(target.asarray(rng.standard_normal((2, 4, 4))),
                                key_padding_mask=target.asarray(mask))


def test_a_key_padding_mask_from_another_library_is_a_clear_error(target, rng):
    if target.backend.name == "numpy":
        pytest.skip("the numpy target: a NumPy mask is from the same library")
    with pytest.raises(mnn.PlacementError, match=r"MultiHeadAttention: expected key_padding_mask "
                                                 r"from the same library and device"):
        attention(d=2, heads=2)(target.asarray(rng.standard_normal((2, 4, 4))),
                                key_padding_mask=np.zeros((2, 4), dtype=bool))


def test_the_original_config_still_builds_the_original_layer(tmp_path):
    """The original layer's config (no output projection, no masks) builds the original
    layer, and a model built from it accepts it: left-out arguments are their defaults."""
    old = {"type": "MultiHeadAttention", "args": {"d": 2, "heads": 3, "bias": False}}
    layer = build(old)
    assert layer.config() == with_defaults(old) and layer.W_out is None and not layer.causal
    layer.load_weights(layer.state_dict(), old)
    assert list(layer.state_dict()) == ["W_qry.w", "W_key.w", "W_val.w"]
    new = mnn.MultiHeadAttention(2, 3, output_projection=True, causal=True, rng=0)
    assert new.config()["args"] == {"d": 2, "heads": 3, "bias": False,
                                    "output_projection": True, "causal": True}
    assert list(new.state_dict())[-1] == "W_out.w"
    mnn.save(layer, tmp_path / "old.safetensors")
    assert mnn.load(tmp_path / "old.safetensors").config() == with_defaults(old)


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_matches_torch_multihead_attention_with_masks(rng, causal):
    """torch.nn.MultiheadAttention (batch_first) from the same weights, in float64."""
    torch = pytest.importorskip("torch", reason="the torch.nn comparison needs torch")
    layer = full_attention(rng, causal=causal)
    reference = torch.nn.MultiheadAttention(6, 2, batch_first=True, dtype=torch.float64)
    parts = [layer.sublayers[n] for n in ("W_qry", "W_key", "W_val")]
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.tensor(np.concatenate([p.params["w"] for p in parts])))
        reference.in_proj_bias.copy_(torch.tensor(np.concatenate([p.params["b"] for p in parts])))
        reference.out_proj.weight.copy_(torch.tensor(layer.W_out.params["w"]))
        reference.out_proj.bias.copy_(torch.tensor(layer.W_out.params["b"]))
    x, g = rng.standard_normal((2, 5, 6)), rng.standard_normal((2, 5, 6))
    padding = np.array([[False, False, False, True, True], [False] * 5])
    out = layer(x, key_padding_mask=padding)
    grad = layer.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    future = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1) if causal else None
    tout, _ = reference(tx, tx, tx, key_padding_mask=torch.tensor(padding), attn_mask=future,
                        need_weights=False)
    tout.backward(torch.tensor(g))
    pairs = [(out, tout), (grad, tx.grad),
             (layer.W_out.grads["w"], reference.out_proj.weight.grad),
             (np.concatenate([p.grads["w"] for p in parts]), reference.in_proj_weight.grad),
             (np.concatenate([p.grads["b"] for p in parts]), reference.in_proj_bias.grad)]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
