r"""A chain of layers, run one after the other: the container for feed-forward networks."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mnn import backends
from mnn.base import BaseLayer
from mnn.errors import CheckpointError, describe


class SequentialLayers(BaseLayer):
    r"""The composition :math:`f = f_L \circ \dots \circ f_2 \circ f_1` of its layers.

    Forward
    -------
    With :math:`x_0` the inputs,

    .. math::
        x_l = f_l(x_{l-1}), \qquad l = 1, \dots, L, \qquad \text{output } x_L.  \qquad (1)

    The targets go to every layer as ``feedbacks``; only a loss layer uses them.

    Backward
    --------
    The Jacobian of a composition is the product of the layers' Jacobians (chain rule):

    .. math::
        \frac{\partial x_L}{\partial x_0} = J_L J_{L-1} \cdots J_1, \qquad
        J_l = \frac{\partial x_l}{\partial x_{l-1}}.

    Multiplying the cotangent :math:`g_L = \partial \ell / \partial x_L` in from
    the left, one factor at a time, never forms any product of Jacobians: each
    step is one layer's own vector-Jacobian product,

    .. math::
        g_{l-1} = g_l J_l = \texttt{layers[l].backward}(g_l), \qquad l = L, \dots, 1,  \qquad (2)

    and each layer adds its parameter gradients on the way. If the last layer is
    a loss, :math:`x_L = \ell` is a scalar and :math:`g_L = 1`: its ``backward()``
    takes no argument, and so does this container's.

    Parameters are named ``"<index>.<name>"`` (``"0.w"``, ``"2.b"``), as in
    ``torch.nn.Sequential``, so ``state_dict()`` and ``load_weights()`` line up.
    """

    def __init__(self, layers):
        super().__init__()
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, BaseLayer):
                raise TypeError(f"{self.name}: expected layers (BaseLayer instances), got "
                                f"an object of type {type(layer).__name__} at position {i}")
        self.sublayers = {str(i): layer for i, layer in enumerate(self.layers)}
        self.args = {"layers": self.layers}

    @property
    def input_grad(self) -> bool:
        """Whether ``backward`` computes the gradient with respect to the inputs.

        Set it to False when the inputs are data that need no gradient (as
        PyTorch does for tensors without ``requires_grad``): the first layer then
        skips that work (for a ``LinearLayer``, one of its three matrix products)
        and ``backward`` returns ``None``.
        """
        return self.layers[0].input_grad if self.layers else True

    @input_grad.setter
    def input_grad(self, value: bool) -> None:
        if self.layers:
            self.layers[0].input_grad = value

    @property
    def is_loss(self) -> bool:
        """A chain ending in a loss is a loss: its ``backward()`` takes no argument."""
        return bool(self.layers) and self.layers[-1].is_loss

    def __call__(self, inputs, targets=None):
        return self.forward(inputs, targets)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return SequentialLayers(self.layers[index])
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def forward(self, inputs, feedbacks=None):
        for layer in self.layers:
            inputs = layer.forward(inputs, feedbacks)  # Eq. (1)
        self.save_for_backward()  # nothing to keep: the layers keep their own
        return inputs

    def backward(self, gradients=None):
        self.saved_for_backward()  # raises if forward has not run
        layers = self.layers
        if self.is_loss:
            if gradients is not None:
                raise TypeError(f"{self.name}: its last layer {layers[-1].name} is a loss, so "
                                f"backward() takes no argument; got {describe(gradients)}")
            gradients = layers[-1].backward()
            layers = layers[:-1]
        elif gradients is None:
            raise TypeError(f"{self.name}: its last layer is not a loss, so backward(gradients) "
                            f"needs the gradient of the output")
        for layer in reversed(layers):
            gradients = layer.backward(gradients)  # Eq. (2)
        return gradients

    def config(self) -> dict:
        return {"type": self.name, "args": {"layers": [layer.config() for layer in self.layers]}}

    def load_weights(self, state_dict: dict, config: dict | None = None) -> SequentialLayers:
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
