"""``mnn train-lm`` end to end on tiny models: output, checkpoints, plots, backends and errors."""

import json
import math
import re

import pytest
from test_cli import HAVE, assert_one_line_error, mnn_cli

import mnn

TINY = ["--context", "8", "--d-model", "8", "--heads", "2", "--layers", "1", "--batch-size", "8",
        "--no-progress"]
STEP = re.compile(r"^step (\d+)/(\d+): train loss ([\d.]+), validation loss ([\d.]+) \(\d+ s\)$",
                  re.MULTILINE)
FINAL = re.compile(r"^validation loss ([\d.]+) nats per character after (\d+) steps in [\d.]+ s "
                   r"on (\w+) (\S+) (\w+)$", re.MULTILINE)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "abc.txt"
    path.write_text("the cat sat on the mat. " * 60, encoding="utf-8")
    return path


def test_trains_samples_saves_and_plots(tmp_path, text_file):
    result = mnn_cli("train-lm", "--text", "abc.txt", "--steps", "60", "--eval-every", "20",
                     "--lr", "1e-2", "--sample-length", "12", "--save", "lm.safetensors",
                     "--plot", "curves.png" if HAVE["matplotlib"] else "none", *TINY,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "abc (1440 characters, vocabulary 11)" in result.stdout
    steps = STEP.findall(result.stdout)
    assert [int(s[0]) for s in steps] == [20, 40, 60] and all(s[1] == "60" for s in steps)
    losses = [float(s[3]) for s in steps]
    assert losses[-1] < losses[0] < math.log(11) + 0.5  # learns the repeated sentence
    samples = re.findall(r"^sample: '(.*)'$", result.stdout, re.MULTILINE)
    assert len(samples) == 3 and all(len(s.replace("\\n", "\n")) == 13 for s in samples)
    final = FINAL.search(result.stdout)
    assert final.groups()[1:] == ("60", "numpy", "cpu", "float32")
    assert float(final.group(1)) == losses[-1]

    model, optimizer = mnn.load(tmp_path / "lm.safetensors", with_optimizer=True)
    assert model[0].config()["type"] == "GPT" and model[0].vocab_size == 11
    assert type(optimizer).__name__ == "AdamW" and optimizer.lr == 1e-2
    vocabulary = json.loads((tmp_path / "lm.safetensors.vocab.json").read_text(encoding="utf-8"))
    assert vocabulary == {"characters": " .acehmnost"}
    if HAVE["matplotlib"]:
        assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "wrote the loss curves to curves.png" in result.stdout


def test_the_default_corpus_needs_no_download(tmp_path):
    result = mnn_cli("train-lm", "--steps", "2", "--eval-every", "2", "--eval-batches", "1",
                     "--sample-length", "5", "--plot", "none", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"pydoc-topics \(4\d\d\d\d\d characters, vocabulary \d+\)", result.stdout)
    assert "AdamW(lr=0.001," in result.stdout  # --lr's default for adamw
    assert FINAL.search(result.stdout).group(2) == "2"


@pytest.mark.skipif(not HAVE["matplotlib"], reason="matplotlib is not installed (plots need it)")
def test_the_default_plot_is_named_after_the_corpus(tmp_path, text_file):
    result = mnn_cli("train-lm", "--text", "abc.txt", "--steps", "2", "--eval-every", "2",
                     "--sample-length", "0", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "abc-lm-curves.png").exists() and "sample:" not in result.stdout


def test_time_limit_stops_after_the_step_that_passes_it(tmp_path, text_file):
    result = mnn_cli("train-lm", "--text", "abc.txt", "--steps", "1000", "--time-limit", "0",
                     "--sample-length", "0", "--plot", "none", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "stopped after 1 steps: --time-limit 0 s" in result.stdout
    assert FINAL.search(result.stdout).group(2) == "1"


@pytest.mark.skipif(not HAVE["torch"], reason="torch is not installed")
def test_numpy_and_torch_train_alike_from_the_same_seed(tmp_path, text_file):
    """Same weights, same windows: the losses agree to float32 rounding."""
    common = ["train-lm", "--text", "abc.txt", "--steps", "10", "--eval-every", "5",
              "--sample-length", "0", "--plot", "none", "--dtype", "float64", *TINY]
    runs = [mnn_cli(*common, "--backend", backend, cwd=tmp_path) for backend in ("numpy", "torch")]
    for run in runs:
        assert run.returncode == 0, run.stderr
    first, second = ([float(v) for s in STEP.findall(run.stdout) for v in s[2:]] for run in runs)
    assert len(first) == 4 and first == pytest.approx(second, rel=1e-9)


@pytest.mark.parametrize(("args", "message"), [
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--d-model", "10", "--heads", "4"], "--d-model (10) must be divisible by --heads (4)"),
    (["--lr", "-1"], "--lr: expected the learning rate to be finite and >= 0, got -1.0"),
    (["--weight-decay", "inf"], "--weight-decay: expected the weight decay to be finite and "
                                ">= 0, got inf"),
    (["--eval-every", "0"], "--eval-every must be at least 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--dropout", "1"], "--dropout must be in [0, 1)"),
    (["--top-k", "0"], "--top-k must be at least 1"),
    (["--prompt", "Z"], "the character 'Z' is not in the vocabulary"),
    (["--context", "2000"], "too few for training and validation windows of 2000"),
    (["--backend", "tensorflow"], "unknown backend 'tensorflow'"),
    (["--save", "nowhere/lm.safetensors"], "does not exist")])
def test_bad_arguments_are_one_line_errors(tmp_path, text_file, args, message):
    result = mnn_cli("train-lm", "--text", "abc.txt", "--steps", "2", "--plot", "none",
                     "--no-progress", *args, cwd=tmp_path)
    assert_one_line_error(result, message)


def test_a_missing_or_binary_text_file_is_a_one_line_error(tmp_path):
    assert_one_line_error(mnn_cli("train-lm", "--text", "missing.txt", cwd=tmp_path),
                          "missing.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x80" * 100)
    assert_one_line_error(mnn_cli("train-lm", "--text", "binary.txt", cwd=tmp_path),
                          "--text binary.txt: not UTF-8 text")
