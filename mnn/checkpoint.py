r"""Checkpoints: a model's weights and architecture, and optionally its optimizer, in one file.

``save(model, path, optimizer=None)`` writes a `safetensors <https://huggingface.co/docs/
safetensors>`_ file; ``load(path)`` rebuilds the model from it without the code that built it.

What the file holds
-------------------
* Tensors: the model's ``state_dict()`` under its qualified names (``"0.w"``, ``"2.b"``),
  copied to host NumPy arrays in their own dtype (a float32 model stays float32), and
  the optimizer's state arrays under ``"optimizer/<parameter>/<entry>"``
  (``"optimizer/0.w/exp_avg"``).
* Metadata (strings): ``mnn.format_version``; ``mnn.version``; ``mnn.model``, the
  model's ``config()`` as JSON (layer types and constructor arguments); and, with an
  optimizer, ``mnn.optimizer``, its ``config()`` plus its scalar state (step counts)
  as JSON.

Why safetensors and not pickle: unpickling runs whatever code the file names, so a
downloaded pickle is a program. A safetensors file is a JSON header and raw bytes.
Loading here parses JSON and looks layer and optimizer types up by name among
mnn's own classes (``mnn.layers.build``, ``mnn.optim.build``): it never imports or
calls anything the file names.

Why the write is atomic: the bytes go to a temporary file in the same directory,
which is flushed and ``fsync``-ed to disk before ``os.replace`` renames it over
the old checkpoint in one step. A crash, a full disk or an interrupt mid-write
leaves the old file as it was (and removes the temporary file); a reader sees the
whole old file or the whole new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save as safetensors_bytes

from mnn import backends
from mnn.base import BaseLayer
from mnn.errors import CheckpointError

#: Bumped when the layout of the file changes; ``load`` refuses versions it does not know.
FORMAT_VERSION = 1
OPTIMIZER_PREFIX = "optimizer/"
_CHUNK = 1 << 20  # bytes per write call


def save(model: BaseLayer, path, optimizer=None) -> None:
    """Write ``model`` (weights and architecture), and ``optimizer`` if given, to ``path``.

    The model's arrays may live on any backend and device; they are copied to the
    host. The write is atomic: if it fails, the file at ``path`` is left unchanged.
    """
    from mnn import __version__

    path = os.fspath(path)
    tensors = {name: _to_host(value) for name, value in model.state_dict().items()}
    metadata = {"mnn.format_version": str(FORMAT_VERSION), "mnn.version": __version__,
                "mnn.model": _to_json(model.config(), "the model's config()")}
    if optimizer is not None:
        if optimizer.model is not model:
            raise ValueError(f"mnn.save: the optimizer {optimizer!r} updates another model "
                             f"than the one being saved")
        state = optimizer.state_dict()
        scalars: dict[str, dict] = {}
        for name, entries in state["state"].items():
            for entry, value in entries.items():
                if hasattr(value, "shape"):
                    tensors[f"{OPTIMIZER_PREFIX}{name}/{entry}"] = _to_host(value)
                else:
                    scalars.setdefault(name, {})[entry] = value
        stored = {"type": state["type"], "args": state["args"], "scalars": scalars}
        metadata["mnn.optimizer"] = _to_json(stored, "the optimizer's state")
    atomic_write(path, safetensors_bytes(tensors, metadata=metadata))


def load(path, with_optimizer: bool = False):
    """The model saved at ``path``, or ``(model, optimizer)`` with ``with_optimizer=True``.

    The model is rebuilt from its stored config and comes back on the host as NumPy
    arrays of the stored dtype; move it with ``model.to(...)`` (the optimizer's state
    follows the parameters at its next ``step``). A file that is corrupt, truncated,
    not an mnn checkpoint, or whose arrays do not fit its config raises
    ``CheckpointError``, which names the file and lists what does not fit.
    """
    from mnn.layers.build import build
    from mnn.optim import build as build_optimizer

    path = os.fspath(path)
    metadata, tensors = _read(path)
    model = _check(path, build, _metadata_json(path, metadata, "mnn.model"))
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIMIZER_PREFIX)}
    _check(path, model.load_weights, weights)
    dtypes = sorted({str(v.dtype) for v in weights.values()})
    if len(dtypes) > 1:
        raise CheckpointError(f"{path}: the weights mix dtypes {dtypes}; mnn keeps one dtype "
                              f"per model")
    if dtypes:
        model.to(xp="numpy", device="cpu", dtype=dtypes[0])
    if not with_optimizer:
        return model
    if "mnn.optimizer" not in metadata:
        raise CheckpointError(f"{path}: the checkpoint holds no optimizer (it was saved "
                              f"without optimizer=...); load it with with_optimizer=False")
    stored = _metadata_json(path, metadata, "mnn.optimizer")
    if not (isinstance(stored, dict) and isinstance(stored.get("scalars"), dict)):
        raise CheckpointError(f"{path}: 'mnn.optimizer' in the metadata is not an optimizer "
                              f"record {{'type', 'args', 'scalars'}}: {stored!r}")
    optimizer = _check(path, build_optimizer, model,
                       {"type": stored.get("type"), "args": stored.get("args")})
    state = {name: dict(entries) for name, entries in stored["scalars"].items()}
    for key, value in tensors.items():
        if key.startswith(OPTIMIZER_PREFIX):
            name, _, entry = key.removeprefix(OPTIMIZER_PREFIX).rpartition("/")
            state.setdefault(name, {})[entry] = value
    _check(path, optimizer.load_state_dict,
           {"type": stored["type"], "args": stored["args"], "state": state})
    return model, optimizer


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either its old bytes or all of ``data``."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: never write into a file someone else made; 0o666 minus the umask, as open() does.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            _write_all(file, data)
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    _fsync_directory(directory)


def _write_all(file, data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), _CHUNK):
        file.write(view[start:start + _CHUNK])


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); not possible, nor needed, on Windows."""
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _to_host(array) -> np.ndarray:
    return np.ascontiguousarray(backends.for_array(array).to_host(array))


def _to_json(value, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"mnn.save: {what} cannot be stored as JSON: {error}") from error


def _read(path: str) -> tuple[dict, dict]:
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: a directory, not a checkpoint file")
    try:
        with safe_open(path, framework="numpy") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except SafetensorError as error:
        raise CheckpointError(f"{path}: not a readable safetensors file (corrupt or "
                              f"truncated?): {error}") from None
    if "mnn.format_version" not in metadata:
        raise CheckpointError(f"{path}: a safetensors file, but not an mnn checkpoint: its "
                              f"metadata has no 'mnn.format_version' (it has "
                              f"{sorted(metadata) or 'none'}); was it written by mnn.save?")
    if metadata["mnn.format_version"] != str(FORMAT_VERSION):
        raise CheckpointError(f"{path}: checkpoint format version "
                              f"{metadata['mnn.format_version']!r}, but this mnn reads "
                              f"version {FORMAT_VERSION} (the file says it was written by mnn "
                              f"{metadata.get('mnn.version', '?')})")
    return metadata, tensors


def _metadata_json(path: str, metadata: dict, key: str):
    if key not in metadata:
        raise CheckpointError(f"{path}: the metadata has no {key!r}")
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: {key!r} in the metadata is not valid JSON: "
                              f"{error}") from None


def _check(path: str, function, *args):
    """``function(*args)``; what it refuses becomes a ``CheckpointError`` that names the file."""
    try:
        return function(*args)
    except (TypeError, ValueError) as error:  # CheckpointError is a ValueError
        raise CheckpointError(f"{path}: {error}") from None

