"""Every layer, fed anything: an mnn error that says what is wrong, or the right answer.

Hypothesis draws, for each layer in ``mnn.testing.cases()``, inputs of other shapes
(0-size axes included), other dtypes (float16, float32, float64, integers, bool),
values with NaN, infinities and 1e30, labels of any integer dtype and range, and
gradients of any shape and dtype. Besides its draws, each layer gets explicit examples
at the extremes of each dtype (``extremes``), which run whatever hypothesis draws. Whatever
it draws, a forward and backward must
either raise an ``MnnError`` or give the answer mnn gives in float64 on NumPy for
the same values (same shapes; the same values where both are finite). A raw error
from deep inside a library (a numpy ``ValueError``, a torch ``RuntimeError``) or
an answer of another shape fails the test. Layers of token ids (``Embedding``,
``GPT``) get the same integers in the float64 run; layers that draw random numbers
(``Dropout``) run in eval mode, since other libraries draw other masks from the same
seed (tests/layers/test_dropout.py checks the masks).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import mnn
from mnn.backends import Placement
from mnn.testing import cases, make_case

FLOAT_DTYPES = ["float16", "float32", "float64"]
OTHER_DTYPES = ["int8", "uint8", "int64", "bool"]
SPECIAL = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e30, -1e30]
#: How close a low-precision answer must be to the float64 one, where both are finite.
TOLERANCE = {"float16": 5e-2, "float32": 1e-4, "float64": 1e-9}

FUZZ = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def arrays(draw, shape_hint: tuple[int, ...]):
    """A host array: mostly the case's shape (sometimes with an axis emptied), sometimes any
    other shape; a float or other dtype; normal values with special ones mixed in."""
    kind = draw(st.sampled_from(["case", "case", "emptied", "other"]))
    if kind == "other":
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    else:
        shape = shape_hint
        if kind == "emptied" and shape:
            axis = draw(st.integers(0, len(shape) - 1))
            shape = shape[:axis] + (0,) + shape[axis + 1:]
    dtype = draw(st.sampled_from(FLOAT_DTYPES * 3 + OTHER_DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    with np.errstate(all="ignore"):  # casting 1e30 and nan to small dtypes: intended
        return _values(draw, rng, shape, dtype)


def _values(draw, rng, shape, dtype):
    values = np.asarray(rng.standard_normal(shape) * draw(st.sampled_from([1.0, 10.0])))
    if values.size and draw(st.booleans()):
        special = np.asarray(rng.random(shape) < 0.3)
        values[special] = rng.choice(SPECIAL, size=int(special.sum()))
    if dtype == "bool":
        return values > 0
    if dtype != "float64" and dtype not in FLOAT_DTYPES:
        finite = np.nan_to_num(values, nan=0.0, posinf=1e6, neginf=-1e6)
        info = np.iinfo(dtype)
        return np.clip(np.round(finite), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def extremes(shape: tuple[int, ...], dtype: str, sign: int) -> np.ndarray:
    """An array of ``shape`` filled with the extremes of ``dtype``, all of one ``sign``.

    For a float dtype: 0, its smallest normal number, 1, its largest, and the thresholds
    where a layer's arithmetic overflows: ``log(max)`` (``exp``), ``max**(1/3)`` (a cube)
    and ``sqrt(max)`` (a square). One sign per array: where +max and -max meet in a sum,
    a low-precision answer is rounding error, which no tolerance relative to float64's
    answer can hold. For an integer dtype: its minimum or maximum, 0 and 1; for bool,
    both values.
    """
    if dtype == "bool":
        values = [sign > 0, sign < 0]
    elif np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = [info.max if sign > 0 else info.min, 0, 1]
    else:
        largest = float(np.finfo(dtype).max)
        values = [sign * m for m in (0.0, float(np.finfo(dtype).tiny), 1.0, np.log(largest),
                                     np.cbrt(largest), np.sqrt(largest), largest)]
    return np.resize(np.asarray(values, dtype=dtype), shape)


def extreme_examples(shapes, feedbacks):
    """``@example`` decorators: for every dtype the fuzz draws, its extremes of either sign,
    with the case's own feedbacks and a plain gradient."""
    decorators = []
    for dtype in FLOAT_DTYPES + OTHER_DTYPES:
        for sign in (1, -1):
            inputs = (tuple(extremes(shape, dtype, sign) for shape in shapes)
                      if isinstance(shapes[0], tuple) else extremes(shapes, dtype, sign))
            decorators.append(example(inputs=inputs, feedbacks=feedbacks, gradient_seed=0,
                                      odd_gradient=None))
    return decorators


@st.composite
def labels(draw, hint):
    """Labels: the case's, or other shapes, dtypes and ranges (negative, too large, floats)."""
    if hint is None or draw(st.booleans()):
        return hint
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = hint.shape if draw(st.booleans()) else tuple(draw(st.lists(st.integers(0, 4),
                                                                       max_size=3)))
    dtype = draw(st.sampled_from(["int8", "uint8", "int32", "int64", "float64", "bool"]))
    low, high = draw(st.sampled_from([(0, 5), (-3, 3), (0, 300)]))
    values = np.asarray(rng.integers(low, high, size=shape))
    if dtype == "bool":
        return values > 0
    if dtype.startswith("u"):
        values = np.abs(values)
    return np.clip(values, *((np.iinfo(dtype).min, np.iinfo(dtype).max) if dtype != "float64"
                             else (low, high))).astype(dtype)


def on(target, host):
    """``host`` on the target in its own dtype; None where the target lacks that dtype."""
    placement = target.placement
    if isinstance(host, tuple):
        moved = tuple(on(target, h) for h in host)
        return None if any(m is None for m in moved) else moved
    try:
        getattr(placement.xp, host.dtype.name)
    except AttributeError:  # array-api-strict has no float16 (the standard has none)
        return None
    return placement.from_host(host, host.dtype.name)


def fresh(name):
    """The case's layer; in eval mode if it draws random numbers (see the module docstring)."""
    layer = make_case(name)[0]
    if any(hasattr(part, "draws") for _, part in layer.named_layers()):
        layer.eval()
    return layer


def run(layer, inputs, feedbacks, gradients):
    """Forward and backward; the host float64 results (None for the gradient of integer
    inputs), or the MnnError raised."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # NumPy on inf and nan: expected
            out = layer(inputs, feedbacks)
            grad = layer.backward() if layer.is_loss else layer.backward(gradients(out))
    except mnn.MnnError as error:
        return error
    grads = grad if isinstance(grad, tuple) else (grad,)
    return [None if a is None else _host(a) for a in (out, *grads)]


def _host(array):
    return np.asarray(mnn.backends.to_host(array), dtype=np.float64)


def _matches(got, expected, tolerance: float) -> bool:
    if got is None or expected is None:
        return got is None and expected is None
    if got.shape != expected.shape:
        return False
    both = np.isfinite(got) & np.isfinite(expected)
    scale = np.maximum(1.0, np.abs(expected[both]))
    return bool(np.all(np.abs(got[both] - expected[both]) <= tolerance * scale))


@pytest.mark.parametrize("name", sorted(cases()))
def test_any_input_gives_an_mnn_error_or_the_float64_answer(target, name):
    _, case_inputs, case_feedbacks = make_case(name)
    shapes = (tuple(x.shape for x in case_inputs) if isinstance(case_inputs, tuple)
              else case_inputs.shape)

    input_strategy = (st.tuples(*(arrays(s) for s in shapes)) if isinstance(shapes[0], tuple)
                      else arrays(shapes))

    @FUZZ
    @given(inputs=input_strategy, feedbacks=labels(case_feedbacks)
           if case_feedbacks is not None and case_feedbacks.dtype.kind == "i"
           else st.just(case_feedbacks), gradient_seed=st.integers(0, 2**32 - 1),
           odd_gradient=st.sampled_from([None, None, None, "shape", "dtype"]))
    def check(inputs, feedbacks, gradient_seed, odd_gradient):
        if case_feedbacks is not None and case_feedbacks.dtype.kind == "f":
            feedbacks = np.flip(inputs, axis=0) if inputs.ndim else inputs  # targets: the
            # inputs' shape and dtype, other values
        moved = on(target, inputs)
        moved_feedbacks = None if feedbacks is None else on(target, np.asarray(feedbacks))
        if moved is None or (feedbacks is not None and moved_feedbacks is None):
            return  # a dtype this library does not have

        def gradients(out, placement=target.placement):
            rng = np.random.default_rng(gradient_seed)
            shape = tuple(out.shape) if odd_gradient != "shape" else (*out.shape, 2)
            dtype = mnn.backends.dtype_name(out.dtype) if odd_gradient != "dtype" else "float64"
            if odd_gradient == "dtype" and dtype == mnn.backends.dtype_name(out.dtype):
                dtype = "float32"
            return placement.from_host(rng.standard_normal(shape), dtype)

        got = run(fresh(name), moved, moved_feedbacks, gradients)
        if isinstance(got, mnn.MnnError):
            return  # a clear error: what the test allows
        as_float64 = (tuple(np.asarray(x, np.float64) for x in inputs)
                      if isinstance(inputs, tuple) else np.asarray(inputs, np.float64)
                      if case_inputs.dtype.kind == "f" else inputs)  # token ids stay integers
        if feedbacks is not None and feedbacks.dtype.kind == "f":
            feedbacks = np.asarray(feedbacks, np.float64)
        expected = run(fresh(name), as_float64, feedbacks,
                       lambda out: gradients(out, Placement.named("numpy", "cpu", "float64")))
        assert not isinstance(expected, mnn.MnnError), (
            f"{name} accepted {_what(inputs)} on {target} but refused the same values in "
            f"float64 on NumPy: {expected}")
        dtype = (inputs[0] if isinstance(inputs, tuple) else inputs).dtype.name
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert _matches(a, b, TOLERANCE.get(dtype, 1e-9)), (
                f"{name} on {target}, {_what(inputs)}: result {i} differs from float64 NumPy")

    for add_example in extreme_examples(shapes, case_feedbacks):
        check = add_example(check)
    check()


def _what(inputs) -> str:
    items = inputs if isinstance(inputs, tuple) else (inputs,)
    return ", ".join(f"{x.dtype} {x.shape}" for x in items)
