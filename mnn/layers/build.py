"""``build(config)``: a layer rebuilt from its ``config()``, nested containers included.

A config is ``{"type": <class name>, "args": {<constructor arguments>}}``. The
type is looked up among the registered layers (``mnn.registry.LAYERS``: mnn's
own, and those registered with ``@mnn.register_layer`` or an entry point), and
nowhere else: no ``eval``, no import by name, so a checkpoint cannot run
arbitrary code. An argument that is itself a config (or a list of configs, as in
``SequentialLayers``) is built first. The new layer has fresh initial
parameters; load the trained ones with ``load_weights``.
"""

from __future__ import annotations

import reprlib

from mnn.base import BaseLayer
from mnn.errors import CheckpointError
from mnn.registry import LAYERS

#: How deep configs may nest (containers in containers). Real models need a handful;
#: the bound keeps a hostile file from exhausting the stack.
MAX_DEPTH = 64


def build(config: dict, _depth: int = 0) -> BaseLayer:
    """The layer described by ``config``; ``CheckpointError`` if it is not one mnn knows."""
    if not _is_config(config):
        raise CheckpointError(f"build: expected a layer config {{'type': ..., 'args': {{...}}}}, "
                              f"got {_short(config)}")
    if _depth >= MAX_DEPTH:
        raise CheckpointError(f"build: layer configs nested more than {MAX_DEPTH} deep")
    args = {key: _build_nested(value, _depth + 1) for key, value in config["args"].items()}
    layer = LAYERS.create(config["type"], **args)
    if not isinstance(layer, BaseLayer):
        raise CheckpointError(f"build: {config['type']} is registered as a layer but built "
                              f"an object of type {type(layer).__name__}")
    return layer


def _is_config(value) -> bool:
    return (isinstance(value, dict) and set(value) == {"type", "args"}
            and isinstance(value["type"], str) and isinstance(value["args"], dict))


def _build_nested(value, depth: int):
    if _is_config(value):
        return build(value, depth)
    if isinstance(value, (list, tuple)) and value and all(_is_config(v) for v in value):
        return [build(v, depth) for v in value]
    return value


def _short(value) -> str:
    return reprlib.repr(value)  # bounded in depth and length, whatever the file holds
