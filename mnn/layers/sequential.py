r"""A chain of layers, run one after the other: the container for feed-forward networks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import overload

import numpy as np

from mnn.base import BaseLayer, Example
from mnn.errors import ArgumentTypeError
from mnn.layers.cross_entropy_loss import CrossEntropyLossLayer
from mnn.layers.linear import LinearLayer
from mnn.layers.relu import ReluLayer
from mnn.types import Array, Namespace


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

    def __init__(self, layers: Iterable[BaseLayer]) -> None:
        super().__init__()
        if not hasattr(layers, "__iter__"):
            raise ArgumentTypeError(f"{self.name}: expected a list of layers, got an object of "
                                    f"type {type(layers).__name__}")
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, BaseLayer):
                raise ArgumentTypeError(f"{self.name}: expected layers (BaseLayer instances), "
                                        f"got an object of type {type(layer).__name__} at "
                                        f"position {i}")
        self.sublayers = {str(i): layer for i, layer in enumerate(self.layers)}
        self._input_grad: bool | None = None  # None: the default that input_grad describes

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        net = cls([LinearLayer(4, 5, rng=rng), ReluLayer(), LinearLayer(5, 3, rng=rng),
                   CrossEntropyLossLayer()])
        net.input_grad = True  # checked too, though a network trained on data skips it
        return net, rng.standard_normal((3, 4)), rng.integers(0, 3, size=3)

    @property
    def input_grad(self) -> bool:
        """Whether ``backward`` computes the gradient with respect to the inputs.

        By default a chain that ends in a loss does not (it is a network trained on
        data, which needs no gradient, as PyTorch's tensors without ``requires_grad``):
        its first layer skips that work (for a ``LinearLayer``, one of its three
        matrix products) and ``backward()`` returns ``None``. Any other chain does,
        since it is a part of a larger network. Set it to say otherwise.
        """
        return (not self.is_loss) if self._input_grad is None else self._input_grad

    @input_grad.setter
    def input_grad(self, value: bool) -> None:
        self._input_grad = value

    @property
    def is_loss(self) -> bool:
        """A chain ending in a loss is a loss: its ``backward()`` takes no argument."""
        return bool(self.layers) and self.layers[-1].is_loss

    def __call__(self, inputs: Array, targets: Array = None) -> Array:
        return self.forward(inputs, targets)

    def __len__(self) -> int:
        return len(self.layers)

    @overload
    def __getitem__(self, index: int) -> BaseLayer: ...
    @overload
    def __getitem__(self, index: slice) -> SequentialLayers: ...

    def __getitem__(self, index: int | slice) -> BaseLayer | SequentialLayers:
        if isinstance(index, slice):
            return SequentialLayers(self.layers[index])
        return self.layers[index]

    def __iter__(self) -> Iterator[BaseLayer]:
        return iter(self.layers)

    def predict(self, inputs: Array) -> Array:
        """The network's output without its loss: every layer but a final loss layer.

        For inference on a trained classifier, ``net.predict(x)`` gives the logits
        (``argmax`` along axis 1 gives the classes). ``net[:-1](x)`` is the same.
        """
        layers = self.layers[:-1] if self.is_loss else self.layers
        for layer in layers:
            inputs = layer.forward(inputs)
        return inputs

    def check_inputs(self, inputs: Array, feedbacks: Array = None) -> None:
        return None  # each layer checks its own inputs

    def check_gradients(self, gradients: Array) -> None:
        if gradients is None:
            raise TypeError(f"{self.name}: its last layer is not a loss, so backward(gradients) "
                            f"needs the gradient of the output")
        super().check_gradients(gradients)  # like the output: the container names itself

    def compute_forward(self, xp: Namespace, inputs: Array, feedbacks: Array) -> Array:
        for layer in self.layers:
            inputs = layer.forward(inputs, feedbacks)  # Eq. (1)
        return inputs

    def compute_backward(self, xp: Namespace, gradients: Array = None, *,
                         all_gradients: bool = False) -> Array | list[Array]:
        """Eq. (2), layer by layer. With ``all_gradients=True``, the list of every
        gradient on the way: entry ``l`` is the gradient with respect to the inputs of
        ``layers[l]`` (entry 0 the data's, computed because it was asked for)."""
        layers = self.layers
        if self.is_loss:
            gradients = layers[-1].backward()
            layers = layers[:-1]
        every = [gradients]
        for layer in reversed(layers[1:]):
            gradients = layer.backward(gradients)  # Eq. (2)
            every.append(gradients)
        if layers:
            with _input_grad_of(layers[0], self.input_grad or all_gradients):
                gradients = layers[0].backward(gradients)  # Eq. (2), l = 1
            every.append(gradients)
        if all_gradients:
            return every[::-1] if self.is_loss else every[:0:-1]  # the loss's input is kept
        return gradients


@contextlib.contextmanager
def _input_grad_of(layer: BaseLayer, wanted: bool) -> Iterator[None]:
    """``layer.input_grad`` set to what this chain wants, for one backward."""
    before = layer.input_grad
    layer.input_grad = wanted
    try:
        yield
    finally:
        layer.input_grad = before
