"""The ``mnn`` command, run as a user runs it: ``python -m mnn ...`` in a subprocess.

Bad input must end with exit status != 0 and exactly one line ``mnn: error: ...`` on
stderr, never a traceback. Libraries are made "not installed" by a tiny launcher that
blocks their import (``sys.modules[name] = None``) before running the command.
"""

import argparse
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, install_broken_adapters

import mnn
from mnn.cli import check as check_command
from mnn.cli import evaluate as evaluate_command
from mnn.cli import main
from mnn.cli import train as train_command
from mnn.cli import train_lm as train_lm_command
from mnn.cli.common import install_command
from mnn.registry import LAYERS

HAVE = {name: importlib.util.find_spec(name) is not None
        for name in ("torch", "matplotlib")}
LAUNCHER = ("import sys; [sys.modules.__setitem__(m, None) for m in sys.argv[1].split(',') if m]; "
            "from mnn.cli import main; sys.exit(main(sys.argv[2:]))")
ACCURACY = re.compile(r"^test accuracy ([\d.]+)% \((\d+)/(\d+)\) after (\d+) epochs? in ([\d.]+) s",
                      re.MULTILINE)


def mnn_cli(*args, cwd, block=(), timeout=300, env=None):
    if block:
        command = [sys.executable, "-c", LAUNCHER, ",".join(block), *args]
    else:
        command = [sys.executable, "-m", "mnn", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnn: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- train, evaluate, info, check ---------------------------------------------------------

def test_train_saves_plots_and_evaluate_reads_it_back(tmp_path):
    result = mnn_cli("train", "--epochs", "2", "--hidden", "32", "--save", "model.safetensors",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    epochs = re.findall(r"^epoch (\d)/2: train loss ([\d.]+), test accuracy", result.stdout,
                        flags=re.MULTILINE)
    assert [e for e, _ in epochs] == ["1", "2"] and float(epochs[1][1]) < float(epochs[0][1])
    percent, correct, total, n_epochs, _ = ACCURACY.search(result.stdout).groups()
    assert total == "359" and n_epochs == "2" and float(percent) > 50, result.stdout
    model, optimizer = mnn.load(tmp_path / "model.safetensors", with_optimizer=True)
    assert type(optimizer).__name__ == "Adam" and model[0].params["w"].shape == (32, 64)

    evaluated = mnn_cli("evaluate", "model.safetensors", "--dataset", "digits", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"accuracy {percent}% ({correct}/359)" in evaluated.stdout
    rows = re.findall(r"^(\d) +((?:\d+ +){10})", evaluated.stdout, flags=re.MULTILINE)
    matrix = np.array([[int(v) for v in row.split()] for _, row in rows])
    assert matrix.shape == (10, 10) and matrix.sum() == 359 and np.trace(matrix) == int(correct)


@pytest.mark.skipif(not HAVE["matplotlib"], reason="matplotlib is not installed (--plot needs it)")
def test_train_plots_the_curves(tmp_path):
    result = mnn_cli("train", "--epochs", "2", "--hidden", "8", "--plot", "curves.png",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote the curves to curves.png" in result.stdout
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not HAVE["torch"], reason="torch is not installed")
def test_numpy_and_torch_print_the_same_accuracy_from_the_same_seed(tmp_path):
    found = []
    for backend in ("numpy", "torch"):
        result = mnn_cli("train", "--epochs", "2", "--backend", backend, "--seed", "3",
                         cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"on {backend} cpu float32" in result.stdout
        found.append(ACCURACY.search(result.stdout).group(2))
    assert found[0] == found[1]


@pytest.mark.parametrize("backend", ["jax", "array_api_strict"])
def test_train_on_other_backends_matches_numpy(tmp_path, backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    found = []
    for name in ("numpy", backend):
        result = mnn_cli("train", "--epochs", "1", "--hidden", "16", "--backend", name,
                         cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        found.append(ACCURACY.search(result.stdout).group(2))
    assert found[0] == found[1]


def test_info_lists_numpy_with_its_version(tmp_path):
    result = mnn_cli("info", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^numpy +{re.escape(np.__version__)} +cpu$", result.stdout, re.MULTILINE)
    assert f"mnn {mnn.__version__}" in result.stdout


def test_info_says_not_installed(tmp_path):
    result = mnn_cli("info", cwd=tmp_path, block=["torch"])
    assert result.returncode == 0, result.stderr
    assert re.search(r"^torch +not installed", result.stdout, re.MULTILINE), result.stdout


def test_check_numpy_passes_every_layer(tmp_path):
    result = mnn_cli("check", "--backend", "numpy", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in check_command.layer_names():
        assert re.search(rf"^{name} +pass$", result.stdout, re.MULTILINE), name
    assert f"{len(check_command.layer_names())} passed, 0 failed" in result.stdout


def test_check_has_a_case_for_every_layer_that_mnn_exports():
    exported = [name for name in mnn.layers.__all__
                if isinstance(getattr(mnn, name), type) and issubclass(getattr(mnn, name),
                                                                       mnn.BaseLayer)]
    assert set(exported) <= set(check_command.layer_names())


def test_check_fails_and_exits_non_zero_on_a_wrong_gradient(monkeypatch, capsys):
    # a layer class registers itself when it is defined: into a copy of the registry
    # here, so that no other test meets it
    monkeypatch.setattr(LAYERS, "_classes", dict(LAYERS._classes))

    class WrongRelu(mnn.ReluLayer):  # ReluLayer's example makes one of these
        def compute_backward(self, xp, gradients, active):
            return 2 * super().compute_backward(xp, gradients, active)  # twice the true gradient

    monkeypatch.setattr(check_command, "layer_names", lambda: ["ReluLayer", "WrongRelu"])
    assert main(["check", "--backend", "numpy"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^ReluLayer +pass$", out, re.MULTILINE)
    assert re.search(r"^WrongRelu +FAIL$", out, re.MULTILINE)
    assert "1 passed, 1 failed" in out and "WrongRelu on numpy:cpu: GradcheckError" in out


# --- bad input: one line, no traceback --------------------------------------------------

@pytest.mark.parametrize("args, fragments", [
    (["train", "--backend", "nope"], ["unknown backend 'nope'", "known backends:"]),
    (["train", "--device", "cuda:7"], ["device 'cuda:7' is not present for backend 'numpy'"]),
    (["train", "--epochs", "0"], ["--epochs must be at least 1"]),
    (["train", "--dtype", "float16"], ["invalid choice: 'float16'"]),
    (["train", "--optimizer", "lbfgs"], ["invalid choice: 'lbfgs'"]),
    (["train", "--dataset", "cifar"], ["unknown dataset 'cifar'"]),
    (["train", "--save", "no/such/dir/m.safetensors"], ["--save", "does not exist"]),
    (["train", "--frobnicate"], ["unrecognized arguments: --frobnicate"]),
    (["train", "--seed", "-1"], ["--seed must be a non-negative integer", "got -1"]),
    (["train", "--lr", "inf"], ["--lr: expected the learning rate to be finite and >= 0, "
                                "got inf"]),
    (["train", "--lr", "nan"], ["--lr: expected the learning rate to be finite and >= 0, "
                                "got nan"]),
    (["train", "--lr", "-0.1"], ["--lr: expected the learning rate to be finite and >= 0, "
                                 "got -0.1"]),
    (["train", "--threads", "-1"], ["--threads must be 0 (the libraries' default) or more"]),
    (["train", "--plot", "curves.txt"], ["--plot curves.txt: expected an image file name ending in",
                                         ".png"]),
    (["evaluate", "missing.safetensors"], ["missing.safetensors: no such file"]),
    (["evaluate", "."], ["a directory, not a checkpoint file"]),
    (["check", "--backend", "nope"], ["unknown backend 'nope'"]),
    (["frobnicate"], ["invalid choice: 'frobnicate'"]),
])
def test_bad_input_is_one_line(tmp_path, args, fragments):
    assert_one_line_error(mnn_cli(*args, cwd=tmp_path), *fragments)


def test_lr_zero_is_accepted_as_the_optimizers_accept_it(tmp_path):
    """One check for --lr, the optimizers' own: 0 is a step that moves nothing."""
    result = mnn_cli("train", "--epochs", "1", "--hidden", "8", "--optimizer", "sgd", "--lr", "0",
                     "--plot", "none", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "SGD(lr=0.0," in result.stdout and ACCURACY.search(result.stdout)


def _options(add_arguments) -> dict:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return {action.dest: action for action in parser._actions}  # argparse has no public list


def test_the_shared_options_are_declared_once_with_one_meaning():
    """train and train-lm (and evaluate, for where it runs and on what data) take the
    shared options alike: the same help, type, choices and default (--plot's default
    names each command's own curves)."""
    commands = {"train": train_command, "train-lm": train_lm_command,
                "evaluate": evaluate_command}
    options = {name: _options(command.add_arguments) for name, command in commands.items()}
    shared = {"backend", "device", "dtype", "batch_size", "lr", "seed", "save", "plot",
              "threads", "no_progress"}
    assert shared <= set(options["train"]) & set(options["train-lm"])
    pairs = [("train", "train-lm", dest) for dest in shared]
    pairs += [("train", "evaluate", dest) for dest in ("backend", "device", "dataset",
                                                       "data_dir", "download")]
    for first, second, dest in pairs:
        a, b = options[first][dest], options[second][dest]
        assert (a.help, a.type, a.choices, a.metavar, a.option_strings) == \
            (b.help, b.type, b.choices, b.metavar, b.option_strings), dest
        assert a.default == b.default or dest == "plot", dest


@pytest.mark.parametrize("command", ["train", "evaluate", "check"])
def test_help_lists_every_backend(tmp_path, command):
    """Every registered backend, whether installed or not (mnn info says which are)."""
    result = mnn_cli(command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())
    for name in mnn.backends.available():
        assert name in help_text, f"{command} --help does not name {name}"


def test_mnist_directory_without_idx_files(tmp_path):
    """The command's words: its options, not the keyword arguments of load_mnist."""
    (tmp_path / "empty").mkdir()
    result = mnn_cli("train", "--dataset", "mnist", "--data-dir", "empty", cwd=tmp_path)
    assert_one_line_error(result, "empty lacks train-images-idx3-ubyte[.gz]",
                          "give the directory that holds the four IDX files with --data-dir, "
                          "or add --download to fetch them")
    assert "download=True" not in result.stderr


def test_train_and_evaluate_on_mnist_idx_files(tmp_path):
    """The MNIST path end to end, on tiny IDX files in MNIST's layout (real MNIST is offline)."""
    from mnn.data import write_idx
    from mnn.data.mnist import FILES

    rng = np.random.default_rng(0)
    (tmp_path / "idx").mkdir()
    for key, name in FILES.items():
        n = 40 if key.startswith("train") else 10
        array = (rng.integers(0, 256, (n, 28, 28)) if "images" in key
                 else rng.integers(0, 10, n))
        write_idx(tmp_path / "idx" / (name + ".gz"), array.astype(np.uint8))
    result = mnn_cli("train", "--dataset", "mnist", "--data-dir", "idx", "--epochs", "1",
                     "--hidden", "8", "--save", "m.safetensors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mnist (40 train, 10 test), 784-8-10" in result.stdout
    assert ACCURACY.search(result.stdout).group(3) == "10"
    evaluated = mnn_cli("evaluate", "m.safetensors", "--dataset", "mnist", "--data-dir", "idx",
                        cwd=tmp_path)
    assert evaluated.returncode == 0 and "(test, 10 images)" in evaluated.stdout, evaluated.stderr


def test_truncated_idx_file(tmp_path):
    from mnn.data import write_idx
    from mnn.data.mnist import FILES

    for key, name in FILES.items():
        shape = (3, 28, 28) if "images" in key else (3,)
        write_idx(tmp_path / name, np.zeros(shape, np.uint8))
    path = tmp_path / FILES["test_images"]
    path.write_bytes(path.read_bytes()[:-1])
    result = mnn_cli("train", "--dataset", "mnist", "--data-dir", ".", cwd=tmp_path)
    assert_one_line_error(result, "t10k-images-idx3-ubyte: truncated IDX file")


def test_backend_library_not_installed(tmp_path):
    """The hint installs mnn's torch extra, which pins a CPU build, not plain torch (a
    multi-GB CUDA build)."""
    result = mnn_cli("train", "--backend", "torch", cwd=tmp_path, block=["torch"])
    assert_one_line_error(result, "backend 'torch' needs the torch package, which is not "
                                  "installed", 'install it with: pip install "manual-nn[torch]"')


@pytest.mark.parametrize("name, command", [
    ("torch", 'pip install "manual-nn[torch]"'),
    ("cupy", 'pip install "manual-nn[cupy]"'),
    ("jax", "pip install jax"),
    ("array_api_strict", "pip install array-api-strict"),
])
def test_every_backend_names_what_to_install(name, command):
    """mnn's extra where pyproject.toml declares one named after the backend, else the
    adapter's distribution."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    extra = re.search(rf"^{name} = \[", pyproject, re.MULTILINE) is not None
    assert extra == ("manual-nn[" in command)
    assert install_command(mnn.backends.get(name)) == command


def test_digits_need_no_scikit_learn(tmp_path):
    """The digits ship inside mnn: plain NumPy is enough to train on them."""
    result = mnn_cli("train", "--epochs", "1", cwd=tmp_path, block=["sklearn"])
    assert result.returncode == 0, result.stderr
    assert ACCURACY.search(result.stdout)


def test_plot_without_matplotlib(tmp_path):
    result = mnn_cli("train", "--plot", "c.png", cwd=tmp_path, block=["matplotlib"])
    assert_one_line_error(result, "--plot needs matplotlib")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign"])
def test_corrupt_checkpoint(tmp_path, damage):
    path = tmp_path / "model.safetensors"
    if damage == "foreign":
        from safetensors.numpy import save_file

        save_file({"w": np.zeros(3)}, str(path))
    else:
        net = mnn.SequentialLayers([mnn.LinearLayer(64, 4), mnn.ReluLayer(),
                                    mnn.LinearLayer(4, 10), mnn.CrossEntropyLossLayer()])
        mnn.save(net, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x07" * 64)
    result = mnn_cli("evaluate", "model.safetensors", cwd=tmp_path)
    assert_one_line_error(result, "model.safetensors")


def test_checkpoint_that_does_not_fit_the_dataset(tmp_path):
    net = mnn.SequentialLayers([mnn.LinearLayer(5, 10), mnn.CrossEntropyLossLayer()])
    mnn.save(net, tmp_path / "five.safetensors")
    result = mnn_cli("evaluate", "five.safetensors", cwd=tmp_path)
    assert_one_line_error(result, "LinearLayer")


def test_the_old_checkpoint_survives_a_failed_run_and_is_replaced_whole(tmp_path):
    first = mnn_cli("train", "--epochs", "1", "--hidden", "8", "--save", "m.safetensors",
                    "--plot", "none", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    old = (tmp_path / "m.safetensors").read_bytes()
    failed = mnn_cli("train", "--dataset", "mnist", "--data-dir", "nowhere", "--save",
                     "m.safetensors", cwd=tmp_path)
    assert_one_line_error(failed, "nowhere does not exist")
    assert (tmp_path / "m.safetensors").read_bytes() == old
    second = mnn_cli("train", "--epochs", "1", "--hidden", "16", "--save", "m.safetensors",
                     "--plot", "none", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert mnn.load(tmp_path / "m.safetensors")[0].params["w"].shape == (16, 64)
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"], "no temporary files left"


@pytest.mark.skipif(not HAVE["matplotlib"], reason="matplotlib is not installed (plots need it)")
def test_plain_train_writes_the_curves_by_default(tmp_path):
    result = mnn_cli("train", "--epochs", "1", "--hidden", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "digits-curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote the curves to digits-curves.png" in result.stdout


def test_plain_train_without_matplotlib_says_why_there_is_no_plot(tmp_path):
    result = mnn_cli("train", "--epochs", "1", "--hidden", "8", cwd=tmp_path,
                     block=["matplotlib"])
    assert result.returncode == 0, result.stderr
    assert "no plot of the curves: matplotlib is not installed" in result.stdout
    assert not (tmp_path / "digits-curves.png").exists()
    quiet = mnn_cli("train", "--epochs", "1", "--hidden", "8", "--plot", "none", cwd=tmp_path)
    assert quiet.returncode == 0 and "curves" not in quiet.stdout


def test_bare_mnn_prints_the_help_and_exits_2_as_argparse_does(tmp_path):
    result = mnn_cli(cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("usage: mnn ") and "train-lm" in result.stderr


def test_train_help_shows_every_default(tmp_path):
    """Each option that has a default says it, --dtype and --optimizer included."""
    help_text = " ".join(mnn_cli("train", "--help", cwd=tmp_path).stdout.split())
    assert "the update rule (default: adam)" in help_text
    assert "floating-point type of the parameters and the data (default: float32)" in help_text


def test_the_training_guide_gives_the_defaults_of_train():
    """docs/training.md's table of options gives each the default that argparse has."""
    defaults = {option: action.default for action in _options(train_command.add_arguments).values()
                for option in action.option_strings}
    guide = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    checked = []
    for options, cell in re.findall(r"^\| (`--.*?) \| (.*?) \|", guide, re.MULTILINE):
        names = re.findall(r"`(--[\w-]+)`", options)
        cells = cell.split(", ") if len(names) > 1 else [cell]
        for name, documented in zip(names, cells, strict=True):
            if defaults[name] is not None:  # None: a default that depends (said in words)
                expected = "off" if defaults[name] is False else str(defaults[name])
                assert documented.strip("`") == expected, f"{name}: {documented} in the guide"
                checked.append(name)
    assert {"--dtype", "--optimizer", "--plot", "--epochs"} <= set(checked), checked


# --- broken third-party backends: reported, skipped, and the others go on ---------------------

@pytest.fixture
def broken_adapters(tmp_path):
    """A scratch folder on PYTHONPATH that installs the adapters of install_broken_adapters."""
    install_broken_adapters(tmp_path, "mnn_broken_backend_cli")
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def test_info_lists_a_broken_backend_with_its_error(tmp_path, broken_adapters):
    result = mnn_cli("info", cwd=tmp_path, env={**broken_adapters, "PYTHONWARNINGS": "default"})
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in result.stdout.splitlines()
            if line.strip()}
    assert rows["thatone"] == "1.0 none: its devices() raised RuntimeError: no driver for thatone"
    assert rows["exits"] == "broken mnn_broken_backend_cli_exits:FakeBackend: SystemExit: 3"
    assert rows["numpy"].startswith(np.__version__) and rows["fake"] == "1.0 cpu"
    assert result.stderr.splitlines() == [
        "mnn: warning: could not load backend entry point exits = "
        "mnn_broken_backend_cli_exits:FakeBackend: SystemExit: 3; skipped"]


@pytest.mark.parametrize("args, fragments", [
    (["train", "--backend", "thatone"], ["backend 'thatone' is broken: its devices() raised "
                                         "RuntimeError: no driver for thatone"]),
    (["train", "--backend", "exits"], ["backend 'exits' could not be loaded from its entry point "
                                       "mnn_broken_backend_cli_exits:FakeBackend: SystemExit: 3"]),
    (["check", "--backend", "thatone"], ["backend 'thatone' is broken"]),
])
def test_a_broken_backend_asked_for_is_one_line(tmp_path, broken_adapters, args, fragments):
    assert_one_line_error(mnn_cli(*args, cwd=tmp_path, env=broken_adapters), *fragments)


def test_a_broken_backend_leaves_the_others_working(tmp_path, broken_adapters):
    """Neither the adapter whose module exits on import nor the one whose devices() raises
    stops a command on numpy."""
    result = mnn_cli("train", "--epochs", "1", "--hidden", "8", "--plot", "none",
                     "--no-progress", cwd=tmp_path, env=broken_adapters)
    assert result.returncode == 0, result.stderr
    assert ACCURACY.search(result.stdout)


def test_check_skips_a_broken_backend_it_was_not_asked_for(tmp_path, monkeypatch, capsys):
    install_broken_adapters(tmp_path, "mnn_broken_backend_check")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = mnn.backends.registry  # as it was, after the test
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_BROKEN", dict(registry._BROKEN))
    with pytest.warns(RuntimeWarning, match=r"could not load backend entry point exits = "):
        chosen = [backend.name for backend, _ in check_command.targets(None, ["cpu"])]
    assert "numpy" in chosen and "fake" in chosen and "thatone" not in chosen
    assert capsys.readouterr().err == ("mnn: warning: skipped the broken backend thatone: its "
                                       "devices() raised RuntimeError: no driver for thatone\n")
