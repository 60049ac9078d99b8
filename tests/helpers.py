"""Small pieces several test files share; imported as ``from helpers import ...``.

pytest puts ``tests/`` on ``sys.path`` (rootdir-based insertion: ``tests/`` has no
``__init__.py``), so this plain module is importable from every test file.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def import_benchmark(name: str):
    """``benchmarks.<name>`` from the repository, without putting the root on sys.path.

    The root's source folder ``mnn/`` would shadow the installed ``mnn`` package there.
    """
    if "benchmarks" not in sys.modules:
        folder = ROOT / "benchmarks"
        spec = importlib.util.spec_from_file_location(
            "benchmarks", folder / "__init__.py", submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["benchmarks"] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"benchmarks.{name}")
