r"""Negative log-likelihood loss on log-probabilities (its pieces are shared with cross-entropy)."""

from __future__ import annotations

import math

import array_api_compat
import numpy as np

from mnn.base import BaseLayer, Example
from mnn.checks import integer_axis, normalize_axis
from mnn.errors import LabelError


def label_mask(layer, xp, logits, labels, axis: int):
    r"""The boolean mask :math:`[j = y_i]`, shaped like ``logits``; checks the label range.

    ``BaseLayer.forward`` has checked the labels' dtype, shape and placement. The
    mask compares the labels with ``arange(n)`` along ``axis`` (as
    ``array_api_extra.one_hot`` does): True at each label's class. It serves three
    uses: the forward picks :math:`\log p_{i, y_i}` with it, the backward turns it
    into the one-hot matrix, and it checks the range: a label in :math:`[0, n)`
    matches exactly one class and any other label none, so all labels are valid
    exactly when the mask holds :math:`N` Trues (one count, one wait for the device).

    The comparison runs in int64 whatever the labels' dtype, so int8 labels never
    wrap around (``-100`` stays ``-100``, not class 156) and uint8 labels compare
    with classes beyond 255.
    """
    shape = tuple(logits.shape)
    n = shape[axis]
    if labels.dtype != xp.int64:
        labels = xp.astype(labels, xp.int64)
    device = array_api_compat.device(labels)
    trailing = len(shape) - axis - 1  # the classes lie along axis: (n, 1, ..., 1)
    classes = layer.cached(("classes", n, trailing, type(labels), device), lambda: xp.reshape(
        xp.arange(n, dtype=xp.int64, device=device), (n,) + (1,) * trailing))
    mask = xp.reshape(labels, shape[:axis] + (1,) + shape[axis + 1:]) == classes
    if int(xp.count_nonzero(mask)) != count(labels):
        low, high = int(xp.min(labels)), int(xp.max(labels))
        raise LabelError(
            f"{layer.name}: expected labels in [0, {n}) for {n} classes, "
            f"got values from {low} to {high}")
    return mask


def nll(xp, log_p, mask, n_labels: int):
    r""":math:`-\frac{1}{N}\sum_i \log p_{i, y_i}`, Eq. (1) of ``NllLossLayer``: a 0-d array.

    ``mask`` is ``label_mask``'s, ``n_labels`` is :math:`N`. ``where`` picks the
    labelled entries; multiplying by the one-hot matrix instead would turn a
    :math:`-\infty` at an unlabelled class into nan (:math:`0 \cdot (-\infty)`).
    An empty batch (:math:`N = 0`) gives nan, the mean of nothing, as in torch.
    """
    # N in log_p's dtype: NumPy 1.x divides its float32 scalar by a Python int in float64.
    n = xp.asarray(n_labels, dtype=log_p.dtype, device=array_api_compat.device(log_p))
    return -xp.sum(xp.where(mask, log_p, 0.0)) / n  # Eq. (1)


def one_hot(xp, mask, like):
    r""":math:`\mathrm{onehot}(y)_{ij} = [j = y_i]`: ``label_mask``'s mask in ``like``'s dtype."""
    return xp.astype(mask, like.dtype)


def count(labels) -> int:
    """:math:`N`, the number of label positions the loss is the mean over."""
    return math.prod(labels.shape)


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

    computed by selecting the labelled entries with ``where`` (see ``nll``), not by
    multiplying with a one-hot matrix, which would turn a :math:`-\infty` at an
    unlabelled class into nan.

    Gradient
    --------
    :math:`L` depends on each :math:`\log p_{ij}` through at most one term of (1):

    .. math::
        \frac{\partial L}{\partial \log p_{ij}} = -\frac{1}{N}\, [j = y_i]
            = -\frac{1}{N}\, \mathrm{onehot}(y)_{ij}  \qquad (2)

    The Jacobian of a scalar is this one gradient, the size of the input: no
    :math:`n \times n` anything. ``backward()`` takes no argument (``is_loss``) and
    returns exactly (2), the gradient of the returned scalar, :math:`1/N` included.
    The one-hot array comes from comparing the labels with ``arange(n)`` once, in the
    forward pass (``label_mask``, which also checks the labels), not from a Python loop.
    """

    is_loss = True

    def __init__(self, *, axis: int = 1) -> None:
        super().__init__()
        self.axis = integer_axis(self.name, axis)
        self.expect_inputs(min_rank=2)
        self.expect_feedbacks("labels", class_axis=self.axis)

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(), rng.standard_normal((4, 5)), rng.integers(0, 5, size=4)

    def compute_forward(self, xp, inputs, feedbacks):
        axis = normalize_axis(self, self.axis, len(inputs.shape))
        mask = label_mask(self, xp, inputs, feedbacks, axis)
        n_labels = count(feedbacks)
        self.save_for_backward(inputs, mask, n_labels)
        return nll(xp, inputs, mask, n_labels)  # Eq. (1)

    def compute_backward(self, xp, inputs, mask, n_labels):
        return -one_hot(xp, mask, inputs) / n_labels  # Eq. (2)
