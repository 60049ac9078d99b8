"""Backend adapters: what the array API standard lacks, one small class per library.

A layer never names an array library. It asks ``array_api_compat`` for the
namespace of the arrays it is given and does its math there. The few things the
standard does not cover live here, one short class per library:

* ``to_host`` / ``from_host``: copy to and from a NumPy array on the host
  (checkpoints, finite differences, initial parameters);
* ``devices``: which devices are present (an allocation works, an import is not enough);
* ``synchronize``: wait for queued work, so that timings mean something.

An adapter is found from the array itself, the way einops finds its backends: a
library that is not already in ``sys.modules`` cannot own the array, so nothing
is ever imported to find out.
"""

from __future__ import annotations

import sys

import numpy as np

_REGISTRY: dict[str, Backend] = {}


class Backend:
    """The adapter protocol. A subclass names its library and overrides what differs.

    ``name`` is how people and nox call the backend (``"numpy"``), ``module`` the
    name under which the library appears in ``sys.modules``.
    """

    name: str
    module: str

    def is_loaded(self) -> bool:
        return self.module in sys.modules

    def library(self):
        """The library itself; only called once it is already imported."""
        return sys.modules[self.module]

    def owns(self, array) -> bool:
        """Whether ``array`` belongs to this library (its type comes from the library's package)."""
        return type(array).__module__.partition(".")[0] == self.module

    def namespace(self):
        """The array API namespace of this library (array_api_compat wraps where needed)."""
        import array_api_compat

        return array_api_compat.array_namespace(self.from_host(np.zeros(1), self.default_device()))

    def devices(self) -> list[str]:
        """Names of the devices present on this machine, default first."""
        raise NotImplementedError

    def default_device(self):
        return self.device(self.devices()[0])

    def device(self, name):
        """The library's device object for a device name such as ``"cpu"``."""
        return name

    def device_name(self, device) -> str:
        return str(device)

    def to_host(self, array) -> np.ndarray:
        return np.asarray(array)

    def from_host(self, host: np.ndarray, device, dtype=None):
        xp = self.library()
        return xp.asarray(host, device=device, dtype=dtype)

    def synchronize(self, device) -> None:
        """Wait until all work queued on ``device`` has finished (no-op on the host)."""

    def __repr__(self) -> str:
        return f"<mnn backend {self.name!r}>"


def register(backend: Backend) -> Backend:
    """Make ``backend`` known to mnn (later registrations replace earlier ones)."""
    _REGISTRY[backend.name] = backend
    return backend


def available() -> dict[str, Backend]:
    """Every registered backend, by name, whether or not its library is imported."""
    return dict(_REGISTRY)


def get(name: str) -> Backend:
    """The backend called ``name``; a clear error lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown backend {name!r}; known backends: {known}") from None


def for_array(array) -> Backend:
    """The backend that owns ``array``, looked up without importing anything."""
    for backend in _REGISTRY.values():
        if backend.is_loaded() and backend.owns(array):
            return backend
    known = ", ".join(sorted(_REGISTRY))
    raise TypeError(
        f"no mnn backend owns an object of type {type(array).__module__}.{type(array).__name__}; "
        f"known backends: {known}"
    )


def for_namespace(xp) -> Backend:
    """The backend of a namespace or library module, or of a backend name."""
    if isinstance(xp, Backend):
        return xp
    if isinstance(xp, str):
        return get(xp)
    module = getattr(xp, "__name__", "")
    module = module.removeprefix("array_api_compat.")
    for backend in _REGISTRY.values():
        if backend.module == module or backend.name == module:
            return backend
    raise ValueError(f"no mnn backend for namespace {module or xp!r}")


from . import array_api_strict, numpy  # noqa: E402  (the built-in adapters register themselves)

__all__ = ["Backend", "register", "available", "get", "for_array", "for_namespace",
           "numpy", "array_api_strict"]
