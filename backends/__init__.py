"""Backend adapters: what the array API standard lacks, one small class per library.

A layer never names an array library. It asks ``array_api_compat`` for the
namespace of the arrays it is given and does its math there. The few things the
standard does not cover live here, one short class per library:

* ``to_host`` / ``from_host``: copy to and from a NumPy array on the host
  (checkpoints, finite differences, initial parameters);
* ``devices``: which devices are present (an allocation works, an import is not enough);
* ``synchronize``: wait for queued work, so that timings mean something;
* ``random_normal``: seeded random numbers made on the device;
* ``scatter_add``: index accumulation (repeated indices add up), which the
  standard has no function for;
* ``add_scaled``: ``target += alpha * source`` (the gradient descent update) in
  place and in one pass where the library can; the standard needs two passes.

An adapter is found from the array itself, the way einops finds its backends: a
library that is not already in ``sys.modules`` cannot own the array, so nothing
is ever imported to find out. Third-party adapters register through the entry
point group ``mnn.backends``; they are loaded only when a lookup finds no
built-in adapter (see docs/adapters.md).
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np

#: The entry point group through which other packages register adapters.
ENTRY_POINT_GROUP = "mnn.backends"

_REGISTRY: dict[str, Backend] = {}


class Backend:
    """The adapter protocol. A subclass names its library and overrides what differs.

    ``name`` is how people and nox call the backend (``"numpy"``), ``module`` the
    name under which the library appears in ``sys.modules``. An adapter never
    imports its library at module level: ``self.library()`` fetches it from
    ``sys.modules`` inside the methods, so ``import mnn`` stays free of it.
    """

    name: str
    module: str

    def is_loaded(self) -> bool:
        return self.module in sys.modules

    def library(self):
        """The library itself; only called once it is already imported."""
        if self.module not in sys.modules:
            __import__(self.module)  # asked for by name (to(xp="torch"), a test target)
        return sys.modules[self.module]

    def owns(self, array) -> bool:
        """Whether ``array`` belongs to this library (its type comes from the library's package)."""
        return type(array).__module__.partition(".")[0] == self.module

    def namespace(self):
        """The array API namespace of this library (array_api_compat wraps where needed).

        Found once, from a one-element array on the default device, then remembered.
        """
        if getattr(self, "_namespace", None) is None:
            import array_api_compat

            probe = self.from_host(np.zeros(1), self.default_device())
            self._namespace = array_api_compat.array_namespace(probe)
        return self._namespace

    def dtype(self, dtype):
        """The library's dtype for a name such as ``"float32"``; a dtype passes through."""
        if isinstance(dtype, str):
            return getattr(self.namespace(), dtype)
        return dtype

    # --- devices -------------------------------------------------------------------

    def devices(self) -> list[str]:
        """Names of the devices present on this machine, default first."""
        raise NotImplementedError

    def default_device(self):
        present = self.devices()
        if not present:
            raise RuntimeError(f"backend {self.name!r} has no device present on this machine")
        return self.device(present[0])

    def device(self, name):
        """The library's device object for a device name such as ``"cpu"``."""
        return name

    def device_name(self, device) -> str:
        return str(device)

    def synchronize(self, device, *arrays) -> None:
        """Wait until the work queued on ``device`` has finished (no-op on the host).

        Libraries that track readiness per array (JAX) also wait for ``arrays``.
        """

    # --- host <-> device -----------------------------------------------------------

    def to_host(self, array) -> np.ndarray:
        return np.asarray(array)

    def from_host(self, host: np.ndarray, device, dtype=None):
        """A new array (never a view of ``host``: parameters are updated in place)."""
        xp = self.library()
        return xp.asarray(host, device=device, dtype=dtype, copy=True)

    # --- what the standard lacks ---------------------------------------------------

    def random_normal(self, shape, seed, device, dtype="float64"):
        """Standard normal numbers of ``shape``, the same ones for the same ``seed``.

        ``seed`` is an int or a ``numpy.random.Generator``. This default draws on
        the host and copies to ``device``; adapters may draw on the device instead
        (the numbers then differ between backends, but not between runs).
        """
        generator = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return self.from_host(generator.standard_normal(shape), device, self.dtype(dtype))

    def scatter_add(self, target, indices, values):
        r"""``target`` with ``values[k]`` added to row ``indices[k]``; repeated indices add up.

        ``target`` has shape :math:`(n, \dots)`, ``indices`` integer shape :math:`(k,)`,
        ``values`` shape :math:`(k, \dots)`. ``target`` itself is not changed.

        The standard has no scatter-add (``x[idx] += v`` keeps only the last write of a
        repeated index, and is not allowed on every library), so this default uses only
        the standard: with the one-hot matrix :math:`H_{ki} = [\text{indices}_k = i]`,

        .. math::  \text{out} = \text{target} + H^\top V,

        which costs :math:`O(nk)` memory. Adapters replace it with their library's
        scatter-add.
        """
        import array_api_compat

        xp = array_api_compat.array_namespace(target, indices, values)
        n, k = target.shape[0], indices.shape[0]
        rows = xp.arange(n, dtype=indices.dtype, device=array_api_compat.device(target))
        one_hot = xp.astype(xp.expand_dims(indices, axis=1) == rows, values.dtype)  # (k, n)
        flat = xp.reshape(values, (k, math.prod(target.shape[1:])))
        return target + xp.reshape(xp.matrix_transpose(one_hot) @ flat, target.shape)

    def add_scaled(self, target, alpha: float, source):
        """``target + alpha * source``, written into ``target`` where the library allows.

        The update of gradient descent (``alpha = -lr``). The standard has neither
        in-place functions nor a fused multiply-add, so this default computes
        ``alpha * source`` into a temporary first: two passes over memory, where
        an adapter can make one (torch's ``add_(source, alpha=...)``).
        Returns the result: ``target`` itself, or a new array where arrays are
        immutable (JAX).
        """
        target += alpha * source
        return target

    def __repr__(self) -> str:
        return f"<mnn backend {self.name!r}>"


def register(backend: Backend) -> Backend:
    """Make ``backend`` known to mnn (later registrations replace earlier ones)."""
    if isinstance(backend, type) and issubclass(backend, Backend):
        backend = backend()
    if not isinstance(backend, Backend):
        raise TypeError(f"register() expects a Backend subclass or instance, got {backend!r}")
    _REGISTRY[backend.name] = backend
    return backend


def load_entry_points(name: str | None = None) -> None:
    """Register the adapters that other packages declare in the ``mnn.backends`` group.

    Only entry points whose name is not registered yet are loaded (built-ins win;
    call ``register`` to replace one), and only the one called ``name`` if given.
    An entry point that fails to load gives a warning, not an error: one broken
    plugin must not break every other backend.
    """
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in _REGISTRY or (name is not None and point.name != name):
            continue
        try:
            loaded = point.load()
            backend = loaded() if isinstance(loaded, type) else loaded
            if not isinstance(backend, Backend):
                raise TypeError(f"it gave {loaded!r}, not a Backend subclass or instance")
            if backend.name != point.name:
                raise ValueError(f"its backend is called {backend.name!r}, not {point.name!r}")
        except Exception as error:  # noqa: BLE001  (any plugin failure becomes a warning)
            warnings.warn(f"mnn: could not load backend entry point {point.name} = {point.value}: "
                          f"{error}", RuntimeWarning, stacklevel=2)
            continue
        register(backend)


def available() -> dict[str, Backend]:
    """Every registered backend by name, third-party ones included, whether or not imported."""
    load_entry_points()
    return dict(_REGISTRY)


def get(name: str) -> Backend:
    """The backend called ``name``; a clear error lists the known ones."""
    if name not in _REGISTRY:
        load_entry_points(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown backend {name!r}; known backends: {known} (others register "
                         f"through the entry point group {ENTRY_POINT_GROUP!r})") from None


def _owner(array) -> Backend | None:
    for backend in _REGISTRY.values():
        if backend.is_loaded() and backend.owns(array):
            return backend
    return None


def for_array(array) -> Backend:
    """The backend that owns ``array``, looked up without importing anything."""
    backend = _owner(array)
    if backend is None:
        load_entry_points()
        backend = _owner(array)
    if backend is None:
        known = ", ".join(sorted(_REGISTRY))
        kind = f"{type(array).__module__}.{type(array).__name__}"
        raise TypeError(f"no mnn backend owns an object of type {kind}; known backends: {known}")
    return backend


def for_namespace(xp) -> Backend:
    """The backend of a namespace or library module, or of a backend name."""
    if isinstance(xp, Backend):
        return xp
    if isinstance(xp, str):
        return get(xp)
    module = getattr(xp, "__name__", "")
    module = module.removeprefix("array_api_compat.")
    for attempt in range(2):
        for backend in _REGISTRY.values():
            if module in (backend.module, backend.name) or module.startswith(backend.module + "."):
                return backend
        if attempt == 0:
            load_entry_points()
    raise ValueError(f"no mnn backend for namespace {module or xp!r}")


# The built-in adapters register themselves; none of them imports its library here.
from . import array_api_strict, cupy, jax, numpy, torch  # noqa: E402

__all__ = ["Backend", "ENTRY_POINT_GROUP", "register", "load_entry_points", "available", "get",
           "for_array", "for_namespace", "numpy", "array_api_strict", "torch", "cupy", "jax"]
