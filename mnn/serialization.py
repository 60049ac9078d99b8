"""Configs and weights: what rebuilds a model, and what fills it. One module for both.

A layer's config is ``{"type": <class name>, "args": {<constructor arguments>}}``.
The arguments are read from the constructor's signature, as scikit-learn's
``get_params`` does: each parameter of ``__init__`` is read back from the
attribute of the same name, which the constructor sets (``LinearLayer(4, 3)``
keeps ``self.in_features = 4``). ``rng`` is left out: it is where the initial
weights come from, not what the model is. An argument that is a layer, or a list
of layers (a container's), becomes its config in turn.

``build(config)`` is the reverse: the type is looked up among the registered
layers (``mnn.registry.LAYERS``: every ``BaseLayer`` subclass registers itself
when it is defined, and packages add theirs through an entry point) and nowhere
else: no ``eval``, no import by name, so a checkpoint cannot run arbitrary code.
The new layer has fresh initial parameters; ``load_weights`` fills them.

A config is untrusted input (``mnn.load`` reads it from a file), and a few bytes
can ask for a lot: ``{"type": "GPT", "args": {"layers": 1000000000, ...}}``. So
``build`` bounds the whole structure, not only each argument: configs nest at
most ``MAX_DEPTH`` deep, and one build creates at most ``MAX_LAYERS`` layers,
sublayers included (every ``BaseLayer.__init__`` counts itself through
``count_new_layer``); past that it stops with a ``CheckpointError`` before the
next layer is made.

``mnn.checkpoint`` (files), ``BaseLayer`` (``config``, ``load_weights``,
``check_state``) and ``mnn.sklearn`` (pickling, early stopping) all go through
this module.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import reprlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mnn import backends
from mnn.backends import Placement
from mnn.errors import CheckpointError, describe, listing, plural
from mnn.registry import LAYERS

if TYPE_CHECKING:
    from mnn.base import BaseLayer

#: How deep configs may nest (containers in containers). Real models need a handful;
#: the bound keeps a hostile file from exhausting the stack.
MAX_DEPTH = 64
#: How many layers one ``build`` may create, sublayers included. mnn's largest models have
#: a few hundred (a transformer block is 17); the bound stops a small file that asks for a
#: billion blocks before it fills memory with them.
MAX_LAYERS = 10_000
#: Constructor arguments that are not part of a config: where random draws come from.
NOT_CONFIG = frozenset({"rng"})
#: How many more layers the running ``build`` may create (a one-item list, counted down
#: by ``count_new_layer``); None outside ``build``.
_layers_left: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "mnn_layers_left", default=None)


# --- configs --------------------------------------------------------------------------------


@functools.cache
def constructor_parameters(cls: type) -> tuple[inspect.Parameter, ...]:
    """The parameters of ``cls.__init__`` that a config records, in order: the named ones
    (a ``*shape`` is the positional spelling of a keyword that the config records)."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # not self
    return tuple(p for p in parameters if p.name not in NOT_CONFIG
                 and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


def constructor_arguments(layer: BaseLayer) -> dict[str, Any]:
    """Each constructor argument of ``layer``, read from the attribute of the same name."""
    arguments = {}
    for parameter in constructor_parameters(type(layer)):
        try:
            arguments[parameter.name] = getattr(layer, parameter.name)
        except AttributeError:
            raise AttributeError(
                f"{layer.name}: its config reads the constructor argument {parameter.name!r} "
                f"back from self.{parameter.name}, which __init__ did not set; keep each "
                f"argument as an attribute of the same name") from None
    return arguments


def config(layer: BaseLayer) -> dict[str, Any]:
    """The layer's type and constructor arguments: enough to rebuild it with ``build``."""
    return {"type": layer.name, "args": {key: _config_of(value) for key, value
                                         in constructor_arguments(layer).items()}}


def _config_of(argument: Any) -> Any:
    """A constructor argument as a config stores it: a layer, or a list of layers, as
    their configs."""
    if _is_layer(argument):
        return config(argument)
    if isinstance(argument, (list, tuple)) and all(_is_layer(item) for item in argument):
        return [config(item) for item in argument]  # a new list, even when empty
    return argument


def _is_layer(value: Any) -> bool:
    """A layer, told by what this module uses of one: its parameters and its config."""
    return callable(getattr(value, "parameters", None)) and callable(getattr(value, "config",
                                                                             None))


def build(description: Any) -> BaseLayer:
    """The layer described by a config; ``CheckpointError`` if it is not one mnn knows, or
    if it would nest deeper than ``MAX_DEPTH`` or create more than ``MAX_LAYERS`` layers."""
    if _layers_left.get() is not None:  # inside a constructor that a build runs
        return _build(description, 0)
    token = _layers_left.set([MAX_LAYERS])
    try:
        return _build(description, 0)
    finally:
        _layers_left.reset(token)


def count_new_layer(layer: BaseLayer) -> None:
    """Count ``layer``, which is being constructed, against the ``MAX_LAYERS`` of the
    running ``build`` (outside a build, nothing is counted). ``BaseLayer.__init__``
    calls this, so sublayers that a constructor makes count too."""
    left = _layers_left.get()
    if left is None:
        return
    left[0] -= 1
    if left[0] < 0:
        raise CheckpointError(
            f"build: the config creates more than {MAX_LAYERS} layers (sublayers included; "
            f"the next one was a {type(layer).__name__}); mnn builds at most "
            f"mnn.serialization.MAX_LAYERS layers from one config")


def _build(description: Any, depth: int) -> BaseLayer:
    if not _is_config(description):
        raise CheckpointError(f"build: expected a layer config {{'type': ..., 'args': {{...}}}}, "
                              f"got {reprlib.repr(description)}")
    if depth >= MAX_DEPTH:
        raise CheckpointError(f"build: layer configs nested more than {MAX_DEPTH} deep")
    args = {key: _build_nested(value, depth + 1) for key, value in description["args"].items()}
    layer = LAYERS.create(description["type"], **args)
    if not _is_layer(layer):
        raise CheckpointError(f"build: {description['type']} is registered as a layer but "
                              f"built an object of type {type(layer).__name__}")
    return layer


def _is_config(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {"type", "args"}
            and isinstance(value["type"], str) and isinstance(value["args"], dict))


def _build_nested(value: Any, depth: int) -> Any:
    if _is_config(value):
        return _build(value, depth)
    if isinstance(value, (list, tuple)) and value and all(_is_config(v) for v in value):
        return [_build(v, depth) for v in value]
    return value


def with_defaults(description: Any) -> Any:
    """A config with every constructor argument it leaves out set to its default, nested
    configs included: a config written before a layer grew a keyword argument still
    describes the same layer."""
    if isinstance(description, list):
        return [with_defaults(item) for item in description]
    if not _is_config(description):
        return description
    try:
        cls = LAYERS.get(description["type"])
    except CheckpointError:
        return description
    args = {key: with_defaults(value) for key, value in description["args"].items()}
    for parameter in constructor_parameters(cls):
        if parameter.name not in args and parameter.default is not parameter.empty:
            args[parameter.name] = _config_of(parameter.default)
    return {"type": description["type"], "args": args}


def differences(given: Any, expected: Any, path: str = "config") -> list[str]:
    """Every place where two configs (nested dicts and lists) differ, by path."""
    if isinstance(given, dict) and isinstance(expected, dict):
        out = [f"{path}: unexpected key {k!r}" for k in given if k not in expected]
        out += [f"{path}: missing key {k!r}" for k in expected if k not in given]
        for k in expected:
            if k in given:
                out += differences(given[k], expected[k], f"{path}[{k!r}]")
        return out
    if isinstance(given, (list, tuple)) and isinstance(expected, (list, tuple)):
        out = [] if len(given) == len(expected) else [
            f"{path}: the checkpoint's list has length {len(given)}, the model's "
            f"{len(expected)}"]
        for i, (g, e) in enumerate(zip(given, expected, strict=False)):
            out += differences(g, e, f"{path}[{i}]")
        return out
    if given == expected:
        return []
    return [f"{path}: the checkpoint has {reprlib.repr(given)}, the model "
            f"{reprlib.repr(expected)}"]


# --- weights --------------------------------------------------------------------------------


def state_slots(model: BaseLayer) -> dict[str, tuple[BaseLayer, dict[str, Any], str]]:
    """Where each entry of ``model``'s state dict lives: qualified name -> (owning layer,
    the dict that holds it, its key there). The state is every parameter and every buffer
    (``BaseLayer.add_buffer``), sublayers included."""
    slots = {}
    for prefix, layer in model.named_layers():
        for store in (layer.params, layer.buffers):
            slots.update((prefix + key, (layer, store, key)) for key in store)
    return slots


def check_state(model: BaseLayer, shapes: Mapping[str, tuple[tuple[int, ...], Any]],
                problems: Sequence[str] = ()) -> None:
    """Raise one ``CheckpointError`` that counts every way a state dict does not fit
    ``model`` and lists the first ``mnn.errors.MAX_LISTED``.

    ``shapes`` maps each name to its ``(shape, numpy dtype)``: what ``load_weights``
    sees of arrays, and what ``mnn.load`` reads from a file's header before it reads
    (or allocates) any tensor. ``problems`` were found already (names whose value is
    no array are reported there, and are given in ``shapes`` as ``None``).
    """
    expected = {name: tuple(store[key].shape)
                for name, (_, store, key) in state_slots(model).items()}
    problems = list(problems)
    problems += [f"missing key {name!r}" for name in expected if name not in shapes]
    problems += [f"unexpected key {name!r}" for name in shapes if name not in expected]
    for name, shape_and_dtype in shapes.items():
        if name not in expected or shape_and_dtype is None:
            continue
        shape, dtype = shape_and_dtype
        if tuple(shape) != expected[name]:
            problems.append(f"shape mismatch for {name!r}: the checkpoint has "
                            f"{tuple(shape)}, the model {expected[name]}")
        elif np.dtype(dtype).kind != "f":
            problems.append(f"{name!r} is not floating point: got dtype {dtype}")
    if problems:
        raise CheckpointError(f"{model.name}: the state dict does not fit the model "
                              f"({plural(len(problems), 'problem')}):" + listing(problems))


def load_weights(model: BaseLayer, state_dict: Mapping[str, Any],
                 description: dict[str, Any] | None = None) -> BaseLayer:
    """Copy ``state_dict``'s arrays into ``model``'s parameters and buffers; returns the model.

    An array that lives where its parameter lives (library, device, dtype) is copied
    there directly; any other goes through the host. With ``description``, the
    model's config must match it (arguments it leaves out count as their defaults).
    Anything that does not fit raises one ``CheckpointError`` that counts every problem
    (and lists the first few), and nothing is loaded.
    """
    if description is not None:
        found = differences(with_defaults(description), with_defaults(config(model)))
        if found:
            raise CheckpointError(f"{model.name}: the checkpoint's config does not match the "
                                  f"model ({plural(len(found), 'difference')}):"
                                  + listing(found))
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{model.name}: expected a state dict (parameter name -> array), "
                              f"got an object of type {type(state_dict).__name__}")
    slots = state_slots(model)
    shapes: dict[str, Any] = {}
    problems = []
    for name, value in state_dict.items():
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):
            problems.append(f"{name!r} is not an array: got {describe(value)}")
            shapes[name] = None
            continue
        try:
            shapes[name] = (tuple(value.shape), np.dtype(backends.dtype_name(value.dtype)))
        except TypeError:  # a dtype NumPy has no name for (bfloat16)
            problems.append(f"{name!r} has dtype {value.dtype}, which mnn does not keep")
            shapes[name] = None
    check_state(model, shapes, problems)
    for name, value in state_dict.items():
        layer, store, key = slots[name]
        store[key] = _copy_to(layer.placement, value)
    return model


def _copy_to(where: Placement, array: Any) -> Any:
    """A copy of ``array`` at ``where``: directly when it is there already, else via the host."""
    try:
        there = Placement.of(array) == where
    except TypeError:  # an array type that no adapter owns
        there = False
    if there:
        return where.xp.asarray(array, copy=True)
    return where.from_host(np.array(backends.to_host(array)))
