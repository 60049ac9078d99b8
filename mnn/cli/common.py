"""What the subcommands share: the user-facing error, the options of ``train`` and
``train-lm`` (declared once, here), choosing a backend and device, data sets, output
files and plots. The training loop itself is ``mnn.training``.

The command may import array libraries (``import mnn`` may not): the user named
one with ``--backend``, so it is imported here, by name, with a clear error when
it is not installed or the device is not present.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from importlib import metadata

from mnn import backends
from mnn.backends import registry
from mnn.checks import finite_non_negative

#: mnn's name on PyPI, under which its extras are declared.
DISTRIBUTION = "manual-nn"
DATASETS = ("digits", "mnist")
#: Image formats that ``--plot`` writes (by the file's suffix).
PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")
#: How the ``--plot`` help of every command names them.
PLOT_FORMATS = ", ".join(PLOT_SUFFIXES)


class CommandError(Exception):
    """Bad input to the command: printed as one line ``mnn: error: ...``, exit status 1."""


def warn(message: str) -> None:
    """Something the user should know that does not stop the command: one line
    ``mnn: warning: ...`` on stderr."""
    sys.stderr.write(f"mnn: warning: {message}\n")  # one write: ranks' lines stay whole


# --- the options of train, train-lm and evaluate ------------------------------------------

DTYPES = ("float32", "float64")
#: The learning rate of each optimizer when ``--lr`` is not given.
DEFAULT_LEARNING_RATES = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}


def add_target_arguments(parser) -> None:
    """``--backend`` and ``--device``: where ``train``, ``train-lm`` and ``evaluate`` run."""
    parser.add_argument("--backend", default="numpy", help=backend_help())
    parser.add_argument("--device", default=None,
                        help="cpu, cuda:0, ... (default: the backend's first device)")


def add_dataset_arguments(parser) -> None:
    """``--dataset``, ``--data-dir`` and ``--download``: the images of ``train`` and
    ``evaluate`` (``load_dataset``)."""
    parser.add_argument("--dataset", default="digits",
                        help="digits (8x8 digits embedded in mnn, no download; the default) or "
                             "mnist (IDX files in --data-dir)")
    parser.add_argument("--data-dir", default="mnist-data",
                        help="directory with the MNIST IDX files (default: mnist-data)")
    parser.add_argument("--download", action="store_true",
                        help="download missing MNIST files into --data-dir (checksums checked)")


def add_training_arguments(parser, default_plot: str) -> None:
    """The options that ``train`` and ``train-lm`` share: one meaning and one help text each.

    ``default_plot`` is the ``--plot`` default, which names the command's own curves.
    """
    add_target_arguments(parser)
    parser.add_argument("--dtype", default="float32", choices=DTYPES,
                        help="floating-point type of the parameters and the data "
                             "(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="samples per optimizer step (32; train-lm's samples are windows "
                             "of --context characters)")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate, finite and >= 0 (default: 1e-3 for adam and "
                             "adamw, 0.1 for sgd)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds every random draw: the initial weights, the batches and "
                             "train-lm's samples (0)")
    parser.add_argument("--save", default=None, metavar="PATH",
                        help="write the model and optimizer to this .safetensors file after "
                             "each evaluation, atomically: an old file is replaced only by a "
                             "complete new one (train-lm's file holds the vocabulary "
                             "too)")
    parser.add_argument("--plot", default=default_plot, metavar="IMAGE",
                        help=f"write the training curves to this image ({PLOT_FORMATS}; needs "
                             "matplotlib; default: %(default)s when matplotlib is installed; "
                             "--plot none: no plot)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for NumPy's BLAS and PyTorch (1, fastest for small "
                             "networks; 0: the libraries' default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def check_training_arguments(args) -> None:
    """The values of the shared options (argparse checked their types)."""
    check_at_least_one(args, "batch_size")
    check_finite_non_negative("--lr", "the learning rate", args.lr)
    if not 0 <= args.seed < 2**63:
        raise CommandError(f"--seed must be a non-negative integer below 2**63, got {args.seed}")
    if args.threads < 0:
        raise CommandError(f"--threads must be 0 (the libraries' default) or more, "
                           f"got {args.threads}")


def check_finite_non_negative(option: str, what: str, value: float | None) -> None:
    """An optimizer's hyperparameter (``--lr``, ``--weight-decay``; None: not given) as the
    optimizers take it: ``mnn.checks.finite_non_negative`` is the check they run, so the
    command accepts what they accept (0 included)."""
    if value is None:
        return
    try:
        finite_non_negative(option, what, value)
    except ValueError as error:
        raise CommandError(str(error)) from None


def check_at_least_one(args, *names: str) -> None:
    """Each option ``names`` (argparse's ``dest`` names) is at least 1."""
    for name in names:
        value = getattr(args, name)
        if value < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def learning_rate(lr: float | None, optimizer: str) -> float:
    """``--lr``, or the default of ``optimizer`` (a key of ``DEFAULT_LEARNING_RATES``)."""
    return DEFAULT_LEARNING_RATES[optimizer] if lr is None else lr


# --- backends, devices and data -----------------------------------------------------------


def backend_named(name: str) -> tuple[backends.Backend, tuple[str, ...]]:
    """The adapter called ``name``, with its library imported, and its devices present;
    ``CommandError`` if it is unknown, not installed, or broken (its library's import or
    its ``devices()`` raises)."""
    try:
        backend = backends.get(name)
    except ValueError as error:
        raise CommandError(str(error)) from None
    found = registry.probe(backend)
    if found.missing:
        raise CommandError(f"backend {name!r} needs the {backend.module} package, which is not "
                           f"installed ({found.missing}); install it with: "
                           f"{install_command(backend)}")
    if found.broken:
        raise CommandError(f"backend {name!r} is broken: {found.broken}")
    return backend, found.devices


def install_command(backend: backends.Backend) -> str:
    """How to install ``backend``'s library: mnn's extra of the same name where
    pyproject.toml declares one (``pip install "manual-nn[torch]"``: it pins a build that
    works, where plain ``pip install torch`` pulls a multi-GB CUDA one), else the library's
    distribution (``pip install array-api-strict``)."""
    try:
        extras = metadata.metadata(DISTRIBUTION).get_all("Provides-Extra") or []
    except metadata.PackageNotFoundError:  # a source checkout that was never installed
        extras = []
    if backend.name in extras:
        return f'pip install "{DISTRIBUTION}[{backend.name}]"'
    return f"pip install {backend.distribution}"


def resolve_target(backend_name: str, device: str | None):
    """``(backend, device name)``; the backend's default device when ``device`` is None."""
    backend, present = backend_named(backend_name)
    if device is None:
        if not present:
            raise CommandError(f"backend {backend_name!r} has no device present on this machine")
        device = present[0]
    if device not in present:
        raise CommandError(f"device {device!r} is not present for backend {backend_name!r}; "
                           f"present: {', '.join(present) or 'none'} (see 'mnn info')")
    backend.enable_float64()  # JAX has no float64 or int64 (the labels) unless told so
    return backend, device


def backend_help(default: str = "numpy") -> str:
    """The ``--backend`` help: every registered backend, third-party adapters included."""
    names = sorted(backends.available())
    return f"one of {', '.join(names)} (default: {default}; 'mnn info' says which are installed)"


def check_output_path(option: str, path: str | None, suffixes: tuple[str, ...] = ()) -> None:
    """``path`` can be written: its directory exists, it is not a directory, its suffix fits."""
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandError(f"{option} {path}: the directory {directory} does not exist")
    if os.path.isdir(path):
        raise CommandError(f"{option} {path}: a directory, not a file name")
    if suffixes and os.path.splitext(path)[1].lower() not in suffixes:
        raise CommandError(f"{option} {path}: expected an image file name ending in "
                           f"{', '.join(suffixes)}")


def limit_threads(backend, threads: int) -> None:
    """Use at most ``threads`` CPU threads for BLAS (NumPy) and PyTorch; 0 leaves the default.

    A small network's matrices are too small to split between threads: more threads
    wait for each other (docs/training.md has the measurements). NumPy's BLAS is
    limited through threadpoolctl, a dependency of mnn.
    """
    from threadpoolctl import threadpool_limits

    if threads == 0:
        return
    threadpool_limits(limits=threads)  # stays in force for the rest of the process
    if backend.name == "torch":
        backend.library().set_num_threads(threads)


def load_dataset(name: str, data_dir: str | None = None, download: bool = False):
    """``(train, test)`` host data sets called ``name`` (``digits`` or ``mnist``)."""
    from mnn.data import load_digits, load_mnist
    from mnn.data.mnist import missing_files

    if name == "digits":
        return load_digits()
    if name == "mnist":
        directory = data_dir or "mnist-data"
        where = None if download else missing_files(directory)
        if where:
            raise CommandError(f"MNIST: {where}; give the directory that holds the four IDX "
                               f"files with --data-dir, or add --download to fetch them")
        return load_mnist(directory, download=download)
    raise CommandError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


def predictions(model, dataset, batch_size: int = 1000):
    """Host int array: the class with the largest logit for each input of ``dataset``.

    ``model`` ends in its loss layer, which is left out: the logits come from the
    layers before it.
    """
    import array_api_compat
    import numpy as np

    network = model[:-1] if model.is_loss else model
    xp = array_api_compat.array_namespace(dataset.inputs)
    backend = backends.for_array(dataset.inputs)
    out = []
    for start in range(0, len(dataset), batch_size):
        stop = min(start + batch_size, len(dataset))
        logits = network(dataset.inputs[start:stop, ...])
        out.append(backend.to_host(xp.argmax(logits, axis=1)))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


# --- plots --------------------------------------------------------------------------------


def plot_destination(value: str | None, default: str, default_path: str,
                     say=print) -> str | None:
    """Where ``--plot`` draws: ``default_path`` when the option was left at ``default`` and
    matplotlib can draw (else a note through ``say``, and no plot), nothing for ``none``,
    else ``value``, which must be a writable image file name (``PLOT_SUFFIXES``).

    A plot needs matplotlib: that is checked now, not after training.
    """
    if value == default:
        if importlib.util.find_spec("matplotlib") is None:
            say("(no plot of the curves: matplotlib is not installed; pip install matplotlib)")
            return None
        value = default_path
    elif value == "none":
        return None
    check_output_path("--plot", value, PLOT_SUFFIXES)
    pyplot()
    return value


def pyplot():
    """``matplotlib.pyplot``, drawing to files only; ``CommandError`` if it is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise CommandError("--plot needs matplotlib, which is not installed; install it with: "
                           "pip install matplotlib") from None
    matplotlib.use("Agg")  # files only, no window
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str) -> None:
    """Write ``figure`` to ``path`` in the format its suffix names, atomically (an old plot
    is replaced only by a whole new one), and close it."""
    from mnn.files import atomic_file

    try:
        with atomic_file(path) as file:
            figure.savefig(file, dpi=100, format=os.path.splitext(path)[1].lstrip(".").lower())
    finally:
        pyplot().close(figure)
