"""The types a checkpoint may name: layers and optimizers, each in one ``Registry``.

A checkpoint stores a model as ``{"type": <class name>, "args": {...}}``. Loading
it looks the name up here and nowhere else: no ``eval``, no import of a name the
file chose, so a checkpoint cannot run arbitrary code. Every subclass of
``BaseLayer`` and of ``Optimizer`` registers itself when its class is defined
(``__init_subclass__``), mnn's own and yours alike; and a package can declare its
classes so that they are found before anyone imported them:

* with an entry point in the group ``mnn.layers`` (or
  ``mnn.optimizers``) whose name is the class name, e.g. in its pyproject.toml:
  ``[project.entry-points."mnn.layers"] MyLayer = "my_package.layers:MyLayer"``.
  Entry points are read only when a name is not registered yet; a class that a
  package declares is imported then, by the package's own declaration.
"""

from __future__ import annotations

import reprlib
import threading
from typing import Any, TypeVar

from mnn.errors import CheckpointError

T = TypeVar("T", bound=type)


class Registry:
    """Classes by name, for one kind of thing a config can describe."""

    def __init__(self, kind: str, entry_point_group: str) -> None:
        self.kind = kind  # "layer", "optimizer": for messages
        self.entry_point_group = entry_point_group
        self._classes: dict[str, type] = {}
        self._lock = threading.Lock()

    def register(self, cls: T) -> T:
        """Make ``cls`` buildable from a config that names it; returns ``cls`` (a decorator)."""
        if not isinstance(cls, type):
            raise TypeError(f"register_{self.kind}: expected a class, got {cls!r}")
        with self._lock:
            self._classes[cls.__name__] = cls
        return cls

    def known(self) -> list[str]:
        with self._lock:
            return sorted(self._classes)

    def get(self, name: str) -> type:
        """The class registered as ``name`` (entry points are read if needed)."""
        with self._lock:
            found = self._classes.get(name)
        if found is None:
            self._load_entry_point(name)
            with self._lock:
                found = self._classes.get(name)
        if found is None:
            raise CheckpointError(
                f"build: unknown {self.kind} type {name!r}; known {self.kind} types: "
                f"{', '.join(self.known())}. A class of your own is known once it is "
                f"defined: import the module that defines it before loading, or declare it "
                f"in the entry point group {self.entry_point_group!r}")
        return found

    def create(self, name: str, *args: Any, **kwargs: Any):
        """``cls(*args, **kwargs)`` for the class called ``name``; what the constructor
        refuses becomes a ``CheckpointError`` naming the type and the arguments."""
        cls = self.get(name)
        try:
            return cls(*args, **kwargs)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"build: cannot construct {name} from the arguments "
                                  f"{reprlib.repr(kwargs)}: {error}") from error

    def _load_entry_point(self, name: str) -> None:
        from importlib.metadata import entry_points

        for point in entry_points(group=self.entry_point_group, name=name):
            try:
                self.register(point.load())
            except Exception as error:  # noqa: BLE001  (a broken plugin is named, not raised raw)
                raise CheckpointError(f"build: the entry point {name} = {point.value} in the "
                                      f"group {self.entry_point_group!r} failed to load: "
                                      f"{type(error).__name__}: {error}") from error


LAYERS = Registry("layer", "mnn.layers")
OPTIMIZERS = Registry("optimizer", "mnn.optimizers")
register_layer = LAYERS.register
register_optimizer = OPTIMIZERS.register
