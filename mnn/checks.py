"""The checks that layers and optimizers share.

Each raises with the layer's name, what it expected and what arrived. The first
group checks arrays: ``check_inputs`` and ``check_gradients`` are what
``BaseLayer.forward`` and ``backward`` run, from what the layer declared
(``Expected``). The second checks constructor arguments, so that a bad one fails
where it is given, not at the first forward (or, from a checkpoint, after
gigabytes were allocated): a bad value raises ``ArgumentError`` (an mnn error and
a ``ValueError``), a bad type ``ArgumentTypeError`` (also a ``TypeError``), and
parameters too large for the machine ``AllocationError`` (also a ``MemoryError``).
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace, device

from mnn.errors import (
    AllocationError,
    ArgumentError,
    ArgumentTypeError,
    DTypeError,
    LabelError,
    PlacementError,
    ShapeError,
    describe,
)
from mnn.types import Namespace

# --- arrays ---------------------------------------------------------------------------------


class Expected(NamedTuple):
    """What a layer's ``forward`` accepts (``BaseLayer.expect_inputs``, ``expect_feedbacks``)."""

    min_rank: int = 0
    max_rank: int | None = None
    sizes: Mapping[int, int] = {}  # noqa: RUF012  (never mutated: _replace makes a new one)
    kind: str = "real floating"  # the inputs' dtype kind, for xp.isdtype
    feedbacks: str | None = None  # a loss's: "targets" (like the inputs) or "labels"
    class_axis: int = 1  # the axis of the inputs that labels do not have


def check_inputs(layer, expected: Expected, inputs, feedbacks) -> Namespace:
    """``inputs`` (and a loss's ``feedbacks``) are what ``expected`` declares; returns the
    inputs' namespace."""
    xp = namespace_of(layer, inputs)
    check_kind(layer, xp, inputs, expected.kind)
    check_shape(layer, inputs, expected.min_rank, expected.max_rank, expected.sizes)
    if expected.feedbacks == "targets":
        check_kind(layer, namespace_of(layer, feedbacks, "targets"), feedbacks,
                   "real floating", "targets")
        check_same_shape(layer, feedbacks, inputs, "targets", "inputs")
        check_same_placement(layer, feedbacks, inputs, "targets", "inputs")
    elif expected.feedbacks == "labels":
        axis = normalize_axis(layer, expected.class_axis, len(inputs.shape))
        check_same_placement(layer, feedbacks, inputs, "labels", "inputs", dtype=False)
        check_label_dtype(layer, xp, feedbacks)
        check_label_shape(layer, feedbacks, inputs, axis)
    return xp


def check_gradients(layer, expected: tuple | None, got: tuple | None, gradients) -> None:
    """The gradients of a backward have the ``(library, dtype, device, shape)`` of the last
    forward's output (``expected``; ``got`` is theirs, None when they are no array)."""
    if expected is None or got == expected:
        return
    library, dtype, where, shape = expected
    error = (DTypeError if got is None  # not an array at all
             else ShapeError if got[:3] == expected[:3] else PlacementError)
    raise error(f"{layer.name}: expected gradients like the output of the last forward "
                f"({library} array of dtype {dtype}, shape {shape}, on device {where}), "
                f"got {describe(gradients)}")


def namespace_of(layer, array, what: str = "inputs") -> Namespace:
    """The array API namespace of ``array``, or a clear error naming the layer."""
    try:
        return array_namespace(array)
    except TypeError:
        raise DTypeError(
            f"{layer.name}: expected {what} to be an array (NumPy, PyTorch, CuPy, JAX or any "
            f"array API library), got {describe(array)}") from None


def check_kind(layer, xp: Namespace, array: Any, kind: str, what: str = "inputs") -> None:
    """``array``'s dtype is of ``kind`` (``"real floating"``, ``"integral"``)."""
    if not xp.isdtype(array.dtype, kind):
        wanted = "floating-point" if kind == "real floating" else kind
        raise DTypeError(f"{layer.name}: expected {wanted} {what}, got {describe(array)}")


def shape_wanted(min_rank: int, max_rank: int | None, sizes: Mapping[int, int]) -> str:
    """A declared shape in words: ``of shape (*, *, 8)``, ``with at least 1 dimension and
    size 4 along axis -1``."""
    if max_rank is not None and max_rank == min_rank:
        return "of shape (" + ", ".join(str(sizes.get(i, sizes.get(i - max_rank, "*")))
                                         for i in range(max_rank)) + ")"
    parts = [f"at least {min_rank} dimension{'s' * (min_rank != 1)}"] if min_rank else []
    if max_rank is not None:
        parts.append(f"at most {max_rank} dimension{'s' * (max_rank != 1)}")
    parts += [f"size {size} along axis {axis}" for axis, size in sizes.items()]
    return "with " + " and ".join(parts) if parts else "of any shape"


def check_shape(layer, array, min_rank: int = 0, max_rank: int | None = None,
                sizes: Mapping[int, int] | None = None, what: str = "inputs") -> None:
    """``array`` has between ``min_rank`` and ``max_rank`` axes, and ``sizes[axis]`` entries
    along each axis that ``sizes`` names (negative axes count from the end)."""
    shape = tuple(array.shape)
    rank = len(shape)
    sizes = sizes or {}
    if not (min_rank <= rank and (max_rank is None or rank <= max_rank)
            and all(-rank <= axis < rank and shape[axis] == size
                    for axis, size in sizes.items())):
        raise ShapeError(f"{layer.name}: expected {what} {shape_wanted(min_rank, max_rank, sizes)}"
                         f", got {describe(array)}")


def check_same_shape(layer, array, reference, what: str, reference_what: str) -> None:
    if tuple(array.shape) != tuple(reference.shape):
        raise ShapeError(
            f"{layer.name}: expected {what} of the same shape as the {reference_what} "
            f"{tuple(reference.shape)}, got {describe(array)}")


def check_label_dtype(layer, xp, labels) -> None:
    if not hasattr(labels, "dtype") or not xp.isdtype(labels.dtype, "integral"):
        raise DTypeError(f"{layer.name}: expected integer class labels, got {describe(labels)}")


def check_label_shape(layer, labels, logits, axis: int) -> None:
    """Labels: one per sample (the logits' shape without the class axis), and some classes.

    Their range, [0, n_classes), is checked where the loss compares them with the
    classes anyway (``mnn.layers.nll_loss.label_mask``).
    """
    if logits.shape[axis] == 0:
        raise ShapeError(f"{layer.name}: expected at least one class along axis {axis}, "
                         f"got inputs {describe(logits)}")
    expected = tuple(s for i, s in enumerate(logits.shape) if i != axis)
    if tuple(labels.shape) != expected:
        raise LabelError(
            f"{layer.name}: expected labels of shape {expected} (one per sample), "
            f"got {describe(labels)}")


def normalize_axis(layer, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(
            f"{layer.name}: axis {axis} is out of range for inputs with {rank} dimensions")
    return axis % rank


def check_same_placement(layer, array, reference, what: str, reference_what: str, *,
                         dtype: bool = True) -> None:
    """Two inputs of one operation must come from the same library and device, and with
    ``dtype=True`` the same dtype (``dtype=False``: integer labels next to float data)."""
    try:
        same_library = (type(array) is type(reference)  # the quick answer, most of the time
                        or array_namespace(array) is array_namespace(reference))
        same = same_library and device(array) == device(reference)
    except TypeError:  # not an array at all: the dtype checks that follow say so
        return
    if dtype:
        same = same and array.dtype == reference.dtype
    if not same:
        kind = "library, device and dtype" if dtype else "library and device"
        raise PlacementError(
            f"{layer.name}: expected {what} from the same {kind} as the "
            f"{reference_what}, but the {reference_what} is {describe(reference)} and the "
            f"{what} is {describe(array)}; move one of them first")


# --- constructor arguments ------------------------------------------------------------------


def positive_int(owner: str, name: str, value) -> int:
    """``value`` as a Python int if it is an integer >= 1, else an ``ArgumentError``.

    Any integer counts, a NumPy one too (``operator.index`` takes what indexes a
    list); ``True`` is not a size. The result is a Python int, so that a layer's
    config stays JSON.
    """
    count = integer(owner, name, value, "a positive int")
    if count < 1:
        raise ArgumentError(f"{owner}: expected {name} to be a positive int, got {value!r}")
    return count


def integer_axis(owner: str, value) -> int:
    """An axis is an int (negative counts from the end); its range is checked at forward."""
    return integer(owner, "axis", value, "an int")


def integer(owner: str, name: str, value, wanted: str) -> int:
    """``value`` as a Python int (from an int or a NumPy integer, not a bool), else an
    ``ArgumentTypeError`` saying that ``name`` should be ``wanted``."""
    if not isinstance(value, (bool, np.bool_)):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise ArgumentTypeError(f"{owner}: expected {name} to be {wanted}, got {value!r}")


def sample_shape_of(owner: str, value, name: str = "sample_shape") -> tuple[int, ...]:
    """A sample shape: a tuple or list of positive ints (``()``: not checked)."""
    if not isinstance(value, (tuple, list)):
        raise ArgumentTypeError(f"{owner}: expected {name} to be a tuple of positive ints, "
                                f"got {value!r}")
    return tuple(positive_int(owner, f"every entry of {name}", v) for v in value)


def flag(owner: str, name: str, value) -> bool:
    """``value`` if it is True or False (a NumPy bool too, returned as a Python bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{owner}: expected {name} to be True or False, got {value!r}")
    return bool(value)


def one_of(owner: str, name: str, value, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``: ``expected init='he' or init='glorot'``."""
    if not isinstance(value, str) or value not in choices:
        wanted = " or ".join(f"{name}={choice!r}" for choice in choices)
        raise ArgumentError(f"{owner}: expected {wanted}, got {value!r}")
    return value


def real_number(value) -> float | None:
    """``value`` as a Python float if it is a real number (an int, a float, a NumPy scalar,
    a 0-d array; not a bool, nor a string that ``float`` would read), else None."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def finite_non_negative(owner: str, name: str, value) -> float:
    """A hyperparameter such as a learning rate: a real number, finite and >= 0."""
    number = real_number(value)
    if number is None:
        raise ArgumentTypeError(f"{owner}: expected {name} to be a number, got {value!r}")
    if not math.isfinite(number) or number < 0.0:
        raise ArgumentError(f"{owner}: expected {name} to be finite and >= 0, got {number}")
    return number


def probability(owner: str, name: str, value) -> float:
    """A probability (dropout's ``p``): a real number in [0, 1]."""
    number = real_number(value)
    message = f"{owner}: expected a probability {name} in [0, 1], got {value!r}"
    if number is None:
        raise ArgumentTypeError(message)
    if not 0.0 <= number <= 1.0:  # nan fails both comparisons
        raise ArgumentError(message)
    return number


@contextlib.contextmanager
def allocating(owner: str, *shapes: tuple[int, ...]) -> Iterator[None]:
    """Around the making of parameters of ``shapes`` (float64 arrays on the host): refuse
    them before they are made if together they exceed this machine's memory
    (``fits_in_memory``), and turn a ``MemoryError`` while they are made (an
    address-space limit, say) into an ``AllocationError`` naming the shapes and the bytes.

    Refusing first matters where the system promises memory it does not have
    (overcommit): the allocation succeeds, and filling it ends the process.
    """
    entries = sum(math.prod(shape) for shape in shapes)
    what = "parameters of shape " + " and ".join(str(tuple(shape)) for shape in shapes)
    fits_in_memory(owner, what, entries)
    try:
        yield
    except MemoryError:
        raise AllocationError(f"{_needs(owner, what, entries)}, and the allocation failed "
                              f"(MemoryError)") from None


def fits_in_memory(owner: str, what: str, entries: int) -> None:
    """An ``AllocationError`` if ``entries`` float64 numbers (``what``, in words) exceed this
    machine's memory: a layer whose count of anything (layers, say) comes from a config
    checks it so before it lists the shapes."""
    memory = physical_memory()
    if memory is not None and 8 * entries > memory:
        raise AllocationError(f"{_needs(owner, what, entries)}, more than the "
                              f"{in_words(memory)} of memory this machine has")


def _needs(owner: str, what: str, entries: int) -> str:
    size = 8 * entries  # float64: 8 bytes an entry
    return f"{owner}: {what} need {size:,} bytes ({in_words(size)} in float64)"


def physical_memory() -> int | None:
    """The bytes of memory this machine has, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows), or no such name
        return None


def in_words(size: int) -> str:
    """A byte count as people read it: ``7.3 TiB``, ``512 bytes``."""
    for unit, power in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 2**power:
            return f"{size / 2**power:.1f} {unit}"
    return f"{size} bytes"


def sample_shape_argument(layer, shape: tuple, sample_shape) -> tuple:
    """The one-sample shape from ``*shape`` or the ``sample_shape`` keyword (not both)."""
    if shape and sample_shape is not None:
        raise ArgumentError(f"{layer.name}: give the sample shape once, either positionally "
                         f"{shape} or as sample_shape={sample_shape!r}, not both")
    return sample_shape_of(layer.name, shape if sample_shape is None else sample_shape)


def expect_sample_shape(layer, shape: tuple, min_rank: int = 1) -> None:
    """Inputs ``(batch, *shape)`` when a sample shape was given, else any rank >= ``min_rank``."""
    if shape:
        layer.expect_inputs(min_rank=1 + len(shape), max_rank=1 + len(shape),
                            sizes={1 + i: size for i, size in enumerate(shape)})
    else:
        layer.expect_inputs(min_rank=min_rank)
