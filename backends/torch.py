"""PyTorch: devices ``cpu``, ``cuda:N`` and ``mps``, listed only where an allocation works."""

import numpy as np

from .backend import Backend
from .registry import register


class TorchBackend(Backend):
    name = "torch"
    module = "torch"
    _present: list[str] | None = None

    def devices(self) -> list[str]:
        if self._present is None:  # probed once: an allocation, not just an import
            torch = self.library()
            candidates = ["cpu"]
            if torch.cuda.is_available():
                candidates += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
            if torch.backends.mps.is_available():
                candidates.append("mps")
            self._present = [name for name in candidates if _allocates(torch, name)]
        return list(self._present)

    def device(self, name):
        torch = self.library()
        device = torch.device(name)
        if device.type == "cuda" and device.index is None:  # "cuda" means the current GPU
            device = torch.device("cuda", torch.cuda.current_device())
        return device

    def device_name(self, device) -> str:
        return str(device)

    def synchronize(self, device, *arrays) -> None:
        torch = self.library()
        device = self.device(str(device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()

    def to_host(self, array) -> np.ndarray:
        return array.detach().cpu().numpy()

    def from_host(self, host, device, dtype=None):
        torch = self.library()
        # A fresh copy: the result never aliases ``host``, and torch refuses NumPy views with
        # negative strides (np.flip, x[::-1]) that np.array(copy=True) lays out afresh.
        return torch.from_numpy(np.array(host, copy=True)).to(device=device,
                                                              dtype=self.dtype(dtype))

    def generator(self, seed, device):
        return self.library().Generator(device=self.device(str(device))).manual_seed(seed)

    def draw_normal(self, generator, shape, device, dtype):
        return self.library().randn(shape, generator=generator,
                                    device=self.device(str(device)), dtype=dtype)

    def draw_uniform(self, generator, shape, device, dtype):
        return self.library().rand(shape, generator=generator,
                                   device=self.device(str(device)), dtype=dtype)

    def erf(self, x):
        return self.library().special.erf(x)

    def sigmoid(self, x):
        return self.library().sigmoid(x)

    def correlate(self, x, w, stride, dilation, groups):
        if x.shape[1] == 0:  # nothing to sum (an empty batch's weight gradient): torch's
            return None      # output is left uninitialised, the portable path gives zeros
        return self.library().nn.functional.conv2d(x, w, stride=stride, dilation=dilation,
                                                   groups=groups)

    def transpose_matmul(self, left, right):
        return left.T @ right  # BLAS reads left transposed; tensordot would copy it first

    def scatter_add(self, target, indices, values):
        return target.index_add(0, indices, values)

    def add_scaled(self, target, alpha, source):
        return target.add_(source, alpha=alpha)  # one fused pass, as torch.optim.SGD does

    def torch_view(self, array):
        return array  # already a tensor


def _allocates(torch, name: str) -> bool:
    try:
        torch.zeros(1, device=name)
    except Exception:  # noqa: BLE001  (any failure means: not usable here)
        return False
    return True


register(TorchBackend())
