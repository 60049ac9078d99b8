"""The nox matrix on a machine without a GPU: CUDA sessions skip before they install anything.

Plain ``nox`` once downloaded 1.6 GB of CUDA wheels (cupy, a CUDA torch) only to find no
GPU in the probe that ran after the install.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import load_file

ROOT = Path(__file__).resolve().parents[2]


def _load_noxfile():
    pytest.importorskip("nox", reason="nox is not installed (it is in the test extra)")
    return load_file("mnn_noxfile", ROOT / "noxfile.py")


def test_a_cuda_session_without_a_gpu_installs_nothing(tmp_path):
    noxfile = _load_noxfile()
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
