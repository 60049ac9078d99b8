r"""Swish with a learnable slope per feature (Ramachandran, Zoph and Le, 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np

import mnn
from mnn.base import Example
from mnn.checks import positive_int


class Swish(mnn.BaseLayer):
    r"""Elementwise :math:`y = x\, \sigma(\beta x)`, with one learnable :math:`\beta` per feature.

    Shapes: :math:`x \in \mathbb{R}^{N \times n}` (any leading dimensions are part of
    the batch), :math:`\beta \in \mathbb{R}^{n}` (``params['beta']``), and
    :math:`\sigma(z) = 1 / (1 + e^{-z})`.

    Forward
    -------
    With :math:`z_{ij} = \beta_j x_{ij}` and :math:`s_{ij} = \sigma(z_{ij})`,

    .. math::
        y_{ij} = x_{ij}\, s_{ij}  \qquad (1)

    Jacobians
    ---------
    The sigmoid's derivative is :math:`\sigma'(z) = \sigma(z)\,(1 - \sigma(z))`:

    .. math::
        \sigma'(z) = \frac{e^{-z}}{(1 + e^{-z})^2}
                   = \frac{1}{1 + e^{-z}} \cdot \frac{e^{-z}}{1 + e^{-z}}
                   = s\, (1 - s)  \qquad (2)

    Each output depends on its own input and on its feature's :math:`\beta`; the product
    rule and the chain rule through :math:`z_{ij} = \beta_j x_{ij}` give

    .. math::
        \frac{\partial y_{ij}}{\partial x_{i'j'}} = \delta_{ii'} \delta_{jj'}
            \left( s_{ij} + z_{ij}\, s_{ij} (1 - s_{ij}) \right), \qquad
        \frac{\partial y_{ij}}{\partial \beta_{j'}} = \delta_{jj'}\, x_{ij}^2\,
            s_{ij} (1 - s_{ij}).

    The first is diagonal: an :math:`(Nn) \times (Nn)` matrix with :math:`Nn` entries
    that are not zero.

    Vector-Jacobian products
    ------------------------
    Given :math:`g_{ij} = \partial \ell / \partial y_{ij}`, the deltas collapse the sums:

    .. math::
        \frac{\partial \ell}{\partial x_{ij}} = g_{ij} \left( s_{ij} + z_{ij}\,
            s_{ij} (1 - s_{ij}) \right)  \qquad (3)

    .. math::
        \frac{\partial \ell}{\partial \beta_j} = \sum_i g_{ij}\, x_{ij}^2\,
            s_{ij} (1 - s_{ij})  \qquad (4)

    Elementwise products and one sum over the batch: :math:`O(Nn)` time and memory.
    """

    def __init__(self, features: int, beta: float = 1.0) -> None:
        super().__init__()
        positive_int(self.name, "features", features)
        self.features, self.beta = features, float(beta)
        self.add_param("beta", np.full((features,), float(beta)))
        self.expect_inputs(min_rank=1, sizes={-1: features})

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small Swish for ``gradcheck``: random slopes, a batch of three."""
        return cls(4, beta=float(rng.uniform(0.5, 2.0))), rng.standard_normal((3, 4)), None

    def compute_forward(self, xp: Any, inputs: Any, feedbacks: Any) -> Any:
        z = self.params["beta"] * inputs
        s = sigmoid(xp, z)
        self.save_for_backward(inputs, z, s)
        return inputs * s  # Eq. (1)

    def compute_backward(self, xp: Any, gradients: Any, inputs: Any, z: Any, s: Any) -> Any:
        slope = s * (1.0 - s)  # Eq. (2)
        batch_axes = tuple(range(inputs.ndim - 1))
        self.add_grad("beta", xp.sum(gradients * inputs * inputs * slope, axis=batch_axes))  # (4)
        if not self.input_grad:
            return None
        return gradients * (s + z * slope)  # Eq. (3)


def sigmoid(xp: Any, z: Any) -> Any:
    r""":math:`1 / (1 + e^{-z})` without overflow: with :math:`e = e^{-|z|} \le 1`, it is
    :math:`1 / (1 + e)` for :math:`z \ge 0` and :math:`e / (1 + e)` below."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

