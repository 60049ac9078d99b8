r"""Rectified linear unit."""

from __future__ import annotations

import numpy as np

from mnn.base import BaseLayer, Example


class ReluLayer(BaseLayer):
    r"""Elementwise :math:`y = \max(x, 0)`.

    Forward
    -------
    .. math::
        y_i = \max(x_i, 0)  \qquad (1)

    Jacobian
    --------
    Each output depends on its own input only, so the Jacobian is diagonal:

    .. math::
        \frac{\partial y_i}{\partial x_j} = \delta_{ij}\, [x_i > 0],

    where :math:`[\cdot]` is 1 when the condition holds and 0 otherwise (at
    :math:`x_i = 0` we take the subgradient 0, as PyTorch does).

    Vector-Jacobian product
    -----------------------
    .. math::
        \frac{\partial \ell}{\partial x_j} = \sum_i g_i\, \delta_{ij} [x_i > 0]
            = g_j\, [x_j > 0]  \qquad (2)

    A mask instead of an :math:`n \times n` diagonal matrix.
    """

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(), rng.standard_normal((3, 5)), None

    def compute_forward(self, xp, inputs, feedbacks):
        self.save_for_backward(inputs > 0)
        return xp.maximum(inputs, 0.0)  # Eq. (1)

    def compute_backward(self, xp, gradients, active):
        # Eq. (2) as a product with the 0/1 mask, branch-free, rather than
        # ``where(active, g, 0)``, which branches on the data at every element.
        return gradients * xp.astype(active, gradients.dtype)
