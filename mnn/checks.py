"""Input checks shared by the layers.

Each raises with the layer's name, what it expected and what arrived.
"""

from __future__ import annotations

from array_api_compat import array_namespace, device

from mnn.errors import DTypeError, LabelError, PlacementError, ShapeError, describe


def check_rank(layer, array, min_rank: int, what: str = "inputs",
               max_rank: int | None = None) -> None:
    rank = len(array.shape)
    if rank < min_rank or (max_rank is not None and rank > max_rank):
        wanted = f"exactly {min_rank}" if max_rank == min_rank else f"at least {min_rank}"
        raise ShapeError(
            f"{layer.name}: expected {what} with {wanted} dimensions, got {describe(array)}")


def check_size(layer, array, axis: int, size: int, what: str = "inputs") -> None:
    if array.shape[axis] != size:
        raise ShapeError(
            f"{layer.name}: expected {what} with size {size} along axis {axis}, "
            f"got {describe(array)}")


def check_same_shape(layer, array, reference, what: str, reference_what: str) -> None:
    if tuple(array.shape) != tuple(reference.shape):
        raise ShapeError(
            f"{layer.name}: expected {what} of the same shape as the {reference_what} "
            f"{tuple(reference.shape)}, got {describe(array)}")


def check_labels(layer, xp, labels, logits, axis: int) -> None:
    """Labels: integers, one per sample (the logits' shape without the class axis).

    Their range, [0, n_classes), is checked where the loss compares them with the
    classes anyway (``mnn.layers.nll_loss.label_mask``).
    """
    if not hasattr(labels, "dtype") or not xp.isdtype(labels.dtype, "integral"):
        raise DTypeError(f"{layer.name}: expected integer class labels, got {describe(labels)}")
    expected = tuple(s for i, s in enumerate(logits.shape) if i != axis % len(logits.shape))
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


def check_sample_shape(layer, array, shape: tuple, what: str = "inputs") -> None:
    """``array`` is ``(batch, *shape)`` if the layer was given a ``shape`` (``()``: no check)."""
    if shape and tuple(array.shape[1:]) != tuple(shape):
        expected = ", ".join(["batch", *map(str, shape)])
        raise ShapeError(f"{layer.name}: expected {what} of shape ({expected}), as given to the "
                         f"constructor, got {describe(array)}")
