"""``mnn train-lm``, ``generate`` and ``evaluate`` end to end on tiny models: output, checkpoints,
plots, backends and errors."""

import importlib.util
import json
import math
import os
import re
import time

import pytest
from test_cli import HAVE, assert_one_line_error, mnn_cli

import mnn
from mnn.data import CharacterVocabulary, pydoc_corpus

TINY = ["--context", "8", "--d-model", "8", "--heads", "2", "--layers", "1", "--batch-size", "8",
        "--no-progress"]
STEP = re.compile(r"^step (\d+)/(\d+): train loss ([\d.]+), validation loss ([\d.]+) \(\d+ s\)$",
                  re.MULTILINE)
FINAL = re.compile(r"^validation loss ([\d.]+) nats per character after (\d+) steps? in [\d.]+ s "
                   r"on (\w+) (\S+) (\w+)$", re.MULTILINE)
LM_LOSS = re.compile(r"^loss ([\d.]+) nats per character, perplexity ([\d.]+) \(([\d,]+) "
                     r"characters predicted\)$", re.MULTILINE)
TEXT = "the cat sat on the mat. " * 60


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "abc.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained on ``TEXT`` and saved by train-lm: ``(folder, checkpoint name)``."""
    folder = tmp_path_factory.mktemp("lm")
    (folder / "abc.txt").write_text(TEXT, encoding="utf-8")
    result = mnn_cli("train-lm", "--text", "abc.txt", "--steps", "60", "--eval-every", "60",
                     "--lr", "1e-2", "--sample-length", "0", "--save", "lm.safetensors",
                     "--plot", "none", *TINY, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, "lm.safetensors"


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

    model, optimizer, metadata = mnn.load(tmp_path / "lm.safetensors", with_optimizer=True,
                                          with_metadata=True)
    assert model[0].config()["type"] == "GPT" and model[0].vocab_size == 11
    assert type(optimizer).__name__ == "AdamW" and optimizer.lr == 1e-2
    # the vocabulary is in the checkpoint itself: one atomic write, no file beside it
    assert metadata == {"vocabulary": " .acehmnost", "corpus": str(text_file)}
    assert not (tmp_path / "lm.safetensors.vocab.json").exists()
    assert "saved the model, the optimizer and the vocabulary to lm.safetensors" in result.stdout
    if HAVE["matplotlib"]:
        assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "wrote the loss curves to curves.png" in result.stdout


def test_the_default_corpus_needs_no_download(tmp_path):
    result = mnn_cli("train-lm", "--steps", "2", "--eval-every", "2", "--eval-batches", "1",
                     "--sample-length", "5", "--plot", "none", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = pydoc_corpus()  # its size depends on the Python version: 465,048 characters on 3.11
    assert f"pydoc-topics ({len(text)} characters, vocabulary {len(set(text))})" in result.stdout
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
    assert "stopped after 1 step: --time-limit 0 s" in result.stdout
    assert FINAL.search(result.stdout).group(2) == "1" and " after 1 step in " in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("tqdm") is None,
                    reason="tqdm is not installed (it draws the progress bar)")
def test_the_progress_bar_counts_steps_in_integers(tmp_path, text_file):
    result = mnn_cli("train-lm", "--text", "abc.txt", "--steps", "3", "--eval-every", "3",
                     "--sample-length", "0", "--plot", "none", *TINY[:-1], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "steps 1-3" in result.stderr and " 0/3 " in result.stderr  # drawn at the start
    assert not re.search(r"\d\.\d+/\d", result.stderr), result.stderr  # not 0.00/3.00


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
    (["--save", "nowhere/lm.safetensors"], "does not exist"),
    # each of these failed inside the first evaluation, or hung, or gave a raw traceback
    (["--temperature", "nan"], "--temperature: expected the temperature to be finite and >= 0, "
                               "got nan"),
    (["--temperature", "inf"], "--temperature: expected the temperature to be finite"),
    (["--sample-length", "1000000000"], "--sample-length must be between 0 and 10,000"),
    (["--weight-decay", "-1"], "--weight-decay: expected the weight decay to be finite and "
                               ">= 0, got -1.0"),
    (["--weight-decay", "nan"], "--weight-decay: expected the weight decay to be finite"),
    (["--batch-size", "1000000000"], "one step (--batch-size 1000000000 windows of --context "
                                     "8) need about"),
    (["--d-model", "1000000"], "a GPT with --d-model 1000000"),
    (["--layers", "1000000000"], "that mnn.load builds from a checkpoint; lower --layers"),
    (["--layers", "600"], "--layers 600 makes a GPT of 10,"),  # trains, but would not load
    (["--time-limit", "-1"], "--time-limit: expected the time limit in seconds to be finite "
                             "and >= 0, got -1.0"),
    (["--time-limit", "nan"], "--time-limit: expected the time limit in seconds to be finite"),
    (["--eval-batches", "1000000000"], "--eval-batches must be at most 1,000"),
    (["--max-text-mb", "0"], "--max-text-mb must be at least 1, got 0")])
def test_bad_arguments_are_one_line_errors_before_the_first_step(tmp_path, text_file, args,
                                                                 message):
    result = mnn_cli("train-lm", "--text", "abc.txt", "--steps", "2", "--eval-every", "1",
                     "--plot", "none", *TINY, *args, timeout=60, cwd=tmp_path)
    assert_one_line_error(result, message)
    assert "step" not in result.stdout  # refused before training, not at the first evaluation


def test_text_files_that_cannot_be_read_are_errors_that_name_text(tmp_path):
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x80" * 100)
    (tmp_path / "folder").mkdir()
    (tmp_path / "big.txt").write_text("ab" * 600_000, encoding="utf-8")
    cases = [("missing.txt", "--text missing.txt: no such file"),
             ("binary.txt", "--text binary.txt: not UTF-8 text"),
             ("folder", "--text folder: a directory, not a text file"),
             ("/dev/zero", "--text /dev/zero: not a regular file"),
             ("big.txt", "--text big.txt: 1,200,000 bytes, more than --max-text-mb allows "
                         "(1,000,000 bytes)")]
    if hasattr(os, "mkfifo"):  # a FIFO would block the read forever
        os.mkfifo(tmp_path / "fifo")
        cases.append(("fifo", "--text fifo: not a regular file (a FIFO, a device or a socket)"))
    for name, message in cases:
        started = time.perf_counter()
        result = mnn_cli("train-lm", "--text", name, "--max-text-mb", "1", "--plot", "none",
                         timeout=60, cwd=tmp_path)
        assert_one_line_error(result, message)
        assert "Errno" not in result.stderr and time.perf_counter() - started < 30


def test_a_vocabulary_file_left_as_a_directory_does_not_matter(tmp_path, text_file):
    """The vocabulary lives in the checkpoint: whatever sits at lm.safetensors.vocab.json (here a
    directory, which failed the old side-file write after the first interval) is not written."""
    (tmp_path / "lm.safetensors.vocab.json").mkdir()
    result = mnn_cli("train-lm", "--text", "abc.txt", "--steps", "4", "--eval-every", "2",
                     "--sample-length", "0", "--save", "lm.safetensors", "--plot", "none", *TINY,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert mnn.load(tmp_path / "lm.safetensors", with_metadata=True)[1]["vocabulary"] == \
        " .acehmnost"


# --- mnn generate -------------------------------------------------------------------------

def test_generate_continues_the_prompt_from_the_checkpoint_alone(trained):
    folder, checkpoint = trained
    result = mnn_cli("generate", checkpoint, "--prompt", "the c", "-n", "30", "--seed", "3",
                     cwd=folder)
    assert result.returncode == 0, result.stderr
    text = result.stdout.removesuffix("\n")
    assert text.startswith("the c") and len(text) == 35 and set(text) <= set(TEXT)
    assert mnn_cli("generate", checkpoint, "--prompt", "the c", "-n", "30", "--seed", "3",
                   cwd=folder).stdout == result.stdout  # seeded
    assert result.stderr == ""


def test_generate_at_temperature_0_is_the_models_greedy_continuation(trained):
    folder, checkpoint = trained
    result = mnn_cli("generate", checkpoint, "--prompt", "the", "-n", "20", "--temperature", "0",
                     cwd=folder)
    assert result.returncode == 0, result.stderr
    model, metadata = mnn.load(folder / checkpoint, with_metadata=True)
    vocabulary = CharacterVocabulary(metadata["vocabulary"])
    expected = vocabulary.decode(model[0].generate(vocabulary.encode("the"), 20, temperature=0))
    assert result.stdout == expected + "\n"


def test_a_checkpoint_with_its_vocabulary_beside_it_still_loads(trained, tmp_path):
    """Checkpoints written before the vocabulary moved into the metadata."""
    folder, checkpoint = trained
    model = mnn.load(folder / checkpoint)
    mnn.save(model, tmp_path / "old.safetensors")  # no metadata
    beside = tmp_path / "old.safetensors.vocab.json"
    beside.write_text(json.dumps({"characters": " .acehmnost"}), encoding="utf-8")
    result = mnn_cli("generate", "old.safetensors", "--prompt", "the", "-n", "5", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("the"), result.stderr
    beside.write_text(json.dumps({"characters": " .abcdefghijklmnost"}), encoding="utf-8")
    assert_one_line_error(mnn_cli("generate", "old.safetensors", cwd=tmp_path),
                          "old.safetensors: the vocabulary has 19 characters, but the model's "
                          "vocab_size is 11")
    beside.unlink()
    assert_one_line_error(mnn_cli("generate", "old.safetensors", cwd=tmp_path),
                          "old.safetensors: no vocabulary in the checkpoint's metadata, and none "
                          "beside it")


def test_a_vocabulary_that_does_not_fit_the_model_is_a_checkpoint_error(trained, tmp_path):
    folder, checkpoint = trained
    model = mnn.load(folder / checkpoint)
    for characters, message in [("abc", "the vocabulary has 3 characters, but the model's "
                                        "vocab_size is 11"),
                                ("ba.cehmnost ", "not a sorted string of distinct characters")]:
        mnn.save(model, tmp_path / "bad.safetensors", metadata={"vocabulary": characters})
        assert_one_line_error(mnn_cli("generate", "bad.safetensors", cwd=tmp_path), message)
        assert_one_line_error(mnn_cli("evaluate", "bad.safetensors", cwd=tmp_path), message)


@pytest.mark.parametrize(("args", "message"), [
    (["-n", "-1"], "-n must be between 0 and 10,000"),
    (["--temperature", "nan"], "--temperature: expected the temperature to be finite"),
    (["--top-k", "0"], "--top-k must be at least 1"),
    (["--prompt", "Z"], "--prompt: CharacterVocabulary: the character 'Z' is not in the "
                        "vocabulary of 11 characters (lm.safetensors)"),
    (["--backend", "tensorflow"], "unknown backend 'tensorflow'")])
def test_bad_generate_arguments_are_one_line_errors(trained, args, message):
    folder, checkpoint = trained
    assert_one_line_error(mnn_cli("generate", checkpoint, *args, cwd=folder), message)


def test_generate_refuses_what_is_no_language_model(trained, tmp_path):
    assert_one_line_error(mnn_cli("generate", "missing.safetensors", cwd=tmp_path),
                          "missing.safetensors")
    mnn.save(mnn.SequentialLayers([mnn.LinearLayer(2, 3)]), tmp_path / "mlp.safetensors")
    assert_one_line_error(mnn_cli("generate", "mlp.safetensors", cwd=tmp_path),
                          "mlp.safetensors: not a language model (a GPT or a RecurrentLM, "
                          "alone or first in a SequentialLayers), but a SequentialLayers")


# --- mnn evaluate on a language model -----------------------------------------------------

def test_evaluate_scores_the_validation_split_of_the_training_text(trained):
    folder, checkpoint = trained
    result = mnn_cli("evaluate", checkpoint, cwd=folder)
    assert result.returncode == 0, result.stderr
    assert (f"{checkpoint}: GPT 1x8 (vocabulary 11, context 8) on abc (validation split: the "
            f"last 144 characters), numpy cpu float32") in result.stdout
    loss, perplexity, predicted = LM_LOSS.search(result.stdout).groups()
    assert predicted == "143" and float(perplexity) == pytest.approx(math.exp(float(loss)),
                                                                     abs=2e-3)
    assert float(loss) < math.log(11) - 1  # learned something


def test_evaluate_on_a_text_predicts_every_character_once(trained):
    """The loss on --text, in batches of 32 windows, against one window at a time here."""
    folder, checkpoint = trained
    result = mnn_cli("evaluate", checkpoint, "--text", "abc.txt", cwd=folder)
    assert result.returncode == 0, result.stderr
    loss, _, predicted = LM_LOSS.search(result.stdout).groups()
    assert predicted == "1,439" and "on abc (whole)" in result.stdout
    model, metadata = mnn.load(folder / checkpoint, with_metadata=True)
    ids = CharacterVocabulary(metadata["vocabulary"]).encode(TEXT)
    model.eval()
    total = 0.0
    for start in range(0, len(ids) - 1, 8):  # windows of the context, the last one shorter
        labels = ids[start + 1:start + 9]
        total += float(model(ids[None, start:start + len(labels)], labels[None])) * len(labels)
    assert float(loss) == pytest.approx(total / 1439, abs=1e-4)


def test_evaluate_language_model_errors_are_one_line(trained, tmp_path):
    folder, checkpoint = trained
    (tmp_path / "other.txt").write_text("XYZ", encoding="utf-8")
    assert_one_line_error(mnn_cli("evaluate", str(folder / checkpoint), "--text", "other.txt",
                                  cwd=tmp_path),
                          "other (whole): CharacterVocabulary: the character 'X' is not in the "
                          "vocabulary of 11 characters")
    assert_one_line_error(mnn_cli("evaluate", str(folder / checkpoint), "--text", "missing.txt",
                                  cwd=tmp_path), "--text missing.txt: no such file")
    moved = tmp_path / "moved.safetensors"  # trained on a file that is not there any more
    moved.write_bytes((folder / checkpoint).read_bytes())
    model, metadata = mnn.load(moved, with_metadata=True)
    mnn.save(model, moved, metadata={**metadata, "corpus": str(tmp_path / "gone.txt")})
    assert_one_line_error(mnn_cli("evaluate", "moved.safetensors", cwd=tmp_path),
                          f"moved.safetensors was trained on {tmp_path / 'gone.txt'}, which "
                          f"cannot be read", "give the text with --text")
    mnn.save(mnn.SequentialLayers([mnn.LinearLayer(2, 3)]), tmp_path / "mlp.safetensors")
    assert_one_line_error(mnn_cli("evaluate", "mlp.safetensors", "--text", "other.txt",
                                  cwd=tmp_path),
                          "--text scores a language model, and mlp.safetensors holds a "
                          "SequentialLayers")
