"""docs/custom-layers.md runs: its two files (the layer and its test) are written and the test
file runs under ``pytest -p mnn``; then its other Python blocks run, in order, as one script."""

import re
import subprocess
import sys
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "custom-layers.md"
FILE_NAME = re.compile(r"^# (\w+\.py)\n")


def guide_blocks() -> tuple[dict[str, str], str]:
    """The files the guide names (``# prelu.py`` as a block's first line), and the script of
    every other Python block."""
    files, script = {}, []
    for block in re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(),
                            re.MULTILINE | re.DOTALL):
        name = FILE_NAME.match(block)
        if name:
            files[name.group(1)] = block
        else:
            script.append(block)
    return files, "\n\n".join(script)


def run(command, folder, timeout=600):
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=timeout,
                          env={**__import__("os").environ, "PYTHONPATH": str(folder)})


def test_a_layer_is_two_files():
    files, _ = guide_blocks()
    assert sorted(files) == ["prelu.py", "test_prelu.py"]
    layer = files["prelu.py"]
    for piece in ("class PReLU(mnn.BaseLayer)", "def example(", "def compute_forward(",
                  "def compute_backward("):
        assert piece in layer, piece
    assert "register" not in layer and "args" not in layer  # nothing kept by hand
    assert "gradcheck(" in files["test_prelu.py"]


def test_the_guide_runs_and_its_layer_survives_a_checkpoint(tmp_path):
    files, script = guide_blocks()
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    tested = run([sys.executable, "-m", "pytest", "-p", "mnn", "-q", "-p", "no:cacheprovider",
                  "test_prelu.py"], tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    passed = re.search(r"(\d+) passed", tested.stdout)
    assert passed and int(passed.group(1)) >= 3 and "failed" not in tested.stdout, tested.stdout
    result = run([sys.executable, "-c", script], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "caught: gradcheck failed: WrongPReLU on numpy, device cpu, float64: gradient with " \
           "respect to inputs is wrong" in out, out
    assert re.search(r"^accuracy of the loaded network: (9[5-9]|100)\.\d\d%", out, re.MULTILINE)


def test_a_layer_type_the_loading_process_does_not_know_is_refused(tmp_path):
    """Saved where the class was defined, loaded in a process that never defined it."""
    save = """
import mnn

class Unknown(mnn.BaseLayer):
    def compute_forward(self, xp, inputs, feedbacks):
        return inputs

mnn.save(mnn.SequentialLayers([mnn.LinearLayer(2, 2), Unknown()]), "net.safetensors")
"""
    load = """
import mnn
try:
    mnn.load("net.safetensors")
except mnn.CheckpointError as error:
    print(error)
"""
    assert run([sys.executable, "-c", save], tmp_path, 120).returncode == 0
    result = run([sys.executable, "-c", load], tmp_path, 120)
    assert result.returncode == 0, result.stderr
    assert "unknown layer type 'Unknown'" in result.stdout
    assert "import the module that defines it" in result.stdout
    assert "'mnn.layers'" in result.stdout
