"""RNN, LSTM, GRU: gradients, torch.nn.RNN/LSTM/GRU over whole sequences with initial states,
torch weights by name, checkpoints, bad arguments."""

import math

import numpy as np
import pytest

import mnn
from mnn.errors import AllocationError, ArgumentError, ArgumentTypeError
from mnn.testing import gradcheck

torch = pytest.importorskip("torch", reason="the references are torch.nn.RNN, LSTM and GRU")

KINDS = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}
LAYERS, BATCH, LENGTH, FEATURES, HIDDEN = 2, 3, 5, 3, 4


def pair(name, bias=True, num_layers=LAYERS):
    """An mnn layer and the torch module with the same weights (copied from mnn's by name)."""
    ours = getattr(mnn, name)(FEATURES, HIDDEN, num_layers, bias=bias, rng=7)
    theirs = KINDS[name](FEATURES, HIDDEN, num_layers, bias=bias, batch_first=True,
                         dtype=torch.float64)
    theirs.load_state_dict({key: torch.tensor(value) for key, value in ours.state_dict().items()})
    return ours, theirs


def states(name, result):
    """(h, c) or (h,): the parts of a state, as mnn's final_state and torch's h_n give it."""
    return tuple(result) if name == "LSTM" else (result,)


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("initial", [True, False], ids=["h0", "zeros"])
def test_matches_torch_over_a_whole_sequence(target, rng, name, bias, initial):
    """Outputs, final states and every gradient (weights, inputs, initial states) in float64,
    with gradients for the outputs and for the final states, as torch.autograd gives them."""
    ours, theirs = pair(name, bias)
    parts = 2 if name == "LSTM" else 1
    x, g = rng.standard_normal((BATCH, LENGTH, FEATURES)), rng.standard_normal((BATCH, LENGTH,
                                                                               HIDDEN))
    shape = (LAYERS, BATCH, HIDDEN)
    s0 = [rng.standard_normal(shape) for _ in range(parts)]
    g_final = [rng.standard_normal(shape) for _ in range(parts)]
    given = dict(zip(("h0", "c0"), map(target.asarray, s0), strict=False)) if initial else {}
    out = ours(target.asarray(x), **given)
    final = states(name, ours.final_state)
    grad_x = ours.backward(target.asarray(g), **dict(zip(
        ("h_n_grad", "c_n_grad"), map(target.asarray, g_final), strict=False)))
    initial_grads = states(name, ours.initial_state_grads)

    tx = torch.tensor(x, requires_grad=True)
    ts0 = [torch.tensor(s if initial else np.zeros(shape), requires_grad=True) for s in s0]
    tout, tfinal = theirs(tx, tuple(ts0) if name == "LSTM" else ts0[0])
    tfinal = states(name, tfinal)
    loss = (tout * torch.tensor(g)).sum() + sum((part * torch.tensor(gp)).sum()
                                                for part, gp in zip(tfinal, g_final, strict=True))
    loss.backward()

    pairs = [(out, tout), (grad_x, tx.grad), *zip(final, tfinal, strict=True),
             *zip(initial_grads, (s.grad for s in ts0), strict=True)]
    pairs += [(ours.grads[key], parameter.grad) for key, parameter in theirs.named_parameters()]
    assert len(ours.grads) == len(list(theirs.named_parameters())) == LAYERS * (2 + 2 * bias)
    for mine, reference in pairs:
        np.testing.assert_allclose(target.to_host(mine), reference.detach().numpy(),
                                   rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_gradcheck_batch_1_one_step_without_bias(target, rng, name):
    layer = getattr(mnn, name)(2, 3, num_layers=2, bias=False, rng=1)
    assert gradcheck(layer, target.asarray(rng.standard_normal((1, 1, 2))))


@pytest.mark.parametrize("name", sorted(KINDS))
def test_initial_state_gradients_match_finite_differences(target, rng, name):
    """The gradient of h0 (and c0), against central differences of <g, output>."""
    layer = getattr(mnn, name)(2, 3, num_layers=2, rng=2)
    x, g = target.asarray(rng.standard_normal((2, 3, 2))), rng.standard_normal((2, 3, 3))
    s0 = [rng.standard_normal((2, 2, 3)) for _ in range(2 if name == "LSTM" else 1)]

    def loss(parts):
        out = layer(x, **dict(zip(("h0", "c0"), map(target.asarray, parts), strict=False)))
        return float(np.sum(target.to_host(out) * g))

    loss(s0)
    layer.backward(target.asarray(g))
    analytic = states(name, layer.initial_state_grads)
    eps = 1e-6
    for k, part in enumerate(s0):
        for index in np.ndindex(part.shape):
            plus, minus = [p.copy() for p in s0], [p.copy() for p in s0]
            plus[k][index] += eps
            minus[k][index] -= eps
            numeric = (loss(plus) - loss(minus)) / (2 * eps)
            assert target.to_host(analytic[k])[index] == pytest.approx(numeric, abs=1e-7)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_torch_weights_load_by_name_and_the_init_is_torchs(rng, name):
    theirs = KINDS[name](FEATURES, HIDDEN, LAYERS, batch_first=True, dtype=torch.float64)
    wide = getattr(mnn, name)(FEATURES, 64, LAYERS, rng=0)
    drawn = np.concatenate([value.ravel() for value in wide.state_dict().values()])
    bound = 1 / math.sqrt(64)  # torch: every parameter uniform on [-bound, bound]
    assert np.max(np.abs(drawn)) <= bound and np.max(np.abs(drawn)) > 0.99 * bound
    assert np.std(drawn) == pytest.approx(bound / math.sqrt(3), rel=0.03)  # a uniform's
    ours = getattr(mnn, name)(FEATURES, HIDDEN, LAYERS, rng=0)
    ours.load_weights({key: value.detach().numpy() for key, value in theirs.state_dict().items()})
    x = rng.standard_normal((BATCH, LENGTH, FEATURES))
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x))[0].detach().numpy(),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_checkpoint_round_trip(tmp_path, target, rng, name):
    layer = getattr(mnn, name)(FEATURES, HIDDEN, LAYERS, bias=False, rng=3)
    x = target.asarray(rng.standard_normal((BATCH, LENGTH, FEATURES)))
    out = target.to_host(layer(x))
    mnn.save(layer, tmp_path / "recurrent.safetensors")
    loaded = mnn.load(tmp_path / "recurrent.safetensors").to(xp=target.backend.name,
                                                              device=target.device_name)
    assert type(loaded) is type(layer) and loaded.config() == layer.config()
    np.testing.assert_allclose(target.to_host(loaded(x)), out, rtol=1e-14)


def test_input_grad_false_skips_the_input_gradient_only(rng):
    x, g = rng.standard_normal((2, 3, FEATURES)), rng.standard_normal((2, 3, HIDDEN))
    full, skipping = mnn.LSTM(FEATURES, HIDDEN, 2, rng=4), mnn.LSTM(FEATURES, HIDDEN, 2, rng=4)
    skipping.input_grad = False
    full(x), skipping(x)
    assert full.backward(g) is not None and skipping.backward(g) is None
    for key in full.grads:
        np.testing.assert_array_equal(skipping.grads[key], full.grads[key])


@pytest.mark.parametrize(("args", "error", "message"), [
    ({"hidden_size": 0}, ArgumentError, "expected hidden_size to be a positive int, got 0"),
    ({"num_layers": 0}, ArgumentError, "expected num_layers to be a positive int, got 0"),
    ({"input_size": 2.5}, ArgumentTypeError, "expected input_size to be a positive int"),
    ({"bias": 1}, ArgumentTypeError, "expected bias to be True or False"),
    ({"batch_first": False}, ArgumentError, "expected batch_first=True"),
    ({"hidden_size": 10**9}, AllocationError, r"parameters of shape .* need")])
@pytest.mark.parametrize("name", sorted(KINDS))
def test_bad_constructor_arguments_are_a_clear_error(name, args, error, message):
    arguments = {"input_size": 3, "hidden_size": 4, **args}
    with pytest.raises(error, match=rf"{name}: {message}"):
        getattr(mnn, name)(**arguments)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_bad_inputs_and_states_are_a_clear_error(target, rng, name):
    layer = getattr(mnn, name)(3, 4, num_layers=2, rng=0)
    with pytest.raises(mnn.ShapeError, match=rf"{name}: expected inputs of shape \(\*, \*, 3\), "
                                             r"got .*shape \(2, 5, 2\)"):
        layer(target.asarray(rng.standard_normal((2, 5, 2))))
    with pytest.raises(mnn.ShapeError, match=rf"{name}: expected inputs with at least one time "
                                             r"step"):
        layer(target.asarray(np.zeros((2, 0, 3))))
    x = target.asarray(rng.standard_normal((2, 5, 3)))
    names = ("h0", "c0") if name == "LSTM" else ("h0",)
    for state in names:
        with pytest.raises(mnn.ShapeError, match=rf"{name}: expected {state} of shape \(2, 2, 4\) "
                                                 r"\(num_layers, batch, hidden_size\)"):
            layer(x, **{state: target.asarray(np.zeros((1, 2, 4)))})
        with pytest.raises(mnn.PlacementError, match=rf"{name}: expected {state} from the same "
                                                     r"library, device and dtype"):
            layer(x, **{state: target.asarray(np.zeros((2, 2, 4)), "float32")})
        with pytest.raises(mnn.DTypeError, match=rf"{name}: expected {state} to be an array"):
            layer(x, **{state: [[0.0]]})
    out = layer(x)
    with pytest.raises(mnn.ShapeError, match=rf"{name}: expected h_n_grad of shape \(2, 2, 4\)"):
        layer.backward(target.asarray(np.ones(tuple(out.shape))),
                       h_n_grad=target.asarray(np.ones((2, 4))))
