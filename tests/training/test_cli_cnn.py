"""``mnn train --model cnn``: the LeNet-style network on the embedded digits, in process, and
``--model mlp`` as the default, whose output the option leaves as it is."""

import re

import numpy as np
import pytest

from mnn.cli import main
from mnn.cli import train as train_command
from mnn.cli.common import CommandError
from mnn.data import Dataset

ACCURACY = re.compile(r"^test accuracy ([\d.]+)% \((\d+)/(\d+)\) after (\d+) epochs? in ",
                      re.MULTILINE)
QUICK = ["train", "--no-progress", "--plot", "none", "--epochs", "2"]


def run(capsys, *args) -> str:
    assert main([*QUICK, *args]) == 0
    return capsys.readouterr().out


def test_cnn_trains_on_the_digits(capsys):
    """Two epochs of the CNN (3x3 kernels, pools sliding by one) on the 8x8 digits already
    score far above chance; the full 20 epochs are in docs/convolution.md."""
    out = run(capsys, "--model", "cnn")
    assert "cnn 1x8x8: conv3x3x16-pool2x2/1-conv3x3x32-pool2x2/1-10 on numpy cpu" in out
    accuracy = ACCURACY.search(out)
    assert accuracy is not None, out
    assert float(accuracy.group(1)) > 90.0, out
    assert int(accuracy.group(3)) == 359 and int(accuracy.group(4)) == 2


def without_times(out: str) -> str:
    return re.sub(r"in [\d.]+ s", "in <time> s", out)


def test_mlp_is_the_default_and_its_output_is_unchanged(capsys):
    """No --model and --model mlp print the same lines, the MLP's shape among them."""
    default = without_times(run(capsys))
    mlp = without_times(run(capsys, "--model", "mlp"))
    assert default == mlp
    assert "digits (1438 train, 359 test), 64-256-10 on numpy cpu float32" in default


def test_the_mnist_cnn_halves_the_image_twice():
    """On 28x28 images: 5x5 kernels and pools of stride 2 (28 -> 14 -> 7), so the Linear
    layer takes 32 x 7 x 7 features, and a batch gives one row of 10 logits per image."""
    model, shape = train_command.cnn(28)
    assert shape == "cnn 1x28x28: conv5x5x16-pool2x2/2-conv5x5x32-pool2x2/2-10"
    logits = model[:-1](np.zeros((3, 1, 28, 28), dtype=np.float32))
    assert logits.shape == (3, 10)
    assert model[-2].params["w"].shape[1] == 32 * 7 * 7


def test_flat_inputs_become_one_channel_images():
    flat = np.arange(2 * 64, dtype=np.float64).reshape(2, 64)
    images = train_command.as_images(Dataset(flat, np.array([0, 1]), "digits"))
    assert images.inputs.shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(images.inputs[1, 0, 2], flat[1, 16:24])


def test_non_square_inputs_are_a_command_error():
    with pytest.raises(CommandError, match=r"square images, got 60 pixels per input in odd"):
        train_command.as_images(Dataset(np.zeros((2, 60)), np.array([0, 1]), "odd"))


def test_evaluate_gives_a_cnn_checkpoint_images(capsys, tmp_path):
    """The saved CNN takes 1 x 8 x 8 images: evaluate shapes the digits as train did, and
    scores what train scored."""
    path = tmp_path / "cnn.safetensors"
    trained = ACCURACY.search(run(capsys, "--model", "cnn", "--epochs", "1", "--save",
                                  str(path)))
    assert main(["evaluate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"accuracy {trained.group(1)}% ({trained.group(2)}/359)" in out, out
