"""``Placement``: where arrays live. Which library, which device, which dtype.

Every place in mnn that asks "where is this array?", "put this host array
there" or "bring that array to the host" asks a ``Placement``:

* ``Placement.of(array)``: where ``array`` lives;
* ``Placement.named("torch", "cuda:0", "float32")``: a placement from names;
* ``placement.from_host(host)``: a new array there, from a NumPy array;
* ``placement.to_host(array)``: a NumPy copy of an array that lives there.

A layer's parameters have one placement (``layer.placement``); the first
``forward`` moves them to the placement of its inputs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from mnn.types import Array, Device, DType, Namespace

from .backend import Backend
from .registry import for_array, for_namespace


def dtype_name(dtype: DType) -> str:
    """``float32`` for ``numpy.float32``, ``torch.float32``, ``array_api_strict.float32``..."""
    if isinstance(dtype, type):  # numpy.float32, the scalar type rather than a dtype
        return dtype.__name__
    return str(dtype).rpartition(".")[2]


class Placement(NamedTuple):
    """A library (its adapter), one of its devices and a dtype."""

    backend: Backend
    device: Any
    dtype: Any

    @classmethod
    def of(cls, array: Array) -> Placement:
        """Where ``array`` lives. ``TypeError`` if no adapter owns it."""
        return cls(for_array(array), array_api_compat.device(array), array.dtype)

    @classmethod
    def named(cls, backend: Backend | Namespace | str, device: Device | str | None = None,
              dtype: DType | str = "float64") -> Placement:
        """From names (or objects): ``Placement.named("torch", "cuda:0", "float32")``.

        ``backend`` is a backend name, adapter, namespace or module; ``device`` a
        device name or object (default: the backend's first device); ``dtype`` a
        dtype or its name.
        """
        adapter = for_namespace(backend)
        if device is None:
            where = adapter.default_device()
        else:
            where = adapter.device(device) if isinstance(device, str) else device
        return cls(adapter, where, adapter.dtype(dtype))

    @property
    def xp(self) -> Namespace:
        """The array API namespace of the library."""
        return self.backend.namespace()

    def with_dtype(self, dtype: DType | str) -> Placement:
        """This library and device with another dtype (a dtype or its name)."""
        return self._replace(dtype=self.backend.dtype(dtype))

    def from_host(self, host: Any, dtype: DType | str | None = None) -> Array:
        """A new array here with the values of ``host`` (anything NumPy takes).

        Floating-point values take this placement's dtype; integers and booleans
        (labels, masks) keep their own. ``dtype`` overrides both.
        """
        host = np.asarray(host)
        if dtype is None:
            dtype = self.dtype if host.dtype.kind == "f" else host.dtype.name
        return self.backend.from_host(host, self.device, self.backend.dtype(dtype))

    def to_host(self, array: Array) -> np.ndarray:
        """A NumPy array on the host with the values, shape and dtype of ``array``."""
        return self.backend.to_host(array)

    def names(self) -> tuple[str, str, str]:
        """The backend's, the device's and the dtype's names: ``Placement.named(*names)``
        gives this placement back."""
        return self.backend.name, self.backend.device_name(self.device), dtype_name(self.dtype)

    def __reduce__(self):
        """A pickled placement is three names (device objects such as JAX's do not pickle)."""
        return Placement.named, self.names()

    def __str__(self) -> str:
        return (f"{self.backend.name} arrays of dtype {dtype_name(self.dtype)} "
                f"on device {self.backend.device_name(self.device)}")


def to_host(array: Array) -> np.ndarray:
    """Any array, from whichever library owns it, as a NumPy array on the host."""
    return for_array(array).to_host(array)
