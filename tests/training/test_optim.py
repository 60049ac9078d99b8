"""Optimizers: trajectories against torch.optim in float64, the rules against NumPy, every
target, state that follows the model, state dicts and every error message."""

import array_api_compat
import numpy as np
import pytest

import mnn
from mnn.optim import SGD, Adam, AdamW

# name -> (optimizer, hyperparameters); large rates and decays so that every term matters.
CASES = {
    "sgd": (SGD, {"lr": 0.1}),
    "sgd-momentum": (SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    "sgd-nesterov": (SGD, {"lr": 0.03, "momentum": 0.9, "nesterov": True}),
    "sgd-weight-decay": (SGD, {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.2}),
    "adam": (Adam, {"lr": 0.02, "betas": (0.8, 0.95)}),
    "adam-weight-decay": (Adam, {"lr": 0.02, "weight_decay": 0.3}),
    "adamw": (AdamW, {"lr": 0.02, "weight_decay": 0.3}),
}


def tiny_net(seed=0):
    return mnn.SequentialLayers([mnn.LinearLayer(4, 6, rng=seed), mnn.ReluLayer(),
                                 mnn.LinearLayer(6, 3, rng=seed + 1), mnn.MSELossLayer()])


def data(rng, batch=8):
    return rng.standard_normal((batch, 4)), rng.standard_normal((batch, 3))


def train_step(net, opt, x, y):
    opt.zero_grad()
    loss = net(x, y)
    net.backward()
    opt.step()
    return loss


@pytest.mark.parametrize("case", CASES)
def test_trajectory_matches_torch_optim(rng, case):
    torch = pytest.importorskip("torch", reason="the torch.optim comparison needs torch")
    optimizer, hyper = CASES[case]
    net = tiny_net()
    for layer in (net[0], net[2]):  # nonzero biases, so the bias updates show
        layer.params["b"] = rng.standard_normal(layer.params["b"].shape)
    tnet = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    tnet = tnet.double()
    names = {f"{i}.{k}": f"{i}.{t}" for i in (0, 2) for k, t in (("w", "weight"), ("b", "bias"))}
    with torch.no_grad():
        for name, value in net.state_dict().items():
            tnet.state_dict()[names[name]].copy_(torch.tensor(value))
    opt = optimizer(net, **hyper)
    topt = getattr(torch.optim, optimizer.__name__)(tnet.parameters(), **hyper)
    for _ in range(10):
        x, y = data(rng)
        assert np.isfinite(train_step(net, opt, x, y)), f"{case} diverged"
        topt.zero_grad()
        ((tnet(torch.tensor(x)) - torch.tensor(y)) ** 2).sum(dim=1).mean().backward()
        topt.step()
        for name, value in net.state_dict().items():
            tvalue = tnet.state_dict()[names[name]]
            np.testing.assert_allclose(value, tvalue.numpy(), rtol=1e-10,
                                       atol=0, err_msg=f"{case}: parameter {name}")


def numpy_reference(case, theta, grads):
    """The parameter after one step per gradient in ``grads``, torch's rules in plain NumPy."""
    optimizer, hyper = CASES[case]
    lr, wd = hyper["lr"], hyper.get("weight_decay", 0.0)
    if optimizer is SGD:
        mu, tau, nesterov = hyper.get("momentum", 0.0), hyper.get("dampening", 0.0), \
            hyper.get("nesterov", False)
        buffer = None
        for g in grads:
            g = g + wd * theta
            if mu:
                buffer = g.copy() if buffer is None else mu * buffer + (1 - tau) * g
                g = g + mu * buffer if nesterov else buffer
            theta = theta - lr * g
        return theta
    (b1, b2), eps = hyper.get("betas", (0.9, 0.999)), hyper.get("eps", 1e-8)
    m = v = np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        if optimizer is AdamW:
            theta = theta * (1 - lr * wd)
        else:
            g = g + wd * theta
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta


@pytest.mark.parametrize("case", CASES)
def test_rule_matches_numpy_reference(rng, case):
    """Gradients set by hand, so this checks ``step`` alone and runs without torch."""
    optimizer, hyper = CASES[case]
    layer = mnn.LinearLayer(3, 2, rng=0)
    start = {k: v.copy() for k, v in layer.params.items()}
    grads = [{k: rng.standard_normal(v.shape) for k, v in start.items()} for _ in range(4)]
    opt = optimizer(layer, **hyper)
    for g in grads:
        layer.grads = dict(g)
        opt.step()
    for key in start:
        expected = numpy_reference(case, start[key], [g[key] for g in grads])
        np.testing.assert_allclose(layer.params[key], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", CASES)
def test_every_target_decreases_the_loss_and_keeps_state_there(target, rng, case):
    optimizer, hyper = CASES[case]
    net = tiny_net()
    opt = optimizer(net, **{**hyper, "lr": hyper["lr"] / 4})
    x, y = (target.asarray(a, "float32") for a in data(rng, batch=16))
    losses = [float(target.to_host(train_step(net, opt, x, y))) for _ in range(6)]
    assert losses[-1] < losses[0], f"{case} on {target}: losses {losses}"
    params = {name: layer.params[key] for name, layer, key in net.parameters()}
    for name, param in params.items():
        assert array_api_compat.device(param) == target.device
        for entry, value in opt.state[name].items():
            if entry == "step":
                assert value == 6
                continue
            assert type(value) is type(param), f"{name} {entry}"
            assert array_api_compat.device(value) == target.device, f"{name} {entry}"
            assert value.dtype == param.dtype == target.xp.float32, f"{name} {entry}"
    if optimizer is SGD and not hyper.get("momentum"):
        assert all(not s for s in opt.state.values())  # plain SGD keeps no state


def test_state_follows_the_model_to_another_device(rng):
    pytest.importorskip("array_api_strict", reason="the fake second device is array_api_strict's")
    import array_api_strict as xp

    net, x, y = tiny_net(), *data(rng)
    opt = Adam(net, lr=0.01)
    train_step(net, opt, x, y)
    net.to(xp="array_api_strict", device="device1")
    device = xp.Device("device1")
    train_step(net, opt, xp.asarray(x, device=device), xp.asarray(y, device=device))
    for state in opt.state.values():
        assert state["step"] == 2
        for entry in ("exp_avg", "exp_avg_sq"):
            assert array_api_compat.device(state[entry]) == device


@pytest.mark.parametrize("case", CASES)
def test_state_dict_round_trip_resumes_exactly(rng, case):
    optimizer, hyper = CASES[case]
    batches = [data(rng) for _ in range(6)]
    straight = tiny_net()
    opt = optimizer(straight, **hyper)
    for x, y in batches:
        train_step(straight, opt, x, y)

    first = tiny_net()
    opt = optimizer(first, **hyper)
    for x, y in batches[:3]:
        train_step(first, opt, x, y)
    resumed = tiny_net(seed=5)
    resumed.load_weights(first.state_dict())
    fresh = optimizer(resumed, lr=123.0)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.config() == opt.config()
    for x, y in batches[3:]:
        train_step(resumed, fresh, x, y)
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)


def test_state_dict_has_hyperparameters_and_per_parameter_state(rng):
    net, (x, y) = tiny_net(), data(rng)
    opt = AdamW(net, lr=0.01)
    assert opt.state_dict() == {"type": "AdamW", "args": {"lr": 0.01, "betas": (0.9, 0.999),
                                                          "eps": 1e-8, "weight_decay": 0.01},
                                "state": {}}
    train_step(net, opt, x, y)
    state = opt.state_dict()["state"]
    assert list(state) == ["0.w", "0.b", "2.w", "2.b"]
    assert state["0.w"]["step"] == 1 and state["0.w"]["exp_avg"].shape == (6, 4)
    assert repr(opt) == "AdamW(lr=0.01, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01)"


def test_zero_grad_zeroes_every_gradient(rng):
    net, (x, y) = tiny_net(), data(rng)
    opt = SGD(net)
    net(x, y)
    net.backward()
    assert any(np.any(layer.grads[key]) for _, layer, key in net.parameters())
    opt.zero_grad()
    assert not any(np.any(layer.grads[key]) for _, layer, key in net.parameters())


def test_zero_grad_set_to_none_skips_parameters_without_gradients(rng):
    """As torch.optim: after zero_grad(set_to_none=True), a parameter with no gradient stays."""
    net, (x, y) = tiny_net(), data(rng)
    opt = Adam(net, lr=0.1)
    opt.zero_grad(set_to_none=True)
    assert all(layer.grads[key] is None for _, layer, key in net.parameters())
    net(x, y)
    net.backward()
    net.layers[0].grads["b"] = None  # as if that parameter took no part in the loss
    before = {k: np.array(v) for k, v in net.state_dict().items()}
    opt.step()
    after = net.state_dict()
    np.testing.assert_array_equal(after["0.b"], before["0.b"])
    assert all(np.any(after[k] != before[k]) for k in before if k != "0.b")
    assert "0.b" not in opt.state_dict()["state"]


def test_build_rebuilds_from_config():
    net = tiny_net()
    opt = SGD(net, lr=0.5, momentum=0.9, nesterov=True)
    rebuilt = mnn.optim.build(net, opt.config())
    assert type(rebuilt) is SGD and rebuilt.config() == opt.config() and rebuilt.model is net


@pytest.mark.parametrize("config, message", [
    ({"type": "os.system", "args": {}}, r"unknown optimizer type 'os.system'; known optimizer "
                                        r"types: Adam, AdamW, SGD"),
    ({"type": "Optimizer", "args": {}}, r"unknown optimizer type 'Optimizer'"),
    ({"type": "SGD", "args": {"lr": -1.0}},
     r"cannot construct SGD .* expected lr to be finite and >= 0"),
    ({"type": "SGD", "args": {"speed": 1}}, r"cannot construct SGD .* 'speed'"),
    ("SGD", r"expected an optimizer config"),
])
def test_build_refuses_what_it_does_not_know(config, message):
    with pytest.raises(mnn.CheckpointError, match=message):
        mnn.optim.build(tiny_net(), config)


@pytest.mark.parametrize("optimizer, hyper, message", [
    (SGD, {"lr": -0.1}, r"SGD: expected lr to be finite and >= 0, got -0.1"),
    (SGD, {"momentum": -0.5}, r"SGD: expected momentum to be finite and >= 0, got -0.5"),
    (SGD, {"weight_decay": -1}, r"SGD: expected weight_decay to be finite and >= 0, got -1.0"),
    (SGD, {"nesterov": True}, r"SGD: Nesterov momentum needs momentum > 0 and dampening == 0, "
                              r"got momentum=0.0, dampening=0.0"),
    (SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, r"dampening=0.1"),
    (Adam, {"lr": -1e-3}, r"Adam: expected lr to be finite and >= 0, got -0.001"),
    (Adam, {"eps": -1.0}, r"Adam: expected eps to be finite and >= 0"),
    (AdamW, {"betas": (0.9, 1.0)}, r"AdamW: expected betas = \(beta1, beta2\), each in \[0, 1\), "
                                   r"got \(0.9, 1.0\)"),
    (Adam, {"betas": (0.9,)}, r"got \(0.9,\)"),
])
def test_bad_hyperparameters(optimizer, hyper, message):
    with pytest.raises(ValueError, match=message):
        optimizer(tiny_net(), **hyper)


def test_model_must_be_a_layer():
    with pytest.raises(TypeError, match=r"SGD: expected a model \(a BaseLayer, e.g. "
                                        r"SequentialLayers\), got an object of type list"):
        SGD([mnn.LinearLayer(2, 2)])


def test_load_state_dict_lists_every_problem(rng):
    net, (x, y) = tiny_net(), data(rng)
    opt = Adam(net)
    train_step(net, opt, x, y)
    state = opt.state_dict()
    bad = {**state, "args": {**state["args"], "momentum": 0.9}, "state": {
        **state["state"],
        "0.w": {**state["state"]["0.w"], "exp_avg": np.zeros((2, 2))},
        "0.b": {"step": 1, "exp_avg": np.zeros(6), "extra": 1},
        "2.w": {**state["state"]["2.w"], "step": 1.5},
        "9.w": {"step": 1},
    }}
    other = Adam(tiny_net())
    with pytest.raises(mnn.CheckpointError) as info:
        other.load_state_dict(bad)
    text = str(info.value)
    assert text.startswith("Adam: the state dict does not fit the optimizer and its model "
                           "(6 problems):")
    for line in ["unexpected hyperparameter 'momentum'",
                 "shape mismatch for '0.w' 'exp_avg': the state has (2, 2), the parameter (6, 4)",
                 "missing state 'exp_avg_sq' for '0.b'", "unexpected state 'extra' for '0.b'",
                 "state 'step' for '2.w' is neither an array nor an int: got an object of type "
                 "float", "state for '9.w', which is not a parameter of the model"]:
        assert line in text
    assert other.state == {}  # nothing was taken


def test_load_state_dict_refuses_another_optimizer_and_bad_values(rng):
    net = tiny_net()
    with pytest.raises(mnn.CheckpointError, match=r"the state dict is for 'SGD', not 'Adam'"):
        Adam(net).load_state_dict(SGD(net).state_dict())
    opt = SGD(net, lr=0.5)
    with pytest.raises(mnn.CheckpointError, match=r"invalid hyperparameters \{'lr': -1.0\}: "
                                                  r"SGD: expected lr to be finite and >= 0"):
        opt.load_state_dict({**opt.state_dict(), "args": {"lr": -1.0}})
    assert opt.lr == 0.5


def test_sgd_takes_no_step_inside_backward():
    """Layers know no optimizer: SGD has no fused mode, whose step inside backward used each
    rank's own gradient under data parallelism, before the all-reduce (the ranks diverged)."""
    with pytest.raises(TypeError, match="fused"):
        SGD(tiny_net(), lr=0.1, fused=True)
    assert not any(hasattr(layer, "fused_sgd") for _, layer in tiny_net().named_layers())
