r"""The logistic sigmoid, elementwise."""

from __future__ import annotations

import numpy as np

from mnn import backends
from mnn.base import BaseLayer, Example


class Sigmoid(BaseLayer):
    r"""Elementwise :math:`y = \sigma(x) = 1 / (1 + e^{-x})`, as ``torch.nn.Sigmoid``; any shape.

    Forward
    -------
    .. math::
        y_i = \sigma(x_i) = \frac{1}{1 + e^{-x_i}}  \qquad (1)

    The backend adapter computes it (``Backend.sigmoid``): the library's one-pass kernel
    where it has one (``torch.sigmoid``, ``jax.nn.sigmoid``), else (1) from the
    standard's functions. For :math:`x \ll 0`, :math:`e^{-x}` would overflow
    (:math:`e^{1000}`); that version caps the exponent at
    :math:`m = \ln(\text{largest float}) - 1`:

    .. math::
        y_i = \frac{1}{1 + e^{\min(-x_i,\, m)}}  \qquad (2)

    which differs from (1) only where :math:`\sigma(x) < e^{-m}` (below
    :math:`10^{-38}` in float32), and is accurate to a few units in the last place
    everywhere: no difference of nearly equal numbers is taken.

    Jacobian
    --------
    Diagonal, as for every elementwise function. Differentiating (1),

    .. math::
        \frac{\partial y_i}{\partial x_j} = \delta_{ij} \frac{e^{-x_i}}{(1 + e^{-x_i})^2}
            = \delta_{ij}\, \frac{1}{1 + e^{-x_i}} \cdot \frac{e^{-x_i}}{1 + e^{-x_i}}
            = \delta_{ij}\, y_i (1 - y_i).  \qquad (3)

    Vector-Jacobian product
    -----------------------
    .. math::
        \frac{\partial \ell}{\partial x_i} = g_i\, y_i (1 - y_i)  \qquad (4)

    from the output alone, which is what the forward keeps.
    """

    def __init__(self) -> None:
        super().__init__()
        self.expect_inputs()

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(), 3 * rng.standard_normal((3, 4)), None

    def compute_forward(self, xp, inputs, feedbacks):
        outputs = backends.for_array(inputs).sigmoid(inputs)  # Eq. (1), or (2)
        self.save_for_backward(outputs)
        return outputs

    def compute_backward(self, xp, gradients, outputs):
        return gradients * outputs * (1.0 - outputs)  # Eq. (4)
