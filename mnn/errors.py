"""The exceptions mnn raises. Each message names the layer, what was expected and what arrived.

Every class also derives from the built-in exception a Python user would expect
(``ValueError``, ``TypeError``, ``RuntimeError``), so ``except ValueError`` still works.

An error that finds several problems lists them one a line, at most ``MAX_LISTED``
(``listing``): a file that misfits in a thousand ways gets a message of a few lines
that says how many more there are, not a megabyte of text.
"""

from __future__ import annotations

from collections.abc import Sequence

#: How many problems one error message lists; the rest are counted.
MAX_LISTED = 10
#: The most characters of a message that quotes what a file holds (``clipped``).
MAX_MESSAGE = 1500


class MnnError(Exception):
    """Base class of every error mnn raises on purpose."""


class ShapeError(MnnError, ValueError):
    """An array has the wrong shape or rank for the layer."""


class DTypeError(MnnError, TypeError):
    """An array has the wrong data type (integers where floats are needed, or the reverse)."""


class LabelError(MnnError, ValueError):
    """Class labels are out of range or not of shape ``(batch,)``."""


class PlacementError(MnnError, ValueError):
    """Arrays from another namespace, device or dtype than the layer's parameters."""


class BackwardBeforeForwardError(MnnError, RuntimeError):
    """``backward`` was called before any ``forward``."""


class BackwardTwiceError(MnnError, RuntimeError):
    """``backward`` was called a second time after one ``forward`` (torch raises too)."""


class ArgumentError(MnnError, ValueError):
    """An argument has a value the layer or function cannot take (a size of 0, a
    probability above 1); raised where the argument is given."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument is of a type the layer or function cannot take (a float for a count,
    a string for a flag). Also an ``ArgumentError`` and a ``ValueError``, so one
    ``except`` catches every bad argument."""


class AllocationError(MnnError, MemoryError):
    """A parameter does not fit in this machine's memory; the message names its shape
    and size."""


class CheckpointError(MnnError, ValueError):
    """A checkpoint or state dict does not fit the model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at a checkpoint's path: caught by ``except MnnError`` and by
    ``except FileNotFoundError`` alike."""


class CheckpointWarning(UserWarning):
    """A checkpoint is written, but loading it may fail or mislead (a layer type that
    another process cannot know)."""


class MissingFunctionError(MnnError, NotImplementedError):
    """The array library lacks a function the layer needs (``erf`` for the exact GELU)."""


class NonFiniteError(MnnError, FloatingPointError):
    """Numbers that must be finite are not: NaN or infinite logits or probabilities.

    ``FloatingPointError`` is what NumPy raises for an invalid value under
    ``np.errstate(invalid="raise")``.
    """


def plural(count: int, noun: str) -> str:
    """``"1 problem"``, ``"3 problems"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def listing(problems: Sequence[str], limit: int = MAX_LISTED, separator: str = "\n  ") -> str:
    """The first ``limit`` problems, then one entry that counts the others; each entry
    after ``separator`` (by default a new, indented line)."""
    shown = [*problems[:limit]]
    if len(problems) > limit:
        shown.append(f"... and {len(problems) - limit} more")
    return "".join(separator + entry for entry in shown)


def clipped(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text``, or, when longer than ``limit``, its start and end around a count of the
    characters left out: a file that holds a string of a megabyte where a size belongs gets
    a message of a few lines, not the string."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]} ... ({len(text) - 2 * keep} characters left out) ... {text[-keep:]}"


def describe(array) -> str:
    """A short description of what arrived: type, dtype, shape, device."""
    if not hasattr(array, "shape") or not hasattr(array, "dtype"):
        return f"an object of type {type(array).__name__}"
    from array_api_compat import device

    from mnn.backends import for_array

    try:
        library = for_array(array).name
    except TypeError:
        library = type(array).__module__.partition(".")[0]
    return (f"{library} array of dtype {array.dtype}, "
            f"shape {tuple(array.shape)}, on device {device(array)}")
