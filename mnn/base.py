"""``BaseLayer``: the contract every layer keeps, and the template that keeps it (docs/design.md).

A layer is one class in one file. It owns ``params`` (name -> array) and ``grads``
(same keys, ``None`` until a backward), and ``buffers`` (name -> array): state that
the forward updates but no gradient reaches, such as BatchNorm's running statistics.
Checkpoints keep both; optimizers update only ``params``. It writes two methods, the
math of its docstring:

* ``compute_forward(xp, inputs, feedbacks, **options)``: the output; it keeps what
  the backward pass needs with ``self.save_for_backward(...)``;
* ``compute_backward(xp, gradients, *saved, **options)``: the vector-Jacobian
  product with the inputs (``*saved`` are the values it saved); it adds the
  parameter gradients with ``self.add_grad(key, value)``. A loss takes no
  gradients: ``compute_backward(xp, *saved)``.

``xp`` is the array API namespace of the inputs; ``options`` are the keyword
arguments of the call (``attention(x, key_padding_mask=m)``). Everyone calls the
template methods ``forward`` and ``backward`` of this class, which run the checks
the layer declared (``expect_inputs``, ``expect_feedbacks``; ``mnn.checks``) before
the math, so every layer checks alike.

Everything else a layer needs comes from this class without a line in another
file: defining the class registers it (``mnn.registry.LAYERS``, so ``mnn.load``
can rebuild it), ``config()`` reads the constructor's arguments back from the
attributes of the same name (``mnn.serialization``), and ``mnn check`` and the
contract tests find its ``example`` for ``gradcheck``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import array_api_compat
import numpy as np

from mnn import backends, serialization
from mnn.backends import Placement, dtype_name
from mnn.checks import Expected, check_gradients, check_inputs, finite_non_negative
from mnn.errors import BackwardBeforeForwardError, BackwardTwiceError, PlacementError, describe
from mnn.registry import LAYERS
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
#: What the last forward left behind for backward; a copy of a layer (pickle, deepcopy)
#: starts without it, and ``to()`` forgets the inputs' signature.
_PER_FORWARD = {"_signature": None, "_xp": None, "_saved": _NOTHING_YET, "_output_spec": None,
                "_cache": None}


class BaseLayer:
    """Base class of every layer: the forward/backward template, parameters and placement."""

    #: A loss layer returns a 0-d array and its ``backward()`` takes no argument.
    is_loss = False
    #: False when nobody needs the gradient with respect to the inputs (the first layer
    #: of a network fed with data): ``backward`` then returns ``None``.
    input_grad = True
    #: Training mode (the default) or evaluation mode: ``train()`` and ``eval()`` set it on
    #: a layer and every sublayer. Only layers that behave differently (Dropout, BatchNorm)
    #: read it.
    training = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every layer class registers itself by name, so a checkpoint can rebuild it."""
        super().__init_subclass__(**kwargs)
        LAYERS.register(cls)

    def __init__(self) -> None:
        serialization.count_new_layer(self)  # a config may not build without bound
        self.params: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}
        self.buffers: dict[str, Any] = {}  # saved in checkpoints, never given a gradient
        self.sublayers: dict[str, BaseLayer] = {}
        self.placement: Placement = HOST
        self.expected = Expected()  # what forward accepts: set with expect_inputs/_feedbacks
        self._placed = False  # set by the first forward (or by to())
        self.__dict__.update(_PER_FORWARD)

    # --- what a layer declares ---------------------------------------------------------

    def expect_inputs(self, *, min_rank: int = 0, max_rank: int | None = None,
                      sizes: Mapping[int, int] | None = None,
                      kind: str = "real floating") -> None:
        """Declare what ``forward`` accepts: rank bounds, the size of some axes
        (``{-1: in_features}``) and the dtype kind (``"real floating"``, ``"integral"``)."""
        self.expected = self.expected._replace(min_rank=min_rank, max_rank=max_rank,
                                               sizes=dict(sizes or {}), kind=kind)

    def expect_feedbacks(self, kind: str, class_axis: int = 1) -> None:
        """Declare the loss's feedbacks: ``"targets"`` (floats like the inputs) or
        ``"labels"`` (integers, the inputs' shape without ``class_axis``)."""
        if kind not in ("targets", "labels"):
            raise ValueError(f"{self.name}: feedbacks are 'targets' or 'labels', got {kind!r}")
        self.expected = self.expected._replace(feedbacks=kind, class_axis=class_axis)

    # --- what a layer writes -----------------------------------------------------------

    def compute_forward(self, xp: Namespace, inputs: Array, feedbacks: Array) -> Array:
        """The layer's output for checked ``inputs`` (and a loss's ``feedbacks``), computed in
        the namespace ``xp``; keeps what backward needs with ``save_for_backward``. A layer
        that takes per-call options adds them as keyword parameters (``key_padding_mask=None``):
        the template passes a call's keyword arguments on."""
        raise NotImplementedError(f"{self.name} does not define compute_forward")

    def compute_backward(self, xp: Namespace, *gradients_and_saved: Any) -> Any:
        """The gradient with respect to the inputs, from the checked ``gradients`` of the
        output and the values the forward saved (a loss gets no gradients); adds the
        parameter gradients with ``add_grad``. Keyword arguments of ``backward`` arrive as
        keyword parameters, as in ``compute_forward``."""
        raise NotImplementedError(f"{self.name} does not define compute_backward")

    # --- the template ------------------------------------------------------------------

    def __call__(self, inputs: Array, feedbacks: Array = None, **options: Any) -> Array:
        return self.forward(inputs, feedbacks, **options)

    def forward(self, inputs: Array, feedbacks: Array = None, **options: Any) -> Array:
        """Check ``inputs`` (and a loss's ``feedbacks``), then run ``compute_forward`` with
        the call's keyword ``options``."""
        xp = self.check_inputs(inputs, feedbacks)
        self._saved = _NOTHING_YET
        outputs = self.compute_forward(xp, inputs, feedbacks, **options)
        if self._saved is _NOTHING_YET:  # the math keeps nothing: backward may still run once
            self._saved = ()
        self._xp, self._output_spec = xp, None if self.is_loss else _spec(outputs)
        return outputs

    def backward(self, gradients: Array = None, *, retain_graph: bool = False,
                 **options: Any) -> Any:
        """The gradient with respect to the last forward's inputs (``None`` when
        ``input_grad`` is False); parameter gradients are added into ``grads``.

        As in torch, what the forward kept is used up by one backward, unless
        ``retain_graph=True`` keeps it for another; it holds for every sublayer
        whose backward this one runs. Keyword ``options`` reach ``compute_backward``.
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
            return self.compute_backward(*arguments, **options)
        self._saved = saved  # kept for another backward, here and in every sublayer's
        token = _RETAINING.set(True)
        try:
            return self.compute_backward(*arguments, **options)
        finally:
            _RETAINING.reset(token)

    def cached(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per ``key`` and kept: what a layer builds from the shape
        and device of its inputs alone (the classes ``arange(n)`` of a loss, a causal mask).
        A copy of the layer starts without them."""
        if self._cache is None:
            self._cache = {}
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def save_for_backward(self, *values: Any) -> None:
        """Keep ``values`` for the next ``backward``; they arrive as its ``*saved``."""
        self._saved = values

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

    # --- the checks (mnn.checks), paid once per signature of the inputs ---------------

    def check_inputs(self, inputs: Array, feedbacks: Array = None) -> Namespace:
        """Run the declared checks on ``inputs`` (and ``feedbacks``); return their namespace.

        The checks depend only on the arrays' type, dtype, device and shape (the
        signature): a forward on arrays like the last ones skips them. Containers
        override this: their layers check their own inputs.
        """
        signature = (_signature(inputs), _signature(feedbacks))
        if signature != self._signature:
            xp = check_inputs(self, self.expected, inputs, feedbacks)
            self._adopt(inputs)
            self._signature, self._xp = signature, xp
        return self._xp

    def check_gradients(self, gradients: Array) -> None:
        """``gradients`` match the last forward's output: library, dtype, device and shape."""
        check_gradients(self, self._output_spec, _spec(gradients), gradients)

    def _adopt(self, inputs: Array) -> None:
        """The first forward moves the parameters to the library and device of the inputs
        (and their dtype, when they are floating point); later ones check they are there."""
        if not self.params and not self.buffers:
            return
        arrived = Placement.of(inputs)
        if self.expected.kind != "real floating":  # token ids: the parameters keep their dtype
            arrived = arrived.with_dtype(dtype_name(self.placement.dtype))
        if not self._placed:
            self._move_params(arrived)
        elif arrived != self.placement:
            raise PlacementError(
                f"{self.name}: its parameters are {self.placement}, but the inputs are "
                f"{arrived}. Move the layer first with layer.to(xp=..., device=..., dtype=...) "
                f"(here: .to(xp={arrived.backend.name!r}, "
                f"device={arrived.backend.device_name(arrived.device)!r}, "
                f"dtype={dtype_name(arrived.dtype)!r})), or move the inputs.")

    # --- parameters and their gradients ------------------------------------------------

    def __getstate__(self) -> dict:
        """For ``pickle`` and ``copy.deepcopy``: everything but what the last forward left
        for backward (and the namespace module, which does not pickle). The copy has the
        parameters, gradients and placement; its first backward needs a forward first."""
        return {**self.__dict__, **_PER_FORWARD}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in serialization.constructor_arguments(self).items())
        return f"{self.name}({args})"

    @property
    def name(self) -> str:
        """The layer's class name, as messages and configs say it."""
        return type(self).__name__

    def add_param(self, key: str, host_value: np.ndarray) -> None:
        """Register a parameter (a host float64 array); its gradient stays ``None`` until
        a backward."""
        self.params[key] = host_value
        self.grads[key] = None

    def add_buffer(self, key: str, host_value: np.ndarray) -> None:
        """Register a buffer (a host float64 array): state that ``state_dict``, checkpoints
        and ``to()`` carry like a parameter, but that has no gradient and that optimizers
        leave alone (BatchNorm's running mean and variance)."""
        if key in self.params:
            raise ValueError(f"{self.name}: {key!r} is a parameter already; a buffer needs "
                             f"a name of its own")
        self.buffers[key] = host_value

    def add_grad(self, key: str, value: Array) -> None:
        """Accumulate ``value`` into ``grads[key]`` (store it when the gradient is ``None``)."""
        if self.grads[key] is None:
            self.grads[key] = value
        else:
            self.grads[key] += value  # in place where the library allows; JAX makes a new array

    def named_layers(self, prefix: str = "") -> list[tuple[str, BaseLayer]]:
        """This layer and every sublayer, depth first, with the prefix of their parameter
        names (``""``, ``"0."``, ``"W_qry."``)."""
        found, stack = [], [(prefix, self)]
        while stack:  # a stack, not recursion: a training step walks this twice
            name, layer = stack.pop()
            found.append((name, layer))
            stack.extend((f"{name}{key}.", sub) for key, sub in reversed(layer.sublayers.items()))
        return found

    def parameters(self) -> list[tuple[str, BaseLayer, str]]:
        """``(qualified_name, owning_layer, key)`` for every parameter, sublayers included."""
        return [(prefix + key, layer, key) for prefix, layer in self.named_layers()
                for key in layer.params]

    def state_dict(self) -> dict[str, Any]:
        """Every parameter and buffer by qualified name (``"0.w"``, ``"W_qry.b"``,
        ``"1.running_mean"``), as stored (no copy)."""
        slots = serialization.state_slots(self)
        return {name: store[key] for name, (_, store, key) in slots.items()}

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

    def step(self, lr: float = 0.01) -> None:
        """Plain gradient descent on every parameter, ``p <- p - lr * grad``.

        The adapter of the parameters' library makes the update (``add_scaled``), in
        place and in one pass where it can; ``mnn.optim.SGD`` ends in the same call.
        A ``None`` gradient (see ``zero_grads``) leaves its parameter as it is.
        """
        lr = finite_non_negative(self.name, "lr", lr)
        for _, layer, key in self.parameters():
            grad = layer.grads[key]
            if grad is not None:
                layer.params[key] = layer.placement.backend.add_scaled(layer.params[key], -lr,
                                                                       grad)

    def train(self, mode: bool = True) -> BaseLayer:
        """Set training mode (``mode=True``) or evaluation mode on this layer and every
        sublayer, as ``torch.nn.Module.train`` does; returns the layer.

        Dropout drops entries only in training mode; in evaluation mode it passes its
        inputs through. BatchNorm normalises with the batch's statistics in training mode
        and with its running statistics in evaluation mode. Every other layer computes the
        same in both modes.
        """
        if not isinstance(mode, bool):
            raise ValueError(f"{self.name}.train: expected mode to be True or False, got {mode!r}")
        for _, layer in self.named_layers():
            layer.training = mode
        return self

    def eval(self) -> BaseLayer:
        """Evaluation mode on this layer and every sublayer: ``self.train(False)``."""
        return self.train(False)

    # --- configs and weights (mnn.serialization) ---------------------------------------

    def config(self) -> dict[str, Any]:
        """The layer's type and constructor arguments, read back from the attributes of
        the same name: enough to rebuild it (``mnn.serialization.build``)."""
        return serialization.config(self)

    def load_weights(self, state_dict: Mapping[str, Array],
                     config: dict[str, Any] | None = None) -> BaseLayer:
        """Copy ``state_dict``'s arrays into the parameters and buffers; returns the model.

        The arrays may come from any backend (or NumPy); they are copied to where
        each parameter lives now (library, device, dtype). With ``config``, it must
        describe this model. Anything that does not fit raises one
        ``CheckpointError`` listing every problem, and nothing is loaded.
        """
        return serialization.load_weights(self, state_dict, config)

    def check_state(self, shapes: Mapping[str, tuple[tuple[int, ...], Any]],
                    problems: Sequence[str] = ()) -> None:
        """Raise one ``CheckpointError`` listing every way the ``(shape, dtype)`` of each
        named array does not fit this model (``mnn.serialization.check_state``)."""
        serialization.check_state(self, shapes, problems)

    # --- placement ---------------------------------------------------------------------

    def to(self, xp: Namespace | str | None = None, device: Device | str | None = None,
           dtype: DType | str | None = None) -> BaseLayer:
        """Move every parameter and buffer (sublayers included) to a namespace, device and
        dtype.

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
        for store in (self.params, self.grads, self.buffers):
            for key, value in store.items():
                if value is not None:  # a gradient is None until a backward
                    store[key] = target.from_host(source.to_host(value))
        self.placement = target
        self._placed = True
        self._signature = None


def _signature(array) -> tuple | None:
    """What the input checks depend on: type, dtype, device and shape (None for None)."""
    if array is None:
        return None
    return (type(array), getattr(array, "dtype", None), getattr(array, "device", None),
            getattr(array, "shape", None))


def _spec(array) -> tuple | None:
    """What a gradient must share with an output: library (the top-level module of its
    type: a NumPy 0-d result is a ``numpy.float64``), dtype, device and shape."""
    shape = getattr(array, "shape", None)
    if shape is None:
        return None
    library = type(array).__module__.partition(".")[0]
    return library, getattr(array, "dtype", None), getattr(array, "device", None), tuple(shape)


#: What a layer's ``example(rng)`` returns: a small layer, its host (NumPy) inputs (a
#: tuple for layers that take several) and a loss's feedbacks, or None.
Example = tuple[BaseLayer, Any, Any]
