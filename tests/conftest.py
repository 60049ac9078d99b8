"""One fixture, ``target``, runs every test on every backend and device asked for.

Pick them with ``--target numpy:cpu`` (repeatable) or the environment variable
``MNN_TEST_TARGETS="numpy:cpu,array_api_strict:device1"``; nox sets the latter.
Without either, every target whose library is installed and whose device is
present runs. A target asked for by name that is not present is a usage error:
the run fails loudly instead of passing with everything skipped.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import numpy as np
import pytest

from mnn import backends

# array_api_strict's fake devices stand in for a second device on machines without a GPU.
DEFAULT_TARGETS = ["numpy:cpu", "array_api_strict:CPU_DEVICE", "array_api_strict:device1",
                   "torch:cpu", "jax:cpu"]


@dataclass(frozen=True)
class Target:
    """A backend and one of its devices, with helpers to move host data there and back."""

    backend: backends.Backend
    device_name: str

    @property
    def device(self):
        return self.backend.device(self.device_name)

    @property
    def xp(self):
        return self.backend.namespace()

    @property
    def placement(self) -> backends.Placement:
        """This backend and device, with float64 for floating-point arrays."""
        return backends.Placement.named(self.backend, self.device_name, "float64")

    def asarray(self, host, dtype: str | None = None):
        """``host`` (anything NumPy takes) as an array of this target; floats default to float64."""
        return self.placement.from_host(host, dtype)

    def to_host(self, array) -> np.ndarray:
        return self.placement.to_host(array)

    def __str__(self) -> str:
        return f"{self.backend.name}-{self.device_name}"


def pytest_addoption(parser):
    parser.addoption("--target", action="append", default=None,
                     help="backend:device to test, e.g. numpy:cpu (repeatable)")


def _parse(spec: str) -> tuple[str, str]:
    name, _, device = spec.strip().partition(":")
    return name, device or "cpu"


def _present(name: str, device: str) -> str | None:
    """None if the target can run here, else the reason why not."""
    try:
        backend = backends.get(name)
    except ValueError as error:
        return str(error)
    try:
        importlib.import_module(backend.module)
    except ImportError as error:
        return f"{backend.module} is not installed ({error})"
    if device not in backend.devices():
        return f"device {device!r} is not present for {name} (present: {backend.devices()})"
    return None


def _targets(config) -> list[Target]:
    asked = config.getoption("--target") or [
        s for s in os.environ.get("MNN_TEST_TARGETS", "").split(",") if s.strip()]
    if asked:
        chosen = []
        for spec in asked:
            name, device = _parse(spec)
            reason = _present(name, device)
            if reason:
                raise pytest.UsageError(
                    f"test target {spec!r} was asked for but is absent: {reason}")
            chosen.append(Target(backends.get(name), device))
        return chosen
    return [Target(backends.get(n), d) for n, d in map(_parse, DEFAULT_TARGETS)
            if _present(n, d) is None]


def pytest_configure(config):
    config._mnn_targets = _targets(config)
    for target in config._mnn_targets:
        target.backend.enable_float64()  # JAX computes in float32 unless told; gradchecks need 64


def pytest_report_header(config):
    return "mnn targets: " + ", ".join(str(t) for t in config._mnn_targets)


def pytest_generate_tests(metafunc):
    if "target" in metafunc.fixturenames:
        targets = metafunc.config._mnn_targets
        metafunc.parametrize("target", targets, ids=[str(t) for t in targets])


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
