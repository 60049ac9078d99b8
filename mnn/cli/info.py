"""``mnn info``: which backends this machine has, their versions, and their devices.

A device counts only if an allocation on it works (the adapters probe it), so a
CUDA build of a library on a machine without a GPU lists no ``cuda`` device.
Every installed library is imported here to ask it; ``import mnn`` never does.
"""

from __future__ import annotations

import importlib
import platform
from importlib import metadata

import mnn
from mnn import backends


def add_arguments(parser) -> None:
    pass


def version(backend) -> str:
    """The installed version of the backend's library (its distribution's, as pip knows it)."""
    try:
        return metadata.version(backend.distribution)
    except metadata.PackageNotFoundError:
        return getattr(importlib.import_module(backend.module), "__version__", "?")


def survey() -> list[tuple[str, str, str]]:
    """``(backend, version or 'not installed', devices or why none)`` for every backend."""
    rows = []
    for name, backend in sorted(backends.available().items()):
        try:
            importlib.import_module(backend.module)
        except ImportError:
            rows.append((name, "not installed", "-"))
            continue
        try:
            devices = ", ".join(backend.devices()) or "none present"
        except Exception as error:  # noqa: BLE001  (a broken driver must not hide the others)
            devices = f"none: {type(error).__name__}: {error}".splitlines()[0]
        rows.append((name, version(backend), devices))
    return rows


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
