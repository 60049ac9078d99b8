"""``mnn info``: which backends this machine has, their versions, and their devices.

A device counts only if an allocation on it works (the adapters probe it), so a
CUDA build of a library on a machine without a GPU lists no ``cuda`` device.
Every installed library is imported here to ask it; ``import mnn`` never does.
A broken third-party adapter (its entry point, its library's import or its
``devices()`` raises) gets a row with its error, and the others are listed as usual.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

import mnn
from mnn import backends
from mnn.backends import registry


def add_arguments(parser) -> None:
    pass


def version(backend) -> str:
    """The installed version of the backend's library (its distribution's, as pip knows it)."""
    try:
        return metadata.version(backend.distribution)
    except metadata.PackageNotFoundError:  # the library's own word, if it was imported
        return getattr(sys.modules.get(backend.module), "__version__", "?")


def survey() -> list[tuple[str, str, str]]:
    """``(backend, version, devices)`` for every backend: the version is 'not installed' or
    'broken' (an entry point that failed to load) where there is none, and the devices
    say why there are none ('none present', or what a broken adapter raised)."""
    rows = []
    for name, backend in backends.available().items():
        found = registry.probe(backend)
        if found.missing:
            rows.append((name, "not installed", "-"))
        elif found.broken:
            rows.append((name, version(backend), f"none: {found.broken}"))
        else:
            rows.append((name, version(backend), ", ".join(found.devices) or "none present"))
    rows += [(name, "broken", why) for name, why in registry.broken().items()]
    return sorted(rows)


def run(args) -> int:
    print(f"mnn {mnn.__version__} on Python {platform.python_version()} "
          f"({platform.system()} {platform.machine()})")
    for dependency in ("array-api-compat", "safetensors"):
        print(f"  {dependency} {metadata.version(dependency)}")
    rows = [("backend", "version", "devices"), *survey()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    print()
    for i, row in enumerate(rows):
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * width for width in widths))
    return 0
