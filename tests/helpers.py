"""Small pieces several test files share; imported as ``from helpers import ...``.

pytest puts ``tests/`` on ``sys.path`` (``pythonpath`` in pyproject.toml), so this
plain module is importable from every test folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

import mnn

ROOT = Path(__file__).resolve().parent.parent


def load_file(name: str, path: Path):
    """The Python file ``path`` run as module ``name`` (scripts outside any package:
    noxfile.py, docs/site/*.py)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def import_benchmark(name: str):
    """``benchmarks.<name>`` from the repository, without putting the root on sys.path.

    The root's source folder ``mnn/`` would shadow the installed ``mnn`` package there.
    """
    if "benchmarks" not in sys.modules:
        folder = ROOT / "benchmarks"
        spec = importlib.util.spec_from_file_location(
            "benchmarks", folder / "__init__.py", submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["benchmarks"] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"benchmarks.{name}")


def run_in_dtype(target, make_layer: Callable[[], mnn.BaseLayer], inputs: tuple,
                 cotangent, dtype: str) -> list[np.ndarray]:
    """A fresh layer's forward and backward in ``dtype``; every result as a host float64 array.

    ``layer(*inputs)`` runs with each float host array of ``inputs`` moved to ``target`` in
    ``dtype`` (a tuple item by item, as MatrixProduct takes its pair); integer arrays (labels)
    keep their dtype. Then ``layer.backward(cotangent)``, or ``layer.backward()`` for a loss
    (``cotangent`` None). Every output, input gradient and parameter gradient must be in
    ``dtype``; they come back in that order.
    """
    def move(host):
        if isinstance(host, tuple):
            return tuple(move(h) for h in host)
        return target.asarray(host, dtype if np.asarray(host).dtype.kind == "f" else None)

    layer = make_layer()
    out = layer(*move(inputs))
    grad_in = layer.backward() if cotangent is None else layer.backward(move(cotangent))
    grads_in = grad_in if isinstance(grad_in, tuple) else (grad_in,)
    params = [owner.grads[key] for _, owner, key in layer.parameters()]
    results = [out, *grads_in, *params]
    for a in results:
        assert mnn.base.dtype_name(a.dtype) == dtype, f"{mnn.base.dtype_name(a.dtype)} != {dtype}"
    return [target.to_host(a).astype(np.float64) for a in results]


def assert_float32_matches_float64(target, make_layer, inputs: tuple, cotangent, *,
                                   rtol: float, atol: float) -> None:
    """``run_in_dtype`` in float32 and in float64 agree, result by result, to rtol and atol."""
    low = run_in_dtype(target, make_layer, inputs, cotangent, "float32")
    high = run_in_dtype(target, make_layer, inputs, cotangent, "float64")
    for a, b in zip(low, high, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def skip_if_missing(recipes: dict, *names: str) -> None:
    """Skip the test, saying why, if a benchmark contender of ``recipes`` (its
    ``StepRecipe`` by name) cannot run here."""
    import pytest

    for name in names:
        if reason := recipes[name].missing():
            pytest.skip(f"contender {name}: {reason}")


def assert_two_steps_match(reference, other, initial: dict, name: str) -> None:
    """Two training steps of the benchmark trainer ``other`` give the loss and the weight
    updates of ``reference`` (torch.nn), in float64; ``initial`` holds the weights both
    started from. The second step catches gradients that are not reset between steps."""
    for step in (1, 2):
        losses = [float(loss.detach() if hasattr(loss, "detach") else loss)
                  for loss in (other(), reference())]
        np.testing.assert_allclose(losses[0], losses[1], rtol=1e-10)
        expected, got = reference.weights(), other.weights()
        assert expected.keys() == got.keys() == initial.keys()
        for key, start in initial.items():
            moved = expected[key] - start
            assert np.abs(moved).max() > 1e-5, f"torch.nn did not move {key}"
            np.testing.assert_allclose(got[key] - start, moved, rtol=0,
                                       atol=1e-8 * np.abs(moved).max(),
                                       err_msg=f"{name}, step {step}, update of {key}")


def assert_matches_torch_autograd(layer, torch_function, x, g, *, rtol: float,
                                  atol: float = 0.0) -> None:
    """``layer``'s output for ``x`` and its input gradient for the cotangent ``g`` (host
    float64 arrays) equal those of ``torch_function`` through torch.autograd."""
    import torch

    out, grad_in = layer(x), layer.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    tout = torch_function(tx)
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad_in, tx.grad.numpy(), rtol=rtol, atol=atol)


FAKE_ADAPTER = '''
import numpy as np
from mnn.backends import Backend


class FakeArray:
    """An "array library" of one type, living in this module."""

    def __init__(self, data):
        self.data = np.asarray(data)
        self.shape, self.dtype = self.data.shape, self.data.dtype


class FakeBackend(Backend):
    name = "fake"
    module = __name__

    def devices(self):
        return ["cpu"]

    def to_host(self, array):
        return array.data

    def from_host(self, host, device, dtype=None):
        return FakeArray(np.asarray(host, dtype=dtype))


class OtherFakeBackend(FakeBackend):
    name = "fake_instance"


INSTANCE = OtherFakeBackend()
'''


def install_fake_adapter(path: Path, module: str, entry_points: str) -> None:
    """A real installed distribution in ``path`` (found once ``path`` is on sys.path): the module
    ``FAKE_ADAPTER`` and a .dist-info whose ``entry_points`` (``name = module:object`` lines)
    are in the group ``mnn.backends``."""
    (path / f"{module}.py").write_text(FAKE_ADAPTER)
    info = path / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{mnn.backends.ENTRY_POINT_GROUP}]\n{entry_points}")


def install_broken_adapters(path: Path, module: str) -> None:
    """``install_fake_adapter`` with three entry points: ``fake`` works, ``thatone``'s
    ``devices()`` raises ``RuntimeError("no driver for thatone")``, and ``exits``'s module
    raises ``SystemExit(3)`` as it is imported."""
    install_fake_adapter(path, module, f"fake = {module}:FakeBackend\n"
                                       f"thatone = {module}_broken:NoDevices\n"
                                       f"exits = {module}_exits:FakeBackend\n")
    (path / f"{module}_broken.py").write_text(
        f"from {module} import FakeBackend\n\n\n"
        "class NoDevices(FakeBackend):\n"
        "    name = 'thatone'\n\n"
        "    def devices(self):\n"
        "        raise RuntimeError('no driver for thatone')\n")
    (path / f"{module}_exits.py").write_text("raise SystemExit(3)\n")
