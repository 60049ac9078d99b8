"""Downstream code that uses mnn's public API, checked with ``mypy --strict`` (nox -s typecheck).

It is also a program: ``python tests/downstream/typed_usage.py`` trains a small network,
checks a custom layer's gradients, saves and loads it, and prints what it found.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import mnn
from mnn.backends import Backend, Placement
from mnn.base import Example
from mnn.data import Batches
from mnn.testing import gradcheck, make_case, place


class Scale(mnn.BaseLayer):
    r"""Elementwise :math:`y = a x` with one learnable :math:`a`; :math:`\partial \ell / \partial a
    = \sum g x` and :math:`\partial \ell / \partial x = a g`."""

    def __init__(self, a: float = 2.0) -> None:
        super().__init__()
        self.a = a
        self.add_param("a", np.full((), a))
        self.expect_inputs(min_rank=1)

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        return cls(float(rng.uniform(0.5, 2.0))), rng.standard_normal((3, 2)), None

    def compute_forward(self, xp: Any, inputs: Any, feedbacks: Any) -> Any:
        self.save_for_backward(inputs)
        return self.params["a"] * inputs

    def compute_backward(self, xp: Any, gradients: Any, inputs: Any) -> Any:
        self.add_grad("a", xp.sum(gradients * inputs))
        return self.params["a"] * gradients




def network(seed: int) -> mnn.SequentialLayers:
    return mnn.SequentialLayers([mnn.LinearLayer(2, 8, rng=seed), mnn.ReluLayer(), Scale(),
                                 mnn.LinearLayer(8, 2, rng=np.random.default_rng(seed + 1)),
                                 mnn.CrossEntropyLossLayer()])


def train(net: mnn.SequentialLayers, placement: Placement, epochs: int) -> float:
    points = np.random.default_rng(0).uniform(-1, 1, size=(64, 2))
    inputs = placement.from_host(points)
    labels = placement.from_host((points[:, 0] * points[:, 1] > 0).astype(np.int64))
    optimizer = mnn.optim.Adam(net, lr=0.02)
    loss: Any = None
    for _ in range(epochs):
        for x, y in Batches(inputs, labels, batch_size=16, rng=0):
            optimizer.zero_grad()
            loss = net(x, y)
            net.backward()
            optimizer.step()
    return float(placement.to_host(loss))


def main() -> None:
    numpy: Backend = mnn.backends.get("numpy")
    placement = Placement.named(numpy, "cpu", "float64")
    names: list[str] = sorted(mnn.backends.available())
    net = network(seed=0)
    loss = train(net, placement, epochs=20)
    layer, inputs, feedbacks = place(make_case("Scale", rng=1), placement)
    checked: bool = gradcheck(layer, inputs, feedbacks, rng=np.random.default_rng(2))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "net.safetensors")
        mnn.save(net, path)
        loaded = mnn.load(path)
        assert isinstance(loaded, mnn.BaseLayer)
        same = all(np.array_equal(np.asarray(value), np.asarray(net.state_dict()[name]))
                   for name, value in loaded.state_dict().items())
    print(f"backends {names}; final loss {loss:.3f}; gradcheck {checked}; reloaded {same}")


if __name__ == "__main__":
    main()
