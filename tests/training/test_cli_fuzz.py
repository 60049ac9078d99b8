"""The ``mnn`` command, given any argument vector: one error line or success, never a traceback.

Hypothesis builds argument vectors for ``mnn train``, ``train-lm``, ``evaluate``,
``generate``, ``check`` and ``info`` from every flag of each (``FLAGS``; a test checks the
table against the parsers), each flag with a good value three times in four and else a
bad one: negative, zero, NaN, infinite, huge, ``1e9`` for an integer, empty, not a
number, a directory, ``/dev/zero``, a FIFO, a missing file, a file of the wrong kind.
Sometimes an unknown flag is added or a flag's value is left out. Each vector runs in
this process, through ``mnn.cli.main(argv)``, and must end in one of:

* success: status 0, or the moment ranks would start (below);
* a malformed command line: ``SystemExit(2)`` and one line ``mnn: error: ...`` on stderr;
* bad input: status 1 and one line ``mnn: error: ...`` on stderr;

with progress bars and ``mnn: warning: ...`` lines allowed before it, within ``SECONDS``
(a timer interrupts a command that blocks, on a FIFO say) and ``MEMORY_BOUND`` more
resident memory. Any other exception fails the test.

Real work is cut short, since it is not what the fuzz tests: ``mnn.training.train``
(every command's training loop) stops after its first step (``one_step``), so a vector
of valid values runs every check, data read and model build, one step, one evaluation
with its sample, the checkpoint and the plot; ``train`` and ``train-lm`` start from the
flags ``FIRST`` (no plot, a small model), which drawn flags override;
``mnn.distributed.launch`` raises ``RanksStart`` where ``--nproc`` would start
processes; ``mnn check``'s gradient check of each layer passes without running; a
download finds no network. Sizes have small good values and huge bad ones (``10**12``),
so that no vector asks for gigabytes that a size check would let through. Commands run
in a scratch directory, where default outputs (``<dataset>-curves.png``) go.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import resource
import signal
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import mnn
import mnn.cli.check
from mnn.cli import main, parser

#: The most one command may take, and the most resident memory it may add.
SECONDS = 20
MEMORY_BOUND = 1 << 30
ARGV = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])

HUGE = "1000000000000"
BAD_INTS = ["-1", "0", "nan", "inf", "1e9", "", "abc", "1.5", "0x10", HUGE,
            "99999999999999999999999999", "-9223372036854775809"]
BAD_FLOATS = ["-1", "-0", "nan", "inf", "-inf", "1e309", "1e-320", "", "abc", "1,5", "1e9",
              HUGE]
#: Inputs that are not what the flag reads (names of ``files``' entries, or paths).
BAD_INPUTS = ["@dir", "/dev/zero", "@fifo", "@missing", "@empty", "@binary", "@text", ""]
#: Outputs that cannot be written (never a device: an atomic write would replace it).
BAD_OUTPUTS = ["@dir", "@missing/out.safetensors", ""]
BAD_PLOTS = ["@dir", "@missing/curves.png", "@out/curves.txt", ""]
BAD_NAMES = ["x", "", "NUMPY", "numpy,torch"]


def flag(good, bad):
    """A flag's values: ``(good, bad)``; ``None`` as the good list marks a switch."""
    return (good, bad)


SWITCH = flag(None, [])
TARGET = {"--backend": flag(["numpy", "array_api_strict", "torch"], BAD_NAMES),
          "--device": flag(["cpu"], ["cuda:0", "gpu", "", "CPU_DEVICE:1"])}
DATASET = {"--dataset": flag(["digits"], ["mnist", "x", ""]),
           "--data-dir": flag(["@dir"], ["@missing", "@fifo", "/dev/zero", "@text", ""]),
           "--download": SWITCH}
TRAINING = {**TARGET,
            "--dtype": flag(["float32", "float64"], ["float16", "int64", ""]),
            "--batch-size": flag(["1", "4", "32"], BAD_INTS),
            "--lr": flag(["0.1", "0", "1e-3"], BAD_FLOATS),
            "--seed": flag(["0", "7"], ["-1", "9223372036854775808", HUGE, "nan", ""]),
            "--save": flag(["@out/model.safetensors"], BAD_OUTPUTS),
            "--plot": flag(["none", "@out/curves.png"], BAD_PLOTS),
            "--threads": flag(["1", "0", "2"], ["-1", HUGE, "nan", ""]),
            "--no-progress": SWITCH}
FLAGS = {
    "train": {**DATASET, **TRAINING,
              "--epochs": flag(["1", "3"], BAD_INTS),
              "--optimizer": flag(["sgd", "adam", "adamw"], ["x", "", "Adam"]),
              "--model": flag(["mlp", "cnn"], ["x", "", "MLP"]),
              "--hidden": flag(["4", "16"], BAD_INTS),
              "--nproc": flag(["1", "2"], ["0", "-1", "64", HUGE, "nan", ""]),
              "--timeout": flag(["10", "0.5"], BAD_FLOATS)},
    "train-lm": {**TRAINING,
                 "--model": flag(["gpt", "lstm", "gru"], ["x", "", "GPT"]),
                 "--text": flag(["@text"], BAD_INPUTS),
                 "--max-text-mb": flag(["1", "100"], BAD_INTS),
                 "--steps": flag(["1", "3"], BAD_INTS),
                 "--time-limit": flag(["1", "0"], BAD_FLOATS),
                 "--context": flag(["4", "8"], BAD_INTS + ["1000000"]),
                 "--d-model": flag(["8", "16"], BAD_INTS + ["1000000", "7"]),
                 "--heads": flag(["1", "2"], BAD_INTS + ["3"]),
                 "--layers": flag(["1", "2"], BAD_INTS + ["1000000"]),
                 "--dropout": flag(["0", "0.1"], BAD_FLOATS + ["1"]),
                 "--weight-decay": flag(["0", "0.01"], BAD_FLOATS),
                 "--eval-every": flag(["1", "5"], BAD_INTS),
                 "--eval-batches": flag(["1", "2"], BAD_INTS),
                 "--sample-length": flag(["0", "5"], BAD_INTS + ["10001"]),
                 "--temperature": flag(["0", "0.8"], BAD_FLOATS),
                 "--top-k": flag(["1", "3"], BAD_INTS),
                 "--prompt": flag(["h", "hello"], ["", "\x00", "\u00e9", "Z" * 1000])},
    "evaluate": {"checkpoint": flag(["@classifier", "@lm"], BAD_INPUTS + ["@nan"]),
                 **DATASET, **TARGET,
                 "--dtype": flag(["float32", "float64"], ["float16", "int64", ""]),
                 "--text": flag(["@text"], BAD_INPUTS),
                 "--max-text-mb": flag(["1", "100"], BAD_INTS),
                 "--batch-size": flag(["1", "32"], BAD_INTS)},
    "generate": {"checkpoint": flag(["@lm"], BAD_INPUTS + ["@classifier", "@nan"]),
                 **TARGET,
                 "--prompt": flag(["h", "hello"], ["", "\x00", "\u00e9", "Z" * 1000]),
                 "-n": flag(["0", "1", "5"], BAD_INTS + ["10001"]),
                 "--temperature": flag(["0", "0.8"], BAD_FLOATS),
                 "--top-k": flag(["1", "3"], BAD_INTS),
                 "--seed": flag(["0", "7"], ["-1", "9223372036854775808", HUGE, "nan", ""])},
    "check": {"--backend": TARGET["--backend"],
              "--device": flag(["cpu"], ["cuda:0", "", "x"]),
              "--verbose": SWITCH},
    "info": {},
}
TEXT = "the quick brown fox jumps over the lazy dog, hello world. " * 40


#: The first flags of every ``train`` and ``train-lm`` vector, which drawn flags override:
#: no plot unless ``--plot`` is drawn (matplotlib takes longer than the step), and for
#: ``train-lm`` a model that takes a step in milliseconds.
FIRST = {"train": ["--plot", "none"],
         "train-lm": ["--plot", "none", "--d-model", "16", "--layers", "1", "--context", "8",
                      "--batch-size", "4", "--eval-batches", "1", "--sample-length", "5"]}
TRAIN = mnn.training.train


class RanksStart(Exception):  # noqa: N818  (not an error: where the fuzz stops a command)
    """Raised where ``--nproc`` would start its ranks."""


def launch_nothing(*args, **kwargs):
    raise RanksStart


def one_step(step, rounds, after_round=None, **options):
    """``mnn.training.train`` on the first batch of the first round only: one step, then
    ``after_round`` (the evaluation, the sample) and the checkpoint, as after a round."""
    first = next(iter(rounds), None)
    plan = [] if first is None else [first._replace(batches=itertools.islice(first.batches, 1))]
    return TRAIN(step, plan, after_round, **options)


def no_network(*args, **kwargs):
    raise urllib.error.URLError("no network in the fuzz test")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """The paths that ``@name`` values stand for: inputs of every kind, a valid classifier
    checkpoint (for digits), one with a NaN weight, and a valid train-lm checkpoint (its
    corpus: ``@text``)."""
    root = tmp_path_factory.mktemp("cli-fuzz")
    paths = {name: str(root / name) for name in
             ("dir", "fifo", "missing", "empty", "binary", "text", "out", "classifier", "lm",
              "nan")}
    os.mkdir(paths["dir"])
    os.mkdir(paths["out"])
    os.mkfifo(paths["fifo"])
    open(paths["empty"], "wb").close()
    with open(paths["binary"], "wb") as file:
        file.write(bytes(range(256)) * 4)
    with open(paths["text"], "w", encoding="utf-8") as file:
        file.write(TEXT)
    classifier = mnn.SequentialLayers([mnn.LinearLayer(64, 4, rng=0), mnn.ReluLayer(),
                                       mnn.LinearLayer(4, 10, rng=1),
                                       mnn.CrossEntropyLossLayer()])
    mnn.save(classifier, paths["classifier"])
    characters = "".join(sorted(set(TEXT)))
    gpt = mnn.GPT(len(characters), 8, d_model=8, heads=2, layers=1, rng=0)
    mnn.save(gpt, paths["lm"], metadata={"vocabulary": characters, "corpus": paths["text"]})
    _, layer = next((name, layer) for name, layer in classifier.named_layers() if layer.params)
    next(iter(layer.params.values()))[0, ...] = np.nan
    mnn.save(classifier, paths["nan"])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(["info"])  # imports the backends once, outside the timed examples
    return paths


def value_of(text: str, files: dict[str, str]) -> str:
    """``text`` with a leading ``@name`` replaced by that path of ``files``."""
    if not text.startswith("@"):
        return text
    name, _, rest = text[1:].partition("/")
    return files[name] + ("/" + rest if rest else "")


@st.composite
def argument_vectors(draw, command: str) -> list[str]:
    """``[command, flag, value, ...]``: a few of the command's flags (positionals always),
    each with a good value three times in four, else a bad one; sometimes an unknown flag
    or a flag without its value."""
    table = FLAGS[command]
    positional = [name for name in table if not name.startswith("-")]
    options = [name for name in table if name.startswith("-")]
    chosen = draw(st.lists(st.sampled_from(options), unique=True, max_size=6)) if options else []
    argv = [command, *FIRST.get(command, [])]
    for name in positional + chosen:
        good, bad = table[name]
        if good is None:
            argv.append(name)
            continue
        values = st.sampled_from(good) if not bad else st.one_of(
            st.sampled_from(good), st.sampled_from(good), st.sampled_from(good),
            st.sampled_from(bad))
        value = draw(values)
        argv += [value] if name in positional else [name, value]
    damage = draw(st.sampled_from([None] * 8 + ["unknown", "no value", "help"]))
    if damage == "unknown":
        argv.append("--bogus")
    elif damage == "no value" and chosen and table[chosen[-1]][0] is not None:
        argv.pop()
    elif damage == "help":
        argv.append("--help")
    return argv


@contextlib.contextmanager
def time_bound(seconds: float):
    """Interrupt the block after ``seconds`` (a blocking read included) with a failure."""
    def expire(signum, frame):
        raise AssertionError(f"the command ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def peak_rss() -> int:
    """This process's peak resident memory so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_command(argv: list[str], scratch: str) -> tuple[int | str, str]:
    """``(status, stderr)`` of ``main(argv)`` run in the directory ``scratch``; status
    ``"ranks"`` where ranks would start. Any other exception propagates, and fails the
    test."""
    stdout, stderr = io.StringIO(), io.StringIO()
    before = peak_rss()
    with contextlib.ExitStack() as stack:
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setattr(mnn.training, "train", one_step)
        patch.setattr(mnn.distributed, "launch", launch_nothing)
        patch.chdir(scratch)
        patch.setattr(mnn.cli.check, "check_one", lambda *args: None)
        patch.setattr(urllib.request, "urlopen", no_network)
        patch.setattr(sys, "argv", ["mnn"])
        stack.enter_context(contextlib.redirect_stdout(stdout))
        stack.enter_context(contextlib.redirect_stderr(stderr))
        stack.enter_context(time_bound(SECONDS))
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = 0 if exit_.code is None else exit_.code
        except RanksStart:
            status = "ranks"
    grown = peak_rss() - before
    assert grown <= MEMORY_BOUND, f"{argv}: the peak resident memory grew by {grown >> 20} MiB"
    return status, stderr.getvalue()


def check_outcome(argv: list[str], status, stderr: str) -> None:
    """Success, or one ``mnn: error:`` line (status 1 or 2), the last one on stderr."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    errors = [line for line in lines if line.startswith("mnn: error: ")]
    if status in (0, "ranks"):
        event(f"success ({status})")
        assert not errors, (argv, stderr)
    else:
        event(f"status {status}")
        assert status in (1, 2), (argv, status, stderr)
        assert len(errors) == 1 and lines[-1] == errors[0], (argv, stderr)
        assert len(errors[0]) < 2000, f"an error line of {len(errors[0])} characters"


@pytest.mark.parametrize("command", list(FLAGS))
def test_the_fuzz_draws_every_flag_of_every_command(command):
    """``FLAGS`` names each option and positional of each subcommand (but ``--help``)."""
    subcommands = next(action for action in parser()._actions
                       if isinstance(action.choices, dict)).choices
    declared = {action.option_strings[0] if action.option_strings else action.dest
                for action in subcommands[command]._actions if action.dest != "help"}
    assert declared == set(FLAGS[command])


@pytest.mark.parametrize("command", list(FLAGS))
@given(data=st.data())
@ARGV
def test_any_argument_vector_ends_in_one_error_line_or_success(files, command, data):
    argv = [value_of(text, files) for text in data.draw(argument_vectors(command),
                                                        label="argv")]
    status, stderr = run_command(argv, files["out"])
    check_outcome(argv, status, stderr)
