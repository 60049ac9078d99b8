"""NumPy: the host backend. Every array lives in main memory on the one device ``"cpu"``."""

import numpy as np

from .backend import Backend
from .registry import register


class NumpyBackend(Backend):
    name = "numpy"
    module = "numpy"

    def devices(self) -> list[str]:
        return ["cpu"]

    def from_host(self, host, device, dtype=None):
        # A copy, never a view: parameters are updated in place, and must not
        # write through into the caller's arrays.
        return np.array(host, dtype=self.dtype(dtype), copy=True)

    def transpose_matmul(self, left, right):
        return np.dot(left.T, right)  # BLAS gemm even when the summed axis has length 1

    def windows(self, x, kernel, stride, dilation):
        (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
        span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        # (N, H', W', C, span_h, span_w) at stride 1, then every s-th window and d-th tap:
        # a view of the channels-last copy of x
        view = np.lib.stride_tricks.sliding_window_view(np.ascontiguousarray(x), span,
                                                        axis=(1, 2))
        return np.moveaxis(view[:, ::sh, ::sw, :, ::dh, ::dw], 3, -1)  # (N, H', W', kh, kw, C)

    def erf(self, x):
        try:
            from scipy.special import erf  # NumPy itself has none
        except ImportError:
            raise NotImplementedError("numpy has no erf function; scipy has one (pip install "
                                      "scipy)") from None
        return erf(x)

    def scatter_add(self, target, indices, values):
        out = target.copy()
        np.add.at(out, indices, values)  # unbuffered: repeated indices add up
        return out


register(NumpyBackend())
