"""CuPy: NVIDIA GPUs, named ``cuda:N``; none are listed unless an allocation on them works."""

import numpy as np

from .backend import Backend
from .registry import register


class CupyBackend(Backend):
    name = "cupy"
    module = "cupy"
    distribution = "cupy-cuda12x"
    _present: list[str] | None = None

    def devices(self) -> list[str]:
        if self._present is None:  # probed once: an allocation, not just an import
            cupy = self.library()
            count = cupy.cuda.runtime.getDeviceCount() if cupy.is_available() else 0
            self._present = [f"cuda:{i}" for i in range(count) if _allocates(cupy, i)]
        return list(self._present)

    def device(self, name):
        cupy = self.library()
        if isinstance(name, cupy.cuda.Device):
            return name
        kind, _, index = str(name).partition(":")
        if kind != "cuda" or not (index or "0").isdigit():
            raise ValueError(f"cupy devices are named 'cuda' or 'cuda:N', got {name!r}")
        return cupy.cuda.Device(int(index or 0))

    def device_name(self, device) -> str:
        return f"cuda:{device.id}"

    def synchronize(self, device, *arrays) -> None:
        self.device(device).synchronize()

    def to_host(self, array) -> np.ndarray:
        return self.library().asnumpy(array)

    def from_host(self, host, device, dtype=None):
        cupy = self.library()
        with self.device(device):
            return cupy.asarray(np.asarray(host), dtype=self.dtype(dtype))

    def generator(self, seed, device):
        with self.device(device):  # the generator's state lives on the device
            return self.library().random.default_rng(seed)

    def draw_normal(self, generator, shape, device, dtype):
        with self.device(device):
            return generator.standard_normal(shape, dtype=dtype)

    def draw_uniform(self, generator, shape, device, dtype):
        with self.device(device):
            return generator.random(shape, dtype=dtype)

    def erf(self, x):
        from cupyx.scipy.special import erf  # comes with cupy

        return erf(x)

    def sigmoid(self, x):
        from cupyx.scipy.special import expit  # comes with cupy

        return expit(x)

    def scatter_add(self, target, indices, values):
        import cupyx  # comes with cupy, which is already imported if we hold a cupy array

        out = target.copy()
        cupyx.scatter_add(out, indices, values)
        return out


def _allocates(cupy, index: int) -> bool:
    try:
        with cupy.cuda.Device(index):
            cupy.zeros(1)
    except Exception:  # noqa: BLE001  (any failure means: not usable here)
        return False
    return True


register(CupyBackend())
