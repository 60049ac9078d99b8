"""Backend adapters: what the array API standard lacks, one small class per library.

A layer never names an array library. It asks ``array_api_compat`` for the
namespace of the arrays it is given and does its math there. The few things the
standard does not cover go through an adapter, one short class per library
(``numpy.py``, ``torch.py``, ...), all subclasses of ``Backend`` (``backend.py``).
``registry.py`` finds the adapter of an array without importing anything, and
``placement.py`` says where an array lives and moves arrays there and back.
The protocol, and how to add a backend: docs/adapters.md.
"""

# The built-in adapters register themselves; none of them imports its library here.
from . import array_api_strict, cupy, jax, numpy, torch
from .backend import Backend
from .placement import Placement, dtype_name, to_host
from .registry import (
    ENTRY_POINT_GROUP,
    available,
    for_array,
    for_namespace,
    get,
    load_entry_points,
    register,
)

__all__ = ["Backend", "Placement", "dtype_name", "to_host", "ENTRY_POINT_GROUP", "register",
           "load_entry_points", "available", "get", "for_array", "for_namespace",
           "numpy", "array_api_strict", "torch", "cupy", "jax"]
