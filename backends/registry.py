"""The registry of adapters: find the one that owns an array, by name, or by namespace.

An adapter is found from the array itself, the way einops finds its backends: a
library that is not already in ``sys.modules`` cannot own the array, so nothing
is ever imported to find out. Third-party adapters register through the entry
point group ``mnn.backends``; they are loaded only when a lookup finds no
built-in adapter (see docs/adapters.md). One that fails to load (its module
raises, even ``SystemExit``) is reported with a warning, remembered in
``broken()``, and skipped: the other backends go on.

Thread safety: registering and loading entry points hold one lock, and lookups
walk a snapshot of the registry, so threads may look adapters up while another
thread registers one or loads the entry points.

Pickling: a registered adapter pickles as its name, and unpickles (or deep-copies)
as the adapter registered under that name. ``register`` tells ``copyreg`` so for
the adapter's class; the adapter itself knows nothing of the registry.
"""

from __future__ import annotations

import copyreg
import importlib
import threading
import warnings
from typing import NamedTuple

from mnn.types import Array, Namespace

from .backend import Backend

#: The entry point group through which other packages register adapters.
ENTRY_POINT_GROUP = "mnn.backends"

_REGISTRY: dict[str, Backend] = {}
#: Entry points that failed to load: name -> what went wrong.
_BROKEN: dict[str, str] = {}
_LOCK = threading.RLock()


def register(backend: Backend | type[Backend]) -> Backend:
    """Make ``backend`` known to mnn (later registrations replace earlier ones)."""
    if isinstance(backend, type) and issubclass(backend, Backend):
        backend = backend()
    if not isinstance(backend, Backend):
        raise TypeError(f"register() expects a Backend subclass or instance, got {backend!r}")
    with _LOCK:
        _REGISTRY[backend.name] = backend
        # Pickled as its name: a layer's placement pickles with its adapter, whose cached
        # namespace (a module) could not be pickled.
        copyreg.pickle(type(backend), _by_name)
    return backend


def _by_name(backend: Backend) -> tuple:
    """How pickle and ``copy`` store an adapter: ``get(name)`` rebuilds it."""
    return get, (backend.name,)


def load_entry_points(name: str | None = None) -> None:
    """Register the adapters that other packages declare in the ``mnn.backends`` group.

    Only entry points whose name is not registered yet are loaded (built-ins win;
    call ``register`` to replace one), and only the one called ``name`` if given.
    An entry point that fails to load gives a warning, not an error, and is listed
    in ``broken()``: one broken plugin must not break every other backend. That
    holds for a module that calls ``sys.exit`` as it is imported too, which would
    otherwise end every program that looks a backend up.
    """
    from importlib.metadata import entry_points

    with _LOCK:
        for point in entry_points(group=ENTRY_POINT_GROUP):
            if (point.name in _REGISTRY or point.name in _BROKEN
                    or (name is not None and point.name != name)):
                continue
            try:
                loaded = point.load()
                backend = loaded() if isinstance(loaded, type) else loaded
                if not isinstance(backend, Backend):
                    raise TypeError(f"it gave {loaded!r}, not a Backend subclass or instance")
                if backend.name != point.name:
                    raise ValueError(f"its backend is called {backend.name!r}, not "
                                     f"{point.name!r}")
            except (Exception, SystemExit) as error:  # noqa: BLE001  (any plugin failure)
                _BROKEN[point.name] = f"{point.value}: {_said(error)}"
                warnings.warn(f"mnn: could not load backend entry point {point.name} = "
                              f"{_BROKEN[point.name]}; skipped", RuntimeWarning, stacklevel=2)
                continue
            register(backend)


def broken() -> dict[str, str]:
    """The entry points that failed to load, by name: which object and what went wrong."""
    with _LOCK:
        return dict(_BROKEN)


class Probe(NamedTuple):
    """What a backend offers on this machine (``probe``)."""

    devices: tuple[str, ...]  # the devices present; () when it cannot run here
    missing: str | None = None  # the library is not installed: the ImportError's message
    broken: str | None = None  # importing the library or the adapter's devices() raised: what


def probe(backend: Backend) -> Probe:
    """Import ``backend``'s library and ask the adapter for its devices.

    A library that is not installed is ``missing``. One whose import raises anything
    else, or an adapter whose ``devices()`` raises, is ``broken``, with the error: the
    callers (``mnn info``, ``mnn check``, the pytest plugin) report it and go on with
    the other backends.
    """
    try:
        importlib.import_module(backend.module)
    except ImportError as error:
        return Probe((), missing=str(error))
    except (Exception, SystemExit) as error:  # noqa: BLE001  (a broken library, not ours)
        return Probe((), broken=f"importing {backend.module} raised {_said(error)}")
    try:
        return Probe(tuple(backend.devices()))
    except (Exception, SystemExit) as error:  # noqa: BLE001  (a broken adapter, not ours)
        return Probe((), broken=f"its devices() raised {_said(error)}")


def _said(error: BaseException) -> str:
    """``RuntimeError: no driver``: an error's type and the first line of its message."""
    first = str(error).strip().partition("\n")[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _registered() -> tuple[Backend, ...]:
    """A snapshot of the registered adapters, safe to walk while another thread registers."""
    with _LOCK:
        return tuple(_REGISTRY.values())


def available() -> dict[str, Backend]:
    """Every registered backend by name, third-party ones included, whether or not imported."""
    load_entry_points()
    with _LOCK:
        return dict(_REGISTRY)


def get(name: str) -> Backend:
    """The backend called ``name``; a clear error lists the known ones."""
    with _LOCK:
        if name not in _REGISTRY:
            load_entry_points(name)
        if name in _REGISTRY:
            return _REGISTRY[name]
        if name in _BROKEN:
            raise ValueError(f"backend {name!r} could not be loaded from its entry point "
                             f"{_BROKEN[name]}")
        known = ", ".join(sorted(_REGISTRY))
    raise ValueError(f"unknown backend {name!r}; known backends: {known} (others register "
                     f"through the entry point group {ENTRY_POINT_GROUP!r})")


def _owner(array: Array) -> Backend | None:
    for backend in _registered():
        if backend.is_loaded() and backend.owns(array):
            return backend
    return None


def for_array(array: Array) -> Backend:
    """The backend that owns ``array``, looked up without importing anything."""
    backend = _owner(array)
    if backend is None:
        load_entry_points()
        backend = _owner(array)
    if backend is None:
        known = ", ".join(sorted(b.name for b in _registered()))
        kind = f"{type(array).__module__}.{type(array).__name__}"
        raise TypeError(f"no mnn backend owns an object of type {kind}; known backends: {known}")
    return backend


def for_namespace(xp: Backend | Namespace | str) -> Backend:
    """The backend of a namespace or library module, or of a backend name."""
    if isinstance(xp, Backend):
        return xp
    if isinstance(xp, str):
        return get(xp)
    module = getattr(xp, "__name__", "")
    module = module.removeprefix("array_api_compat.")
    for attempt in range(2):
        for backend in _registered():
            if module in (backend.module, backend.name) or module.startswith(backend.module + "."):
                return backend
        if attempt == 0:
            load_entry_points()
    raise ValueError(f"no mnn backend for namespace {module or xp!r}")
