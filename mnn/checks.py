"""The checks that layers and optimizers share.

Each raises with the layer's name, what it expected and what arrived. The first
group checks arrays (``BaseLayer.forward`` and ``backward`` run them); the second
checks constructor arguments, so that a bad one fails where it is given, not at
the first forward (or, from a checkpoint, after gigabytes were allocated).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from array_api_compat import array_namespace, device

from mnn.errors import DTypeError, LabelError, PlacementError, ShapeError, describe

# --- arrays ---------------------------------------------------------------------------------


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
    """``value`` if it is an int >= 1 (``True`` is not a size), else a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: expected {name} to be a positive int, got {value!r}")
    return value


def integer_axis(owner: str, value) -> int:
    """An axis is an int (negative counts from the end); its range is checked at forward."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}: expected axis to be an int, got {value!r}")
    return value


def sample_shape_of(owner: str, value) -> tuple[int, ...]:
    """A sample shape: a tuple or list of positive ints (``()``: not checked)."""
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"{owner}: expected sample_shape to be a tuple of positive ints, "
                         f"got {value!r}")
    return tuple(positive_int(owner, "every entry of sample_shape", v) for v in value)


def finite_non_negative(owner: str, name: str, value) -> float:
    """A hyperparameter such as a learning rate: a real number, finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # NumPy scalars, 0-d arrays
        except (TypeError, ValueError):
            raise ValueError(f"{owner}: expected {name} to be a number, got {value!r}") from None
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{owner}: expected {name} to be finite and >= 0, got {value}")
    return value
