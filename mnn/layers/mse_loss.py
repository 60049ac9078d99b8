r"""Mean squared error loss: summed over features, averaged over the batch."""

from __future__ import annotations

import array_api_compat
import numpy as np

from mnn.base import BaseLayer, Example


class MSELossLayer(BaseLayer):
    r"""Squared error summed over each sample's features, mean over the batch.

    Inputs :math:`x` of shape ``(batch, ...)``; feedbacks: float targets :math:`y`
    of the same shape, library, device and dtype. With :math:`B` = ``inputs.shape[0]``,
    the sum runs over every other axis (the features):

    Forward
    -------
    .. math::
        L = \frac{1}{B} \sum_{i=1}^{B} \sum_{f} (x_{if} - y_{if})^2  \qquad (1)

    Note the normalisation: this is ``torch.nn.functional.mse_loss(x, y,
    reduction="sum") / B``, not PyTorch's default ``reduction="mean"``, which also
    divides by the number of features.

    Gradient
    --------
    Each :math:`x_{if}` appears in exactly one term of (1):

    .. math::
        \frac{\partial L}{\partial x_{if}} = \frac{2 (x_{if} - y_{if})}{B}  \qquad (2)

    An elementwise expression the size of the input; no Jacobian. ``backward()``
    takes no argument (``is_loss``) and returns exactly (2), the gradient of the
    returned scalar, :math:`1/B` included. The targets get no gradient.
    """

    is_loss = True

    def __init__(self) -> None:
        super().__init__()
        self.expect_inputs(min_rank=1)
        self.expect_feedbacks("targets")

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))

    def compute_forward(self, xp, inputs, feedbacks):
        difference = inputs - feedbacks
        self.save_for_backward(difference)
        # B in the inputs' dtype: NumPy 1.x divides its float32 scalar by a Python int in float64.
        batch = xp.asarray(inputs.shape[0], dtype=inputs.dtype,
                           device=array_api_compat.device(inputs))
        return xp.sum(difference * difference) / batch  # Eq. (1)

    def compute_backward(self, xp, difference):
        return (2 * difference) / difference.shape[0]  # Eq. (2)
