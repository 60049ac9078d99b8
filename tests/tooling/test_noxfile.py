"""The nox matrix: CUDA sessions skip before they install anything on a machine without a
GPU; uv finds what pip finds; nox finds every Python that pyenv installed; the tests and
integration sessions split the suite between them.

A CUDA session that installed first would download 1.6 GB of CUDA wheels (cupy, a CUDA
torch) only to find no GPU in the probe that runs after the install.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import load_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def noxfile():
    """noxfile.py as a module, loaded once (nox registers each session once); what it sets in
    os.environ (PYENV_VERSION) is undone after."""
    pytest.importorskip("nox", reason="nox is not installed (it is in the test extra)")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PYENV_VERSION", raising=False)
        yield load_file("mnn_noxfile", ROOT / "noxfile.py")


def test_a_cuda_session_without_a_gpu_installs_nothing(noxfile, tmp_path):
    reason = noxfile._nvidia_gpu_absent()
    if reason is None:
        pytest.skip("this machine has an NVIDIA GPU: the CUDA sessions run here")
    result = subprocess.run([sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"),
                             "--envdir", str(tmp_path), "-k", "cupy"],
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output  # skipped, not failed: it was not asked for by name
    assert "Session tests(cupy-cuda) skipped: no usable cuda device for cupy" in output, output
    installed = list(tmp_path.glob("*/lib/python*/site-packages/*"))
    assert not [p for p in installed if "cupy" in p.name.lower()], installed
    assert "pip install" not in output and "python -m pip" not in output, output


def test_every_session_description_is_a_whole_sentence():
    """``nox -l`` shows the first line of each session's docstring: a sentence, not half of one."""
    pytest.importorskip("nox", reason="nox is not installed (it is in the test extra)")
    result = subprocess.run([sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "-l"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    sessions = re.findall(r"^[*-] (\S+) -> (.*)$", result.stdout, re.MULTILINE)
    assert len(sessions) > 5, result.stdout
    cut = [f"{name}: {description}" for name, description in sessions
           if not description.endswith(".")]
    assert not cut, cut


def test_the_versions_sessions_test_both_ends_of_what_pyproject_allows(noxfile):
    """The oldest Python that requires-python admits with the lowest versions; the newest
    Python with the newest; both on NumPy and array-api-strict."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    ends = {param.id: param.args for param in noxfile.VERSIONS}
    assert ends == {"oldest": (project["requires-python"].removeprefix(">="), "lowest-direct"),
                    "newest": (ends["newest"][0], "highest")}
    assert ends["newest"][0] > ends["oldest"][0]
    assert set(noxfile.VERSIONS_TARGETS) == {"numpy:cpu", "array_api_strict:CPU_DEVICE",
                                             "array_api_strict:device1",
                                             "array_api_strict:device2"}
    assert "versions" in noxfile.nox.options.sessions


def test_uv_is_given_the_find_links_of_pips_configuration(noxfile, tmp_path, monkeypatch):
    """uv reads no pip configuration: the noxfile hands it pip's find-links (where the torch
    wheel lies on disk), from pip.conf and from PIP_FIND_LINKS alike."""
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not installed here (the environments that uv builds for nox have none)")
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nfind-links = /from/the/file\n    /and/another\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_FIND_LINKS", "/from/the/environment")
    noxfile._pip_find_links.cache_clear()
    try:
        links = noxfile._pip_find_links()
    finally:
        noxfile._pip_find_links.cache_clear()
    assert set(links) == {"/from/the/file", "/and/another", "/from/the/environment"}, links


def test_every_python_that_pyenv_installed_is_findable(noxfile, tmp_path, monkeypatch):
    """pyenv's shims run only the active versions: the others are named after them."""
    root, bin_ = tmp_path / "pyenv", tmp_path / "bin"
    for version in ["3.13.0", "3.11.7", "3.12.1"]:
        (root / "versions" / version).mkdir(parents=True)
    bin_.mkdir()
    (bin_ / "pyenv").write_text("#!/bin/sh\necho 3.12.1\n")  # `pyenv version-name`
    (bin_ / "pyenv").chmod(0o755)
    monkeypatch.setenv("PYENV_ROOT", str(root))
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    noxfile._every_pyenv_python_findable()
    assert os.environ["PYENV_VERSION"] == "3.12.1:3.11.7:3.13.0"


def test_the_docs_session_can_tell_why_chromium_did_not_run(noxfile):
    """The docs session passes without Chromium (its browser tests skip): it then warns, with
    the reason that docs/site/sitecheck.py gives, asked of the session's own Python."""
    sitecheck = load_file("mnn_sitecheck", ROOT / "docs" / "site" / "sitecheck.py")

    class Session:  # runs the command in this Python, as nox runs it in the session's
        def run(self, program, *args, silent, log):
            assert program == "python" and silent and not log
            return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                                  check=True).stdout

    assert noxfile._chromium_missing(Session()) == (sitecheck.chromium_missing() or "")


def collect_only(scope: str, *paths: str) -> subprocess.CompletedProcess:
    """``pytest --collect-only`` of ``paths`` on numpy:cpu under MNN_TEST_SCOPE=scope."""
    env = {**os.environ, "MNN_TEST_SCOPE": scope, "MNN_TEST_TARGETS": "numpy:cpu"}
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", *paths], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def collected(scope: str, *paths: str) -> set[str]:
    """The test ids that ``pytest --collect-only`` keeps under MNN_TEST_SCOPE=scope."""
    run = collect_only(scope, *paths)
    assert run.returncode in (0, 5), run.stdout + run.stderr  # 5: everything deselected
    return {line for line in run.stdout.splitlines() if "::" in line}


def test_the_scopes_split_the_suite_between_the_tests_and_integration_sessions():
    """Every test runs in one of the two: per target (tests), or once (integration)."""
    paths = ("tests/layers/test_linear.py", "tests/training/test_cli_lm.py")
    every, per_target, shared = (collected(scope, *paths) for scope in ("", "per-target",
                                                                          "shared"))
    assert per_target and shared and not per_target & shared
    assert per_target | shared == every
    assert all("[numpy-cpu" in test for test in per_target)
    assert not any("[numpy-cpu" in test for test in shared)


def test_an_unknown_scope_is_a_usage_error():
    run = collect_only("some", "tests/layers/test_linear.py")
    assert run.returncode == 4 and "MNN_TEST_SCOPE: expected one of" in run.stderr
