r"""Hyperbolic tangent, elementwise."""

from __future__ import annotations

import numpy as np

from mnn.base import BaseLayer, Example


class Tanh(BaseLayer):
    r"""Elementwise :math:`y = \tanh x`, as ``torch.nn.Tanh``; any shape.

    Forward
    -------
    .. math::
        y_i = \tanh x_i = \frac{e^{x_i} - e^{-x_i}}{e^{x_i} + e^{-x_i}}  \qquad (1)

    The library's ``tanh`` is accurate for every :math:`x`: it saturates at
    :math:`\pm 1` instead of overflowing.

    Jacobian
    --------
    Each output depends on its own input only, so the Jacobian is diagonal. The
    quotient rule on (1), with numerator :math:`s = e^{x} - e^{-x}` and denominator
    :math:`c = e^{x} + e^{-x}` (so :math:`s' = c` and :math:`c' = s`):

    .. math::
        \frac{\partial y_i}{\partial x_j} = \delta_{ij} \frac{c^2 - s^2}{c^2}
            = \delta_{ij} (1 - y_i^2)  \qquad (2)

    Vector-Jacobian product
    -----------------------
    A diagonal Jacobian makes the product elementwise:

    .. math::
        \frac{\partial \ell}{\partial x_i} = g_i (1 - y_i^2)  \qquad (3)

    It needs the output only, so that is what the forward keeps.
    """

    def __init__(self) -> None:
        super().__init__()
        self.expect_inputs()

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(), rng.standard_normal((3, 4)), None

    def compute_forward(self, xp, inputs, feedbacks):
        outputs = xp.tanh(inputs)  # Eq. (1)
        self.save_for_backward(outputs)
        return outputs

    def compute_backward(self, xp, gradients, outputs):
        return gradients * (1.0 - outputs * outputs)  # Eq. (3)
