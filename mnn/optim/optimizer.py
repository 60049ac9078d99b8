r"""``Optimizer``: what every optimizer shares. Walking the parameters, keeping state, checkpoints.

An optimizer updates a model's parameters from the gradients that ``backward``
left in ``grads``. The rule differs between optimizers (``update``); everything
around it is the same and lives here:

* ``step()`` walks ``model.parameters()``, which yields ``(name, layer, key)``
  for every parameter (``"0.w"``, ``"2.b"``), and assigns the array that
  ``update`` returns into ``layer.params[key]``. SGD's final update goes through
  the adapter's ``add_scaled``, in place where the library's arrays are mutable
  (a new array on JAX); Adam computes new arrays. Either way the same code runs
  on immutable arrays (JAX) and under array-api-strict.
* Per-parameter state (momentum buffers, moment estimates, step counts) lives in
  ``self.state[name]``, a dict. Its arrays are created lazily by the first
  ``step``, from the parameter itself (``xp.zeros_like(param)``), so they are in
  the parameter's namespace, device and dtype: the model's first ``forward``
  moved the parameters there, and the state follows. State that arrives from
  elsewhere (a checkpoint on the host, a model moved with ``to()``) is moved to
  where its parameter lives at the next ``step``.
* ``state_dict()`` / ``load_state_dict()`` and ``config()`` have the form of
  ``torch.optim``'s and of the layers' ``config()``, so ``mnn.save`` can store an
  optimizer and ``build(model, config)`` can rebuild it without running code
  from the file.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any

from mnn.backends import Placement, to_host
from mnn.base import BaseLayer
from mnn.errors import CheckpointError, describe, listing, plural
from mnn.registry import OPTIMIZERS
from mnn.types import Array


class Optimizer:
    """Base class: subclasses name their ``hyperparameters``, check them, and write ``update``."""

    #: Names of the constructor's hyperparameters, in order; ``config()`` stores them.
    hyperparameters: tuple[str, ...] = ()

    def __init__(self, model: BaseLayer, **hyperparameters: Any) -> None:
        if not isinstance(model, BaseLayer):
            raise TypeError(f"{type(self).__name__}: expected a model (a BaseLayer, e.g. "
                            f"SequentialLayers), got {describe(model)}")
        self.model = model
        self.state: dict[str, dict[str, object]] = {}
        self._set_hyperparameters(hyperparameters)

    @property
    def name(self) -> str:
        """The optimizer's class name, as messages and configs say it."""
        return type(self).__name__

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config()["args"].items())
        return f"{self.name}({args})"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every optimizer class registers itself by name, so a checkpoint can rebuild it."""
        super().__init_subclass__(**kwargs)
        OPTIMIZERS.register(cls)

    # --- what subclasses write ---------------------------------------------------------

    def check_hyperparameters(self) -> None:
        """Raise ``ValueError`` for hyperparameters that ``torch.optim`` would refuse."""

    def state_keys(self) -> tuple[str, ...]:
        """The entries of one parameter's state once it has taken a step."""
        return ()

    def update(self, where: Placement, param: Array, grad: Array,
               state: dict[str, Any]) -> Array:
        """The new value of ``param`` (updated in place or a new array); may add to or replace
        entries of ``state``. ``where`` is the parameter's ``Placement``: ``where.xp`` its
        namespace, ``where.backend`` its adapter."""
        raise NotImplementedError

    # --- training ------------------------------------------------------------------------

    def step(self) -> None:
        """One update of every parameter from the gradients in ``grads``."""
        for name, layer, key in self.model.parameters():
            if layer.grads[key] is None:  # no gradient since zero_grad(set_to_none=True)
                continue
            param = layer.params[key]
            state = self.state.setdefault(name, {})
            for entry, value in state.items():
                state[entry] = placed_like(value, param, layer.placement)
            layer.params[key] = self.update(layer.placement, param, layer.grads[key], state)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients before the next ``backward`` (``model.zero_grads()``).

        As in torch 2.x they become ``None`` by default, and the next ``backward``
        stores its gradients without adding them to zeros; ``set_to_none=False``
        sets them to zero arrays instead.
        """
        self.model.zero_grads(set_to_none)

    # --- checkpoints ---------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The optimizer's type and hyperparameters: enough to rebuild it for a model."""
        return {"type": self.name, "args": {k: getattr(self, k) for k in self.hyperparameters}}

    def state_dict(self) -> dict[str, Any]:
        """``config()`` plus ``"state"``: each parameter's state by qualified name (no copies).

        State arrays are never changed in place, so the arrays in a state dict keep
        the values they had when it was taken.
        """
        return {**self.config(), "state": {name: dict(s) for name, s in self.state.items()}}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Take hyperparameters and state from ``state_dict`` (arrays from any backend).

        Anything that does not fit the model raises one ``CheckpointError`` that lists
        every problem: another optimizer type, unknown hyperparameters, state for
        parameters the model does not have, missing or unexpected state entries, and
        arrays whose shapes differ from their parameters'.
        """
        problems = []
        if state_dict.get("type") != self.name:
            problems.append(f"the state dict is for {state_dict.get('type')!r}, not {self.name!r}")
        before, args = self.config()["args"], state_dict.get("args", {})
        problems += [f"unexpected hyperparameter {k!r}" for k in args
                     if k not in self.hyperparameters]
        if not problems:  # the state entries expected depend on the new hyperparameters
            try:
                self._set_hyperparameters({**before, **args})
            except (TypeError, ValueError) as error:
                problems.append(f"invalid hyperparameters {args!r}: {error}")
        params = {name: layer.params[key] for name, layer, key in self.model.parameters()}
        for name, entries in state_dict.get("state", {}).items():
            if name not in params:
                problems.append(f"state for {name!r}, which is not a parameter of the model")
                continue
            problems += self._entry_problems(name, entries, params[name])
        if problems:
            self._set_hyperparameters(before)
            raise CheckpointError(f"{self.name}: the state dict does not fit the optimizer and "
                                  f"its model ({plural(len(problems), 'problem')}):"
                                  + listing(problems))
        self.state = {name: dict(entries) for name, entries in state_dict.get("state", {}).items()}

    def _entry_problems(self, name: str, entries: dict, param) -> list[str]:
        if not entries:  # a parameter that has not taken a step yet
            return []
        expected = self.state_keys()
        problems = [f"missing state {k!r} for {name!r}" for k in expected if k not in entries]
        problems += [f"unexpected state {k!r} for {name!r}" for k in entries if k not in expected]
        for entry, value in entries.items():
            if entry not in expected:
                continue
            if hasattr(value, "shape"):
                if tuple(value.shape) != tuple(param.shape):
                    problems.append(f"shape mismatch for {name!r} {entry!r}: the state has "
                                    f"{tuple(value.shape)}, the parameter {tuple(param.shape)}")
                elif "float" not in str(value.dtype):
                    problems.append(f"state {entry!r} for {name!r} is not floating point: got "
                                    f"{describe(value)}")
            elif not isinstance(value, int) or isinstance(value, bool):
                problems.append(f"state {entry!r} for {name!r} is neither an array nor an int: "
                                f"got {describe(value)}")
            elif value < 1:  # integer state counts steps, and state exists after the first
                problems.append(f"state {entry!r} for {name!r} counts steps and must be at "
                                f"least 1, got {value}")
        return problems

    def _set_hyperparameters(self, values: dict) -> None:
        missing = [k for k in self.hyperparameters if k not in values]
        if missing:
            raise TypeError(f"{self.name}: missing hyperparameters {missing}")
        for key in self.hyperparameters:
            setattr(self, key, values[key])
        self.check_hyperparameters()


def placed_like(value: Any, param: Any, where: Placement) -> Any:
    """``value`` moved to ``where``, the ``Placement`` of ``param``, if it is an array that
    lives elsewhere (state from a checkpoint on the host, or from before ``model.to(...)``);
    scalars pass. Asked every step of every state array, so the usual answer is quick."""
    if not hasattr(value, "shape"):
        return value
    if (type(value) is type(param) and value.dtype == param.dtype  # the usual case: in place
            and getattr(value, "device", None) == getattr(param, "device", None)):
        return value
    if Placement.of(value) == where:
        return value
    return where.from_host(to_host(value), dtype=where.dtype)


def build(model: BaseLayer, config: Mapping[str, Any]) -> Optimizer:
    """The optimizer that ``config`` describes, for ``model``; ``CheckpointError`` if unknown.

    The type is looked up among the registered optimizers (``mnn.registry.OPTIMIZERS``)
    and nowhere else: no ``eval``, no import by name, so a checkpoint cannot run code.
    """
    if not (isinstance(config, dict) and isinstance(config.get("type"), str)
            and isinstance(config.get("args"), dict)):
        raise CheckpointError(f"build: expected an optimizer config {{'type': ..., 'args': "
                              f"{{...}}}}, got {reprlib.repr(config)}")
    return OPTIMIZERS.create(config["type"], model, **config["args"])
