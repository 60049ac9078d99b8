"""``Backend.windows``: the im2col of a convolution. Every adapter's windows equal the
definition and the portable default, and ``Conv2d`` computes the same through an adapter's
fast path as through the portable one."""

import numpy as np
import pytest

import mnn
from mnn.backends import Backend

#: (input shape, kernel, stride, dilation): square and oblong kernels, stride and dilation
#: > 1 on one axis or both, a 1x1 kernel, and a window as large as the input.
CASES = [
    ((2, 3, 9, 8), (3, 3), (1, 1), (1, 1)),
    ((1, 2, 11, 13), (3, 2), (2, 3), (2, 1)),
    ((3, 1, 7, 6), (2, 3), (3, 1), (1, 2)),
    ((2, 2, 5, 5), (1, 1), (2, 2), (1, 1)),
    ((4, 5, 5), (5, 4), (1, 1), (1, 1)),
]


def definition(x, kernel, stride, dilation):
    """out[..., i, j, h, w] = x[..., s_h h + d_h i, s_w w + d_w j], entry by entry."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    out_h = (x.shape[-2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (x.shape[-1] - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((*x.shape[:-2], kh, kw, out_h, out_w), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            for h in range(out_h):
                for w in range(out_w):
                    out[..., i, j, h, w] = x[..., sh * h + dh * i, sw * w + dw * j]
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


def test_numpy_and_torch_windows_are_views_of_the_input(rng):
    """The fast paths copy nothing: the windows share the input's memory."""
    x = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    windows = mnn.backends.get("numpy").windows(x, (5, 5), (1, 1), (1, 1))
    assert np.shares_memory(windows, x)
    torch = pytest.importorskip("torch", reason="the torch adapter's windows need torch")
    t = torch.from_numpy(x)
    windows = mnn.backends.get("torch").windows(t, (5, 5), (2, 1), (1, 2))
    assert windows.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()


CONV_CONFIGS = [
    dict(in_channels=6, out_channels=4, kernel_size=3, stride=2, padding=1, dilation=(2, 1),
         groups=2),
    dict(in_channels=1, out_channels=3, kernel_size=(3, 2), padding=(0, 2)),
]


@pytest.mark.parametrize("arguments", CONV_CONFIGS)
def test_conv2d_fast_path_equals_the_portable_path(target, rng, monkeypatch, arguments):
    """Forward, input gradient and parameter gradients through the adapter's windows
    and through the portable default, from the same weights and inputs."""
    x = rng.standard_normal((2, arguments["in_channels"], 9, 7))
    results = []
    for windows in (type(target.backend).windows, Backend.windows):
        monkeypatch.setattr(type(target.backend), "windows", windows)
        layer = mnn.Conv2d(**arguments, rng=0).to(xp=target.backend.name,
                                                  device=target.device_name, dtype="float64")
        out = layer(target.asarray(x))
        g = target.asarray(np.linspace(-1.0, 1.0, int(np.prod(out.shape))).reshape(out.shape))
        grad = layer.backward(g)
        results.append([target.to_host(a) for a in (out, grad, layer.grads["w"],
                                                    layer.grads["b"])])
    for fast, portable in zip(*results, strict=True):
        np.testing.assert_allclose(fast, portable, rtol=1e-12, atol=1e-12)
