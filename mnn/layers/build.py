"""``build(config)``: a layer rebuilt from its ``config()``, nested containers included.

A config is ``{"type": <class name>, "args": {<constructor arguments>}}``. The
type is looked up among the classes that ``mnn.layers`` exports, and nowhere
else: no ``eval``, no import by name, so a checkpoint cannot run arbitrary code.
An argument that is itself a config (or a list of configs, as in
``SequentialLayers``) is built first. The new layer has fresh initial
parameters; load the trained ones with ``load_weights``.
"""

from __future__ import annotations

from mnn.base import BaseLayer
from mnn.errors import CheckpointError


def build(config: dict) -> BaseLayer:
    """The layer described by ``config``; ``CheckpointError`` if it is not one mnn knows."""
    import mnn.layers

    if not _is_config(config):
        raise CheckpointError(f"build: expected a layer config {{'type': ..., 'args': {{...}}}}, "
                              f"got {config!r}")
    known = {name: getattr(mnn.layers, name) for name in mnn.layers.__all__}
    known = {name: cls for name, cls in known.items()
             if isinstance(cls, type) and issubclass(cls, BaseLayer)}
    name = config["type"]
    if name not in known:
        raise CheckpointError(f"build: unknown layer type {name!r}; known layer types: "
                              f"{', '.join(sorted(known))}")
    args = {key: _build_nested(value) for key, value in config["args"].items()}
    try:
        return known[name](**args)
    except TypeError as error:
        raise CheckpointError(f"build: cannot construct {name} from the arguments "
                              f"{config['args']!r}: {error}") from error


def _is_config(value) -> bool:
    return (isinstance(value, dict) and set(value) == {"type", "args"}
            and isinstance(value["type"], str) and isinstance(value["args"], dict))


def _build_nested(value):
    if _is_config(value):
        return build(value)
    if isinstance(value, (list, tuple)) and value and all(_is_config(v) for v in value):
        return [build(v) for v in value]
    return value
