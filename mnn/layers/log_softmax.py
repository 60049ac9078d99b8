r"""Log-softmax along one axis (shared with the cross-entropy loss)."""

from __future__ import annotations

from collections.abc import Sequence

import array_api_compat
import numpy as np

from mnn.base import BaseLayer, Example
from mnn.checks import expect_sample_shape, integer_axis, normalize_axis, sample_shape_argument
from mnn.types import Array


def log_softmax(xp, x, axis: int):
    r"""``(log_softmax(x), softmax(x))`` along ``axis``, by Eq. (2) of ``LogSoftmaxLayer``.

    Slices of length 0 give empty results (``max`` of nothing is undefined).
    """
    if x.shape[axis] == 0:
        return x, x
    shifted = x - xp.max(x, axis=axis, keepdims=True)  # x - m: every exponent is <= 0
    exp_shifted = xp.exp(shifted)
    total = xp.sum(exp_shifted, axis=axis, keepdims=True)  # >= 1: the largest term is e^0
    return shifted - xp.log(total), exp_shifted / total  # Eq. (2), and softmax without a 2nd exp


def log_softmax_vjp(xp, s, g, axis: int):
    r"""Vector-Jacobian product of log-softmax: :math:`g - S \sum g`, Eq. (4)."""
    return g - s * xp.sum(g, axis=axis, keepdims=True)  # Eq. (4)


class LogSoftmaxLayer(BaseLayer):
    r"""Log-softmax along ``axis``: :math:`\log \operatorname{softmax}(x)`, computed stably.

    ``LogSoftmaxLayer(*shape, axis=1)``. The ``*shape`` of the original API is the
    shape of one sample: given (``LogSoftmaxLayer(10)``), inputs must be
    ``(batch, 10)`` and anything else raises a ``ShapeError``; not given
    (``LogSoftmaxLayer()``), any shape is accepted. It is stored as
    ``sample_shape``, the keyword ``config()`` records so that ``build`` can
    rebuild the layer (``LogSoftmaxLayer(sample_shape=(10,))`` is the same layer).

    Each 1-D slice :math:`x \in \mathbb{R}^n` along ``axis`` is mapped on its own.

    Forward
    -------
    With :math:`S = \operatorname{softmax}(x)`:

    .. math::
        \log S_i = x_i - \log \sum_{k=1}^{n} e^{x_k}  \qquad (1)

    Taking :math:`\log \operatorname{softmax}` of a computed softmax fails for large
    logits: :math:`S_i` underflows to 0 and its log is :math:`-\infty`. Instead shift
    by :math:`m = \max_k x_k` (log-sum-exp), which changes nothing mathematically:

    .. math::
        \log S_i = (x_i - m) - \log \sum_k e^{x_k - m}  \qquad (2)

    Every exponent is :math:`\le 0` and the sum is at least 1, so nothing overflows
    and the log never sees 0. :math:`S = e^{\log S}` comes out too; the backward pass
    and the cross-entropy loss need it (``stable_log_softmax`` returns both).

    Jacobian
    --------
    Differentiate (1); the derivative of the log-sum-exp is the softmax,
    :math:`\partial / \partial x_j \log \sum_k e^{x_k} = e^{x_j} / \sum_k e^{x_k} = S_j`:

    .. math::
        \frac{\partial \log S_i}{\partial x_j} = \delta_{ij} - S_j  \qquad (3)

    an :math:`n \times n` matrix :math:`I - \mathbf{1} S^\top` per slice (every row
    is the same :math:`S^\top` subtracted from a row of the identity).

    Vector-Jacobian product
    -----------------------
    Given :math:`g_i = \partial \ell / \partial \log S_i`:

    .. math::
        \frac{\partial \ell}{\partial x_j} = \sum_i g_i (\delta_{ij} - S_j)
            = g_j - S_j \sum_i g_i  \qquad (4)

    One sum per slice and elementwise work: :math:`O(n)` time and memory per slice,
    :math:`O(Bn)` for the batch, never the :math:`O(Bn^2)` Jacobians.
    """

    def __init__(self, *shape: int, axis: int = 1,
                 sample_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        self.sample_shape = sample_shape_argument(self, shape, sample_shape)
        self.axis = integer_axis(self.name, axis)
        expect_sample_shape(self, self.sample_shape)

    @staticmethod
    def stable_log_softmax(inputs: Array, axis: int) -> Array:
        """``(log_softmax, softmax)`` of ``inputs`` along ``axis``, Eq. (2), in their namespace."""
        return log_softmax(array_api_compat.array_namespace(inputs), inputs, axis)

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(), rng.standard_normal((3, 5)), None

    def compute_forward(self, xp, inputs, feedbacks):
        axis = normalize_axis(self, self.axis, len(inputs.shape))
        log_p, s = log_softmax(xp, inputs, axis)  # Eq. (2)
        self.save_for_backward(s, axis)
        return log_p

    def compute_backward(self, xp, gradients, s, axis):
        return log_softmax_vjp(xp, s, gradients, axis)  # Eq. (4)
