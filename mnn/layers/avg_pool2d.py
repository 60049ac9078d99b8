r"""Two-dimensional average pooling."""

from __future__ import annotations

import numpy as np

from mnn.base import BaseLayer, Example
from mnn.layers.conv2d import place_taps
from mnn.layers.max_pool2d import pool_arguments, pool_windows


class AvgPool2d(BaseLayer):
    r"""The mean of each :math:`k_h \times k_w` window of NCHW images, per channel.

    Arguments as torch's ``AvgPool2d`` with its defaults (``count_include_pad=True``,
    ``ceil_mode=False``): ``kernel_size`` :math:`k`, ``stride`` :math:`s` (``None``: the
    kernel size) and ``padding`` :math:`p` (zeros, at most half the kernel), each an int
    or an (height, width) pair. The padded zeros count in every mean: each divides by
    :math:`k_h k_w`. The equations are written for the height; the width is the same
    with :math:`j, w, u` for :math:`i, h, t`.

    Forward
    -------
    With :math:`\tilde x` the input padded with :math:`p` zeros on each side,

    .. math::
        y_{n c h w} = \frac{1}{k_h k_w} \sum_{i=0}^{k_h-1} \sum_{j=0}^{k_w-1}
            \tilde x_{n,\, c,\, s h + i,\, s w + j}  \qquad (1)

    for :math:`0 \le h < H' = \lfloor (H + 2p - k)/s \rfloor + 1`: ``Conv2d``'s Eq. (1)
    with one constant kernel per channel, computed as the sum of the :math:`k_h k_w`
    strided slices of its Eq. (3).

    Jacobian
    --------
    .. math::
        \frac{\partial y_{n c h w}}{\partial \tilde x_{n' c' t u}} =
            \frac{\delta_{n n'}\, \delta_{c c'}}{k_h k_w} \sum_{i, j}
            \delta_{t,\, s h + i}\, \delta_{u,\, s w + j}  \qquad (2)

    Vector-Jacobian product
    -----------------------
    Every input entry receives :math:`1/(k_h k_w)` of the gradient of each window that
    covers it:

    .. math::
        \frac{\partial \ell}{\partial \tilde x_{n c t u}} = \frac{1}{k_h k_w}
            \sum_{i, j}\; \sum_{h, w:\; (s h + i, s w + j) = (t, u)} g_{n c h w}  \qquad (3)

    computed tap by tap: :math:`g / (k_h k_w)` spread out by the stride and shifted by
    the tap (``conv2d.place_taps``), and summed; the padded rows are cut off as it is
    placed.
    """

    def __init__(self, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = pool_arguments(
            self.name, kernel_size, stride, padding)
        self.expect_inputs(min_rank=4, max_rank=4)

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks (an oblong
        window, stride 1 across and 2 down, padding; 72 outputs)."""
        return cls((2, 3), stride=(2, 1), padding=1), rng.standard_normal((2, 2, 5, 6)), None

    def compute_forward(self, xp, inputs, feedbacks):
        _, _, taps = pool_windows(self, xp, inputs, 0.0)
        self.save_for_backward(tuple(inputs.shape))
        return sum(taps[1:], taps[0]) / len(taps)  # Eq. (1)

    def compute_backward(self, xp, gradients, shape):
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        share = gradients / (kh * kw)
        taps = [(i - ph, j - pw, share) for i in range(kh) for j in range(kw)]
        return place_taps(xp, taps, self.stride, shape[2], shape[3])  # Eq. (3)
