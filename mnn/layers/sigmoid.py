r"""The logistic sigmoid, elementwise."""

from __future__ import annotations

from mnn.base import BaseLayer
from mnn.registry import register_layer


@register_layer
class Sigmoid(BaseLayer):
    r"""Elementwise :math:`y = \sigma(x) = 1 / (1 + e^{-x})`, as ``torch.nn.Sigmoid``; any shape.

    Forward
    -------
    .. math::
        y_i = \sigma(x_i) = \frac{1}{1 + e^{-x_i}}  \qquad (1)

    For :math:`x \ll 0`, :math:`e^{-x}` overflows (:math:`e^{1000}`). Multiplying
    numerator and denominator by :math:`e^{x}` gives the same value written with
    :math:`e^{x}` instead, so with :math:`e = e^{-|x|} \in (0, 1]`, which never
    overflows:

    .. math::
        \sigma(x) = \begin{cases} \dfrac{1}{1 + e} & x \ge 0 \\[1ex]
                                  \dfrac{e}{1 + e} & x < 0 \end{cases}  \qquad (2)

    Both branches are accurate to the last bit: no difference of nearly equal numbers.

    Jacobian
    --------
    Diagonal, as for every elementwise function. Differentiating (1),

    .. math::
        \frac{\partial y_i}{\partial x_j} = \delta_{ij} \frac{e^{-x_i}}{(1 + e^{-x_i})^2}
            = \delta_{ij}\, \frac{1}{1 + e^{-x_i}} \cdot \frac{e^{-x_i}}{1 + e^{-x_i}}
            = \delta_{ij}\, y_i (1 - y_i).  \qquad (3)

    Vector-Jacobian product
    -----------------------
    .. math::
        \frac{\partial \ell}{\partial x_i} = g_i\, y_i (1 - y_i)  \qquad (4)

    from the output alone, which is what the forward keeps.
    """

    def __init__(self):
        super().__init__()
        self.expect_inputs()

    def compute_forward(self, xp, inputs, feedbacks):
        e = xp.exp(-xp.abs(inputs))  # in (0, 1]: cannot overflow
        reciprocal = 1.0 / (1.0 + e)
        outputs = xp.where(inputs >= 0, reciprocal, e * reciprocal)  # Eq. (2)
        self.save_for_backward(outputs)
        return outputs

    def compute_backward(self, xp, gradients, outputs):
        return gradients * outputs * (1.0 - outputs)  # Eq. (4)
