r"""A residual connection: a block's output added to its own input."""

from __future__ import annotations

import numpy as np

from mnn.base import BaseLayer, Example
from mnn.errors import ArgumentError, ArgumentTypeError, ShapeError, describe
from mnn.layers.layer_norm import LayerNorm
from mnn.layers.linear import LinearLayer
from mnn.layers.sequential import SequentialLayers
from mnn.layers.tanh import Tanh
from mnn.types import Array


class Residual(BaseLayer):
    r""":math:`y = x + f(x)` for a block :math:`f` whose output has its input's shape.

    ``Residual(block)``: ``block`` is any layer or container that is not a loss
    (in a Transformer: ``SequentialLayers([LayerNorm(d), MultiHeadAttention(...)])``).
    Its parameters are named ``"block.<name>"``.

    Forward
    -------
    .. math::
        y = x + f(x)  \qquad (1)

    Jacobian
    --------
    The sum of the two paths from :math:`x` to :math:`y`:

    .. math::
        \frac{\partial y}{\partial x} = I + J_f, \qquad
        J_f = \frac{\partial f}{\partial x}.  \qquad (2)

    Vector-Jacobian product
    -----------------------
    .. math::
        g_x = g\,(I + J_f) = g + g J_f = g + \texttt{block.backward}(g)  \qquad (3)

    The gradient reaches :math:`x` unchanged along the identity path, whatever the
    block does to its own share: this is why deep stacks of residual blocks still
    train (He et al., 2016). The block's backward adds its parameter gradients on the
    way; the residual itself has no parameters and keeps nothing.
    """

    def __init__(self, block: BaseLayer) -> None:
        super().__init__()
        if not isinstance(block, BaseLayer):
            raise ArgumentTypeError(f"{self.name}: expected a block (a BaseLayer), got an object "
                                    f"of type {type(block).__name__}")
        if block.is_loss:
            raise ArgumentError(f"{self.name}: the block {block!r} ends in a loss; x + loss(x) "
                                f"is not a residual connection")
        self.block = block
        self.sublayers = {"block": block}

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        block = SequentialLayers([LayerNorm(4), LinearLayer(4, 4, rng=rng), Tanh()])
        return cls(block), rng.standard_normal((3, 4)), None

    def check_inputs(self, inputs: Array, feedbacks: Array = None) -> None:
        return None  # the block checks its own inputs

    def compute_forward(self, xp, inputs, feedbacks):
        outputs = self.block(inputs)
        if getattr(outputs, "shape", None) != inputs.shape:
            raise ShapeError(f"{self.name}: the block must keep the shape of its inputs "
                             f"(y = x + block(x)): inputs {describe(inputs)}, block output "
                             f"{describe(outputs)}")
        return inputs + outputs  # Eq. (1)

    def compute_backward(self, xp, gradients):
        through_block = self.block.backward(gradients)
        if not self.input_grad:
            return None
        return gradients + through_block  # Eq. (3)
