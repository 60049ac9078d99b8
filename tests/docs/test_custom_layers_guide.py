"""docs/custom-layers.md runs: its Python blocks, in order, as one script in a fresh process."""

import re
import subprocess
import sys
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "custom-layers.md"


def guide_code() -> str:
    return "\n\n".join(re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(),
                                  re.MULTILINE | re.DOTALL))


def test_the_guide_has_code_for_each_step():
    code = guide_code()
    for piece in ("class PReLU(mnn.BaseLayer)", "@mnn.register_layer", "gradcheck(",
                  "mnn.save(", "mnn.load(", ".predict("):
        assert piece in code, piece


def test_the_guide_runs_and_its_layer_survives_a_checkpoint(tmp_path):
    result = subprocess.run([sys.executable, "-c", guide_code()], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"^gradcheck passed on .*numpy:cpu", out, re.MULTILINE), out
    assert "caught: gradcheck failed: WrongPReLU on numpy, device cpu, float64: gradient with " \
           "respect to inputs is wrong" in out, out
    assert re.search(r"^accuracy of the loaded network: (9[5-9]|100)\.\d\d%", out, re.MULTILINE)


def test_an_unregistered_layer_type_is_refused_with_the_way_to_register_it(tmp_path):
    code = """
import mnn

class Unregistered(mnn.BaseLayer):
    def compute_forward(self, xp, inputs, feedbacks):
        return inputs

mnn.save(mnn.SequentialLayers([mnn.LinearLayer(2, 2), Unregistered()]), "net.safetensors")
try:
    mnn.load("net.safetensors")
except mnn.CheckpointError as error:
    print(error)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "unknown layer type 'Unregistered'" in result.stdout
    assert "@mnn.register_layer" in result.stdout and "'mnn.layers'" in result.stdout
