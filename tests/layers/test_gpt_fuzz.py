"""``GPT.generate``, called with anything: an mnn error, or tokens of the vocabulary.

Hypothesis draws every argument of ``generate`` from good and bad values: ``n`` (negative,
a float, a string, a bool, a NumPy integer), ``temperature`` (0, tiny enough to overflow
float32 logits, huge, negative, NaN, infinite, not a number), ``top_k`` (0, negative,
above the vocabulary, a float), ``rng`` (seeds out of range, generators, strings) and the
prompt (every integer dtype and others, any rank, empty axes, ids below 0 or past the
vocabulary), for a vocabulary that fits in ``uint8`` and one that does not, and for a
model with a NaN weight. Each call must either raise an ``MnnError`` or return the prompt
followed by ``n`` ids of the vocabulary, in the prompt's dtype and layout, within the
example deadline. A raw error from NumPy or the array library fails the test. ``n`` stays
small when it is valid: a valid count is work to do, not a bad input.
"""

from __future__ import annotations

import warnings
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import mnn

#: Two vocabularies: one whose ids fit in uint8 and int8, one whose ids do not.
VOCABULARIES = (11, 300)
CONTEXT = 4
PROMPT_DTYPES = ["int64"] * 6 + ["int32", "int16", "int8", "uint8", "uint64", "float32",
                 "float64", "bool"]

#: A bound on runaway work (a tiny model, at most 5 new tokens: milliseconds), not a speed
#: check: wide enough for JAX's first call, which compiles for seconds on a loaded machine.
GENERATE = settings(max_examples=100, deadline=timedelta(seconds=30), derandomize=True,
                    database=None, suppress_health_check=[HealthCheck.too_slow,
                                                          HealthCheck.function_scoped_fixture])


def mostly(good: list, bad: list) -> st.SearchStrategy:
    """A good value three times in four, else a bad one: most calls then get past the
    first check, and the later checks are reached too."""
    return st.one_of(st.sampled_from(good), st.sampled_from(good), st.sampled_from(good),
                     st.sampled_from(bad))


counts = mostly([0, 1, 2, 5, np.int64(3), np.uint8(2)],
                [-1, -(2**63), 2.0, 2.5, float("nan"), float("inf"), "3", None, True, [2]])
temperatures = mostly([0, 0.0, -0.0, 0.5, 1, 1.0, 3.0, np.float32(0.7), 1e-39, 1e-300, 1e30,
                       1e308],
                      [-1.0, float("nan"), float("inf"), float("-inf"), "1", None, 1 + 0j, True])
top_ks = mostly([None, 1, 2, 10, 11, 299, 300, 10**6, 2**63, np.int64(3)],
                [0, -1, 2.5, "2", True, float("nan")])
seeds = st.one_of(mostly([None, 0, 7, np.int64(3), 2**31, 2**63 - 1],
                         [2**64, -1, 1.5, "x", [1, 2], float("nan")]),
                  st.integers(0, 2**32 - 1).map(np.random.default_rng))


@st.composite
def prompts(draw, vocab_size: int) -> np.ndarray:
    """A host prompt: mostly ``(B, T)`` or ``(T,)`` ids of the vocabulary, sometimes other
    ranks, empty axes, windows past the context, ids out of range, or non-integer dtypes."""
    shape = draw(st.sampled_from([(3,), (1, 1), (2, 3), (2, CONTEXT + 2), (CONTEXT + 3,)] * 2
                                 + [(0,), (2, 0), (0, 3), (), (1, 2, 3)]))
    dtype = draw(st.sampled_from(PROMPT_DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    low, high = draw(st.sampled_from([(0, vocab_size)] * 4 + [(-5, 0),
                                      (vocab_size, vocab_size + 5), (0, 2**40)]))
    values = rng.integers(low, high, size=shape)
    if dtype == "bool":
        return values > 0
    if dtype.startswith("float"):
        return values.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(values, info.min, info.max).astype(dtype)


def tiny_gpt(target, vocab_size: int, dtype: str, nan_weight: bool) -> mnn.GPT:
    """A one-block GPT of width 8 on ``target``; with ``nan_weight``, one weight of its
    output projection is NaN (a model whose training diverged)."""
    model = mnn.GPT(vocab_size, CONTEXT, d_model=8, heads=2, layers=1, rng=0)
    if nan_weight:
        _, head = model.named_layers()[-1]
        name = next(iter(head.params))
        head.params[name][..., 0] = np.nan
    return model.to(xp=target.xp, device=target.device, dtype=dtype)


@given(data=st.data(), vocab_size=st.sampled_from(VOCABULARIES),
       dtype=st.sampled_from(["float32", "float64"]), nan_weight=st.booleans(), n=counts,
       temperature=temperatures, top_k=top_ks, rng=seeds)
@GENERATE
def test_generate_gives_an_mnn_error_or_tokens_of_the_vocabulary(
        target, data, vocab_size, dtype, nan_weight, n, temperature, top_k, rng):
    host = data.draw(prompts(vocab_size), label="prompt")
    prompt = target.asarray(host, str(host.dtype))
    model = tiny_gpt(target, vocab_size, dtype, nan_weight)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy RuntimeWarning is a raw error too
        try:
            out = model.generate(prompt, n, temperature, top_k, rng=rng)
        except mnn.MnnError as error:
            event(f"refused: {type(error).__name__}")
            return
    event("sampled")
    out = target.to_host(out)
    ids = host.reshape(1, -1) if host.ndim == 1 else host
    assert out.dtype == host.dtype and out.ndim == host.ndim
    tokens = out.reshape(1, -1) if host.ndim == 1 else out
    assert tokens.shape == (ids.shape[0], ids.shape[1] + int(n))
    np.testing.assert_array_equal(tokens[:, :ids.shape[1]], ids)
    new = tokens[:, ids.shape[1]:]
    assert new.size == 0 or (new.min() >= 0 and new.max() < vocab_size), new


def test_a_temperature_that_is_0_in_float32_is_refused_without_a_numpy_warning(target):
    """1e-300 rounds to 0 in float32: the division gives inf or NaN logits, refused by an
    ``MnnError``, with no NumPy ``RuntimeWarning`` on the way (found by the fuzz above)."""
    model = tiny_gpt(target, 11, "float32", nan_weight=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(mnn.NonFiniteError):
            model.generate(target.asarray(np.array([9, 7, 5])), 1, 1e-300, rng=0)


def test_a_seed_past_64_bits_is_refused_on_every_library(target):
    """torch's generator takes seeds below 2**64 and raised a raw ValueError for 2**64;
    every library gets the same ``ArgumentError`` (found by the fuzz above)."""
    model = tiny_gpt(target, 11, "float32", nan_weight=False)
    with pytest.raises(mnn.ArgumentError, match=r"rng to be a seed below 2\*\*64"):
        model.generate(target.asarray(np.array([9, 7, 5])), 1, rng=2**64)
