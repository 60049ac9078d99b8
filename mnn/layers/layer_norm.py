r"""Layer normalisation over the last axes, with a learned scale and shift."""

from __future__ import annotations

import math

import numpy as np

from mnn.base import BaseLayer, Example
from mnn.checks import allocating, finite_non_negative, flag, integer, sample_shape_of
from mnn.errors import ArgumentError
from mnn.initializers import ones, zeros


class LayerNorm(BaseLayer):
    r"""Normalise each sample over its last axes to mean 0 and variance 1, then scale and shift.

    ``LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True)``, as
    ``torch.nn.LayerNorm``: ``normalized_shape`` is an int (the last axis) or a tuple
    (the last ``len(normalized_shape)`` axes); inputs are ``(..., *normalized_shape)``.
    Below, :math:`x \in \mathbb{R}^n` is one sample's :math:`n` normalised entries
    (every leading index is a sample of its own), :math:`\gamma` (``params['w']``,
    ones at first) and :math:`\beta` (``params['b']``, zeros at first) have the
    normalised shape.

    Forward
    -------
    .. math::
        \mu = \frac1n \sum_{j} x_j, \qquad
        \sigma^2 = \frac1n \sum_{j} (x_j - \mu)^2, \qquad
        r = \frac{1}{\sqrt{\sigma^2 + \epsilon}}  \qquad (1)

    .. math::
        \hat x_j = (x_j - \mu)\, r, \qquad y_j = \gamma_j \hat x_j + \beta_j  \qquad (2)

    (:math:`\sigma^2` is the biased variance, divided by :math:`n`, as in torch.)

    Jacobian
    --------
    Every :math:`\hat x_j` depends on every :math:`x_k` through :math:`\mu` and
    :math:`r`. From (1), :math:`\partial \mu / \partial x_k = 1/n` and

    .. math::
        \frac{\partial \sigma^2}{\partial x_k} = \frac2n \sum_j (x_j - \mu)
            \Big(\delta_{jk} - \frac1n\Big) = \frac2n (x_k - \mu)

    (the :math:`1/n` term vanishes: the deviations sum to zero), so
    :math:`\partial r / \partial x_k = -\tfrac12 r^3 \cdot \tfrac2n (x_k - \mu)
    = -\tfrac1n r\, \hat x_k\, r`. The product rule on (2):

    .. math::
        \frac{\partial \hat x_j}{\partial x_k}
            = \Big(\delta_{jk} - \frac1n\Big) r + (x_j - \mu) \frac{\partial r}{\partial x_k}
            = \frac{r}{n} \big(n\,\delta_{jk} - 1 - \hat x_j \hat x_k\big)  \qquad (3)

    an :math:`n \times n` matrix per sample: the identity, minus the projection on
    the constant direction, minus the projection on :math:`\hat x`.

    Vector-Jacobian products
    ------------------------
    Given :math:`g_j = \partial \ell / \partial y_j`, the parameters enter (2)
    linearly; summed over every sample :math:`s`,

    .. math::
        \frac{\partial \ell}{\partial \gamma_j} = \sum_s g_{sj}\, \hat x_{sj}, \qquad
        \frac{\partial \ell}{\partial \beta_j} = \sum_s g_{sj}.  \qquad (4)

    For the input, :math:`\hat g_j = g_j \gamma_j` is the gradient with respect to
    :math:`\hat x_j`, and (3) contracts in :math:`O(n)` per sample, never forming
    the matrix:

    .. math::
        \frac{\partial \ell}{\partial x_k} = \sum_j \hat g_j \frac{r}{n}
            \big(n\,\delta_{jk} - 1 - \hat x_j \hat x_k\big)
        = r \Big(\hat g_k - \overline{\hat g} - \hat x_k\, \overline{\hat g \hat x}\Big)  \qquad (5)

    where the bars are means over the :math:`n` entries. The forward keeps
    :math:`\hat x` and :math:`r`: one array the size of the input, and one number
    per sample. A sample whose variance overflows the dtype (entries beyond about
    :math:`10^{19}` in float32) gives nan, as in torch, rather than a finite wrong value.
    """

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True) -> None:
        super().__init__()
        if not isinstance(normalized_shape, (tuple, list)):  # one axis, given as its size
            normalized_shape = (integer(self.name, "normalized_shape", normalized_shape,
                                        "a positive int or a tuple of them"),)
        self.normalized_shape = sample_shape_of(self.name, normalized_shape, "normalized_shape")
        if not self.normalized_shape:
            raise ArgumentError(f"{self.name}: expected normalized_shape to name at least one "
                                f"axis, got {normalized_shape!r}")
        self.eps = finite_non_negative(self.name, "eps", eps)
        elementwise_affine = flag(self.name, "elementwise_affine", elementwise_affine)
        bias = flag(self.name, "bias", bias)
        self.elementwise_affine, self.bias = elementwise_affine, bias and elementwise_affine
        self.size = math.prod(self.normalized_shape)  # n
        if elementwise_affine:
            with allocating(self.name, *[self.normalized_shape] * (2 if self.bias else 1)):
                self.add_param("w", ones(self.normalized_shape))
                if bias:
                    self.add_param("b", zeros(self.normalized_shape))
        axes = len(self.normalized_shape)
        self.expect_inputs(min_rank=axes, sizes={i - axes: size for i, size in
                                                  enumerate(self.normalized_shape)})

    def _flat(self, xp, array, shape):
        """``(..., *normalized_shape)`` as ``(..., n)``: the normalised axes as one."""
        if len(self.normalized_shape) == 1:
            return array
        return xp.reshape(array, (*shape[:len(shape) - len(self.normalized_shape)], self.size))

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(5), 2 * rng.standard_normal((3, 5)) + 1, None  # scale 1, shift 0

    def compute_forward(self, xp, inputs, feedbacks):
        x = self._flat(xp, inputs, inputs.shape)
        normalized = x - xp.mean(x, axis=-1, keepdims=True)  # x - mu, Eq. (1)
        variance = xp.vecdot(normalized, normalized, axis=-1)[..., None] / self.size
        rstd = 1.0 / xp.sqrt(variance + self.eps)  # r, Eq. (1)
        # A variance that overflows (entries past ~1e19 in float32) gives nan, as torch does,
        # not r = 0 and a finite wrong output. One number per sample: no pass over the inputs.
        rstd = xp.where(xp.isfinite(variance), rstd, xp.nan)
        normalized *= rstd  # x-hat, Eq. (2)
        self.save_for_backward(normalized, rstd)
        if not self.elementwise_affine:
            return xp.reshape(normalized, inputs.shape)
        outputs = normalized * xp.reshape(self.params["w"], (self.size,))  # Eq. (2)
        if self.bias:
            outputs += xp.reshape(self.params["b"], (self.size,))
        return xp.reshape(outputs, inputs.shape)

    def compute_backward(self, xp, gradients, normalized, rstd):
        g = self._flat(xp, gradients, gradients.shape)
        if self.elementwise_affine:
            rows = (-1, self.size)
            self.add_grad("w", xp.reshape(xp.sum(xp.reshape(g * normalized, rows), axis=0),
                                          self.normalized_shape))  # Eq. (4)
            if self.bias:
                self.add_grad("b", xp.reshape(xp.sum(xp.reshape(g, rows), axis=0),
                                              self.normalized_shape))  # Eq. (4)
            g = g * xp.reshape(self.params["w"], (self.size,))  # g-hat
        # Eq. (5); both means are taken before the new array g-hat - mean is changed in place
        projection = xp.vecdot(g, normalized, axis=-1)[..., None] / self.size
        grad = g - xp.mean(g, axis=-1, keepdims=True)
        grad -= normalized * projection
        grad *= rstd
        return xp.reshape(grad, gradients.shape)
