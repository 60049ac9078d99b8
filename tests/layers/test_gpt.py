"""GPT: the same model as torch.nn trains to the same weights; causality, sampling, checkpoints."""

import math

import numpy as np
import pytest
from helpers import import_benchmark

import mnn
from mnn.errors import NonFiniteError

SMALL = {"vocab_size": 11, "context": 8, "d_model": 16, "heads": 2, "layers": 2}


def small_gpt(rng=0, **options):
    return mnn.GPT(**{**SMALL, **options}, rng=rng)


def test_three_adamw_steps_match_torch_nn_in_float64(target):
    """The issue's check at scale: the same GPT in mnn (on this target) and in torch.nn, from
    the same weights, three AdamW steps on one batch: every loss and weight agrees to 1e-8."""
    pytest.importorskip("torch", reason="the torch.nn reference needs torch")
    gpt = import_benchmark("gpt")
    problem = gpt.make_problem(batch=4, seed=1, **SMALL)
    reference = gpt.build("torch.nn", problem, "float64")
    ours = gpt.Mnn(problem, "float64", backend=target.backend.name, device=target.device_name)
    for step in range(3):
        expected, got = float(reference().detach()), float(target.to_host(ours()))
        assert abs(got - expected) <= 1e-8, f"step {step + 1}: loss {got} against {expected}"
    theirs, mine = reference.weights(), ours.weights()
    assert theirs.keys() == mine.keys() == problem.weights.keys()
    for name, start in problem.weights.items():
        if not name.endswith("W_key.b"):  # adds q.b_k to a whole row of scores: no gradient
            assert np.abs(theirs[name] - start).max() > 1e-4, f"{name} did not move"
        np.testing.assert_allclose(mine[name], theirs[name], rtol=0, atol=1e-8, err_msg=name)


def test_logits_depend_on_earlier_tokens_only(target, rng):
    model = small_gpt()
    ids = rng.integers(0, 11, size=(2, 8))
    changed = ids.copy()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    first, second = (target.to_host(model(target.asarray(v))) for v in (ids, changed))
    assert first.shape == (2, 8, 11)
    np.testing.assert_allclose(second[:, :5], first[:, :5], rtol=1e-12, atol=1e-12)
    assert not np.allclose(second[:, 5:], first[:, 5:])


def test_backward_reaches_every_parameter_and_returns_none(target, rng):
    model = mnn.SequentialLayers([small_gpt(), mnn.CrossEntropyLossLayer(axis=-1)])
    ids = target.asarray(rng.integers(0, 11, size=(3, 9)))
    loss = model(ids[:, :-1], ids[:, 1:])
    assert abs(float(target.to_host(loss)) - np.log(11)) < 1.5  # about uniform at the start
    assert model.backward() is None
    for name, owner, key in model.parameters():
        assert np.abs(target.to_host(owner.grads[key])).max() > 0, name
    positions = target.to_host(model[0].positions.grads["w"])
    assert np.all(positions[:8].any(axis=1)) and positions.shape == (8, 16)


def test_positions_past_the_context_are_a_clear_error(target):
    with pytest.raises(mnn.ShapeError, match=r"GPT: expected at most 8 tokens per sequence \(the "
                                             r"context\), got .*shape \(1, 9\)"):
        small_gpt()(target.asarray(np.zeros((1, 9), dtype=np.int64)))


def test_generate_appends_tokens_from_the_vocabulary(target, rng):
    model = small_gpt()
    prompt = target.asarray(rng.integers(0, 11, size=(3, 2)))
    out = target.to_host(model.generate(prompt, 8, rng=5))  # past the context of 8
    assert out.shape == (3, 10) and out.min() >= 0 and out.max() < 11
    np.testing.assert_array_equal(out[:, :2], target.to_host(prompt))
    again = target.to_host(model.generate(prompt, 8, rng=5))
    np.testing.assert_array_equal(again, out)  # seeded
    assert not np.array_equal(target.to_host(model.generate(prompt, 8, rng=6)), out)


def test_temperature_0_and_top_k_1_take_the_most_likely_token(target, rng):
    model = small_gpt(dropout=0.5)
    prompt = target.asarray(rng.integers(0, 11, size=(5,)))
    greedy = target.to_host(model.generate(prompt, 4, temperature=0))
    assert greedy.shape == (9,)  # one sequence in, one sequence out
    np.testing.assert_array_equal(target.to_host(model.generate(prompt, 4, top_k=1, rng=3)),
                                  greedy)
    ids = greedy[None, :]
    model.eval()
    for t in range(5, 9):  # each new token is the argmax of the logits before it
        logits = target.to_host(model(target.asarray(ids[:, :t])))
        assert ids[0, t] == np.argmax(logits[0, -1])
    assert all(layer.training is False for _, layer in model.named_layers())


def test_generate_restores_training_mode(target, rng):
    model = small_gpt(dropout=0.5)
    model.generate(target.asarray(np.array([[1, 2]])), 3, rng=0)
    assert all(layer.training for _, layer in model.named_layers())


def test_sampling_follows_the_distribution(rng):
    """The inverse-CDF draw of generate: token frequencies match softmax(logits / tau), top-k."""
    model = small_gpt()
    logits = np.array([[2.0, 1.0, 0.0, -1.0, 0.5]])
    uniform = np.random.default_rng(0).random(40_000)
    for temperature, top_k in ((1.0, None), (0.5, None), (1.0, 2)):
        tokens = np.array([int(model._sample(mnn.backends.get("numpy").namespace(), logits,
                                             uniform[i:i + 1], temperature, top_k)[0])
                           for i in range(0, 40_000, 4)])
        p = np.exp(logits[0] / temperature)
        if top_k:
            p[np.argsort(p)[:-top_k]] = 0
        p /= p.sum()
        frequencies = np.bincount(tokens, minlength=5) / len(tokens)
        np.testing.assert_allclose(frequencies, p, atol=0.015)


@pytest.mark.parametrize(("args", "error", "message"), [
    ({"n": -1}, ValueError, "expected n to be an int >= 0, got -1"),
    ({"n": "x"}, TypeError, "expected n to be an int >= 0, got 'x'"),
    ({"n": 2, "temperature": -1.0}, ValueError, "expected temperature to be finite and >= 0"),
    ({"n": 2, "temperature": float("nan")}, ValueError, "expected temperature to be finite"),
    ({"n": 2, "top_k": 0}, ValueError, "expected top_k to be a positive int"),
    ({"n": 2, "rng": "x"}, TypeError, "rng: expected a non-negative int seed or a numpy")])
def test_bad_generate_arguments_are_mnn_errors_and_python_errors(args, error, message):
    """``except mnn.MnnError`` and Python's convention (ValueError for a value, TypeError for
    a type) both catch them."""
    with pytest.raises(mnn.MnnError, match=rf"GPT.generate: {message}") as raised:
        small_gpt().generate(np.array([1]), **args)
    assert isinstance(raised.value, error)


def test_counts_and_seeds_may_be_numpy_integers():
    model = small_gpt()
    out = model.generate(np.array([1, 2]), np.int64(3), rng=np.int64(4))
    np.testing.assert_array_equal(out, model.generate(np.array([1, 2]), 3, rng=4))
    np.testing.assert_array_equal(model.generate(np.array([1, 2]), 0), [1, 2])


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_a_prompt_dtype_that_cannot_hold_the_vocabulary_is_refused(target, dtype):
    """A vocabulary of 300: a sampled 275 would wrap to 19 in uint8, and to -81 in int8."""
    model = small_gpt(vocab_size=300).to(xp=target.backend.name, device=target.device_name)
    with pytest.raises(mnn.DTypeError, match=rf"GPT.generate: expected a prompt whose dtype "
                                             rf"holds every id of the vocabulary \(up to 299\), "
                                             rf"got .* dtype .*{dtype}.*give the prompt as int64"):
        model.generate(target.asarray(np.array([1, 2], dtype=dtype)), 20, rng=0)


def test_a_prompt_dtype_that_holds_the_vocabulary_keeps_it(target):
    model = small_gpt(vocab_size=300).to(xp=target.backend.name, device=target.device_name)
    prompt = target.asarray(np.array([[1, 2], [3, 4]], dtype=np.int16))
    out = model.generate(prompt, 30, temperature=2.0, rng=0)
    assert out.dtype == prompt.dtype
    host = target.to_host(out)
    assert host.min() >= 0 and host.max() < 300 and host.max() >= 256  # ids past uint8's


def test_nan_weights_stop_sampling_and_greedy_decoding(target):
    """Token 0 is no answer to NaN logits: torch.multinomial raises, and so does generate."""
    model = small_gpt()
    model.head.params["w"][3, 0] = np.nan
    model.to(xp=target.backend.name, device=target.device_name)
    prompt = target.asarray(np.array([[1, 2], [3, 4]]))
    for temperature in (1.0, 0.0):
        with pytest.raises(NonFiniteError, match=r"GPT.generate: the next-token logits.* of 2 "
                                                 r"of 2 sequences \(the first: sequence 0\) "
                                                 r"are NaN or \+inf"):
            model.generate(prompt, 3, temperature=temperature, rng=0)


def test_a_temperature_that_overflows_float32_is_refused(target):
    """1e-39 is a float32 subnormal: the logits divided by it overflow to +inf."""
    model = small_gpt().to(xp=target.backend.name, device=target.device_name, dtype="float32")
    prompt = target.asarray(np.array([1, 2]))
    with pytest.raises(NonFiniteError, match=r"divided by the temperature 1e-39 .*float32.* "
                                             r"temperature=0 takes the most likely token"):
        model.generate(prompt, 3, temperature=1e-39, rng=0)
    assert model.generate(prompt, 3, temperature=1e-30, rng=0).shape == (5,)  # no overflow


@pytest.mark.parametrize("row", [[0.0, math.inf, 1.0], [0.0, math.nan, 1.0], [-math.inf] * 3])
def test_logits_without_a_distribution_are_refused(row):
    xp = mnn.backends.get("numpy").namespace()
    with pytest.raises(NonFiniteError, match=r"are NaN or \+inf, or all -inf"):
        small_gpt()._sample(xp, np.array([[0.0, 1.0, 2.0], row]), np.array([0.5, 0.5]), 1.0,
                            None)


def test_each_step_draws_its_own_random_numbers(target, monkeypatch):
    """B numbers a step, not n x B up front (a sample of 10^9 tokens asked for 7.45 GiB at the
    first step); the draws of successive steps differ."""
    shapes = []
    draw = target.backend.random_uniform

    def recording(shape, *args, **kwargs):
        shapes.append(tuple(shape))
        return draw(shape, *args, **kwargs)

    monkeypatch.setattr(target.backend, "random_uniform", recording)
    model = small_gpt().to(xp=target.backend.name, device=target.device_name)
    out = target.to_host(model.generate(target.asarray(np.array([[1], [2], [3]])), 12, rng=0))
    assert shapes == [(3,)] * 12
    assert len(set(out[:, 1:].reshape(-1).tolist())) > 3  # not one draw repeated


def test_an_empty_prompt_is_a_clear_error():
    with pytest.raises(mnn.ShapeError, match=r"GPT.generate: expected a prompt of at least one "
                                             r"token"):
        small_gpt().generate(np.zeros((2, 0), dtype=np.int64), 3)


def test_checkpoint_round_trip_with_its_optimizer(tmp_path, target, rng):
    model = mnn.SequentialLayers([small_gpt(dropout=0.1), mnn.CrossEntropyLossLayer(axis=-1)])
    model.to(xp=target.backend.name, device=target.device_name)
    optimizer = mnn.optim.AdamW(model)
    ids = target.asarray(rng.integers(0, 11, size=(2, 9)))
    model(ids[:, :-1], ids[:, 1:])
    model.backward()
    optimizer.step()
    mnn.save(model, tmp_path / "gpt.safetensors", optimizer=optimizer)
    loaded, restored = mnn.load(tmp_path / "gpt.safetensors", with_optimizer=True)
    assert loaded.config() == model.config() and loaded[0].config()["type"] == "GPT"
    loaded.to(xp=target.backend.name, device=target.device_name).eval()
    model.eval()
    np.testing.assert_allclose(target.to_host(loaded.predict(ids[:, :-1])),
                               target.to_host(model.predict(ids[:, :-1])), rtol=1e-14)
    assert restored.state["0.tokens.w"]["step"] == 1


def test_bad_constructor_arguments_are_a_clear_error():
    with pytest.raises(ValueError, match=r"GPT: expected vocab_size to be a positive int"):
        mnn.GPT(0, 8)
    with pytest.raises(ValueError, match=r"TransformerBlock: expected d_model divisible by "
                                         r"heads"):
        mnn.GPT(5, 8, d_model=10, heads=3)
