r"""GELU, the Gaussian error linear unit: exact (with erf) or in its tanh form."""

from __future__ import annotations

import math

import numpy as np

from mnn import backends
from mnn.base import BaseLayer, Example
from mnn.checks import one_of
from mnn.errors import MissingFunctionError

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
TANH_CUBIC = 0.044715  # the constant of the tanh form (Hendrycks and Gimpel, 2016)


class GELU(BaseLayer):
    r"""Elementwise :math:`y = x\,\Phi(x)`, as ``torch.nn.GELU(approximate=...)``; any shape.

    :math:`\Phi` is the standard normal distribution function: GELU weighs its
    input by the probability that a standard normal variable lies below it.
    ``approximate="none"`` (the default, as in torch) computes :math:`\Phi` with
    ``erf``, which the array API standard lacks: the backend adapter supplies it
    (``Backend.erf``: PyTorch, JAX, CuPy, and NumPy when SciPy is installed).
    ``approximate="tanh"`` is the tanh form that GPT-2 used; it needs nothing
    beyond the standard, so it runs on every backend.

    Forward
    -------
    Exact, with :math:`\Phi(x) = \tfrac12 \big(1 + \operatorname{erf}(x / \sqrt 2)\big)`:

    .. math::
        y = x\,\Phi(x) = \tfrac12\, x \big(1 + \operatorname{erf}(x/\sqrt2)\big)  \qquad (1)

    Tanh form, with :math:`c = \sqrt{2/\pi}` and :math:`a = 0.044715`
    (:math:`\tfrac12(1 + \tanh u)` approximates :math:`\Phi(x)` to about :math:`10^{-3}`):

    .. math::
        u = c\,(x + a x^3), \qquad y = \tfrac12\, x\,(1 + \tanh u)  \qquad (2)

    Since :math:`\tanh u = \frac{1 - e^{-2u}}{1 + e^{-2u}}`, we have
    :math:`\tfrac12 (1 + \tanh u) = \frac{1}{1 + e^{-2u}} = \sigma(2u)`, the logistic
    sigmoid, so the code computes the same function as

    .. math::
        s = \sigma(2u) = \frac{1}{1 + e^{-2u}}, \qquad y = x\, s  \qquad (3)

    with the adapter's ``sigmoid`` (one pass where the library has a kernel for it,
    without overflow for :math:`x \ll 0` everywhere; see ``Backend.sigmoid``) instead
    of a ``tanh``: fewer passes over the array, and a kernel that every library has
    tuned.

    Jacobian
    --------
    Elementwise, so diagonal; the derivative of each form by the product rule. For
    (1), :math:`\Phi' = \varphi`, the normal density
    :math:`\varphi(x) = e^{-x^2/2} / \sqrt{2\pi}`:

    .. math::
        \frac{dy}{dx} = \Phi(x) + x\,\varphi(x)  \qquad (4)

    For (3), with :math:`\sigma' = \sigma (1 - \sigma)` and
    :math:`d(2u)/dx = 2c\,(1 + 3 a x^2)`:

    .. math::
        \frac{dy}{dx} = s + x\, s (1 - s)\, 2c\, (1 + 3 a x^2)
            = s + 2c\, w + 6ca\, w x^2, \qquad w = s (1 - s)\, x  \qquad (5)

    (in terms of :math:`t = \tanh u = 2s - 1` it is the familiar
    :math:`\tfrac12(1 + t) + \tfrac12 x (1 - t^2)\, c (1 + 3ax^2)`). The code
    forms :math:`w` first and multiplies it by :math:`x` twice, never forming
    :math:`x^2` or :math:`x^3` alone: where they overflow (:math:`x^3` in float16 beyond
    :math:`|x| = 40`), :math:`s (1 - s)` is exactly 0, and so is :math:`w x^2`, where
    :math:`x^3 \cdot 0` would be :math:`\infty \cdot 0`, nan.

    Vector-Jacobian product
    -----------------------
    :math:`\partial \ell / \partial x_i = g_i \, dy_i/dx_i`, elementwise. The forward
    keeps :math:`x` and :math:`\Phi(x)` (exact) or :math:`x` and :math:`s` (tanh),
    so that the backward recomputes no ``erf`` and no sigmoid.
    Temporaries are updated in place where the library allows it (``w *= x``):
    fewer arrays to allocate, the same values.
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = one_of(self.name, "approximate", approximate, ("none", "tanh"))
        self.expect_inputs()

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(approximate="tanh"), 2 * rng.standard_normal((3, 4)), None  # erf: its test

    def compute_forward(self, xp, inputs, feedbacks):
        backend = backends.for_array(inputs)
        if self.approximate == "tanh":
            twice_u = inputs * inputs  # 2u = 2c (1 + a x^2) x, Eq. (2)
            twice_u *= 2.0 * SQRT_2_OVER_PI * TANH_CUBIC
            twice_u += 2.0 * SQRT_2_OVER_PI
            twice_u *= inputs
            s = backend.sigmoid(twice_u)  # Eq. (3)
            self.save_for_backward(inputs, s)
            return inputs * s  # Eq. (3)
        try:
            erf = backend.erf(inputs * (1.0 / math.sqrt(2.0)))
        except NotImplementedError as error:
            raise MissingFunctionError(
                f"{self.name}: approximate='none' needs the error function erf, and {error}; "
                f"use GELU(approximate='tanh'), which needs only the array API standard"
            ) from None
        cdf = 0.5 * (1.0 + erf)  # Phi(x)
        self.save_for_backward(inputs, cdf)
        return inputs * cdf  # Eq. (1)

    def compute_backward(self, xp, gradients, inputs, saved):
        if self.approximate == "tanh":
            s = saved
            slope = 1.0 - s  # w = s (1 - s) x, Eq. (5)
            slope *= s
            slope *= inputs
            cubic = slope * inputs  # 6ca w x^2
            cubic *= inputs
            cubic *= 6.0 * SQRT_2_OVER_PI * TANH_CUBIC
            slope *= 2.0 * SQRT_2_OVER_PI  # 2c w
            slope += cubic
            slope += s
        else:
            slope = inputs * inputs  # Eq. (4): Phi + x phi(x)
            slope *= -0.5
            slope = xp.exp(slope)
            slope *= inputs * (1.0 / math.sqrt(2.0 * math.pi))
            slope += saved
        slope *= gradients
        return slope
