"""mnn's own suite runs on mnn's pytest plugin (``mnn.testing.plugin``), as a downstream
project does: the ``target``, ``xp``, ``device``, ``dtype`` and ``rng`` fixtures, the
``--target`` option and ``MNN_TEST_TARGETS`` come from there.

    python -m pytest tests --target numpy:cpu --target array_api_strict:device1
"""

pytest_plugins = ["mnn.testing.plugin"]

# tests/downstream/ holds example projects with their own pytest configuration; nox runs
# them in their own session (nox -s downstream).
collect_ignore = ["downstream/example", "downstream/mnn-dask", "downstream/typed_usage.py"]
