"""``BaseLayer``: the contract every layer keeps, and the template that keeps it (docs/design.md).

A layer owns ``params`` (name -> array) and ``grads`` (same keys, ``None`` until
a ``backward``). It writes two methods, the math of its docstring:

* ``compute_forward(xp, inputs, feedbacks)``: the output; it keeps what the
  backward pass needs with ``self.save_for_backward(...)``;
* ``compute_backward(xp, gradients, *saved)``: the vector-Jacobian product with
  the inputs (``*saved`` are the values it saved); it adds the parameter
  gradients with ``self.add_grad(key, value)``. A loss takes no gradients:
  ``compute_backward(xp, *saved)``.

``xp`` is the array API namespace of the inputs. Everyone calls the template
methods ``forward`` and ``backward`` of this class, which run the checks the
layer declared (``expect_inputs``, ``expect_feedbacks``) before the math, so
every layer checks alike:

* forward: the inputs are arrays of the declared kind (floating point by
  default), of the declared rank and sizes, from the library, device and dtype
  of the parameters. The first forward moves the parameters there instead
  (a new layer holds them on the host as float64 NumPy arrays).
* backward: it follows a forward, at most once (as in torch, a second backward
  needs a second forward), and the gradients have exactly the shape, dtype,
  library and device of that forward's output.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import array_api_compat
import numpy as np

from mnn import backends
from mnn.backends import Placement, dtype_name
from mnn.checks import (
    check_label_dtype,
    check_label_shape,
    check_same_placement,
    check_same_shape,
    check_shape,
    normalize_axis,
)
from mnn.deprecation import warn_deprecated
from mnn.errors import (
    BackwardBeforeForwardError,
    BackwardTwiceError,
    CheckpointError,
    DTypeError,
    PlacementError,
    ShapeError,
    describe,
)
from mnn.types import Array, Device, DType, Namespace

#: Where a new layer's parameters live until its first forward: float64 NumPy arrays.
HOST = Placement(backends.get("numpy"), "cpu", np.dtype("float64"))



class _Sentinel:
    """A named marker for what a layer keeps between forward and backward; a copy (pickle,
    deepcopy) is the same object, found by its name in this module."""

    def __init__(self, name: str, description: str) -> None:
        self.name, self.description = name, description

    def __repr__(self) -> str:
        return self.description

    def __reduce__(self) -> str:
        return self.name


#: retain_graph of the backward that is running, so that sublayers' backwards inherit it.
_RETAINING = contextvars.ContextVar("mnn_retain_graph", default=False)
_NOTHING_YET = _Sentinel("_NOTHING_YET", "nothing saved yet")  # no forward has finished
_USED = _Sentinel("_USED", "used by a backward")  # a backward consumed the last forward's values


class BaseLayer:
    """Base class of every layer: the forward/backward template, parameters and placement."""

    #: A loss layer returns a 0-d array and its ``backward()`` takes no argument.
    is_loss = False
    #: False when nobody needs the gradient with respect to the inputs (the first layer
    #: of a network fed with data): ``backward`` then returns ``None``.
    input_grad = True
    #: Training mode (the default) or evaluation mode: ``train()`` and ``eval()`` set it on
    #: a layer and every sublayer. Only layers that behave differently (Dropout) read it.
    training = True

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}
        self.sublayers: dict[str, BaseLayer] = {}
        self.args: dict[str, Any] = {}  # constructor arguments, for config() and checkpoints
        self.placement: Placement = HOST
        #: The ``SGD(..., fused=True)`` that updates this layer's parameters in backward.
        self.fused_sgd: Any = None
        self._placed = False  # set by the first forward (or by to())
        self._input_kind = "real floating"
        self._input_rank: tuple[int, int | None] = (0, None)
        self._input_sizes: dict[int, int] = {}
        self._feedbacks: str | None = None
        self._class_axis = 1
        self._seen: tuple | None = None  # (type, dtype, device) of inputs that passed, and xp
        self._labels_seen: tuple | None = None  # the same for inputs and labels together
        self._xp = None  # the namespace of the last forward's inputs
        self._saved: tuple | _Sentinel = _NOTHING_YET
        self._output_spec: tuple | None = None

    # --- what a layer declares ---------------------------------------------------------

    def expect_inputs(self, *, min_rank: int = 0, max_rank: int | None = None,
                      sizes: Mapping[int, int] | None = None,
                      kind: str = "real floating") -> None:
        """Declare what ``forward`` accepts: rank bounds, the size of some axes
        (``{-1: in_features}``) and the dtype kind (``"real floating"``, ``"integral"``)."""
        self._input_rank = (min_rank, max_rank)
        self._input_sizes = dict(sizes or {})
        self._input_kind = kind

    def expect_feedbacks(self, kind: str, class_axis: int = 1) -> None:
        """Declare the loss's feedbacks: ``"targets"`` (floats like the inputs) or
        ``"labels"`` (integers, the inputs' shape without ``class_axis``)."""
        if kind not in ("targets", "labels"):
            raise ValueError(f"{self.name}: feedbacks are 'targets' or 'labels', got {kind!r}")
        self._feedbacks, self._class_axis = kind, class_axis

    # --- what a layer writes -----------------------------------------------------------

    def compute_forward(self, xp: Namespace, inputs: Array, feedbacks: Array) -> Array:
        """The layer's output for checked ``inputs`` (and a loss's ``feedbacks``), computed in
        the namespace ``xp``; keeps what backward needs with ``save_for_backward``."""
        raise NotImplementedError(f"{self.name} does not define compute_forward")

    def compute_backward(self, xp: Namespace, *gradients_and_saved: Any) -> Any:
        """The gradient with respect to the inputs, from the checked ``gradients`` of the
        output and the values the forward saved (a loss gets no gradients); adds the
        parameter gradients with ``add_grad``."""
        raise NotImplementedError(f"{self.name} does not define compute_backward")

    # --- the template ------------------------------------------------------------------

    def __call__(self, inputs: Array, feedbacks: Array = None) -> Array:
        return self.forward(inputs, feedbacks)

    def forward(self, inputs: Array, feedbacks: Array = None) -> Array:
        """Check ``inputs`` (and a loss's ``feedbacks``), then run ``compute_forward``."""
        xp = self.check_inputs(inputs, feedbacks)
        self._saved = _NOTHING_YET
        outputs = self.compute_forward(xp, inputs, feedbacks)
        if self._saved is _NOTHING_YET:  # the math keeps nothing: backward may still run once
            self._saved = ()
        self._xp, self._output_spec = xp, None if self.is_loss else _spec(outputs)
        return outputs

    def backward(self, gradients: Array = None, *, retain_graph: bool = False) -> Any:
        """The gradient with respect to the last forward's inputs (``None`` when
        ``input_grad`` is False); parameter gradients are added into ``grads``.

        As in torch, what the forward kept is used up by one backward, unless
        ``retain_graph=True`` keeps it for another; it holds for every sublayer
        whose backward this one runs.
        """
        saved = self._take_saved()
        if self.is_loss:
            if gradients is not None:
                raise TypeError(f"{self.name} is a loss (or ends in one): backpropagation "
                                f"starts there, so backward() takes no argument; got "
                                f"{describe(gradients)}")
            arguments = (self._xp, *saved)
        else:
            self.check_gradients(gradients)
            arguments = (self._xp, gradients, *saved)
        if not (retain_graph or _RETAINING.get()):
            return self.compute_backward(*arguments)
        self._saved = saved  # kept for another backward, here and in every sublayer's
        token = _RETAINING.set(True)
        try:
            return self.compute_backward(*arguments)
        finally:
            _RETAINING.reset(token)

    def save_for_backward(self, *values: Any) -> None:
        """Keep ``values`` for the next ``backward``; they arrive as its ``*saved``."""
        self._saved = values

    def saved_for_backward(self) -> tuple[Any, ...]:
        """Deprecated: what the last forward saved, used up as by ``backward``. Layers written
        before the template overrode ``backward`` and called it; write
        ``compute_backward(xp, gradients, *saved)`` instead, which receives the values."""
        warn_deprecated(f"{self.name}.saved_for_backward()",
                        "compute_backward(xp, gradients, *saved), which receives what the "
                        "forward saved", since="0.1", removed_in="0.3")
        return self._take_saved()

    def _take_saved(self) -> tuple:
        saved = self._saved
        if saved is _NOTHING_YET:
            raise BackwardBeforeForwardError(
                f"{self.name}: backward() was called before forward(); "
                f"run forward on a batch first, then backward with its output's gradient")
        if saved is _USED:
            raise BackwardTwiceError(
                f"{self.name}: backward() was called twice after one forward(); what the "
                f"forward kept was used by the first backward (torch raises too). Run forward "
                f"again (gradients still add up over several forward/backward pairs), or pass "
                f"retain_graph=True to the first backward")
        self._saved = _USED
        return saved

    # --- the checks --------------------------------------------------------------------

    def check_inputs(self, inputs: Array, feedbacks: Array = None) -> Namespace:
        """Run the declared checks on ``inputs`` (and ``feedbacks``); return their namespace.

        Containers override it: their layers check their own inputs.
        """
        seen = (type(inputs), getattr(inputs, "dtype", None), getattr(inputs, "device", None))
        if self._seen is None or self._seen[:3] != seen:
            xp = self.adopt(inputs)
            self._seen = (*seen, xp)
        xp = self._seen[3]
        check_shape(self, inputs, *self._input_rank, self._input_sizes)
        if self._feedbacks == "targets":
            self.adopt(feedbacks, "targets")
            check_same_shape(self, feedbacks, inputs, "targets", "inputs")
            check_same_placement(self, feedbacks, inputs, "targets", "inputs")
        elif self._feedbacks == "labels":
            axis = normalize_axis(self, self._class_axis, len(inputs.shape))
            labels_seen = (type(feedbacks), getattr(feedbacks, "dtype", None),
                           getattr(feedbacks, "device", None))
            if self._labels_seen != (*seen, *labels_seen):  # the same kinds as last time: passed
                check_same_placement(self, feedbacks, inputs, "labels", "inputs", dtype=False)
                check_label_dtype(self, xp, feedbacks)
                self._labels_seen = (*seen, *labels_seen)
            check_label_shape(self, feedbacks, inputs, axis)
        return xp

    def check_gradients(self, gradients: Array) -> None:
        """``gradients`` match the last forward's output: library, dtype, device and shape."""
        expected, got = self._output_spec, _spec(gradients)
        if expected is None or got == expected:
            return
        library, dtype, device, shape = expected
        error = (DTypeError if got is None  # not an array at all
                 else ShapeError if got[:3] == expected[:3] else PlacementError)
        raise error(f"{self.name}: expected gradients like the output of the last forward "
                    f"({library} array of dtype {dtype}, shape {shape}, on device {device}), "
                    f"got {describe(gradients)}")

    def adopt(self, inputs: Array, what: str = "inputs") -> Namespace:
        """Check that ``inputs`` are an array of the declared kind; return its namespace.

        The first call moves this layer's parameters to the library and device of
        the inputs (and their dtype, when they are floating point); later calls
        check that the inputs still live there.
        """
        xp = namespace_of(self, inputs, what)
        kind = self._input_kind if what == "inputs" else "real floating"
        if not xp.isdtype(inputs.dtype, kind):
            wanted = "floating-point" if kind == "real floating" else kind
            raise DTypeError(f"{self.name}: expected {wanted} {what}, got {describe(inputs)}")
        if not self.params:
            return xp
        arrived = Placement.of(inputs)
        if kind != "real floating":  # integer inputs (token ids): the parameters keep their dtype
            arrived = arrived._replace(dtype=arrived.backend.dtype(dtype_name(
                self.placement.dtype)))
        if not self._placed:
            self._move_params(arrived)
        elif arrived != self.placement:
            raise PlacementError(
                f"{self.name}: its parameters are {self.placement}, but the {what} are {arrived}. "
                f"Move the layer first with layer.to(xp=..., device=..., dtype=...) "
                f"(here: .to(xp={arrived.backend.name!r}, "
                f"device={arrived.backend.device_name(arrived.device)!r}, "
                f"dtype={dtype_name(arrived.dtype)!r})), or move the {what}.")
        return xp

    # --- parameters --------------------------------------------------------------------

    def __getstate__(self) -> dict:
        """For ``pickle`` and ``copy.deepcopy``: everything but what the last forward kept for
        backward and the cached namespace modules (modules do not pickle). The copy has the
        parameters, gradients and placement; its first backward needs a forward first."""
        state = dict(self.__dict__)
        state.update(_seen=None, _labels_seen=None, _xp=None, _saved=_NOTHING_YET,
                     _output_spec=None)
        state.pop("_classes", None)
        return state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{type(self).__name__}({args})"

    @property
    def name(self) -> str:
        """The layer's class name, as messages and configs say it."""
        return type(self).__name__

    def add_param(self, key: str, host_value: np.ndarray) -> None:
        """Register a parameter (a host float64 array); its gradient stays ``None`` until
        a backward."""
        self.params[key] = host_value
        self.grads[key] = None

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

    def state_dict(self) -> dict[str, Any]:
        """Every parameter by qualified name (``"0.w"``, ``"W_qry.b"``), as stored (no copy)."""
        return {name: layer.params[key] for name, layer, key in self.parameters()}

    def config(self) -> dict[str, Any]:
        """The layer's type and constructor arguments: enough to rebuild it. An argument that
        is a layer, or a list of layers (a container's), becomes its config in turn, which
        ``mnn.layers.build`` turns back into layers."""
        return {"type": self.name, "args": {key: _config_of(value)
                                            for key, value in self.args.items()}}

    def zero_grads(self, set_to_none: bool = True) -> None:
        """Forget the accumulated gradients, as ``torch.optim.Optimizer.zero_grad()`` does.

        By default every gradient becomes ``None`` (torch 2.x's ``set_to_none=True``):
        nothing is written now, and the next ``backward`` stores its fresh gradient
        array instead of adding it to zeros, which saves two passes over every
        parameter per step. ``step`` and the optimizers skip a ``None`` gradient.
        With ``set_to_none=False`` the gradients become zero arrays, in place where
        the library allows it.
        """
        for _, layer, key in self.parameters():
            grad = layer.grads[key]
            if set_to_none:
                layer.grads[key] = None
            elif grad is not None and array_api_compat.is_writeable_array(grad):
                grad[...] = 0.0
            else:  # JAX (arrays are immutable), or no buffer yet
                param = layer.params[key]
                layer.grads[key] = array_api_compat.array_namespace(param).zeros_like(param)

    def add_grad(self, key: str, value: Array) -> None:
        """Accumulate ``value`` into ``grads[key]`` (store it when the gradient is ``None``).

        Under an ``SGD(model, lr, fused=True)`` the step is taken now instead,
        ``params[key] -= lr * value``, and no gradient is kept.
        """
        if self.fused_sgd is not None:
            where = self.placement
            self.params[key] = where.backend.add_scaled(self.params[key], -self.fused_sgd.lr,
                                                        value)
        elif self.grads[key] is None:
            self.grads[key] = value
        else:
            self.grads[key] += value  # in place where the library allows; JAX makes a new array

    def add_grad_product(self, key: str, left: Array, right: Array) -> None:
        r"""Accumulate the gradient :math:`L^\top R` (2-D arrays; a sum over their rows).

        A weight gradient of a matrix product has this form (``LinearLayer``,
        Eq. (3): :math:`g^\top x`, summed over the batch). Under a fused SGD the
        learning rate goes into the small factor instead,
        :math:`W \leftarrow W + (-\gamma L)^\top R`: one matrix product and one
        pass over :math:`W`, and the gradient, as large as :math:`W`, is never formed.
        """
        backend = self.placement.backend
        if self.fused_sgd is not None:
            step = backend.transpose_matmul(left * -self.fused_sgd.lr, right)
            self.params[key] = backend.add_scaled(self.params[key], 1.0, step)
        else:
            self.add_grad(key, backend.transpose_matmul(left, right))

    def train(self, mode: bool = True) -> BaseLayer:
        """Set training mode (``mode=True``) or evaluation mode on this layer and every
        sublayer, as ``torch.nn.Module.train`` does; returns the layer.

        Dropout drops entries only in training mode; in evaluation mode it passes its
        inputs through. Every other layer computes the same in both modes.
        """
        if not isinstance(mode, bool):
            raise ValueError(f"{self.name}.train: expected mode to be True or False, got {mode!r}")
        for _, layer in self.named_layers():
            layer.training = mode
        return self

    def eval(self) -> BaseLayer:
        """Evaluation mode on this layer and every sublayer: ``self.train(False)``."""
        return self.train(False)

    def step(self, lr: float = 0.01) -> None:
        """Plain gradient descent, ``p <- p - lr * grad``: ``mnn.optim.SGD(self, lr).step()``.

        The same update path as the optimizer: the adapter of the parameters'
        library makes it (``add_scaled``), in place and in one pass where it can.
        A ``None`` gradient (see ``zero_grads``) leaves its parameter as it is.
        """
        from mnn.optim.sgd import SGD

        SGD(self, lr=lr).step()

    def load_weights(self, state_dict: Mapping[str, Array],
                     config: dict[str, Any] | None = None) -> BaseLayer:
        """Copy ``state_dict``'s arrays into the parameters; returns the model.

        The arrays may come from any backend (or NumPy); they are copied to where
        each parameter lives now (library, device, dtype). With ``config``, it must
        equal ``self.config()``. Anything that does not fit raises one
        ``CheckpointError`` listing every problem, and nothing is loaded.
        """
        if config is not None and config != self.config():
            problems = _config_differences(config, self.config(), "config")
            raise CheckpointError(f"{self.name}: the checkpoint's config does not match the "
                                  f"model:\n  " + "\n  ".join(problems))
        if not isinstance(state_dict, Mapping):
            raise CheckpointError(f"{self.name}: expected a state dict (parameter name -> array), "
                                  f"got an object of type {type(state_dict).__name__}")
        hosts, problems = {}, []
        for name, value in state_dict.items():
            try:
                hosts[name] = backends.to_host(value)
            except TypeError:
                problems.append(f"{name!r} is not an array: got {describe(value)}")
        self.check_state({name: (tuple(host.shape), host.dtype) for name, host in hosts.items()},
                         problems, not_arrays=set(state_dict) - set(hosts))
        owners = {name: (layer, key) for name, layer, key in self.parameters()}
        for name, host in hosts.items():
            layer, key = owners[name]
            layer.params[key] = layer.placement.from_host(np.array(host))
        return self

    def check_state(self, shapes: Mapping[str, tuple[tuple[int, ...], Any]],
                    problems: Sequence[str] = (),
                    not_arrays: set[str] = frozenset()) -> None:
        """Raise one ``CheckpointError`` listing every way a state dict does not fit.

        ``shapes`` maps each name to its ``(shape, numpy dtype)``: what ``load_weights``
        sees of arrays, and what ``mnn.load`` reads from a file's header before it
        reads (or allocates) any tensor. ``problems`` are found already;
        ``not_arrays`` are names whose value was no array (reported in ``problems``).
        """
        expected = {name: tuple(layer.params[key].shape) for name, layer, key in self.parameters()}
        problems = list(problems)
        given = set(shapes) | set(not_arrays)
        problems += [f"missing key {name!r}" for name in expected if name not in given]
        problems += [f"unexpected key {name!r}" for name in given if name not in expected]
        for name, (shape, dtype) in shapes.items():
            if name not in expected:
                continue
            if tuple(shape) != expected[name]:
                problems.append(f"shape mismatch for {name!r}: the checkpoint has "
                                f"{tuple(shape)}, the model {expected[name]}")
            elif np.dtype(dtype).kind != "f":
                problems.append(f"{name!r} is not floating point: got dtype {dtype}")
        if problems:
            raise CheckpointError(f"{self.name}: the state dict does not fit the model "
                                  f"({len(problems)} problems):\n  " + "\n  ".join(problems))

    # --- placement ---------------------------------------------------------------------

    def to(self, xp: Namespace | str | None = None, device: Device | str | None = None,
           dtype: DType | str | None = None) -> BaseLayer:
        """Move every parameter (sublayers included) to a namespace, device and dtype.

        ``xp`` is a namespace, a library module or a backend name (``"numpy"``);
        ``device`` a device object or name (``"cuda:0"``); ``dtype`` a dtype or its
        name (``"float32"``). What is not given stays as it is. Returns the layer.
        """
        for _, layer in self.named_layers():
            here = layer.placement
            backend = here.backend if xp is None else backends.for_namespace(xp)
            if device is None and backend is here.backend:
                device_now = here.device
            else:
                device_now = device
            target = Placement.named(backend, device_now,
                                     dtype_name(here.dtype if dtype is None else dtype))
            layer._move_params(target)
        return self

    def _move_params(self, target: Placement) -> None:
        source = self.placement
        for key in self.params:
            for store in (self.params, self.grads):
                if store[key] is not None:  # a gradient is None until a backward
                    store[key] = target.from_host(source.to_host(store[key]))
        self.placement = target
        self._placed = True
        self._seen = self._labels_seen = None


def _spec(array) -> tuple | None:
    """What a gradient must share with an output: library (the top-level module of its
    type: a NumPy 0-d result is a ``numpy.float64``), dtype, device and shape."""
    shape = getattr(array, "shape", None)
    if shape is None:
        return None
    library = type(array).__module__.partition(".")[0]
    return library, getattr(array, "dtype", None), getattr(array, "device", None), tuple(shape)


def namespace_of(layer: BaseLayer, array: Array, what: str = "inputs") -> Namespace:
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


def _config_of(argument: Any) -> Any:
    """A constructor argument as ``config()`` stores it: layers as their configs."""
    if isinstance(argument, BaseLayer):
        return argument.config()
    if isinstance(argument, list) and all(isinstance(item, BaseLayer) for item in argument):
        return [item.config() for item in argument]  # a new list, even when empty
    return argument
