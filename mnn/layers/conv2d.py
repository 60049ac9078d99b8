r"""Two-dimensional convolution (cross-correlation, as in every deep-learning library)."""

from __future__ import annotations

import array_api_compat
import numpy as np

from mnn.base import BaseLayer, Example
from mnn.checks import allocating, flag, integer, positive_int
from mnn.errors import ArgumentError, ArgumentTypeError, ShapeError
from mnn.initializers import he_uniform, host_generator, zeros
from mnn.types import Seed


class Conv2d(BaseLayer):
    r"""2-D convolution of NCHW images, with torch's arguments and parameter shapes.

    Shapes: inputs :math:`x \in \mathbb{R}^{N \times C \times H \times W}`, weights
    :math:`W \in \mathbb{R}^{O \times (C/G) \times k_h \times k_w}` (``params['w']``,
    torch's layout, so torch's weights load as they are), bias :math:`b \in \mathbb{R}^O`
    (``params['b']``). ``kernel_size``, ``stride`` :math:`s`, ``padding`` :math:`p` and
    ``dilation`` :math:`d` are an int or an (height, width) pair. With ``groups``
    :math:`G`, the channels split into :math:`G` groups: output channel :math:`o` sees
    only the :math:`C/G` input channels of its group :math:`\gamma(o) = \lfloor o
    G/O \rfloor`, and :math:`c(o, c') = \gamma(o) C/G + c'` names the input channel
    :math:`c'` of that group. The equations are written for the height; the width is
    the same with :math:`j, w, u` for :math:`i, h, t`.

    Forward
    -------
    Let :math:`\tilde x` be :math:`x` with :math:`p` zeros on each side of both image
    axes (:math:`\tilde H = H + 2p`). Each output pixel is a dot product of the kernel
    with a window of :math:`\tilde x`:

    .. math::
        y_{n o h w} = b_o + \sum_{c'=0}^{C/G-1} \sum_{i=0}^{k_h-1} \sum_{j=0}^{k_w-1}
            W_{o c' i j}\, \tilde x_{n,\, c(o,c'),\, s h + d i,\, s w + d j}  \qquad (1)

    for :math:`0 \le h < H'` and :math:`0 \le w < W'`, where the last window must fit in
    the padded image:

    .. math::
        H' = \left\lfloor \frac{H + 2p - d(k_h - 1) - 1}{s} \right\rfloor + 1 \ge 1  \qquad (2)

    Regroup (1) by kernel tap :math:`(i, j)`. The entries that tap :math:`(i, j)`
    multiplies form a strided slice of the padded input,
    :math:`X^{(ij)}_{n c h w} = \tilde x_{n, c, s h + d i, s w + d j}`, and within a group
    the sum over :math:`c'` is a matrix product of the tap's weights
    :math:`W_{:, :, i, j}` (:math:`O/G \times C/G`) with that slice, its batch and pixels
    flattened into columns (:math:`C/G \times N H' W'`):

    .. math::
        y = b + \sum_{i, j} W_{:, :, i, j}\; X^{(ij)}  \qquad (3)

    Jacobians
    ---------
    Differentiate (1) entry by entry (:math:`c'` the place of channel :math:`c` in its
    group; the bracket is 1 when :math:`c` is in the group of :math:`o`, else 0):

    .. math::
        \frac{\partial y_{n o h w}}{\partial \tilde x_{n' c t u}} = \delta_{n n'}\,
            [\gamma(o) = \lfloor c G / C \rfloor] \sum_{i, j} W_{o c' i j}\,
            \delta_{t,\, s h + d i}\, \delta_{u,\, s w + d j}  \qquad (4)

    .. math::
        \frac{\partial y_{n o h w}}{\partial W_{o' c' i j}} = \delta_{o o'}\,
            \tilde x_{n,\, c(o, c'),\, s h + d i,\, s w + d j}, \qquad
        \frac{\partial y_{n o h w}}{\partial b_{o'}} = \delta_{o o'}  \qquad (5)

    The first is an :math:`(N O H' W') \times (N C \tilde H \tilde W)` matrix, mostly
    zeros; nobody should build it.

    Input gradient: a transposed convolution
    -----------------------------------------
    Given :math:`g_{nohw} = \partial \ell / \partial y_{nohw}`, summing (4) against
    :math:`g` leaves, for each input pixel :math:`t`, the output pixels whose window
    covers it:

    .. math::
        \frac{\partial \ell}{\partial \tilde x_{n c t u}} = \sum_{o \in \gamma(c)}
            \sum_{i, j}\; \sum_{h:\, s h + d i = t}\; \sum_{w:\, s w + d j = u}
            g_{n o h w}\, W_{o c' i j}  \qquad (6)

    The constraint :math:`s h = t - d i` disappears if :math:`g` is spread out by the
    stride: :math:`\hat g_{n o, s h, s w} = g_{n o h w}`, with :math:`s - 1` zeros
    between neighbours (zero outside its range too). Then

    .. math::
        \frac{\partial \ell}{\partial \tilde x_{n c t u}} = \sum_{o \in \gamma(c)}
            \sum_{i, j} \hat g_{n,\, o,\, t - d i,\, u - d j}\, W_{o c' i j}  \qquad (7)

    Flip the kernel (:math:`i \to k - 1 - i`) and shift :math:`\hat g` down by
    :math:`d(k - 1)` rows (:math:`v_{m} = \hat g_{m - d(k-1)}`, zeros in front):

    .. math::
        \frac{\partial \ell}{\partial \tilde x_{n c t u}} = \sum_{o \in \gamma(c)}
            \sum_{i, j} v_{n,\, o,\, t + d i,\, u + d j}\,
            W_{o,\, c',\, k_h - 1 - i,\, k_w - 1 - j}  \qquad (8)

    which is (1) again, with stride 1, no bias, the input :math:`v` and the kernel
    :math:`W^\top_{c o' i j} = W_{\gamma(c) O/G + o',\, c',\, k_h-1-i,\, k_w-1-j}`:
    input and output channels swapped within each group, the taps flipped. That is the
    transposed convolution, and the code runs the forward's own function on it. The
    gradient of :math:`x` drops the :math:`p` padded rows on each side:

    .. math::
        \frac{\partial \ell}{\partial x_{n c t u}} =
            \frac{\partial \ell}{\partial \tilde x_{n,\, c,\, t + p,\, u + p}},
            \qquad 0 \le t < H  \qquad (9)

    so the code drops the first :math:`p` rows of :math:`v` (and what lies beyond the
    last row (9) needs), and (8) computes only the :math:`H` rows that are kept.

    Weight gradient: a correlation of input and output gradient
    -----------------------------------------------------------
    Summing (5) against :math:`g`:

    .. math::
        \frac{\partial \ell}{\partial W_{o c' i j}} = \sum_{n, h, w} g_{n o h w}\,
            \tilde x_{n,\, c(o, c'),\, s h + d i,\, s w + d j}
            \qquad (10)

    the correlation of the padded input with the output gradient, and

    .. math::
        \frac{\partial \ell}{\partial b_o} = \sum_{n, h, w} g_{n o h w}  \qquad (11)

    (10) is (1) again with the roles swapped. Let the batch of :math:`\tilde x` become
    channels: image :math:`c'` of :math:`\hat x` has the :math:`G N` channels
    :math:`\hat x_{c', \gamma N + n} = \tilde x_{n,\, \gamma C/G + c'}`, one per group
    and example; and let :math:`g` be the kernel, with output channel :math:`o`, input
    channel :math:`n` and taps :math:`(h, w)`. Then (10) reads

    .. math::
        \frac{\partial \ell}{\partial W_{o c' i j}} = \sum_{n, h, w} g_{n o h w}\,
            \hat x_{c',\, \gamma(o) N + n,\, d i + s h,\, d j + s w}  \qquad (12)

    which is (1) for the output pixel :math:`(i, j)` of image :math:`c'`, with
    :math:`G` groups, the stride :math:`d` and the dilation :math:`s` (swapped), and no
    padding: the code runs the forward's own function on it, on :math:`\tilde x` cut
    after the last row a window reaches, :math:`s(H' - 1) + d(k_h - 1) + 1`, so that
    exactly :math:`k_h \times k_w` pixels come out.

    Formulation
    -----------
    Forward, input gradient (8) and weight gradient (12) are one function, ``correlate``.
    It asks the backend adapter first (``Backend.correlate``): PyTorch and JAX have a
    convolution of their own, and give it. The array API standard has none, and no
    ``as_strided``, and arrays of JAX and array-api-strict cannot be written in place; so
    for every other library this layer gathers the windows of (1) as the rows of one
    matrix (im2col). With the image channels-last, :math:`(N, H, W, C)`, a window's
    entries :math:`(i, j, c')` of one group form a row, one row per output pixel
    :math:`(n, h, w)`: an :math:`(N H' W') \times (k_h k_w C/G)` matrix :math:`X`. (3)
    becomes one matrix product per group, with the kernel flattened the same way to
    :math:`(k_h k_w C/G) \times O/G`:

    .. math::
        y^\top = X\, W_{\text{flat}}^\top + b  \qquad (13)

    The windows come from the adapter, ``Backend.windows``: its portable default stacks
    strided slices, basic indexing that every library supports on immutable arrays;
    NumPy gives them as a view (``sliding_window_view``), and only the reshape into
    :math:`X` copies, runs of :math:`k_w C` numbers side by side, since the channels
    come last. The backward needs no scatter-add of overlapping windows: (8) and (12)
    are correlations, gathered the same way. The tests check that the adapters' paths
    and the portable one give the same layer, and ``nox -s bench`` times them against
    torch.

    Initialisation: He-uniform weights (fan-in :math:`C/G \cdot k_h k_w`, for layers
    followed by ReLU; see ``mnn.initializers``), zero bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True, *,
                 rng: Seed = None) -> None:
        super().__init__()
        name = self.name
        self.in_channels = positive_int(name, "in_channels", in_channels)
        self.out_channels = positive_int(name, "out_channels", out_channels)
        self.kernel_size = pair(name, "kernel_size", kernel_size)
        self.stride = pair(name, "stride", stride)
        self.padding = pair(name, "padding", padding, minimum=0)
        self.dilation = pair(name, "dilation", dilation)
        self.groups = positive_int(name, "groups", groups)
        self.bias = flag(name, "bias", bias)
        for what, channels in (("in_channels", self.in_channels),
                               ("out_channels", self.out_channels)):
            if channels % self.groups:
                raise ArgumentError(f"{name}: expected groups to divide {what}, got groups="
                                    f"{self.groups} and {what}={channels}")
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        generator = host_generator(rng)
        with allocating(name, *([shape, (self.out_channels,)] if self.bias else [shape])):
            self.add_param("w", he_uniform(shape, int(np.prod(shape[1:])), generator))
            if self.bias:
                self.add_param("b", zeros((self.out_channels,)))
        self.expect_inputs(min_rank=4, max_rank=4, sizes={1: self.in_channels})

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks.

        Stride, padding, dilation and groups all differ from their defaults, and the
        full Jacobian stays small: 2 x 4 x 2 x 2 = 32 outputs, 2 x 2 x 5 x 6 = 120 inputs.
        """
        layer = cls(2, 4, 3, stride=2, padding=1, dilation=(2, 1), groups=2, rng=rng)
        layer.params["b"] = rng.standard_normal(4)
        return layer, rng.standard_normal((2, 2, 5, 6)), None

    def compute_forward(self, xp, inputs, feedbacks):
        output_size(self, inputs.shape, self.kernel_size, self.stride, self.padding,
                    self.dilation)  # Eq. (2): the kernel must fit
        (ph, pw) = self.padding
        padded = pad2d(xp, inputs, ph, ph, pw, pw)
        self.save_for_backward(padded)
        outputs = correlate(self.placement.backend, xp, padded, self.params["w"], self.stride,
                            self.dilation, self.groups)  # Eq. (1)
        if self.bias:
            outputs = outputs + xp.reshape(self.params["b"], (1, -1, 1, 1))
        return outputs

    def compute_backward(self, xp, gradients, padded):
        g, backend, groups = gradients, self.placement.backend, self.groups
        if self.bias:
            self.add_grad("b", xp.sum(g, axis=(0, 2, 3)))  # Eq. (11)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        n, channels, out_h, out_w = padded.shape[0], padded.shape[1], g.shape[2], g.shape[3]
        # Eq. (12): x-tilde up to the last row a window reaches, its batch and groups as the
        # channels of C/G images; g as the kernel, its batch as input channels
        reach = padded[..., :sh * (out_h - 1) + dh * (kh - 1) + 1,
                       :sw * (out_w - 1) + dw * (kw - 1) + 1]
        images = xp.reshape(reach, (n, groups, channels // groups, *reach.shape[2:]))
        images = xp.reshape(xp.permute_dims(images, (2, 1, 0, 3, 4)),
                            (channels // groups, groups * n, *reach.shape[2:]))
        w_grad = correlate(backend, xp, images, xp.permute_dims(g, (1, 0, 2, 3)),
                           self.dilation, self.stride, groups)  # Eq. (12): (C/G, O, kh, kw)
        self.add_grad("w", xp.permute_dims(w_grad, (1, 0, 2, 3)))
        if not self.input_grad:
            return None
        (ph, pw) = self.padding
        height, width = padded.shape[2] - 2 * ph, padded.shape[3] - 2 * pw
        # Eq. (7) to (9): g-hat, shifted by d(k - 1), the p padded rows on each side
        # dropped, in the H + d(k - 1) rows that give H rows of gradient
        v = place_taps(xp, [(dh * (kh - 1) - ph, dw * (kw - 1) - pw, g)], self.stride,
                       height + dh * (kh - 1), width + dw * (kw - 1))
        return correlate(backend, xp, v, transposed_kernel(xp, self.params["w"], groups),
                         (1, 1), self.dilation, groups)  # Eq. (8)


def correlate(backend, xp, x, w, stride, dilation, groups: int):
    """Eq. (1) without padding and bias: ``x`` (N, C, H, W) correlated with the kernel ``w``
    (O, C/G, kh, kw), in (N, O, H', W'). The adapter's own convolution where its library
    has one (``Backend.correlate``); else the product of Eq. (13) with the matrix that
    ``im2col`` gathers."""
    fast = backend.correlate(x, w, stride, dilation, groups)
    if fast is not None:
        return fast
    out_channels, group_in, kh, kw = w.shape
    matrix, (n, out_h, out_w) = im2col(backend, xp, x, (kh, kw), stride, dilation, groups)
    kernel = xp.reshape(w, (groups, out_channels // groups, group_in, kh, kw))
    kernel = xp.reshape(xp.permute_dims(kernel, (0, 3, 4, 2, 1)),
                        (groups, kh * kw * group_in, out_channels // groups))
    y = matrix @ kernel  # Eq. (13): (G, N H' W', O/G)
    y = xp.reshape(y, (groups, n, out_h, out_w, out_channels // groups))
    return xp.reshape(xp.permute_dims(y, (1, 0, 4, 2, 3)), (n, out_channels, out_h, out_w))


def im2col(backend, xp, x, kernel, stride, dilation, groups: int):
    """The matrix X of Eq. (13) for each group, ``(G, N H' W', kh kw C/G)``, of ``x`` in
    (N, C, H, W): the adapter's windows of the channels-last image, a row per output
    pixel; and (N, H', W')."""
    n, channels = x.shape[0], x.shape[1]
    windows = backend.windows(xp.permute_dims(x, (0, 2, 3, 1)), kernel,
                              stride, dilation)  # (N, H', W', kh, kw, C)
    out_h, out_w = windows.shape[1], windows.shape[2]
    windows = xp.reshape(windows, (n * out_h * out_w, kernel[0] * kernel[1], groups,
                                   channels // groups))
    matrix = xp.reshape(xp.permute_dims(windows, (2, 0, 1, 3)),
                        (groups, n * out_h * out_w, kernel[0] * kernel[1] * channels // groups))
    return matrix, (n, out_h, out_w)


# --- what the pooling layers share with the convolution ------------------------------------


def pair(owner: str, name: str, value, minimum: int = 1) -> tuple[int, int]:
    """An int or an (height, width) pair of ints, each at least ``minimum``, as a pair."""
    wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ArgumentTypeError(f"{owner}: expected {name} to be {wanted} or a pair of "
                                    f"them, got {value!r}")
        values = tuple(integer(owner, name, v, f"{wanted} or a pair of them") for v in value)
    else:
        values = (integer(owner, name, value, f"{wanted} or a pair of them"),) * 2
    if min(values) < minimum:
        raise ArgumentError(f"{owner}: expected {name} to be {wanted} or a pair of them, "
                            f"got {value!r}")
    return values


def output_size(layer, shape, kernel, stride, padding, dilation) -> tuple[int, int]:
    """Eq. (2): the output's height and width; a ``ShapeError`` if the (dilated) kernel
    does not fit in the padded image, checked before anything is padded."""
    sizes = []
    for axis, size, k, s, p, d in zip((2, 3), shape[2:], kernel, stride, padding, dilation,
                                      strict=True):
        span = d * (k - 1) + 1
        if size + 2 * p < span:
            raise ShapeError(
                f"{layer.name}: expected inputs with at least {span - 2 * p} entries along "
                f"axis {axis} (the kernel spans {span} with dilation {d}, and padding adds "
                f"{2 * p}), got inputs of shape {tuple(shape)}")
        sizes.append((size + 2 * p - span) // s + 1)
    return tuple(sizes)


def pad2d(xp, x, top: int, bottom: int, left: int, right: int, value: float = 0.0):
    """``x`` with rows and columns of ``value`` added to its last two axes (a negative
    count cuts that many off instead): slices and ``concat``, so immutable arrays pad too."""
    height, width = x.shape[-2], x.shape[-1]
    x = x[..., max(-top, 0):height - max(-bottom, 0), max(-left, 0):width - max(-right, 0)]
    device = array_api_compat.device(x)

    def border(rows: int, columns: int):
        return xp.full((*x.shape[:-2], rows, columns), value, dtype=x.dtype, device=device)

    if top > 0 or bottom > 0:
        x = xp.concat([border(max(top, 0), x.shape[-1]), x,
                       border(max(bottom, 0), x.shape[-1])], axis=-2)
    if left > 0 or right > 0:
        x = xp.concat([border(x.shape[-2], max(left, 0)), x,
                       border(x.shape[-2], max(right, 0))], axis=-1)
    return x


def tap(padded, i: int, j: int, out: tuple[int, int], stride, dilation):
    """The strided slice that kernel tap ``(i, j)`` multiplies: the entries at rows
    ``s h + d i`` and columns ``s w + d j`` for every output pixel ``(h, w)``."""
    (sh, sw), (dh, dw) = stride, dilation
    return padded[..., dh * i:dh * i + sh * (out[0] - 1) + 1:sh,
                  dw * j:dw * j + sw * (out[1] - 1) + 1:sw]


def place_taps(xp, taps, stride, height: int, width: int):
    r"""The sum of ``taps``, each ``(top, left, values)`` with one value per output pixel
    ``(h, w)``, put at rows ``s h + top`` and columns ``s w + left`` of an
    ``height x width`` array of zeros; what falls outside is cut off (offsets may be
    negative). ``Conv2d``'s :math:`\hat g` of Eq. (7), shifted, and the pooling layers'
    backward.

    A tap's rows are the multiples of :math:`s` from ``top``: write ``top`` as
    :math:`a s + r` with :math:`0 \le r < s`. Taps of one block :math:`a` (and the same for
    the columns) differ only in :math:`r`, and fill disjoint rows: they are stacked on a
    new axis after the rows, and a reshape interleaves them (a remainder without a tap
    is zeros). Each block is then padded into place, and the blocks are summed: one
    block for pooling windows side by side (stride = kernel), one per tap at stride 1.
    """
    (sh, sw) = stride
    blocks: dict = {}
    for top, left, values in taps:
        blocks.setdefault((top // sh, left // sw), {})[(top % sh, left % sw)] = values
    total = None
    for (a, b), members in blocks.items():
        if sh == sw == 1:
            block = members[(0, 0)]
        else:
            zero = xp.zeros_like(next(iter(members.values()))) if len(members) < sh * sw else None
            grid = xp.stack([xp.stack([members.get((r, q), zero) for q in range(sw)], axis=-1)
                             for r in range(sh)], axis=-3)  # (..., H', s_h, W', s_w)
            *lead, out_h, _, out_w, _ = grid.shape
            block = xp.reshape(grid, (*lead, out_h * sh, out_w * sw))
        top, left = a * sh, b * sw
        placed = pad2d(xp, block, top, height - top - block.shape[-2],
                       left, width - left - block.shape[-1])
        total = placed if total is None else total + placed
    return total


def transposed_kernel(xp, w, groups: int):
    """The kernel of Eq. (8): input and output channels swapped within each group, and
    the taps flipped, in torch's layout (C, O/G, kh, kw)."""
    out_channels, group_in, kh, kw = w.shape
    w = xp.reshape(w, (groups, out_channels // groups, group_in, kh, kw))
    w = xp.permute_dims(w, (0, 2, 1, 3, 4))
    return xp.flip(xp.reshape(w, (groups * group_in, out_channels // groups, kh, kw)),
                   axis=(-2, -1))
