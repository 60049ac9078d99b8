r"""Negative log-likelihood loss on log-probabilities (its pieces are shared with cross-entropy)."""

from __future__ import annotations

import math

import array_api_extra as xpx

from mnn.base import BaseLayer
from mnn.checks import check_labels, check_rank, check_same_placement, normalize_axis


def check_logits_and_labels(layer, xp, inputs, labels, axis: int) -> int:
    """Inputs of rank >= 2 and one valid integer label per position; returns the class axis."""
    check_rank(layer, inputs, 2)
    axis = normalize_axis(layer, axis, len(inputs.shape))
    check_same_placement(layer, labels, inputs, "labels", "inputs", dtype=False)
    check_labels(layer, xp, labels, inputs, axis)
    return axis


def nll(xp, log_p, labels, axis: int):
    r""":math:`-\frac{1}{N}\sum_i \log p_{i, y_i}`, Eq. (1) of ``NllLossLayer``: a 0-d array."""
    index = xp.expand_dims(xp.astype(labels, xp.int64, copy=False), axis=axis)  # torch wants int64
    picked = xp.take_along_axis(log_p, index, axis=axis)  # log p_{i, y_i}, size 1 along axis
    return -xp.sum(picked) / count(labels)  # Eq. (1)


def count(labels) -> int:
    """:math:`N`, the number of label positions the loss is the mean over."""
    return math.prod(labels.shape)


def one_hot(labels, like, axis: int):
    r""":math:`[j = y_i]`: labels compared with ``arange(n)`` along ``axis``, like ``like``."""
    return xpx.one_hot(labels, like.shape[axis], dtype=like.dtype, axis=axis)


class NllLossLayer(BaseLayer):
    r"""Negative log-likelihood of integer labels under log-probabilities, mean over samples.

    Inputs :math:`\log p` of shape ``(batch, n_classes)`` (usually a ``LogSoftmaxLayer``'s
    output); feedbacks: integer labels :math:`y` of shape ``(batch,)`` in
    :math:`[0, n)`. As in ``torch.nn.functional.nll_loss``, inputs may also be
    ``(batch, n_classes, d1, ...)`` with labels ``(batch, d1, ...)``; the keyword
    ``axis`` (default 1) names the class axis. The mean runs over all :math:`N`
    label positions (:math:`N` = batch size for 2-D inputs).

    Forward
    -------
    .. math::
        L = -\frac{1}{N} \sum_{i=1}^{N} \log p_{i, y_i}  \qquad (1)

    computed by ``take_along_axis`` (one gather), not by multiplying with a one-hot
    matrix, which would turn a :math:`-\infty` at an unlabelled class into nan.

    Gradient
    --------
    :math:`L` depends on each :math:`\log p_{ij}` through at most one term of (1):

    .. math::
        \frac{\partial L}{\partial \log p_{ij}} = -\frac{1}{N}\, [j = y_i]
            = -\frac{1}{N}\, \mathrm{onehot}(y)_{ij}  \qquad (2)

    The Jacobian of a scalar is this one gradient, the size of the input: no
    :math:`n \times n` anything. ``backward()`` takes no argument (``is_loss``) and
    returns exactly (2), the gradient of the returned scalar, :math:`1/N` included.
    The one-hot array comes from comparing the labels with ``arange(n)``
    (``array_api_extra.one_hot``), not from a Python loop.
    """

    is_loss = True

    def __init__(self, *, axis: int = 1):
        super().__init__()
        self.args = {"axis": axis}
        self.axis = axis

    def forward(self, inputs, feedbacks=None):
        xp = self.adopt(inputs)
        axis = check_logits_and_labels(self, xp, inputs, feedbacks, self.axis)
        self.save_for_backward(inputs, feedbacks, axis)
        return nll(xp, inputs, feedbacks, axis)  # Eq. (1)

    def backward(self):
        inputs, labels, axis = self.saved_for_backward()
        return -one_hot(labels, inputs, axis) / count(labels)  # Eq. (2)
