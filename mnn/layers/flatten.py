r"""Flatten: the axes from ``start_dim`` to ``end_dim`` merged into one."""

from __future__ import annotations

import math

import numpy as np

from mnn.base import BaseLayer, Example
from mnn.checks import integer_axis, normalize_axis
from mnn.errors import ShapeError


class Flatten(BaseLayer):
    r"""Merge the axes ``start_dim`` to ``end_dim`` (both included) into one, as torch's
    ``nn.Flatten``: by default every axis but the batch, so that images of shape
    :math:`(N, C, H, W)` reach a ``LinearLayer`` as rows of :math:`C H W` features.

    Forward
    -------
    A reshape, in row-major order (the last axis varies fastest):

    .. math::
        y_{n, (c H + h) W + w} = x_{n c h w}  \qquad (1)

    Jacobian and vector-Jacobian product
    ------------------------------------
    Every output entry is one input entry, so the Jacobian is a permutation matrix
    (the identity, in row-major order) and its product with :math:`g` is the inverse
    reshape:

    .. math::
        \frac{\partial \ell}{\partial x_{n c h w}} = g_{n, (c H + h) W + w}  \qquad (2)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = integer_axis(self.name, start_dim)
        self.end_dim = integer_axis(self.name, end_dim)
        self.expect_inputs(min_rank=1)

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(), rng.standard_normal((2, 3, 2, 2)), None

    def compute_forward(self, xp, inputs, feedbacks):
        shape = tuple(inputs.shape)
        start = normalize_axis(self, self.start_dim, len(shape))
        end = normalize_axis(self, self.end_dim, len(shape))
        if start > end:
            raise ShapeError(f"{self.name}: expected start_dim {self.start_dim} to come no later "
                             f"than end_dim {self.end_dim}, which they do not for inputs with "
                             f"{len(shape)} dimensions")
        self.save_for_backward(shape)
        # the merged size written out: a reshape to -1 is ambiguous when an axis is empty
        merged = (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])
        return xp.reshape(inputs, merged)  # Eq. (1)

    def compute_backward(self, xp, gradients, shape):
        return xp.reshape(gradients, shape)  # Eq. (2)
