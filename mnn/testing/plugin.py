"""mnn's pytest plugin: run a test on every array library and device present.

Enable it in your project (it is off until you do, see "Why opt-in" below) with
``-p mnn``, on the command line or in your pytest configuration::

    [tool.pytest.ini_options]
    addopts = "-p mnn"

or with ``pytest_plugins = ["mnn.testing.plugin"]`` in your top-level ``conftest.py``.
It gives every test these fixtures:

* ``target``: one backend and device (a ``Target``): ``target.xp``, ``target.device``,
  ``target.placement``, ``target.asarray(host)`` and ``target.to_host(array)``;
* ``xp`` and ``device``: the target's array API namespace and device object;
* ``dtype``: the namespace's ``float64`` and ``float32`` (a test that takes it runs
  in both; gradient checks want float64);
* ``rng``: a ``numpy.random.Generator`` seeded alike in every test.

A test that takes ``target``, ``xp``, ``device`` or ``dtype`` runs once per target,
with ids such as ``test_x[numpy-cpu]`` and ``test_x[torch-cpu-float32]``. So your own
layer's gradients are checked on every backend in three lines::

    def test_my_layer_gradients(target):
        layer, inputs, feedbacks = mnn.testing.place(make_case("MyLayer"), target.placement)
        assert mnn.testing.gradcheck(layer, inputs, feedbacks)

Which targets: ``--target numpy:cpu`` (repeatable) or the environment variable
``MNN_TEST_TARGETS="numpy:cpu,array_api_strict:device1"``. Without either, every
registered backend (third-party adapters of the ``mnn.backends`` entry point group
included) whose library is installed, on every device present. A target asked for by
name that is not present is a usage error: the run fails loudly instead of passing
with everything skipped. A broken adapter (its entry point, its library's import or
its ``devices()`` raises) is named with its error in the report's header and left
out; the other backends' tests run.

Why opt-in: the plugin is the ``pytest11`` entry point ``mnn``, so that ``-p mnn``
finds it by that short name. pytest loads every ``pytest11`` entry point of every
installed package into every run (unless ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` is set),
and a project that merely has mnn installed must not get a ``--target`` option,
fixtures with common names (``device``, ``dtype``) or tests parametrised behind its
back. So the entry point loads the top-level module ``_mnn_pytest`` alone, whose one
hook registers this module's hooks and fixtures only when ``-p mnn`` was given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from mnn import backends
from mnn.backends import registry
from mnn.types import Array, Device, DType, Namespace

#: The environment variable that lists targets, comma-separated (nox sets it).
TARGETS_VARIABLE = "MNN_TEST_TARGETS"
#: What the ``dtype`` fixture runs over: the real floating dtypes every library has.
DTYPES = ("float64", "float32")

_TARGETS = pytest.StashKey[list["Target"]]()
_BROKEN = pytest.StashKey[dict[str, str]]()


@dataclass(frozen=True)
class Target:
    """A backend and one of its devices, with helpers to move host data there and back."""

    backend: backends.Backend
    device_name: str

    @property
    def device(self) -> Device:
        """The library's device object."""
        return self.backend.device(self.device_name)

    @property
    def xp(self) -> Namespace:
        """The array API namespace of the backend's library."""
        return self.backend.namespace()

    @property
    def placement(self) -> backends.Placement:
        """This backend and device, with float64 for floating-point arrays."""
        return backends.Placement.named(self.backend, self.device_name, "float64")

    def asarray(self, host: Any, dtype: str | None = None) -> Array:
        """``host`` (anything NumPy takes) as an array of this target; floats default to float64,
        integers and booleans keep their dtype."""
        return self.placement.from_host(host, dtype)

    def to_host(self, array: Array) -> np.ndarray:
        """A NumPy copy of an array of this target."""
        return self.placement.to_host(array)

    def __str__(self) -> str:
        return f"{self.backend.name}-{self.device_name}"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mnn", "mnn: test on every backend and device")
    group.addoption("--target", action="append", default=None, metavar="BACKEND:DEVICE",
                    help=f"backend:device to test, e.g. numpy:cpu (repeatable; default: "
                         f"${TARGETS_VARIABLE}, else every backend and device present)")


def parse_target(spec: str) -> tuple[str, str]:
    """``("torch", "cuda:0")`` for ``"torch:cuda:0"``; the device defaults to ``"cpu"``."""
    name, _, device = spec.strip().partition(":")
    return name, device or "cpu"


def absent_reason(name: str, device: str) -> str | None:
    """None if backend ``name`` can run on ``device`` here, else the reason why not."""
    try:
        backend = backends.get(name)
    except ValueError as error:
        return str(error)
    found = registry.probe(backend)
    if found.missing:
        return f"{backend.module} is not installed ({found.missing})"
    if found.broken:
        return f"the {name} adapter is broken: {found.broken}"
    if device not in found.devices:
        return f"device {device!r} is not present for {name} (present: {list(found.devices)})"
    return None


def present_targets() -> tuple[list[Target], dict[str, str]]:
    """Every registered backend whose library is installed, on every device present; and
    the broken ones, by name: what went wrong (their entry point, their library's import
    or their ``devices()`` raised)."""
    registered = backends.available()  # loads the entry points, and learns the broken ones
    found, broken = [], registry.broken()
    for name, backend in sorted(registered.items(), key=_numpy_first):
        here = registry.probe(backend)
        if here.broken:
            broken[name] = here.broken
        found += [Target(backend, device) for device in here.devices]
    return found, broken


def _numpy_first(item: tuple[str, backends.Backend]) -> tuple[bool, str]:
    return item[0] != "numpy", item[0]


def chosen_targets(config: pytest.Config) -> list[Target]:
    """The targets asked for (``--target``, else ``$MNN_TEST_TARGETS``), else all present."""
    asked = config.getoption("--target") or [
        spec for spec in os.environ.get(TARGETS_VARIABLE, "").split(",") if spec.strip()]
    if not asked:
        targets, config.stash[_BROKEN] = present_targets()
        return targets
    chosen = []
    for spec in asked:
        name, device = parse_target(spec)
        reason = absent_reason(name, device)
        if reason:
            raise pytest.UsageError(f"test target {spec!r} was asked for but is absent: {reason}")
        chosen.append(Target(backends.get(name), device))
    return chosen


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_BROKEN] = {}
    targets = chosen_targets(config)
    config.stash[_TARGETS] = targets
    for target in targets:
        target.backend.enable_float64()  # JAX computes in float32 unless told; gradchecks need 64


def pytest_report_header(config: pytest.Config) -> list[str]:
    targets = "mnn targets: " + ", ".join(str(t) for t in config.stash[_TARGETS])
    return [targets, *_broken_lines(config)]


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    for line in _broken_lines(config):  # said again at the end, where people look
        terminalreporter.write_line(line, yellow=True)


def _broken_lines(config: pytest.Config) -> list[str]:
    return [f"mnn: skipped the broken backend {name}: {why}"
            for name, why in sorted(config.stash[_BROKEN].items())]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # xp, device and dtype ask for target, so fixturenames holds "target" when they are used.
    given = {name for mark in metafunc.definition.iter_markers("parametrize")
             for name in _argnames(mark)}  # a test's own parametrize wins
    if "target" in metafunc.fixturenames and "target" not in given:
        targets = metafunc.config.stash[_TARGETS]
        metafunc.parametrize("target", targets, ids=[str(t) for t in targets])
    if "dtype" in metafunc.fixturenames and "dtype" not in given:
        metafunc.parametrize("dtype", DTYPES, indirect=True)


def _argnames(mark: pytest.Mark) -> list[str]:
    names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
    if isinstance(names, str):
        names = names.split(",")
    return [name.strip() for name in names]


@pytest.fixture
def xp(target: Target) -> Namespace:
    """The array API namespace of the target's library."""
    return target.xp


@pytest.fixture
def device(target: Target) -> Device:
    """The target's device object."""
    return target.device


@pytest.fixture
def dtype(request: pytest.FixtureRequest, target: Target) -> DType:
    """A floating dtype of the target's namespace: each of ``DTYPES`` in turn."""
    return target.backend.dtype(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy generator with the same seed in every test."""
    return np.random.default_rng(1234)
