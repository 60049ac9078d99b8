r"""Cross-entropy loss on logits: log-softmax and negative log-likelihood, fused."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mnn.base import BaseLayer, Example
from mnn.checks import expect_sample_shape, integer_axis, normalize_axis, sample_shape_argument
from mnn.layers.log_softmax import log_softmax
from mnn.layers.nll_loss import count, label_mask, nll, one_hot


class CrossEntropyLossLayer(BaseLayer):
    r"""Cross-entropy of integer labels under ``softmax(logits)``, mean over samples.

    ``CrossEntropyLossLayer(*shape, axis=1)``: inputs are raw logits :math:`x` of
    shape ``(batch, n_classes)``, feedbacks integer labels :math:`y` of shape
    ``(batch,)``. As in ``torch.nn.functional.cross_entropy``, logits may also be
    ``(batch, n_classes, d1, ...)`` with labels ``(batch, d1, ...)``; ``axis`` names
    the class axis and the labels have the logits' shape without it. The mean runs
    over all :math:`N` label positions. ``*shape`` is the shape of one sample, as
    in ``LogSoftmaxLayer``: checked when given, stored as ``sample_shape``.

    Forward
    -------
    The same as ``LogSoftmaxLayer`` followed by ``NllLossLayer``, with the same code
    (``log_softmax`` and ``nll``):

    .. math::
        \log S_{ij} = x_{ij} - \log \sum_k e^{x_{ik}}, \qquad
        L = -\frac{1}{N} \sum_{i=1}^{N} \log S_{i, y_i}  \qquad (1)

    with the max-shifted log-sum-exp, so logits of :math:`10^4` stay finite.

    Gradient
    --------
    By the chain rule through the two layers: the NLL gradient is
    :math:`\partial L / \partial \log S_{ik} = -\frac{1}{N}[k = y_i]`, and the
    log-softmax Jacobian of each sample is
    :math:`\partial \log S_{ik} / \partial x_{ij} = \delta_{kj} - S_{ij}`. Hence

    .. math::
        \frac{\partial L}{\partial x_{ij}}
            = \sum_k \Big(-\frac{1}{N}[k = y_i]\Big)(\delta_{kj} - S_{ij})
            = -\frac{1}{N}\big([j = y_i] - S_{ij}\big)
            = \frac{S_{ij} - \mathrm{onehot}(y)_{ij}}{N}  \qquad (2)

    (only :math:`k = y_i` survives the sum). Fused, the backward pass is one
    subtraction of the size of the logits: no Jacobian, no log-softmax VJP.
    ``backward()`` takes no argument (``is_loss``) and returns exactly (2), the
    gradient of the returned scalar, :math:`1/N` included.
    """

    is_loss = True

    def __init__(self, *shape: int, axis: int = 1,
                 sample_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        self.sample_shape = sample_shape_argument(self, shape, sample_shape)
        self.axis = integer_axis(self.name, axis)
        expect_sample_shape(self, self.sample_shape, min_rank=2)
        self.expect_feedbacks("labels", class_axis=self.axis)

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(), rng.standard_normal((4, 5)), rng.integers(0, 5, size=4)

    def compute_forward(self, xp, inputs, feedbacks):
        axis = normalize_axis(self, self.axis, len(inputs.shape))
        mask = label_mask(self, xp, inputs, feedbacks, axis)
        log_p, s = log_softmax(xp, inputs, axis)  # Eq. (1), first half
        n_labels = count(feedbacks)
        self.save_for_backward(s, mask, n_labels)
        return nll(xp, log_p, mask, n_labels)  # Eq. (1), second half

    def compute_backward(self, xp, s, mask, n_labels):
        return (s - one_hot(xp, mask, s)) / n_labels  # Eq. (2)
