r"""Product of two matrices (or two stacks of matrices), both of them inputs."""

from __future__ import annotations

from mnn.base import BaseLayer
from mnn.checks import check_rank, check_same_placement
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

    def __init__(self):
        super().__init__()

    def forward(self, inputs, feedbacks=None):
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            got = (f"a {type(inputs).__name__} of {len(inputs)} items"
                   if isinstance(inputs, (tuple, list)) else describe(inputs))
            raise DTypeError(
                f"{self.name}: expected inputs to be a pair (Q, P) of arrays, got {got}")
        q, p = inputs
        self.adopt(q, "Q")
        self.adopt(p, "P")
        check_same_placement(self, p, q, "P", "Q")
        check_rank(self, q, 2, "Q")
        check_rank(self, p, 2, "P")
        if q.shape[:-2] != p.shape[:-2]:
            raise ShapeError(
                f"{self.name}: expected Q and P with the same leading (batch) dimensions, "
                f"got Q of shape {tuple(q.shape)} and P of shape {tuple(p.shape)}")
        if q.shape[-1] != p.shape[-2]:
            raise ShapeError(
                f"{self.name}: inner dimensions differ: Q of shape {tuple(q.shape)} has "
                f"{q.shape[-1]} columns, P of shape {tuple(p.shape)} has {p.shape[-2]} rows")
        self.save_for_backward(q, p)
        return q @ p  # Eq. (1)

    def backward(self, gradients):
        q, p = self.saved_for_backward()
        xp = self.adopt(gradients, "gradients")
        check_same_placement(self, gradients, q, "gradients", "inputs")
        out_shape = (*q.shape[:-1], p.shape[-1])
        if tuple(gradients.shape) != out_shape:
            raise ShapeError(f"{self.name}: expected gradients of the output's shape {out_shape}, "
                             f"got {describe(gradients)}")
        grad_q = gradients @ xp.matrix_transpose(p)  # Eq. (2)
        grad_p = xp.matrix_transpose(q) @ gradients  # Eq. (3)
        return grad_q, grad_p
