r"""Elementwise natural logarithm."""

from __future__ import annotations

import numpy as np

from mnn.base import BaseLayer, Example


class LogLayer(BaseLayer):
    r"""Elementwise :math:`y = \log x` (natural logarithm), any shape.

    Forward
    -------
    .. math::
        y_i = \log x_i  \qquad (1)

    Jacobian
    --------
    Each output depends on its own input only, so the Jacobian is diagonal:

    .. math::
        \frac{\partial y_i}{\partial x_j} = \frac{\delta_{ij}}{x_i}.

    Vector-Jacobian product
    -----------------------
    .. math::
        \frac{\partial \ell}{\partial x_j} = \sum_i g_i \frac{\delta_{ij}}{x_i}
            = \frac{g_j}{x_j}  \qquad (2)

    An elementwise division instead of an :math:`n \times n` diagonal matrix.

    Non-positive inputs
    -------------------
    Handled as NumPy and PyTorch do, without an exception: :math:`\log 0 = -\infty`,
    :math:`\log x = \mathrm{nan}` for :math:`x < 0`, and (2) gives :math:`\pm\infty`
    (or nan where :math:`g = 0`) at :math:`x = 0`. NumPy also emits its usual
    ``RuntimeWarning`` (divide by zero / invalid value). The layer does not check:
    inspecting the values would cost a device synchronisation every call, and
    ``-inf``/``nan`` in a loss are the signal users of both libraries know. To take
    logs of probabilities, prefer ``LogSoftmaxLayer``, which never sees a 0.
    """

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(), rng.uniform(0.5, 2.0, (3, 4)), None  # log needs x > 0

    def compute_forward(self, xp, inputs, feedbacks):
        self.save_for_backward(inputs)
        return xp.log(inputs)  # Eq. (1)

    def compute_backward(self, xp, gradients, inputs):
        return gradients / inputs  # Eq. (2)
