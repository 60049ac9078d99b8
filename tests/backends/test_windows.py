"""``Backend.windows`` and ``Backend.correlate``: the im2col and the convolution of
``Conv2d``. Every adapter's windows equal the definition and the portable default, and
``Conv2d`` computes the same through an adapter's fast paths (its windows, its own
convolution) as through the portable ones."""

import numpy as np
import pytest

import mnn
from mnn.backends import Backend

#: (input shape (N, H, W, C), kernel, stride, dilation): square and oblong kernels, stride
#: and dilation > 1 on one axis or both, a 1x1 kernel, a window as large as the input, and
#: kernels with more taps than output pixels (the default's other loop).
CASES = [
    ((2, 9, 8, 3), (3, 3), (1, 1), (1, 1)),
    ((1, 11, 13, 2), (3, 2), (2, 3), (2, 1)),
    ((3, 7, 6, 1), (2, 3), (3, 1), (1, 2)),
    ((2, 5, 5, 2), (1, 1), (2, 2), (1, 1)),
    ((1, 5, 5, 4), (5, 4), (1, 1), (1, 1)),
    ((2, 12, 11, 3), (9, 8), (1, 1), (1, 1)),
    ((2, 13, 11, 1), (5, 4), (2, 1), (1, 2)),
]


def definition(x, kernel, stride, dilation):
    """out[n, h, w, i, j, c] = x[n, s_h h + d_h i, s_w w + d_w j, c], entry by entry."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    out_h = (x.shape[1] - dh * (kh - 1) - 1) // sh + 1
    out_w = (x.shape[2] - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((x.shape[0], out_h, out_w, kh, kw, x.shape[3]), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            for h in range(out_h):
                for w in range(out_w):
                    out[:, h, w, i, j, :] = x[:, sh * h + dh * i, sw * w + dw * j, :]
    return out


@pytest.mark.parametrize("shape, kernel, stride, dilation", CASES)
def test_windows_equal_the_definition_and_the_portable_default(target, rng, shape, kernel,
                                                               stride, dilation):
    x = rng.standard_normal(shape)
    expected = definition(x, kernel, stride, dilation)
    fast = target.backend.windows(target.asarray(x), kernel, stride, dilation)
    portable = Backend.windows(target.backend, target.asarray(x), kernel, stride, dilation)
    np.testing.assert_array_equal(target.to_host(fast), expected)
    np.testing.assert_array_equal(target.to_host(portable), expected)


def test_numpy_windows_are_a_view_of_a_channels_last_input(rng):
    """The fast path copies nothing more: the windows share the memory of an input that is
    channels-last already."""
    x = rng.standard_normal((2, 12, 12, 3)).astype(np.float32)
    windows = mnn.backends.get("numpy").windows(x, (5, 5), (1, 1), (1, 1))
    assert np.shares_memory(windows, x)


CONV_CONFIGS = [
    dict(in_channels=6, out_channels=4, kernel_size=3, stride=2, padding=1, dilation=(2, 1),
         groups=2),
    dict(in_channels=1, out_channels=3, kernel_size=(3, 2), padding=(0, 2)),
]


@pytest.mark.parametrize("arguments", CONV_CONFIGS)
def test_conv2d_fast_path_equals_the_portable_path(target, rng, monkeypatch, arguments):
    """Forward, input gradient and parameter gradients through the adapter's windows and
    convolution, and through the portable defaults, from the same weights and inputs."""
    x = rng.standard_normal((2, arguments["in_channels"], 9, 7))
    results = []
    adapter = type(target.backend)
    for source in (adapter, Backend):
        for method in ("windows", "correlate"):
            monkeypatch.setattr(adapter, method, getattr(source, method))
        layer = mnn.Conv2d(**arguments, rng=0).to(xp=target.backend.name,
                                                  device=target.device_name, dtype="float64")
        out = layer(target.asarray(x))
        g = target.asarray(np.linspace(-1.0, 1.0, int(np.prod(out.shape))).reshape(out.shape))
        grad = layer.backward(g)
        results.append([target.to_host(a) for a in (out, grad, layer.grads["w"],
                                                    layer.grads["b"])])
    for fast, portable in zip(*results, strict=True):
        np.testing.assert_allclose(fast, portable, rtol=1e-12, atol=1e-12)
