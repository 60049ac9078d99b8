r"""Two-dimensional max pooling."""

from __future__ import annotations

import math

import array_api_compat
import numpy as np

from mnn.base import BaseLayer, Example
from mnn.errors import ArgumentError
from mnn.layers.conv2d import output_size, pad2d, pair, place_taps, tap


class MaxPool2d(BaseLayer):
    r"""The largest entry of each :math:`k_h \times k_w` window of NCHW images, per channel.

    Arguments as torch's ``MaxPool2d``: ``kernel_size`` :math:`k`, ``stride`` :math:`s`
    (``None``: the kernel size, windows side by side) and ``padding`` :math:`p` (at most
    half the kernel, so that every window holds an entry of the image), each an int or
    an (height, width) pair. The equations are written for the height; the width is the
    same with :math:`j, w, u` for :math:`i, h, t`.

    Forward
    -------
    Let :math:`\tilde x` be :math:`x` with :math:`p` entries :math:`-\infty` on each side
    of both image axes (never larger than an entry of the image). Then

    .. math::
        y_{n c h w} = \max_{0 \le i < k_h,\; 0 \le j < k_w}
            \tilde x_{n,\, c,\, s h + i,\, s w + j}  \qquad (1)

    for :math:`0 \le h < H' = \lfloor (H + 2p - k)/s \rfloor + 1`, computed as the
    elementwise maximum of the :math:`k_h k_w` strided slices of ``Conv2d``'s Eq. (3). A
    window that holds a NaN gives NaN.

    Jacobian
    --------
    Each output is one of the entries of its window, the argmax
    :math:`(i^*, j^*) = a(n, c, h, w)`; where the maximum is unique, a small change of
    the input keeps it there, so

    .. math::
        \frac{\partial y_{n c h w}}{\partial \tilde x_{n' c' t u}} = \delta_{n n'}\,
            \delta_{c c'}\, \delta_{t,\, s h + i^*}\, \delta_{u,\, s w + j^*}  \qquad (2)

    **Tie rule.** Where several entries of a window equal the maximum, the function has
    no derivative there; like torch on the CPU, this layer takes the first of them in
    row-major window order (smallest :math:`i`, then smallest :math:`j`), so the whole
    gradient goes to that one entry. In a window with a NaN, the first NaN takes it.

    Vector-Jacobian product
    -----------------------
    Summing (2) against :math:`g = \partial \ell / \partial y` sends each output
    gradient to its window's argmax; windows overlap when :math:`s < k`, and an entry
    that is the argmax of several windows collects all their gradients:

    .. math::
        \frac{\partial \ell}{\partial \tilde x_{n c t u}} = \sum_{h, w:\;
            (s h + i^*, s w + j^*) = (t, u)} g_{n c h w}  \qquad (3)

    The code goes through the taps in row-major order: a tap's mask marks the pixels
    whose argmax it is (equal to the maximum, and no earlier tap taken), and the masked
    gradient belongs at the tap's positions, spread out by the stride and shifted by the
    tap (``conv2d.place_taps``, which interleaves the taps of windows side by side into
    one array). The sum over taps is (3), without a scatter; the padded rows are cut off
    as it is placed.
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
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks (overlapping
        windows, padding, 36 outputs; random inputs, so no ties)."""
        return cls(3, stride=2, padding=1), rng.standard_normal((2, 2, 5, 6)), None

    def compute_forward(self, xp, inputs, feedbacks):
        padded, out, taps = pool_windows(self, xp, inputs, -math.inf)
        outputs = taps[0]
        for window in taps[1:]:
            outputs = xp.maximum(outputs, window)  # Eq. (1)
        self.save_for_backward(padded, outputs)
        return outputs

    def compute_backward(self, xp, gradients, padded, outputs):
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        height, width = padded.shape[2] - 2 * ph, padded.shape[3] - 2 * pw
        out = tuple(outputs.shape[2:])
        zeros = xp.zeros_like(gradients)
        taken = xp.zeros(outputs.shape, dtype=xp.bool, device=array_api_compat.device(outputs))
        taps = []
        for i in range(kh):
            for j in range(kw):
                window = tap(padded, i, j, out, self.stride, (1, 1))
                # the tie rule: the first tap in row-major order that holds the maximum
                hit = ((window == outputs) | xp.isnan(window)) & ~taken
                taken = taken | hit
                taps.append((i - ph, j - pw, xp.where(hit, gradients, zeros)))
        return place_taps(xp, taps, self.stride, height, width)  # Eq. (3)


def pool_arguments(owner: str, kernel_size, stride, padding):
    """The window of a pooling layer: ``kernel_size``, ``stride`` (``None``: the kernel size)
    and ``padding`` as pairs; the padding at most half the kernel, as torch requires."""
    kernel = pair(owner, "kernel_size", kernel_size)
    stride = kernel if stride is None else pair(owner, "stride", stride)
    padding = pair(owner, "padding", padding, minimum=0)
    if any(2 * p > k for p, k in zip(padding, kernel, strict=True)):
        raise ArgumentError(f"{owner}: expected padding at most half of kernel_size, got "
                            f"padding={padding} and kernel_size={kernel}")
    return kernel, stride, padding


def pool_windows(layer, xp, inputs, fill: float):
    """The inputs padded with ``fill``, the output's height and width (``Conv2d``'s Eq. (2))
    and the strided slice of every tap of the window, in row-major order."""
    out = output_size(layer, inputs.shape, layer.kernel_size, layer.stride, layer.padding,
                      (1, 1))
    (kh, kw), (ph, pw) = layer.kernel_size, layer.padding
    padded = pad2d(xp, inputs, ph, ph, pw, pw, fill)
    return padded, out, [tap(padded, i, j, out, layer.stride, (1, 1))
                         for i in range(kh) for j in range(kw)]
