"""The names mnn's type hints use for what the array API standard leaves untyped.

The standard has no static array type that the arrays of every library (NumPy,
PyTorch, JAX, CuPy, array-api-strict, ...) satisfy, so each of these is ``Any``,
under a name that says what the value holds. ``Seed`` is what every ``rng=``
argument takes.
"""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import numpy as np

#: An array of any array API library.
Array: TypeAlias = Any
#: An array API namespace, as ``array_api_compat.array_namespace(x)`` returns it.
Namespace: TypeAlias = Any
#: A library's device object (``torch.device("cuda", 0)``); most functions take its name too.
Device: TypeAlias = Any
#: A library's dtype (``torch.float32``); most functions take its name (``"float32"``) too.
DType: TypeAlias = Any
#: What ``rng=`` takes: an int seed, a NumPy generator, or None for mnn's shared generator.
#: (A string, so that importing mnn does not import numpy.random.)
Seed: TypeAlias = "int | np.random.Generator | None"
#: A file path, as ``open`` takes it.
Path: TypeAlias = "str | PathLike[str]"
