"""mnn's own suite runs on mnn's pytest plugin (``mnn.testing.plugin``), as a downstream
project does: the ``target``, ``xp``, ``device``, ``dtype`` and ``rng`` fixtures, the
``--target`` option and ``MNN_TEST_TARGETS`` come from there.

    python -m pytest tests --target numpy:cpu --target array_api_strict:device1
"""

import os

import pytest

pytest_plugins = ["mnn.testing.plugin"]

#: Which tests a run keeps: ``per-target``, the tests that run once per target (they take
#: ``target``, ``xp``, ``device`` or ``dtype``); ``shared``, the others (the CLI, files,
#: processes, scikit-learn, tooling), which do not change with the target. Unset: both.
#: nox's CPU tests sessions run the first on their target, its integration session the
#: second, once.
SCOPE_VARIABLE = "MNN_TEST_SCOPE"
SCOPES = ("per-target", "shared")

# tests/downstream/ holds example projects with their own pytest configuration; nox runs
# them in their own session (nox -s downstream).
collect_ignore = ["downstream/example", "downstream/mnn-dask", "downstream/typed_usage.py"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    scope = os.environ.get(SCOPE_VARIABLE, "")
    if not scope:
        return
    if scope not in SCOPES:
        raise pytest.UsageError(f"{SCOPE_VARIABLE}: expected one of {SCOPES}, got {scope!r}")
    kept, left = [], []
    for item in items:
        per_target = "target" in getattr(item, "fixturenames", ())
        (kept if per_target == (scope == "per-target") else left).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept
