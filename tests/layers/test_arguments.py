"""Constructors refuse bad arguments where they are given, with the layer's name and the value.

A bad value raises ``mnn.errors.ArgumentError`` and a bad type ``ArgumentTypeError``: both
are mnn errors (``except mnn.MnnError``) and ``ValueError`` (the type error is a ``TypeError``
too), so Python's convention catches them as well. A size or axis checked here cannot
fail later, at the first forward or, from a checkpoint, after gigabytes were allocated.
Parameters larger than the machine's memory are refused with ``AllocationError`` (an mnn
error and a ``MemoryError``) naming their shape and bytes.
"""

import json
import math
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import mnn
from mnn.checks import physical_memory
from mnn.errors import AllocationError, ArgumentError, ArgumentTypeError
from mnn.serialization import build, constructor_arguments
from mnn.testing import cases, make_case

VALUES = [  # a value out of range: ArgumentError
    (lambda: mnn.LinearLayer(0, 3), r"LinearLayer: expected in_features to be a positive int, "
                                    r"got 0"),
    (lambda: mnn.LinearLayer(-1, 3), r"LinearLayer: expected in_features to be a positive int, "
                                     r"got -1"),
    (lambda: mnn.LinearLayer(3, np.int64(0)), r"LinearLayer: expected out_features to be a "
                                              rf"positive int, got {re.escape(repr(np.int64(0)))}"),
    (lambda: mnn.LinearLayer(3, 2, init="lecun"), r"LinearLayer: expected init='he' or "
                                                  r"init='glorot', got 'lecun'"),
    (lambda: mnn.Embedding(0, 3), r"Embedding: expected num_embeddings to be a positive int, "
                                  r"got 0"),
    (lambda: mnn.Dropout(1.1), r"Dropout: expected a probability p in \[0, 1\], got 1.1"),
    (lambda: mnn.Dropout(math.nan), r"Dropout: expected a probability p in \[0, 1\], got nan"),
    (lambda: mnn.LayerNorm(4, eps=-1), r"LayerNorm: expected eps to be finite and >= 0, got -1"),
    (lambda: mnn.LayerNorm(0), r"LayerNorm: expected every entry of normalized_shape to be a "
                               r"positive int, got 0"),
    (lambda: mnn.LayerNorm(()), r"LayerNorm: expected normalized_shape to name at least one "
                                r"axis"),
    (lambda: mnn.GELU("bad"), r"GELU: expected approximate='none' or approximate='tanh', "
                              r"got 'bad'"),
    (lambda: mnn.MultiHeadAttention(d=0), r"MultiHeadAttention: expected d to be a positive int, "
                                          r"got 0"),
    (lambda: mnn.LogSoftmaxLayer(3, 0), r"LogSoftmaxLayer: expected every entry of sample_shape "
                                        r"to be a positive int, got 0"),
    (lambda: mnn.CrossEntropyLossLayer(3, sample_shape=(3,)), r"CrossEntropyLossLayer: give the "
                                                              r"sample shape once"),
    (lambda: mnn.TransformerBlock(6, 4), r"TransformerBlock: expected d_model divisible by "
                                         r"heads, got d_model=6 and heads=4"),
    (lambda: mnn.TransformerBlock(4, 2, dropout=2.0), r"TransformerBlock: expected a "
                                                      r"probability dropout in \[0, 1\]"),
    (lambda: mnn.Residual(mnn.SequentialLayers([mnn.CrossEntropyLossLayer()])),
     r"Residual: the block .* ends in a loss"),
]

TYPES = [  # a value of the wrong type: ArgumentTypeError
    (lambda: mnn.LinearLayer(2.5, 3), r"LinearLayer: expected in_features to be a positive int, "
                                      r"got 2.5"),
    (lambda: mnn.LinearLayer(3, True), r"LinearLayer: expected out_features to be a positive "
                                       r"int, got True"),
    (lambda: mnn.LinearLayer(3, 2, bias="yes"), r"LinearLayer: expected bias to be True or False, "
                                                r"got 'yes'"),
    (lambda: mnn.Embedding(5, "3"), r"Embedding: expected embedding_dim to be a positive int"),
    (lambda: mnn.Dropout("0.5"), r"Dropout: expected a probability p in \[0, 1\], got '0.5'"),
    (lambda: mnn.LayerNorm("4"), r"LayerNorm: expected normalized_shape to be a positive int or a "
                                 r"tuple of them, got '4'"),
    (lambda: mnn.LayerNorm(4, elementwise_affine=None), r"LayerNorm: expected elementwise_affine "
                                                        r"to be True or False, got None"),
    (lambda: mnn.SoftmaxLayer(axis="a"), r"SoftmaxLayer: expected axis to be an int, got 'a'"),
    (lambda: mnn.LogSoftmaxLayer(axis=1.0), r"LogSoftmaxLayer: expected axis to be an int"),
    (lambda: mnn.LogSoftmaxLayer(sample_shape=5), r"LogSoftmaxLayer: expected sample_shape to be "
                                                  r"a tuple of positive ints, got 5"),
    (lambda: mnn.CrossEntropyLossLayer(sample_shape="10"), r"CrossEntropyLossLayer: expected "
                                                           r"sample_shape to be a tuple"),
    (lambda: mnn.NllLossLayer(axis=None), r"NllLossLayer: expected axis to be an int"),
    (lambda: mnn.MultiHeadAttention(heads=2.0), r"MultiHeadAttention: expected heads to be a "
                                                r"positive int"),
    (lambda: mnn.MultiHeadAttention(causal=1), r"MultiHeadAttention: expected causal to be True "
                                               r"or False, got 1"),
    (lambda: mnn.TransformerBlock(4, 2, bias="no"), r"TransformerBlock: expected bias to be True "
                                                    r"or False"),
    (lambda: mnn.Residual(5), r"Residual: expected a block \(a BaseLayer\), got an object of "
                              r"type int"),
    (lambda: mnn.SequentialLayers([mnn.ReluLayer(), "relu"]), r"SequentialLayers: expected "
                                                              r"layers \(BaseLayer instances\), "
                                                              r"got an object of type str at "
                                                              r"position 1"),
]


@pytest.mark.parametrize("make, message", VALUES)
def test_a_bad_value_is_an_argument_error(make, message):
    with pytest.raises(ArgumentError, match=message) as caught:
        make()
    assert isinstance(caught.value, (mnn.MnnError, ValueError))


@pytest.mark.parametrize("make, message", TYPES)
def test_a_bad_type_is_an_argument_type_error(make, message):
    with pytest.raises(ArgumentTypeError, match=message) as caught:
        make()
    assert isinstance(caught.value, mnn.MnnError) and isinstance(caught.value, TypeError)
    assert isinstance(caught.value, ValueError)  # one except ValueError catches every bad argument


def test_a_bad_seed_is_an_argument_error():
    """Also a TypeError and a ValueError, as Python's convention has it."""
    with pytest.raises(ArgumentTypeError, match=r"rng: expected a non-negative int seed or a "
                                                r"numpy.random.Generator, got -1"):
        mnn.LinearLayer(3, 2, rng=-1)
    with pytest.raises(mnn.ArgumentError, match=r"manual_seed: expected a non-negative int"):
        mnn.manual_seed(-1)


# --- every registered layer ------------------------------------------------------------------

LAYER_NAMES = sorted(cases())


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_every_bad_argument_of_every_layer_is_an_mnn_error(name):
    """Each constructor argument of the layer's example, replaced by a value of another kind:
    the layer is made, or refuses with an mnn error; never a raw exception."""
    layer = make_case(name)[0]
    arguments = constructor_arguments(layer)
    for key in arguments:
        for bad in ("x", -1, 0, 2.5, math.nan, [], None):
            try:
                type(layer)(**{**arguments, key: bad})
            except mnn.MnnError:
                pass


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_a_huge_count_in_a_config_is_refused_at_once(name):
    """Each int argument of the layer's config set to 10**30: an mnn error (the parameters
    would not fit, or a check of the value) within a second, nothing allocated first."""
    config = make_case(name)[0].config()
    for key, value in config["args"].items():
        if isinstance(value, int) and not isinstance(value, bool):
            start = time.perf_counter()
            try:
                build({"type": config["type"], "args": {**config["args"], key: 10**30}})
            except mnn.MnnError:
                pass
            assert time.perf_counter() - start < 1.0, f"{name}({key}=10**30)"


# --- NumPy integers are counts, stored as Python ints ---------------------------------------

NUMPY_COUNTS = [
    (lambda n: mnn.LinearLayer(n(3), n(2)), ("in_features", "out_features")),
    (lambda n: mnn.Embedding(n(5), n(2)), ("num_embeddings", "embedding_dim")),
    (lambda n: mnn.LayerNorm(n(4)), ("normalized_shape",)),
    (lambda n: mnn.LayerNorm((n(2), n(3))), ("normalized_shape",)),
    (lambda n: mnn.MultiHeadAttention(d=n(2), heads=n(3)), ("d", "heads")),
    (lambda n: mnn.TransformerBlock(n(4), n(2), hidden=n(6)), ("d_model", "heads", "hidden")),
    (lambda n: mnn.SoftmaxLayer(axis=n(1)), ("axis",)),
    (lambda n: mnn.LogSoftmaxLayer(sample_shape=(n(5),), axis=n(1)), ("sample_shape", "axis")),
    (lambda n: mnn.NllLossLayer(axis=n(1)), ("axis",)),
]


@pytest.mark.parametrize("integer", [np.int64, np.int32, np.uint8])
@pytest.mark.parametrize("make, attributes", NUMPY_COUNTS)
def test_numpy_integers_are_counts_kept_as_python_ints(make, attributes, integer):
    layer = make(integer)
    for name in attributes:
        value = getattr(layer, name)
        for entry in value if isinstance(value, tuple) else (value,):
            assert type(entry) is int, f"{name} = {value!r}"
    json.dumps(layer.config())  # the config stays JSON


def test_numpy_scalars_are_numbers_and_flags():
    layer = mnn.LayerNorm(4, eps=np.float32(1e-3), bias=np.bool_(False))
    assert type(layer.eps) is float and layer.bias is False
    assert mnn.Dropout(np.float64(0.25)).p == 0.25
    json.dumps(layer.config())


# --- parameters too large for the machine ---------------------------------------------------

@pytest.mark.parametrize("make, shapes", [
    (lambda: mnn.Embedding(10**6, 10**6), r"\(1000000, 1000000\)"),
    (lambda: mnn.LinearLayer(10**7, 10**6), r"\(1000000, 10000000\) and \(1000000,\)"),
    (lambda: mnn.LayerNorm((10**6, 10**6)), r"\(1000000, 1000000\) and \(1000000, 1000000\)"),
])
def test_parameters_larger_than_memory_are_refused_before_they_are_made(make, shapes):
    start = time.perf_counter()
    with pytest.raises(AllocationError, match=rf"parameters of shape {shapes} need [\d,]+ bytes "
                                              rf"\([\d.]+ TiB in float64\), more than the "
                                              rf"[\d.]+ [GMT]iB of memory this machine has"):
        make()
    assert time.perf_counter() - start < 1.0  # nothing was drawn
    assert issubclass(AllocationError, mnn.MnnError) and issubclass(AllocationError, MemoryError)


def test_a_failed_allocation_names_the_shape_and_the_bytes():
    """Under an address-space limit (ulimit -v) the allocation itself fails: the MemoryError
    becomes an AllocationError with the shape and the bytes."""
    if not sys.platform.startswith("linux"):
        pytest.skip("sets RLIMIT_AS and reads the address space from /proc/self/status (Linux)")
    size = 16384 * 16384 * 8  # 2 GiB of float64
    memory = physical_memory()
    if memory is None or memory < 2 * size:
        pytest.skip(f"needs a machine with more than {2 * size} bytes of memory "
                    f"(this one: {memory}), so that only the limit refuses the allocation")
    code = textwrap.dedent("""
        import re, resource
        import mnn
        used = int(re.search(r"VmSize:\\s+(\\d+) kB", open("/proc/self/status").read())[1])
        limit = used * 1024 + 2**29  # half a GiB more than the process holds now
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            mnn.Embedding(16384, 16384)
        except mnn.errors.AllocationError as error:
            print(error)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "Embedding: parameters of shape (16384, 16384) need 2,147,483,648 bytes (2.0 GiB in "
        "float64), and the allocation failed (MemoryError)")


# --- ids as given ---------------------------------------------------------------------------

def test_an_id_out_of_range_is_reported_as_given(target):
    """A uint64 id of 2**63 is no negative number, whatever the layer casts it to."""
    ids = np.array([2**63, 1], dtype=np.uint64)
    with pytest.raises(mnn.LabelError, match=r"Embedding: expected ids in \[0, 5\), got values "
                                             r"from 1 to 9223372036854775808$"):
        mnn.Embedding(5, 2, rng=0).to(xp=target.backend.name, device=target.device_name)(
            target.asarray(ids))


# --- optimizers -----------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", [mnn.optim.SGD, mnn.optim.Adam, mnn.optim.AdamW])
@pytest.mark.parametrize("lr", [math.nan, math.inf, -math.inf, -0.1, "fast"])
def test_optimizers_refuse_a_learning_rate_that_is_not_finite_and_non_negative(optimizer, lr):
    with pytest.raises(ArgumentError, match=rf"{optimizer.__name__}: expected lr to be "):
        optimizer(mnn.LinearLayer(2, 2, rng=0), lr=lr)


@pytest.mark.parametrize("hyper, message", [
    ({"betas": (0.9, math.nan)}, r"expected betas"),
    ({"betas": 0.9}, r"expected betas = \(beta1, beta2\)"),
    ({"eps": math.inf}, r"expected eps to be finite"),
    ({"weight_decay": math.nan}, r"expected weight_decay to be finite"),
])
def test_adam_refuses_bad_hyperparameters(hyper, message):
    with pytest.raises(ValueError, match=rf"Adam: {message}"):
        mnn.optim.Adam(mnn.LinearLayer(2, 2, rng=0), **hyper)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_manual_seed_refuses_what_is_not_a_seed(seed):
    with pytest.raises(ValueError, match=r"manual_seed: expected a non-negative int"):
        mnn.manual_seed(seed)
