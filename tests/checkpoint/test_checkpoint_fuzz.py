"""``mnn.load`` of damaged checkpoints: an mnn error or a model, in bounded time and memory.

Hypothesis starts from small valid files written by ``mnn.save`` (a classifier with Adam
and the caller's metadata, a GPT with AdamW, a convolutional network with batch-norm
buffers and no optimizer) and damages them in two ways:

* bytes: bits flipped, spans overwritten, bytes inserted or cut, the file truncated, or
  the 8-byte header length replaced (0, past the end, huge);
* JSON, written back as a well-formed safetensors file: one node of the header (a
  tensor's dtype, shape or data offsets) or of the JSON the metadata holds
  (``mnn.model``, the architecture, and ``mnn.optimizer``) replaced by another value
  (negative, zero, huge, NaN, a string, a deep or long list, ...), or deleted, or the
  format version or another metadata entry replaced.

Each damaged file is loaded with and without its optimizer. The load must return a model
(and optimizer) or raise an ``MnnError`` of at most ``MAX_MESSAGE`` characters, never a
raw exception, within ``CPU_SECONDS`` of CPU time (not wall time: the bound holds on a
busy machine) and with at most ``MEMORY_BOUND`` bytes allocated at its peak (tracemalloc:
Python objects and NumPy arrays). A file says what to build; mnn must check the size of
that before building it. The largest structure mnn builds from a config
(``mnn.serialization.MAX_LAYERS`` layers) sets the time bound.
"""

from __future__ import annotations

import json
import math
import struct
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import mnn

#: The most a load of one of these files (each a few KB) may allocate at its peak, the CPU
#: time it may take, and the length of its error message (the path's included).
MEMORY_BOUND = 32 * 2**20
CPU_SECONDS = 5.0
MAX_MESSAGE = 2000
DAMAGE = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: Values put in place of one JSON node: wrong types, out of range, huge, not finite.
BAD_JSON = [None, True, False, 0, -1, 1, 2, 3, 10**9, 2**63, -(2**63), 10**30, 1.5, -0.0,
            1e308, float("nan"), float("inf"), float("-inf"), "", "x", "F64", "I64", "BOOL",
            "SequentialLayers", "GPT", "Adam", "nan", [], [0], [-1], [10**9, 10**9],
            [2**62, 2**62], [0, 2**63], {}, {"type": "GPT", "args": {}},
            {"type": "BaseLayer", "args": {}}, {"type": "SGD", "args": {"lr": -1}}]
#: Texts in place of a metadata entry's whole JSON: not JSON, nested past any recursion
#: limit, or small and asking for a huge model.
RAW_JSON = ["", "{", "null", "NaN", "[]", "[" * 100_000 + "]" * 100_000,
            '{"type": "GPT", "args": {"vocab_size": 5, "context": 4, "layers": 1000000000}}',
            '{"type": "GPT", "args": {"vocab_size": 1000000000, "context": 1000000000, '
            '"d_model": 1000000000, "heads": 1}}',
            '{"type": "LinearLayer", "args": {"in_features": 1000000000, '
            '"out_features": 1000000000}}']


def valid_models() -> dict[str, tuple]:
    """``name: (model, optimizer or None, caller's metadata)``: small, and trained a step, so
    that the optimizer has state."""
    classifier = mnn.SequentialLayers([mnn.LinearLayer(3, 4, rng=0), mnn.ReluLayer(),
                                       mnn.LinearLayer(4, 2, rng=1),
                                       mnn.CrossEntropyLossLayer()])
    gpt = mnn.SequentialLayers([mnn.GPT(5, 4, d_model=8, heads=2, layers=1, rng=0),
                                mnn.CrossEntropyLossLayer(axis=-1)])
    conv = mnn.SequentialLayers([mnn.Conv2d(1, 2, 3, rng=0), mnn.BatchNorm2d(2), mnn.Flatten(),
                                 mnn.LinearLayer(8, 2, rng=1), mnn.CrossEntropyLossLayer()])
    rng = np.random.default_rng(0)
    found = {}
    for name, model, inputs, labels, optimizer in [
            ("classifier", classifier, rng.standard_normal((4, 3)), np.array([0, 1, 1, 0]),
             mnn.optim.Adam), ("gpt", gpt, rng.integers(0, 5, (2, 4)),
                               rng.integers(0, 5, (2, 4)), mnn.optim.AdamW),
            ("conv", conv, rng.standard_normal((2, 1, 4, 4)), np.array([0, 1]), None)]:
        model(inputs, labels)
        model.backward()
        stepper = None if optimizer is None else optimizer(model, lr=0.01)
        if stepper is not None:
            stepper.step()
        found[name] = (model, stepper, {"note": "fuzz", "vocabulary": "abcde"})
    return found


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    """The bytes of each valid checkpoint; each loads back (the damage is the only fault)."""
    folder = tmp_path_factory.mktemp("valid")
    found = {}
    for name, (model, optimizer, metadata) in valid_models().items():
        path = folder / f"{name}.safetensors"
        mnn.save(model, path, optimizer, metadata=metadata)
        mnn.load(path, with_optimizer=optimizer is not None)
        found[name] = path.read_bytes()
    return found


def split(data: bytes) -> tuple[dict, bytes]:
    """A safetensors file's JSON header and the bytes after it."""
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]


def join(header: dict, rest: bytes) -> bytes:
    """A safetensors file of ``header`` (as JSON, NaN included) and ``rest``."""
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + rest


@st.composite
def damaged_bytes(draw, data: bytes) -> bytes:
    """``data`` with one to three byte-level faults."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "overwrite", "insert", "cut", "truncate",
                                     "length"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            data[at:at + 8] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del data[at:]
        else:
            length = draw(st.sampled_from([0, 1, 7, len(data) - 8, len(data), 2**32, 2**63,
                                           2**64 - 1]))
            data[:8] = struct.pack("<Q", max(length, 0))
    return bytes(data)


@st.composite
def replaced(draw, value, depth: int = 0):
    """``value`` (parsed JSON) with one node replaced by a ``BAD_JSON`` value or a large
    one, or one entry of a dict or list deleted."""
    children = (list(value) if isinstance(value, dict)
                else list(range(len(value))) if isinstance(value, list) else [])
    if children and depth < 12 and draw(st.integers(0, 3)) > 0:  # mostly: go deeper
        key = draw(st.sampled_from(children))
        copy = dict(value) if isinstance(value, dict) else list(value)
        if draw(st.integers(0, 7)) == 0:
            del copy[key]
        else:
            copy[key] = draw(replaced(value[key], depth + 1))
        return copy
    return draw(st.one_of(st.sampled_from(BAD_JSON), large_json()))


def large_json():
    """Values that cost memory or recursion to take in: a long string, a long list, a
    nesting (a deeper one is ``RAW_JSON``'s: the test's own ``json`` could not write it)."""
    return st.sampled_from([
        "x" * 100_000, list(range(10_000)), [[1] * 1000] * 100,
        json.loads("[" * 300 + "]" * 300), {"type": "SequentialLayers",
                                              "args": {"layers": [{"type": "ReluLayer",
                                                                   "args": {}}] * 20_000}}])


@st.composite
def damaged_json(draw, data: bytes) -> bytes:
    """``data`` as a well-formed safetensors file whose header or metadata JSON has one
    fault."""
    header, rest = split(data)
    metadata = dict(header["__metadata__"])
    where = draw(st.sampled_from(["header", "mnn.model", "mnn.model", "mnn.optimizer",
                                  "metadata"]))
    if where == "header":
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        tensors = draw(replaced(tensors))
        header = {**(tensors if isinstance(tensors, dict) else {"x": tensors}),
                  "__metadata__": metadata}
    elif where in metadata and draw(st.integers(0, 4)) == 0:
        metadata[where] = draw(st.sampled_from(RAW_JSON))
        header["__metadata__"] = metadata
    elif where in metadata:
        stored = draw(replaced(json.loads(metadata[where])))
        metadata[where] = json.dumps(stored)
        header["__metadata__"] = metadata
    else:
        key = draw(st.sampled_from(sorted(metadata)))
        metadata[key] = draw(st.sampled_from(["", "0", "2", "1.0", "x" * 10_000, None, 1,
                                              [], {}]))
        header["__metadata__"] = metadata
    return join(header, rest)


def load_within_bounds(path, with_optimizer: bool):
    """``mnn.load(path)``; fails the test if its allocations peak above ``MEMORY_BOUND`` or it
    takes more than ``CPU_SECONDS``."""
    tracemalloc.start()
    start = time.process_time()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mnn.CheckpointWarning)
            return mnn.load(path, with_optimizer=with_optimizer, with_metadata=True)
    finally:
        seconds = time.process_time() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak <= MEMORY_BOUND, f"mnn.load allocated {peak / 2**20:.1f} MiB at its peak"
        assert seconds <= CPU_SECONDS, f"mnn.load took {seconds:.1f} s of CPU time"


def check_load(path, with_optimizer: bool) -> None:
    """The load ends in an ``MnnError`` or a model (and optimizer) whose weights are finite
    NumPy arrays."""
    try:
        loaded = load_within_bounds(path, with_optimizer)
    except mnn.MnnError as error:
        event(f"refused: {type(error).__name__}")
        assert len(str(error)) <= MAX_MESSAGE, f"an error message of {len(str(error))} characters"
        return
    event("loaded")
    model = loaded[0]
    assert isinstance(model, mnn.BaseLayer)
    if with_optimizer:
        assert isinstance(loaded[1], mnn.optim.Optimizer)
    for value in model.state_dict().values():
        assert isinstance(value, np.ndarray) and np.isfinite(value).all()
        assert math.prod(value.shape) <= 10_000


@given(data=st.data(), name=st.sampled_from(["classifier", "gpt", "conv"]),
       with_optimizer=st.booleans())
@DAMAGE
def test_damaged_bytes_give_an_mnn_error_or_a_model(originals, tmp_path_factory, data, name,
                                                    with_optimizer):
    path = tmp_path_factory.getbasetemp() / "damaged-bytes.safetensors"
    path.write_bytes(data.draw(damaged_bytes(originals[name]), label="file"))
    check_load(path, with_optimizer)


@given(data=st.data(), name=st.sampled_from(["classifier", "gpt", "conv"]),
       with_optimizer=st.booleans())
@DAMAGE
def test_damaged_json_gives_an_mnn_error_or_a_model(originals, tmp_path_factory, data, name,
                                                    with_optimizer):
    path = tmp_path_factory.getbasetemp() / "damaged-json.safetensors"
    path.write_bytes(data.draw(damaged_json(originals[name]), label="file"))
    check_load(path, with_optimizer)


@pytest.mark.parametrize("where", ["mnn.model", "header", "mnn.format_version"])
def test_a_long_string_in_the_file_gives_a_short_error(originals, tmp_path, where):
    """A 100,000-character string where a size or a tensor entry belongs is quoted in part:
    the message stays within a few lines (the fuzz found messages of 100 KB)."""
    header, rest = split(originals["classifier"])
    if where == "header":
        header["0.b"] = "x" * 100_000
    elif where == "mnn.format_version":
        header["__metadata__"][where] = "x" * 100_000
    else:
        config = json.loads(header["__metadata__"]["mnn.model"])
        config["args"]["layers"][0]["args"]["in_features"] = "x" * 100_000
        header["__metadata__"]["mnn.model"] = json.dumps(config)
    path = tmp_path / "long.safetensors"
    path.write_bytes(join(header, rest))
    with pytest.raises(mnn.CheckpointError) as caught:
        mnn.load(path)
    assert len(str(caught.value)) <= MAX_MESSAGE
    if where != "header" or len(safetensors_error(path)) > MAX_MESSAGE:
        assert "characters left out" in str(caught.value)  # the long part, quoted in part


def safetensors_error(path) -> str:
    """What safetensors itself says of a header it cannot read: since 0.5 it quotes the
    bad entry whole, 0.4 names the error only."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy"):
            pass
    except SafetensorError as error:
        return str(error)
    raise AssertionError(f"safetensors reads {path}")
