r"""Checkpoints: a model's weights and architecture, and optionally its optimizer, in one file.

``save(model, path, optimizer=None, metadata=None)`` writes a `safetensors
<https://huggingface.co/docs/safetensors>`_ file; ``load(path)`` rebuilds the model from it
without the code that built it.

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
* The caller's own metadata (``save(..., metadata={...})``): strings under keys that
  do not start with ``mnn.``, returned by ``load(path, with_metadata=True)``. ``mnn
  train-lm`` keeps its vocabulary there, so that one atomic write holds the model and
  the characters its token ids stand for.

Why safetensors and not pickle: unpickling runs whatever code the file names, so a
downloaded pickle is a program. A safetensors file is a JSON header and raw bytes.
Loading here parses JSON and looks layer and optimizer types up by name among
mnn's own classes (``mnn.serialization.build``, ``mnn.optim.build``): it never imports or
calls anything the file names.

Why loading checks before it reads: a file is untrusted input. Its header (the
tensors' names, dtypes and shapes) and its JSON are read first; the model is
built from the config under ``skip_init()`` (parameters are zero-memory
placeholders), and every tensor's shape and dtype is compared with the model's
before a single tensor is read. So a 1 KB file that asks for a 20000 x 20000
layer costs nothing and gets a ``CheckpointError``, as do configs nested too
deep, constructor arguments a layer refuses, dtypes mnn does not keep (bfloat16,
integers), files that are not regular files (a FIFO, ``/dev/null``) and
optimizer state that makes no sense (a negative step count). The whole structure
is bounded too: ``build`` creates at most ``mnn.serialization.MAX_LAYERS`` layers,
so a few bytes of config that ask for a billion transformer blocks stop there.

What else ``load`` refuses, each with a ``CheckpointError`` that names the file:

* No file at the path: ``CheckpointNotFoundError``, which is a ``CheckpointError``
  and a ``FileNotFoundError`` (``except MnnError`` and ``except FileNotFoundError``
  both catch it).
* A checkpoint too big for the memory this process may take: the ``MemoryError``
  becomes a ``CheckpointError`` that says how big the file is.
* NaN or inf in a tensor it loads (a weight, or optimizer state with
  ``with_optimizer=True``): the message names the tensors and counts their NaN and
  inf values. A model with such weights computes NaN everywhere, and evaluating
  one prints an accuracy that means nothing, so the default is to refuse rather
  than warn; ``load(path, allow_nonfinite=True)`` loads it anyway, to look at a
  run that diverged.

Why ``save`` warns about some layer types: ``load`` finds a type by its class name
among the classes the loading process has defined (or declared by entry point).
A class defined in ``__main__`` (a script, a notebook) or inside a function exists
in another process only if that process runs the same code first. ``save`` writes
the file and warns (``mnn.errors.CheckpointWarning``), naming each such type and
how to make it loadable anywhere: define it in a module that the loading code
imports, or declare it in the entry point group ``mnn.layers``. It does not
refuse: the process that defined the class, or one that runs the same script,
loads the file.

Why the write is atomic: ``mnn.files.atomic_write`` writes a temporary file in
the same directory, fsyncs it and renames it over the old checkpoint in one
step. A crash, a full disk or an interrupt mid-write leaves the old file as it
was; a reader sees the whole old file or the whole new one, never a mix.

The same model saves to the same bytes: safetensors writes its JSON header in
hash order, so ``save`` rewrites the header with sorted keys (the data and its
offsets do not move).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import struct
import warnings
from collections.abc import Mapping
from typing import Literal, overload

import numpy as np

from mnn.backends import to_host
from mnn.base import BaseLayer
from mnn.checks import in_words
from mnn.errors import (
    AllocationError,
    ArgumentError,
    ArgumentTypeError,
    CheckpointError,
    CheckpointNotFoundError,
    CheckpointWarning,
    clipped,
    listing,
    plural,
)
from mnn.files import atomic_write
from mnn.initializers import skip_init
from mnn.optim import Optimizer
from mnn.optim import build as build_optimizer
from mnn.serialization import build, check_state, load_weights
from mnn.types import Path
from mnn.version import __version__

#: Bumped when the layout of the file changes; ``load`` refuses versions it does not know.
FORMAT_VERSION = 1
#: The metadata keys of mnn's own entries start with this; a caller's keys may not.
RESERVED_PREFIX = "mnn."
OPTIMIZER_PREFIX = "optimizer/"
#: safetensors dtype names that mnn stores, and their NumPy dtypes.
DTYPES = {"F64": np.dtype("float64"), "F32": np.dtype("float32"), "F16": np.dtype("float16")}


def save(model: BaseLayer, path: Path, optimizer: Optimizer | None = None, *,
         metadata: Mapping[str, str] | None = None) -> None:
    """Write ``model`` (weights and architecture), and ``optimizer`` if given, to ``path``.

    ``metadata``: the caller's own entries, strings under keys that do not start with
    ``mnn.``, written in the same file (``load(path, with_metadata=True)`` returns
    them). The model's arrays may live on any backend and device; they are copied to
    the host. The write is atomic: if it fails, the file at ``path`` is left unchanged.
    """
    from safetensors.numpy import save as safetensors_bytes  # here: import mnn stays cheap

    path = os.fspath(path)
    tensors = {name: _host(value) for name, value in model.state_dict().items()}
    metadata = {**_callers_metadata(metadata),
                "mnn.format_version": str(FORMAT_VERSION), "mnn.version": __version__,
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
                    tensors[f"{OPTIMIZER_PREFIX}{name}/{entry}"] = _host(value)
                else:
                    scalars.setdefault(name, {})[entry] = value
        stored = {"type": state["type"], "args": state["args"], "scalars": scalars}
        metadata["mnn.optimizer"] = _to_json(stored, "the optimizer's state")
    atomic_write(path, _sorted_header(safetensors_bytes(tensors, metadata=metadata)))
    _warn_about_types_unknown_elsewhere(model, path)


@overload
def load(path: Path, with_optimizer: Literal[False] = False, *,
         with_metadata: Literal[False] = False,
         allow_nonfinite: bool = False) -> BaseLayer: ...
@overload
def load(path: Path, with_optimizer: Literal[True], *,
         with_metadata: Literal[False] = False,
         allow_nonfinite: bool = False) -> tuple[BaseLayer, Optimizer]: ...
@overload
def load(path: Path, with_optimizer: Literal[False] = False, *, with_metadata: Literal[True],
         allow_nonfinite: bool = False
         ) -> tuple[BaseLayer, dict[str, str]]: ...
@overload
def load(path: Path, with_optimizer: Literal[True], *, with_metadata: Literal[True],
         allow_nonfinite: bool = False
         ) -> tuple[BaseLayer, Optimizer, dict[str, str]]: ...


def load(path: Path, with_optimizer: bool = False, *, with_metadata: bool = False,
         allow_nonfinite: bool = False
         ) -> (BaseLayer | tuple[BaseLayer, Optimizer] | tuple[BaseLayer, dict[str, str]]
               | tuple[BaseLayer, Optimizer, dict[str, str]]):
    """The model saved at ``path``, or ``(model, optimizer)`` with ``with_optimizer=True``;
    ``with_metadata=True`` adds the caller's metadata (a dict, ``{}`` when ``save`` was
    given none) at the end: ``(model, metadata)``, ``(model, optimizer, metadata)``.

    The model is rebuilt from its stored config and comes back on the host as NumPy
    arrays of the stored dtype; move it with ``model.to(...)`` (the optimizer's state
    follows the parameters at its next ``step``). A file that is corrupt, truncated,
    not an mnn checkpoint, or whose arrays do not fit its config raises
    ``CheckpointError``, which names the file and lists what does not fit; nothing
    is allocated for the model before its shapes were checked. So does a tensor
    that holds NaN or inf, unless ``allow_nonfinite=True``.
    """
    from safetensors import SafetensorError, safe_open  # here: import mnn stays cheap

    path = os.fspath(path)
    _check_regular_file(path)
    try:
        with safe_open(path, framework="numpy") as file:
            metadata = _check_metadata(path, file.metadata() or {})
            shapes = {key: _shape_and_dtype(path, file, key) for key in file.keys()}
            with skip_init():  # placeholders: nothing is allocated before the shapes fit
                model = _check(path, build, _metadata_json(path, metadata, "mnn.model"))
            weights = {k: v for k, v in shapes.items() if not k.startswith(OPTIMIZER_PREFIX)}
            _check(path, check_state, model, weights)
            optimizer_tensors = {k: v for k, v in shapes.items() if k not in weights}
            if with_optimizer:
                optimizer, state = _optimizer(path, metadata, model, optimizer_tensors)
            used = shapes if with_optimizer else weights
            tensors = {key: file.get_tensor(key) for key in used}
        if not allow_nonfinite:
            _check_finite(path, tensors)
        _check(path, load_weights, model, {k: tensors[k] for k in weights})
    except SafetensorError as error:
        raise CheckpointError(f"{path}: not a readable safetensors file (corrupt or "
                              f"truncated?): {clipped(str(error))}") from None
    except (MemoryError, OSError) as error:
        # safetensors maps the whole file, then copies the arrays out: past the memory
        # limit, later versions raise MemoryError and 0.4 a Rust I/O error, an OSError
        # without errno that reads "Cannot allocate memory (os error 12)"
        if isinstance(error, OSError) and f"(os error {errno.ENOMEM})" not in str(error):
            raise
        size = os.path.getsize(path)
        raise CheckpointError(f"{path}: a checkpoint of {in_words(size)} ({size} bytes) is "
                              f"more than this process can hold in memory") from None
    dtypes = sorted({str(dtype) for _, dtype in weights.values()})
    if len(dtypes) > 1:
        raise CheckpointError(f"{path}: the weights mix dtypes {dtypes}; mnn keeps one dtype "
                              f"per model")
    if dtypes:
        model.to(xp="numpy", device="cpu", dtype=dtypes[0])
    callers = {k: v for k, v in metadata.items() if not k.startswith(RESERVED_PREFIX)}
    if not with_optimizer:
        return (model, callers) if with_metadata else model
    for key in optimizer_tensors:
        name, _, entry = key.removeprefix(OPTIMIZER_PREFIX).rpartition("/")
        state.setdefault(name, {})[entry] = tensors[key]
    _check(path, optimizer.load_state_dict,
           {"type": optimizer.name, "args": optimizer.config()["args"], "state": state})
    return (model, optimizer, callers) if with_metadata else (model, optimizer)


def _optimizer(path, metadata, model, tensors):
    """The optimizer a checkpoint describes, and its scalar state; checked before any tensor
    is read."""
    if "mnn.optimizer" not in metadata:
        raise CheckpointError(f"{path}: the checkpoint holds no optimizer (it was saved "
                              f"without optimizer=...); load it with with_optimizer=False")
    stored = _metadata_json(path, metadata, "mnn.optimizer")
    if not (isinstance(stored, dict) and isinstance(stored.get("scalars"), dict)
            and all(isinstance(v, dict) for v in stored["scalars"].values())):
        raise CheckpointError(f"{path}: 'mnn.optimizer' in the metadata is not an optimizer "
                              f"record {{'type', 'args', 'scalars'}}: {stored!r}"[:500])
    optimizer = _check(path, build_optimizer, model,
                       {"type": stored.get("type"), "args": stored.get("args")})
    state = {name: dict(entries) for name, entries in stored["scalars"].items()}
    for key, (shape, dtype) in tensors.items():  # shapes only: the arrays come later
        name, _, entry = key.removeprefix(OPTIMIZER_PREFIX).rpartition("/")
        state.setdefault(name, {})[entry] = np.broadcast_to(np.zeros((), dtype), shape)
    _check(path, optimizer.load_state_dict,
           {"type": stored["type"], "args": stored["args"], "state": state})
    return optimizer, {name: dict(entries) for name, entries in stored["scalars"].items()}


def _check_regular_file(path: str) -> None:
    """A FIFO would block the read forever and a device never ends: only regular files."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"{path}: no such checkpoint file") from None
    if stat.S_ISDIR(mode):
        raise CheckpointError(f"{path}: a directory, not a checkpoint file")
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path}: not a regular file (a FIFO, a device or a socket); a "
                              f"checkpoint is a file written by mnn.save")


def _check_metadata(path: str, metadata: dict) -> dict:
    if "mnn.format_version" not in metadata:
        raise CheckpointError(f"{path}: a safetensors file, but not an mnn checkpoint: its "
                              f"metadata has no 'mnn.format_version' (it has "
                              f"{sorted(metadata) or 'none'}); was it written by mnn.save?")
    if metadata["mnn.format_version"] != str(FORMAT_VERSION):
        raise CheckpointError(clipped(
            f"{path}: checkpoint format version {metadata['mnn.format_version']!r}, but this "
            f"mnn reads version {FORMAT_VERSION} (the file says it was written by mnn "
            f"{metadata.get('mnn.version', '?')})"))
    return metadata


def _shape_and_dtype(path: str, file, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """A tensor's shape and dtype from the header alone (nothing is read or allocated)."""
    piece = file.get_slice(key)
    name = piece.get_dtype()
    if name not in DTYPES:
        raise CheckpointError(f"{path}: tensor {key!r} has dtype {name}; mnn stores "
                              f"{', '.join(DTYPES)} (float64, float32, float16)")
    return tuple(piece.get_shape()), DTYPES[name]


def _check_finite(path: str, tensors: dict[str, np.ndarray]) -> None:
    """Refuse tensors with NaN or inf in one line that names them (see the module doc)."""
    found = [f"{key!r} holds {int(np.isnan(value).sum())} NaN and "
             f"{int(np.isinf(value).sum())} inf of its {value.size} values"
             for key, value in tensors.items() if not np.isfinite(value).all()]
    if found:
        raise CheckpointError(f"{path}: NaN or inf in {plural(len(found), 'tensor')}"
                              + listing(found, separator="; ")
                              + "; a model with them computes NaN, so load refuses it "
                                "(mnn.load(path, allow_nonfinite=True) loads it anyway)")


def _warn_about_types_unknown_elsewhere(model: BaseLayer, path: str) -> None:
    """Warn about layer types that a process loading ``path`` knows only if it runs the
    code that defined them: classes of ``__main__`` or of a function (see the module doc)."""
    classes = {type(layer) for _, layer in model.named_layers()}
    local = sorted(f"{cls.__name__} ({cls.__module__}.{cls.__qualname__})" for cls in classes
                   if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__)
    if local:
        warnings.warn(
            f"mnn.save: {path}: the layer {'types' if len(local) > 1 else 'type'} "
            f"{', '.join(local)} {'are' if len(local) > 1 else 'is'} defined in a script or "
            f"inside a function; mnn.load in another process knows such a type only if it "
            f"runs that code first. To load the file anywhere, define the class in a module "
            f"that the loading code imports, or declare it in the entry point group "
            f"'mnn.layers'", CheckpointWarning, stacklevel=3)


def _sorted_header(data: bytes) -> bytes:
    """The same safetensors bytes with the JSON header's keys sorted (see the module doc)."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes with spaces
    return struct.pack("<Q", len(text)) + text + data[8 + length:]


def _host(array) -> np.ndarray:
    # C order, as safetensors writes it; not np.ascontiguousarray, which makes a 0-d array 1-d.
    return np.asarray(to_host(array), order="C")


def _callers_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """``save``'s ``metadata`` argument: strings under keys outside mnn's own (``mnn.``)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ArgumentTypeError(f"mnn.save: expected metadata to be a mapping of str to str, "
                                f"got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ArgumentTypeError(f"mnn.save: expected metadata to map str to str, got "
                                    f"{key!r}: {type(value).__name__}")
        if key.startswith(RESERVED_PREFIX):
            raise ArgumentError(f"mnn.save: metadata key {key!r} starts with "
                                f"{RESERVED_PREFIX!r}, which mnn keeps for its own entries")
    return dict(metadata)


def _to_json(value, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"mnn.save: {what} cannot be stored as JSON: {error}") from error


def _metadata_json(path: str, metadata: dict, key: str):
    if key not in metadata:
        raise CheckpointError(f"{path}: the metadata has no {key!r}")
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: {key!r} in the metadata is not valid JSON: "
                              f"{error}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: {key!r} in the metadata is nested too deep") from None


def _check(path: str, function, *args):
    """``function(*args)``; what it refuses becomes a ``CheckpointError`` that names the file."""
    try:
        return function(*args)
    except (TypeError, ValueError, AllocationError) as error:  # CheckpointError: a ValueError
        raise CheckpointError(f"{path}: {clipped(str(error))}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: the config is nested too deep") from None
