"""TransformerBlock: gradients, the causal mask, dropout modes, checkpoints, and torch.nn."""

import numpy as np
import pytest
from helpers import import_benchmark

import mnn
from mnn.serialization import build
from mnn.testing import gradcheck


def small_block(rng=0, **options):
    return mnn.TransformerBlock(4, heads=2, hidden=6, rng=rng, **options)


@pytest.mark.parametrize("options", [{}, {"dropout": 0.3}, {"causal": False, "bias": False}],
                         ids=["default", "dropout", "bidirectional-no-bias"])
def test_gradcheck(target, rng, options):
    """The full Jacobian for the default block; random projections for the variants (faster)."""
    assert gradcheck(small_block(**options), target.asarray(rng.standard_normal((2, 3, 4))),
                     full_jacobian_max=256 if not options else 16)


def test_a_position_sees_no_later_position(target, rng):
    """Causal: changing tokens after t changes nothing at t (and sends no gradient back)."""
    block = small_block()
    x = rng.standard_normal((1, 5, 4))
    changed = x.copy()
    changed[:, 3:] += 10 * rng.standard_normal((1, 2, 4))
    first, second = (target.to_host(block(target.asarray(v))) for v in (x, changed))
    np.testing.assert_allclose(second[:, :3], first[:, :3], rtol=1e-13, atol=1e-13)
    assert not np.allclose(second[:, 3:], first[:, 3:])
    g = np.zeros((1, 5, 4))
    g[:, 1] = 1.0  # the loss looks at position 1 only
    grad = target.to_host(block.backward(target.asarray(g)))
    np.testing.assert_array_equal(grad[:, 2:], 0)
    bidirectional = small_block(causal=False)
    bidirectional(target.asarray(x))
    assert np.abs(target.to_host(bidirectional.backward(target.asarray(g)))[:, 2:]).max() > 1e-3


def test_eval_mode_switches_its_dropout_off(target, rng):
    block = small_block(dropout=0.5)
    x = target.asarray(rng.standard_normal((2, 3, 4)))
    assert not np.allclose(target.to_host(block(x)), target.to_host(block(x)))
    block.eval()
    np.testing.assert_array_equal(target.to_host(block(x)), target.to_host(block(x)))


def test_parameter_names_and_config():
    block = mnn.TransformerBlock(8, heads=2, rng=0)
    names = list(block.state_dict())
    assert names[:3] == ["attention.block.0.w", "attention.block.0.b",
                         "attention.block.1.W_qry.w"]
    assert "mlp.block.1.w" in names and block.state_dict()["mlp.block.1.w"].shape == (32, 8)
    assert block.config() == {"type": "TransformerBlock", "args": {
        "d_model": 8, "heads": 2, "hidden": None, "dropout": 0.0, "bias": True, "causal": True,
        "approximate": "tanh"}}
    rebuilt = build(block.config())
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in block.state_dict().items()}


def test_checkpoint_round_trip(tmp_path, target, rng):
    block = small_block(rng=1)
    x = target.asarray(rng.standard_normal((2, 3, 4)))
    out = target.to_host(block(x))
    mnn.save(block, tmp_path / "block.safetensors")
    loaded = mnn.load(tmp_path / "block.safetensors").to(xp=target.backend.name,
                                                          device=target.device_name)
    np.testing.assert_allclose(target.to_host(loaded(x)), out, rtol=1e-14)


def test_d_model_must_split_into_heads():
    with pytest.raises(ValueError, match=r"TransformerBlock: expected d_model divisible by "
                                         r"heads, got d_model=6 and heads=4"):
        mnn.TransformerBlock(6, heads=4)


def test_matches_torch_nn(rng):
    """The block of benchmarks/gpt.py's torch.nn GPT, from the same weights, in float64."""
    torch = pytest.importorskip("torch", reason="the torch.nn comparison needs torch")
    gpt = import_benchmark("gpt")
    block = mnn.TransformerBlock(6, heads=3, hidden=10, rng=rng)
    for _, owner, key in block.parameters():  # nonzero biases, LayerNorm scales other than 1
        owner.params[key] = owner.params[key] + 0.1 * rng.standard_normal(owner.params[key].shape)
    reference = gpt.torch_gpt_class()(vocab_size=2, context=4, d_model=6, heads=3, layers=1,
                                      hidden=10).double().blocks[0]
    ours = block.state_dict()
    theirs = {theirs: ours[mine] for mine, theirs in gpt.BLOCK_NAMES.items()}
    for key, kind in (("w", "weight"), ("b", "bias")):
        theirs[f"qkv.{kind}"] = np.concatenate([ours[f"attention.block.1.{part}.{key}"]
                                                for part in gpt.QKV])
    with torch.no_grad():
        for name, value in theirs.items():
            reference.get_parameter(name).copy_(torch.tensor(value))
    x, g = rng.standard_normal((2, 4, 6)), rng.standard_normal((2, 4, 6))
    out, grad = block(x), block.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    tout = reference(tx)
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-11, atol=1e-12)
    grads = {name: owner.grads[key] for name, owner, key in block.parameters()}
    for mine, name in gpt.BLOCK_NAMES.items():
        np.testing.assert_allclose(grads[mine], reference.get_parameter(name).grad.numpy(),
                                   rtol=1e-11, atol=1e-12, err_msg=mine)
    for key, kind in (("w", "weight"), ("b", "bias")):
        stacked = np.concatenate([grads[f"attention.block.1.{part}.{key}"] for part in gpt.QKV])
        np.testing.assert_allclose(stacked, reference.get_parameter(f"qkv.{kind}").grad.numpy(),
                                   rtol=1e-11, atol=1e-12)
