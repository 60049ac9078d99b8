"""What the subcommands share: the user-facing error, choosing a backend and device, data sets,
output files, plots and progress bars.

The command may import array libraries (``import mnn`` may not): the user named
one with ``--backend``, so it is imported here, by name, with a clear error when
it is not installed or the device is not present.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys

from mnn import backends

DATASETS = ("digits", "mnist")
#: Image formats that ``--plot`` writes (by the file's suffix).
PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")
#: How the ``--plot`` help of every command names them.
PLOT_FORMATS = ", ".join(PLOT_SUFFIXES)


class CommandError(Exception):
    """Bad input to the command: printed as one line ``mnn: error: ...``, exit status 1."""


def backend_named(name: str) -> backends.Backend:
    """The adapter called ``name``, with its library imported; ``CommandError`` if it cannot be."""
    try:
        backend = backends.get(name)
    except ValueError as error:
        raise CommandError(str(error)) from None
    try:
        importlib.import_module(backend.module)
    except ImportError as error:
        package = backend.distribution
        raise CommandError(f"backend {name!r} needs the {backend.module} package, which is not "
                           f"installed ({error}); install it with: pip install {package}") from None
    return backend


def resolve_target(backend_name: str, device: str | None):
    """``(backend, device name)``; the backend's default device when ``device`` is None."""
    backend = backend_named(backend_name)
    present = backend.devices()
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


def check_seed(seed: int) -> int:
    if not 0 <= seed < 2**63:
        raise CommandError(f"--seed must be a non-negative integer below 2**63, got {seed}")
    return seed


def check_learning_rate(lr: float | None) -> float | None:
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise CommandError(f"--lr must be a positive finite number, got {lr}")
    return lr


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

    A small network's matrices are too small to split between threads: on two
    busy cores, digits trained in about 1 s with one thread and 30 s with two
    (the threads wait for each other). NumPy's BLAS is limited through
    threadpoolctl, a dependency of mnn: without it the limit was silently
    ignored and training ran 10 to 20 times slower.
    """
    from threadpoolctl import threadpool_limits

    if threads < 0:
        raise CommandError(f"--threads must be 0 (the libraries' default) or more, got {threads}")
    if threads == 0:
        return
    threadpool_limits(limits=threads)  # stays in force for the rest of the process
    if backend.name == "torch":
        backend.library().set_num_threads(threads)


def load_dataset(name: str, data_dir: str | None = None, download: bool = False):
    """``(train, test)`` host data sets called ``name`` (``digits`` or ``mnist``)."""
    from mnn.data import load_digits, load_mnist

    if name == "digits":
        return load_digits()
    if name == "mnist":
        return load_mnist(data_dir or "mnist-data", download=download)
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


# --- plots and progress bars ----------------------------------------------------------


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


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


def progress_bar(total: int, description: str, disabled: bool, unit: str = "sample"):
    """A tqdm bar on stderr counting ``unit`` (its rate is per second), or nothing when
    ``disabled`` or without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    if disabled:
        return _NoBar()
    return tqdm(total=total, desc=description, unit=unit, unit_scale=True, leave=False,
                file=sys.stderr, dynamic_ncols=True)
