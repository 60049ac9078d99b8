"""``BaseLayer``: the contract every layer keeps (see DESIGN.md, "The layer contract").

A layer owns ``params`` (name -> array) and ``grads`` (same keys and shapes).
``forward(inputs, feedbacks=None)`` computes the output and saves what the
backward pass needs; ``backward(gradients)`` returns the vector-Jacobian product
with the last forward's input and *adds* the parameter gradients into ``grads``.

Where the parameters live: a new layer holds them on the host as float64 NumPy
arrays drawn from a seeded generator. The first ``forward`` moves them to the
namespace, device and floating dtype of its inputs; afterwards inputs from
anywhere else raise a ``PlacementError`` that names both sides and the fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

import array_api_compat
import numpy as np

from mnn import backends
from mnn.errors import (
    BackwardBeforeForwardError,
    CheckpointError,
    DTypeError,
    PlacementError,
    describe,
)


class Placement(NamedTuple):
    """Where a layer's parameters live: which library, which device, which dtype."""

    backend: backends.Backend
    device: object
    dtype: object

    def __str__(self) -> str:
        return (f"{self.backend.name} arrays of dtype {dtype_name(self.dtype)} "
                f"on device {self.backend.device_name(self.device)}")


HOST = Placement(backends.get("numpy"), "cpu", np.dtype("float64"))


def dtype_name(dtype) -> str:
    """``float32`` for ``numpy.float32``, ``torch.float32``, ``array_api_strict.float32``..."""
    if isinstance(dtype, type):  # numpy.float32, the scalar type rather than a dtype
        return dtype.__name__
    return str(dtype).rpartition(".")[2]


class BaseLayer:
    """Base class of every layer: parameter bookkeeping, placement, and the training helpers."""

    #: A loss layer returns a 0-d array and its ``backward()`` takes no argument.
    is_loss = False
    #: False when nobody needs the gradient with respect to the inputs (the first layer
    #: of a network fed with data): layers that can skip that work return ``None``.
    input_grad = True

    def __init__(self) -> None:
        self.params: dict[str, object] = {}
        self.grads: dict[str, object] = {}
        self.sublayers: dict[str, BaseLayer] = {}
        self.args: dict[str, object] = {}  # constructor arguments, for config() and checkpoints
        self.placement: Placement = HOST
        self._placed = False  # set by the first forward (or by to())
        self._adopted = None  # (type, dtype, device, namespace) of the last inputs that passed
        self._saved: tuple | None = None

    def __call__(self, inputs, feedbacks=None):
        return self.forward(inputs, feedbacks)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{type(self).__name__}({args})"

    @property
    def name(self) -> str:
        return type(self).__name__

    def forward(self, inputs, feedbacks=None):
        raise NotImplementedError

    def backward(self, gradients):
        raise NotImplementedError

    # --- what forward keeps for backward -------------------------------------------

    def save_for_backward(self, *values) -> None:
        self._saved = values

    def saved_for_backward(self) -> tuple:
        if self._saved is None:
            raise BackwardBeforeForwardError(
                f"{self.name}: backward() was called before forward(); "
                f"run forward on a batch first, then backward with its output's gradient")
        return self._saved

    # --- parameters ----------------------------------------------------------------

    def add_param(self, key: str, host_value: np.ndarray) -> None:
        """Register a parameter (a host float64 array) and its zero gradient."""
        self.params[key] = host_value
        self.grads[key] = np.zeros_like(host_value)

    def named_layers(self, prefix: str = "") -> Iterator[tuple[str, BaseLayer]]:
        """This layer and every sublayer, with the prefix of their parameter names."""
        yield prefix, self
        for name, layer in self.sublayers.items():
            yield from layer.named_layers(f"{prefix}{name}.")

    def parameters(self) -> Iterator[tuple[str, BaseLayer, str]]:
        """``(qualified_name, owning_layer, key)`` for every parameter, sublayers included."""
        for prefix, layer in self.named_layers():
            for key in layer.params:
                yield prefix + key, layer, key

    def state_dict(self) -> dict[str, object]:
        """Every parameter by qualified name (``"0.w"``, ``"W_qry.b"``), as stored (no copy)."""
        return {name: layer.params[key] for name, layer, key in self.parameters()}

    def config(self) -> dict:
        """The layer's type and constructor arguments: enough to rebuild it."""
        return {"type": self.name, "args": dict(self.args)}

    def zero_grads(self, set_to_none: bool = False) -> None:
        """Set every gradient to zero, in place where the library allows it.

        Reusing the buffers matters: freeing and re-allocating megabytes each step
        makes the allocator return pages to the OS and fault them in again.

        With ``set_to_none=True`` (what ``torch.optim.Optimizer.zero_grad()`` does by
        default) every gradient becomes ``None`` instead: nothing is written now, and
        the next ``backward`` stores its fresh gradient array instead of adding it to
        zeros. That saves two passes over every parameter per step (at batch 1, the
        784 x 256 weight gradient is most of the work); ``step`` skips a ``None``.
        """
        for _, layer, key in self.parameters():
            grad = layer.grads[key]
            if set_to_none:
                layer.grads[key] = None
            elif grad is not None and array_api_compat.is_writeable_array(grad):
                grad[...] = 0.0
            else:  # JAX (arrays are immutable), or no buffer since set_to_none
                param = layer.params[key]
                layer.grads[key] = array_api_compat.array_namespace(param).zeros_like(param)

    def add_grad(self, key: str, value) -> None:
        """Accumulate ``value`` into ``grads[key]``.

        ``+=`` in place where the library allows it; ``=`` when the gradient is
        ``None`` after ``zero_grads(set_to_none=True)``.
        """
        if self.grads[key] is None:
            self.grads[key] = value
        else:
            self.grads[key] += value

    def step(self, lr: float = 0.01) -> None:
        """Plain gradient descent: ``p <- p - lr * grad`` for every parameter.

        The adapter of the parameters' library makes the update (``add_scaled``): in
        place and in one pass where the library can, a new array where arrays are
        immutable (JAX). A ``None`` gradient (see ``zero_grads``) means no gradient:
        that parameter stays as it is.
        """
        for _, layer, key in self.parameters():
            grad = layer.grads[key]
            if grad is not None:
                backend = layer.placement.backend
                layer.params[key] = backend.add_scaled(layer.params[key], -lr, grad)

    def load_weights(self, state_dict: dict, config: dict | None = None) -> BaseLayer:
        """Copy ``state_dict``'s arrays into the parameters; returns the model.

        The arrays may come from any backend (or NumPy); they are copied to where
        each parameter lives now (library, device, dtype). With ``config``, it must
        equal ``self.config()``. Anything that does not fit raises one
        ``CheckpointError`` listing every problem.
        """
        if config is not None and config != self.config():
            problems = _config_differences(config, self.config(), "config")
            raise CheckpointError(f"{self.name}: the checkpoint's config does not match the "
                                  f"model:\n  " + "\n  ".join(problems))
        if not isinstance(state_dict, Mapping):
            raise CheckpointError(f"{self.name}: expected a state dict (parameter name -> array), "
                                  f"got an object of type {type(state_dict).__name__}")
        owners = {name: (layer, key) for name, layer, key in self.parameters()}
        problems = [f"missing key {name!r}" for name in owners if name not in state_dict]
        problems += [f"unexpected key {name!r}" for name in state_dict if name not in owners]
        hosts = {}
        for name, value in state_dict.items():
            if name not in owners:
                continue
            layer, key = owners[name]
            try:
                host = backends.for_array(value).to_host(value)
            except TypeError:
                problems.append(f"{name!r} is not an array: got {describe(value)}")
                continue
            if tuple(host.shape) != tuple(layer.params[key].shape):
                problems.append(f"shape mismatch for {name!r}: the checkpoint has "
                                f"{tuple(host.shape)}, the model {tuple(layer.params[key].shape)}")
            elif host.dtype.kind != "f":
                problems.append(f"{name!r} is not floating point: got dtype {host.dtype}")
            hosts[name] = host
        if problems:
            raise CheckpointError(f"{self.name}: the state dict does not fit the model "
                                  f"({len(problems)} problems):\n  " + "\n  ".join(problems))
        for name, host in hosts.items():
            layer, key = owners[name]
            where = layer.placement
            layer.params[key] = where.backend.from_host(np.array(host), where.device, where.dtype)
        return self

    # --- placement -----------------------------------------------------------------

    def adopt(self, inputs, what: str = "inputs"):
        """Check ``inputs`` and return their namespace.

        They must be a floating-point array. The first call moves this layer's
        parameters to the inputs' namespace, device and dtype; later calls check
        that the inputs still live there.
        """
        seen = (type(inputs), getattr(inputs, "dtype", None), getattr(inputs, "device", None))
        if self._adopted is not None and self._adopted[:3] == seen:
            return self._adopted[3]  # the same kind of arrays as last time: checked already
        xp = namespace_of(self, inputs, what)
        if not xp.isdtype(inputs.dtype, "real floating"):
            raise DTypeError(f"{self.name}: expected floating-point {what}, got {describe(inputs)}")
        if not self.params:
            self._adopted = (*seen, xp)
            return xp
        arrived = Placement(backends.for_array(inputs), array_api_compat.device(inputs),
                            inputs.dtype)
        if not self._placed:
            self._move_params(arrived)
        elif arrived != self.placement:
            raise PlacementError(
                f"{self.name}: its parameters are {self.placement}, but the {what} are {arrived}. "
                f"Move the layer first with layer.to(xp=..., device=..., dtype=...) "
                f"(here: .to(xp={arrived.backend.name!r}, "
                f"device={arrived.backend.device_name(arrived.device)!r}, "
                f"dtype={dtype_name(arrived.dtype)!r})), or move the {what}.")
        self._adopted = (*seen, xp)
        return xp

    def to(self, xp=None, device=None, dtype=None) -> BaseLayer:
        """Move every parameter (sublayers included) to a namespace, device and dtype.

        ``xp`` is a namespace, a library module or a backend name (``"numpy"``);
        ``device`` a device object or name (``"cuda:0"``); ``dtype`` a dtype or its
        name (``"float32"``). What is not given stays as it is. Returns the layer.
        """
        for _, layer in self.named_layers():
            here = layer.placement
            backend = here.backend if xp is None else backends.for_namespace(xp)
            if device is not None:
                where = backend.device(device) if isinstance(device, str) else device
            elif backend is here.backend:
                where = here.device
            else:
                where = backend.default_device()
            name = dtype_name(here.dtype if dtype is None else dtype)
            target_xp = backend.namespace()
            layer._move_params(Placement(backend, where, getattr(target_xp, name)))
        return self

    def _move_params(self, target: Placement) -> None:
        source = self.placement.backend
        for key in self.params:
            for store in (self.params, self.grads):
                if store[key] is not None:  # a gradient is None after zero_grads(set_to_none=True)
                    host = source.to_host(store[key])
                    store[key] = target.backend.from_host(host, target.device, target.dtype)
        self.placement = target
        self._placed = True
        self._adopted = None


def namespace_of(layer: BaseLayer, array, what: str = "inputs"):
    """The array API namespace of ``array``, or a clear error naming the layer."""
    try:
        return array_api_compat.array_namespace(array)
    except TypeError:
        raise DTypeError(
            f"{layer.name}: expected {what} to be an array (NumPy, PyTorch, CuPy, JAX or any "
            f"array API library), got {describe(array)}") from None


def _config_differences(given, expected, path: str) -> list[str]:
    """Every place where two configs (nested dicts and lists) differ, by path."""
    if isinstance(given, dict) and isinstance(expected, dict):
        out = [f"{path}: unexpected key {k!r}" for k in given if k not in expected]
        out += [f"{path}: missing key {k!r}" for k in expected if k not in given]
        for k in expected:
            if k in given:
                out += _config_differences(given[k], expected[k], f"{path}[{k!r}]")
        return out
    if isinstance(given, (list, tuple)) and isinstance(expected, (list, tuple)):
        out = [] if len(given) == len(expected) else [
            f"{path}: the checkpoint has {len(given)} entries, the model {len(expected)}"]
        for i, (g, e) in enumerate(zip(given, expected, strict=False)):
            out += _config_differences(g, e, f"{path}[{i}]")
        return out
    if given == expected:
        return []
    return [f"{path}: the checkpoint has {given!r}, the model {expected!r}"]
