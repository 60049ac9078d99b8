r"""Product of two matrices (or two stacks of matrices), both of them inputs."""

from __future__ import annotations

import numpy as np

from mnn.base import BaseLayer, Example
from mnn.checks import check_kind, check_same_placement, check_shape, namespace_of
from mnn.errors import DTypeError, ShapeError, describe


class MatrixProduct(BaseLayer):
    r"""Matrix product :math:`Y = Q P` of two inputs, ``forward((Q, P))``.

    Shapes: :math:`Q \in \mathbb{R}^{m \times k}`, :math:`P \in \mathbb{R}^{k \times n}`,
    :math:`Y \in \mathbb{R}^{m \times n}`. Stacks ``(..., m, k) @ (..., k, n)`` with
    equal leading dimensions are one independent product per leading index (no
    broadcasting), so everything below holds for each of them separately.
    Unlike ``LinearLayer`` there are no parameters: both factors are inputs, and
    ``backward`` returns one gradient for each, as the pair ``(gQ, gP)``.
    Attention uses it twice: for :math:`Q K^\top` and for :math:`A V`.

    Forward
    -------
    .. math::
        Y_{ij} = \sum_{l=1}^{k} Q_{il} P_{lj}  \qquad (1)

    Jacobians
    ---------
    Differentiate (1) entry by entry:

    .. math::
        \frac{\partial Y_{ij}}{\partial Q_{i'l}} = \delta_{ii'}\, P_{lj}, \qquad
        \frac{\partial Y_{ij}}{\partial P_{lj'}} = \delta_{jj'}\, Q_{il}.

    They are :math:`(mn) \times (mk)` and :math:`(mn) \times (kn)` matrices, mostly
    zeros (each is a Kronecker product with an identity); nobody should build them.

    Vector-Jacobian products
    ------------------------
    Given :math:`G_{ij} = \partial \ell / \partial Y_{ij}`, the chain rule sums over
    every output entry and each Kronecker delta collapses one of the two sums:

    .. math::
        \frac{\partial \ell}{\partial Q_{i'l}} = \sum_{i,j} G_{ij}\, \delta_{ii'} P_{lj}
            = \sum_j G_{i'j} P_{lj} = (G P^\top)_{i'l}  \qquad (2)

    .. math::
        \frac{\partial \ell}{\partial P_{lj'}} = \sum_{i,j} G_{ij}\, \delta_{jj'} Q_{il}
            = \sum_i Q_{il} G_{ij'} = (Q^\top G)_{lj'}  \qquad (3)

    Two matrix products of the same cost as the forward, :math:`O(mkn)`; the
    shapes check themselves: :math:`G P^\top` is :math:`m \times k` like :math:`Q`,
    :math:`Q^\top G` is :math:`k \times n` like :math:`P`. For stacks,
    ``matrix_transpose`` swaps the last two axes only.
    """

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(), (rng.standard_normal((3, 4)), rng.standard_normal((4, 2))), None

    def check_inputs(self, inputs, feedbacks=None):
        """Two floating-point arrays of one placement, ``(..., m, k)`` and ``(..., k, n)``."""
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            got = (f"a {type(inputs).__name__} of {len(inputs)} items"
                   if isinstance(inputs, (tuple, list)) else describe(inputs))
            raise DTypeError(
                f"{self.name}: expected inputs to be a pair (Q, P) of arrays, got {got}")
        q, p = inputs
        xp = namespace_of(self, q, "Q")
        check_kind(self, xp, q, "real floating", "Q")
        check_kind(self, namespace_of(self, p, "P"), p, "real floating", "P")
        check_same_placement(self, p, q, "P", "Q")
        check_shape(self, q, min_rank=2, what="Q")
        check_shape(self, p, min_rank=2, what="P")
        if q.shape[:-2] != p.shape[:-2]:
            raise ShapeError(
                f"{self.name}: expected Q and P with the same leading (batch) dimensions, "
                f"got Q of shape {tuple(q.shape)} and P of shape {tuple(p.shape)}")
        if q.shape[-1] != p.shape[-2]:
            raise ShapeError(
                f"{self.name}: inner dimensions differ: Q of shape {tuple(q.shape)} has "
                f"{q.shape[-1]} columns, P of shape {tuple(p.shape)} has {p.shape[-2]} rows")
        return xp

    def compute_forward(self, xp, inputs, feedbacks):
        q, p = inputs
        self.save_for_backward(q, p)
        return q @ p  # Eq. (1)

    def compute_backward(self, xp, gradients, q, p):
        grad_q = gradients @ xp.matrix_transpose(p)  # Eq. (2)
        grad_p = xp.matrix_transpose(q) @ gradients  # Eq. (3)
        return grad_q, grad_p
