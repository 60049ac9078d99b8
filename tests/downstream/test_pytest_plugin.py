"""mnn's pytest plugin (mnn.testing.plugin), run as a downstream project runs it: pytest in a
subprocess, on a scratch project of its own. (mnn's own suite runs on the plugin too.)"""

import importlib.metadata
import os
import re
import subprocess
import sys

import pytest
from helpers import install_broken_adapters, install_fake_adapter

TESTS = '''
import numpy as np
import pytest

import mnn


def test_fixtures_agree(target, xp, device):
    assert xp is target.xp and device == target.device
    array = xp.asarray([1.0, 2.0], device=device)
    assert mnn.backends.for_array(array) is target.backend


def test_dtype(xp, dtype):
    assert dtype in (xp.float64, xp.float32)


def test_rng(rng):
    assert rng.integers(10**9) == np.random.default_rng(1234).integers(10**9)


def test_plain():
    pass


@pytest.mark.parametrize("dtype", ["int8"])
def test_own_dtype_wins(target, dtype):
    assert dtype == "int8"
'''


def run_pytest(folder, *args, env=None):
    """pytest in ``folder`` (a project of its own, with a pytest.ini), in a fresh process; the
    outer run's target list and addopts do not leak in."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("MNN_TEST_TARGETS", "PYTEST_ADDOPTS")} | (env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=folder, env=environment, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_downstream.py").write_text(TESTS)
    return tmp_path


def collected(result) -> list[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return sorted(line.partition("::")[2] for line in result.stdout.splitlines() if "::" in line)


def entry_point_installed() -> bool:
    points = importlib.metadata.entry_points(group="pytest11", name="mnn")
    return [point.value for point in points] == ["_mnn_pytest:gate"]


needs_entry_point = pytest.mark.skipif(
    not entry_point_installed(),
    reason="mnn's pytest11 entry point is not installed (a source checkout that was not "
           "pip-installed since the plugin came); nox installs it")


def test_targets_give_fixtures_and_ids(project):
    result = run_pytest(project, "-p", "mnn.testing.plugin", "--collect-only", "-q",
                        "--target", "numpy:cpu", "--target", "array_api_strict:device1")
    assert collected(result) == sorted([
        "test_fixtures_agree[numpy-cpu]", "test_fixtures_agree[array_api_strict-device1]",
        "test_dtype[numpy-cpu-float64]", "test_dtype[numpy-cpu-float32]",
        "test_dtype[array_api_strict-device1-float64]",
        "test_dtype[array_api_strict-device1-float32]",
        "test_rng", "test_plain",
        "test_own_dtype_wins[numpy-cpu-int8]", "test_own_dtype_wins[array_api_strict-device1-int8]",
    ])
    result = run_pytest(project, "-p", "mnn.testing.plugin", "--target", "numpy:cpu",
                        "--target", "array_api_strict:device1")
    assert result.returncode == 0, result.stdout
    assert "mnn targets: numpy-cpu, array_api_strict-device1" in result.stdout
    assert "10 passed" in result.stdout


def test_the_environment_variable_names_targets(project):
    result = run_pytest(project, "-p", "mnn.testing.plugin", "--collect-only", "-q", "-k", "agree",
                        env={"MNN_TEST_TARGETS": "array_api_strict:CPU_DEVICE, numpy"})
    assert collected(result) == ["test_fixtures_agree[array_api_strict-CPU_DEVICE]",
                                 "test_fixtures_agree[numpy-cpu]"]


@pytest.mark.parametrize("spec, reason", [
    ("numpy:gpu", r"device 'gpu' is not present for numpy \(present: \['cpu'\]\)"),
    ("tensorflow:cpu", r"unknown backend 'tensorflow'"),
])
def test_an_absent_target_asked_for_is_a_usage_error(project, spec, reason):
    result = run_pytest(project, "-p", "mnn.testing.plugin", "--target", spec)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert re.search(rf"test target '{spec}' was asked for but is absent: {reason}",
                     result.stderr), result.stderr


def test_a_third_party_adapter_is_a_default_target(project):
    """Without --target: every registered backend present, those of entry points included."""
    install_fake_adapter(project, "mnn_fake_backend_plugin", "fake = mnn_fake_backend_plugin:"
                                                             "FakeBackend\n")
    path = os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")])
    result = run_pytest(project, "-p", "mnn.testing.plugin", "--collect-only", "-q", "-k", "agree",
                        env={"PYTHONPATH": path})
    ids = collected(result)
    assert "test_fixtures_agree[fake-cpu]" in ids and "test_fixtures_agree[numpy-cpu]" in ids


def test_a_broken_adapter_is_reported_and_the_other_backends_run(project):
    """An adapter whose devices() raises and one whose module exits on import are named, with
    their errors, in the header and at the end; numpy's tests run and pass."""
    install_broken_adapters(project, "mnn_broken_backend_plugin")
    path = os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")])
    result = run_pytest(project, "-p", "mnn.testing.plugin", "-k", "agree and numpy",
                        env={"PYTHONPATH": path})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    lines = [line.strip() for line in result.stdout.splitlines()]
    thatone = ("mnn: skipped the broken backend thatone: its devices() raised RuntimeError: "
               "no driver for thatone")
    exits = ("mnn: skipped the broken backend exits: mnn_broken_backend_plugin_exits:FakeBackend: "
             "SystemExit: 3")
    assert lines.count(thatone) == 2 and lines.count(exits) == 2, result.stdout
    result = run_pytest(project, "-p", "mnn.testing.plugin", "--target", "thatone",
                        env={"PYTHONPATH": path})
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert ("test target 'thatone' was asked for but is absent: the thatone adapter is broken: "
            "its devices() raised RuntimeError: no driver for thatone") in result.stderr


@needs_entry_point
def test_installed_the_plugin_is_inert_without_dash_p_mnn(project):
    """Autoloaded into every pytest run, the entry point adds no option, fixture or parameter,
    and imports nothing of mnn (nor NumPy)."""
    (project / "conftest.py").write_text(  # runs after the plugins load, before the tests
        "import sys\n\nEARLY = sorted({'mnn', 'numpy'} & set(sys.modules))\n\n\n"
        "def pytest_report_header():\n    return f'imported before the tests: {EARLY}'\n")
    result = run_pytest(project)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED
    assert "imported before the tests: []" in result.stdout
    assert "fixture 'target' not found" in result.stdout
    assert "1 passed, 4 errors" in result.stdout  # only test_plain needs no mnn fixture
    result = run_pytest(project, "--target", "numpy:cpu")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "unrecognized arguments: --target" in result.stderr


@needs_entry_point
@pytest.mark.parametrize("how", ["-p mnn", "-p mnn, no autoload", "conftest",
                                 "conftest and -p mnn"])
def test_installed_dash_p_mnn_enables_it(project, how):
    if "conftest" in how:
        (project / "conftest.py").write_text('pytest_plugins = ["mnn.testing.plugin"]\n')
    args = ["-p", "mnn"] if "-p mnn" in how else []
    env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"} if "no autoload" in how else {}
    result = run_pytest(project, *args, "--target", "numpy:cpu", "-W", "error", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mnn targets: numpy-cpu" in result.stdout and "6 passed" in result.stdout
    assert "warning" not in result.stdout.lower()

