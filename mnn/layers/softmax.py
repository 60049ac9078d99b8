r"""Softmax along one axis, and its vector-Jacobian product (shared with attention)."""

from __future__ import annotations

import numpy as np

from mnn.base import BaseLayer, Example
from mnn.checks import integer_axis, normalize_axis


def softmax(xp, x, axis: int):
    r"""Stable softmax of ``x`` along ``axis``: Eq. (1)-(2) of ``SoftmaxLayer``.

    Slices of length 0 have an empty softmax (``max`` of nothing is undefined, so
    it is not asked for).
    """
    if x.shape[axis] == 0:
        return x
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))  # Eq. (2): every exponent is <= 0
    e /= xp.sum(e, axis=axis, keepdims=True)  # Eq. (1), in the new array e
    return e


def softmax_vjp(xp, s, g, axis: int):
    r"""Vector-Jacobian product of softmax: :math:`s \odot (g - \langle g, s\rangle)`, Eq. (4).

    ``s`` is the softmax output, ``g`` the gradient with respect to it (same shape);
    the inner product runs along ``axis``. :math:`O(n)` time and memory per row.
    """
    out = g - xp.sum(g * s, axis=axis, keepdims=True)  # Eq. (4)
    out *= s
    return out


class SoftmaxLayer(BaseLayer):
    r"""Softmax along ``axis`` (default 1, the feature axis of a ``(batch, n)`` input).

    Each 1-D slice :math:`x \in \mathbb{R}^n` along ``axis`` is mapped on its own;
    below, :math:`x` is one such slice and :math:`S = \operatorname{softmax}(x)`.

    Forward
    -------
    .. math::
        S_i = \frac{e^{x_i}}{\sum_{k=1}^{n} e^{x_k}}  \qquad (1)

    Multiplying numerator and denominator by :math:`e^{-m}`, :math:`m = \max_k x_k`,
    changes nothing mathematically but keeps every exponent :math:`\le 0`, so
    :math:`e^{x_i - m}` cannot overflow and the denominator is at least 1:

    .. math::
        S_i = \frac{e^{x_i - m}}{\sum_{k} e^{x_k - m}}  \qquad (2)

    Jacobian
    --------
    Write :math:`Z = \sum_k e^{x_k}`, so :math:`S_i = e^{x_i} / Z` and
    :math:`\partial Z / \partial x_j = e^{x_j}`. The quotient rule gives

    .. math::
        \frac{\partial S_i}{\partial x_j}
            = \frac{\delta_{ij} e^{x_i} Z - e^{x_i} e^{x_j}}{Z^2}
            = \frac{e^{x_i}}{Z}\,\delta_{ij} - \frac{e^{x_i}}{Z}\frac{e^{x_j}}{Z}
            = S_i(\delta_{ij} - S_j)  \qquad (3)

    that is :math:`J = \operatorname{diag}(S) - S S^\top`, symmetric, :math:`n \times n`
    per slice. (Check: each column sums to :math:`S_j - S_j \sum_i S_i = 0`, as it must,
    since :math:`\sum_i S_i = 1` whatever :math:`x` is.)

    Vector-Jacobian product
    -----------------------
    Given :math:`g_i = \partial \ell / \partial S_i`, the chain rule sums over the outputs:

    .. math::
        \frac{\partial \ell}{\partial x_j} = \sum_i g_i\, S_i (\delta_{ij} - S_j)
            = g_j S_j - S_j \sum_i g_i S_i
            = S_j \Big(g_j - \sum_i g_i S_i\Big)  \qquad (4)

    One inner product :math:`\langle g, S\rangle` per slice, then elementwise work:
    :math:`O(n)` time and :math:`O(n)` memory per slice (:math:`O(Bn)` for a batch,
    the size of the input) instead of the :math:`O(Bn^2)` that
    materialising :math:`J` would cost. ``softmax_vjp`` computes it; the
    attention layer reuses it for its attention weights.
    """

    def __init__(self, axis: int = 1) -> None:
        super().__init__()
        self.axis = integer_axis(self.name, axis)
        self.expect_inputs(min_rank=1)

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(), rng.standard_normal((3, 5)), None

    def compute_forward(self, xp, inputs, feedbacks):
        axis = normalize_axis(self, self.axis, len(inputs.shape))
        outputs = softmax(xp, inputs, axis)  # Eq. (1)-(2)
        self.save_for_backward(outputs, axis)
        return outputs

    def compute_backward(self, xp, gradients, outputs, axis):
        return softmax_vjp(xp, outputs, gradients, axis)  # Eq. (4)
