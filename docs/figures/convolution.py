"""The figures of docs/convolution.md, written next to this script.

Run from the repository root: ``python docs/figures/convolution.py``. It trains the
CNN of ``mnn train --model cnn`` on the embedded digits for 20 epochs (a few seconds on
NumPy; ``--checkpoint PATH`` reuses a model saved by ``mnn train --model cnn --save PATH``)
and draws, from that model:

* ``conv-filters.png``: the 3x3 kernels of the first convolution;
* ``conv-feature-maps.png``: one test digit and what the first Conv-ReLU makes of it;
* ``conv-gradient.png``: how the gradient of one output pixel reaches the input: the
  backward of a convolution sends it to that pixel's window, weighted by the kernel.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import mnn  # noqa: E402
from mnn.cli import main  # noqa: E402
from mnn.cli.train import as_images  # noqa: E402
from mnn.data import load_digits  # noqa: E402

HERE = Path(__file__).parent


def trained_model(checkpoint: str | None):
    """The CNN as ``mnn train --model cnn`` trains it (seed 0), or the one saved at
    ``checkpoint``."""
    if checkpoint:
        return mnn.load(checkpoint)
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "cnn.safetensors")
        main(["train", "--model", "cnn", "--no-progress", "--plot", "none", "--save", path])
        return mnn.load(path)


def filters(model, path: Path) -> None:
    """The first convolution's kernels, one panel each, on a shared colour scale."""
    w = model[0].params["w"][:, 0]  # (16, 3, 3): one input channel
    limit = float(np.abs(w).max())
    figure, axes = plt.subplots(2, len(w) // 2, figsize=(8, 2.4))
    for k, (ax, kernel) in enumerate(zip(axes.flat, w, strict=True)):
        ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"{k}", fontsize=8)
        ax.set_axis_off()
    figure.suptitle("first-layer 3x3 kernels after 20 epochs (red > 0, blue < 0)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def feature_maps(model, image: np.ndarray, label: int, path: Path) -> None:
    """The digit and the 16 maps of Conv2d -> ReLU (8x8 each, the padding keeps the size)."""
    maps = model[:2](image[None].astype(np.float32))[0]  # (16, 8, 8)
    figure, axes = plt.subplots(2, 9, figsize=(10, 2.6))
    axes[0, 0].imshow(image[0], cmap="gray_r")
    axes[0, 0].set_title(f"input ({label})", fontsize=8)
    for ax, fmap, k in zip(axes.flat[1:], maps, range(len(maps)), strict=False):
        ax.imshow(fmap, cmap="viridis")
        ax.set_title(f"map {k}", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    figure.suptitle("one test digit through the first Conv2d and ReLU", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def gradient(model, image: np.ndarray, path: Path) -> None:
    """Backward of the first convolution for a gradient that is 1 at one output pixel of
    one channel and 0 elsewhere: the input gradient is that channel's kernel on the
    pixel's window (Conv2d's Eq. (6)), and the kernel gradient is the window itself
    (Eq. (10))."""
    conv = model[0]
    channel, (h, w) = 0, (3, 5)
    conv.input_grad = True
    out = conv(image[None].astype(np.float32))
    g = np.zeros_like(out)
    g[0, channel, h, w] = 1.0
    grad_in = conv.backward(g)[0, 0]
    kernel_grad = conv.grads["w"][channel, 0]
    (kh, kw), (ph, pw) = conv.kernel_size, conv.padding
    window = (h - ph, w - pw)  # the window's top left corner in the unpadded input

    figure, axes = plt.subplots(1, 4, figsize=(11, 3))
    panels = [(image[0], "input x, the window of y[h, w]", "gray_r"),
              (g[0, channel], f"output gradient g: 1 at y[{h}, {w}]", "Greys"),
              (grad_in, "input gradient dl/dx = kernel on the window", "RdBu_r"),
              (kernel_grad, "kernel gradient dl/dW = the window", "gray_r")]
    for ax, (data, title, cmap) in zip(axes, panels, strict=True):
        limit = float(np.abs(data).max()) or 1.0
        low = -limit if cmap == "RdBu_r" else None
        ax.imshow(data, cmap=cmap, vmin=low, vmax=limit if low is not None else None)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in (axes[0], axes[2]):
        ax.add_patch(Rectangle((window[1] - 0.5, window[0] - 0.5), kw, kh, fill=False,
                               edgecolor="C1", linewidth=2))
    axes[1].add_patch(Rectangle((w - 0.5, h - 0.5), 1, 1, fill=False, edgecolor="C1",
                                linewidth=2))
    figure.suptitle(f"the gradient of one output pixel of channel {channel} reaches only "
                    f"its {kh}x{kw} input window", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a model saved by mnn train --model cnn --save")
    args = parser.parse_args(argv)
    model = trained_model(args.checkpoint)
    test = as_images(load_digits()[1])
    images, labels = test.to_host()
    filters(model, HERE / "conv-filters.png")
    feature_maps(model, images[0], int(labels[0]), HERE / "conv-feature-maps.png")
    gradient(model, images[0], HERE / "conv-gradient.png")
    print(f"wrote conv-filters.png, conv-feature-maps.png and conv-gradient.png to {HERE}")


if __name__ == "__main__":
    run()
