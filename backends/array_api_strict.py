"""array-api-strict: the referee. A layer that leans on anything outside the standard fails here.

Its extra devices ``device1`` and ``device2`` stand in for a second device on
machines without a GPU, so device propagation is tested everywhere.
"""

import numpy as np

from .backend import Backend
from .registry import register


class ArrayApiStrictBackend(Backend):
    name = "array_api_strict"
    module = "array_api_strict"
    distribution = "array-api-strict"

    def devices(self) -> list[str]:
        return ["CPU_DEVICE", "device1", "device2"]

    def device(self, name):
        xp = self.library()
        return name if isinstance(name, xp.Device) else xp.Device(name)

    def device_name(self, device) -> str:
        return str(getattr(device, "_device", device))

    def to_host(self, array) -> np.ndarray:
        # np.asarray refuses strict arrays; DLPack only leaves from the host device.
        xp = self.library()
        return np.from_dlpack(xp.asarray(array, device=xp.Device("CPU_DEVICE")))

    def from_host(self, host, device, dtype=None):
        xp = self.library()
        return xp.asarray(host, device=self.device(device), dtype=self.dtype(dtype), copy=True)

    def torch_view(self, array):
        # DLPack leaves only from CPU_DEVICE, and a write behind the referee's back would
        # hide what the standard allows: the caller copies through the host.
        return None


register(ArrayApiStrictBackend())
