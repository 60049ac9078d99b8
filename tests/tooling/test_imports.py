"""Importing mnn: no warning, and nothing heavy that the import does not need.

The cost itself is measured, not asserted (``python benchmarks/import_cost.py``; the
README quotes it). What is asserted here is what keeps it low: the modules that
``import mnn`` leaves for the moment they are used. (That it imports no array library
is in test_backends.py.)
"""

import subprocess
import sys
import textwrap

import pytest

# What import mnn leaves alone until it is used: safetensors (mnn.save, mnn.load),
# numpy.random (the first layer drawn), secrets (random, hashlib, hmac; atomic writes need
# six random bytes), and the parts of mnn a script may not use.
LAZY = ["safetensors", "numpy.random", "secrets", "random", "mnn.testing", "mnn.data",
        "mnn.cli", "pytest"]


@pytest.mark.parametrize("module", ["mnn", "mnn.testing", "mnn.testing.plugin", "mnn.data",
                                    "mnn.cli", "mnn.backends"])
def test_import_is_warning_free(module):
    result = subprocess.run([sys.executable, "-W", "error", "-c", f"import {module}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_import_mnn_leaves_heavy_modules_for_later():
    """What mnn adds to what ``import numpy`` brings: NumPy 1.x itself imports numpy.random,
    secrets and random; NumPy 2 none of them."""
    code = textwrap.dedent(f"""
        import sys
        import numpy
        before = set(sys.modules)
        import mnn
        early = [name for name in {LAZY!r} if name in set(sys.modules) - before]
        assert not early, f"import mnn imported {{early}}"
        mnn.LinearLayer(2, 2)  # the first draw brings numpy.random
        assert "numpy.random" in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
