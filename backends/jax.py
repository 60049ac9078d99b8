"""JAX: immutable arrays on ``jax.devices()``, named ``cpu``, ``cuda:N``, ``tpu:N``...

JAX computes in float32 unless ``jax.config.update("jax_enable_x64", True)``
was called (``enable_float64`` does it); asking for float64 without it is an
error here rather than a silent downcast.
"""

import numpy as np

from .backend import Backend
from .registry import register


class JaxBackend(Backend):
    name = "jax"
    module = "jax"

    def owns(self, array) -> bool:
        # jax.Array's concrete type lives in jaxlib (jaxlib._jax.ArrayImpl), tracers in jax.
        return type(array).__module__.partition(".")[0] in ("jax", "jaxlib")

    def enable_float64(self) -> None:
        self.library().config.update("jax_enable_x64", True)

    def devices(self) -> list[str]:
        return [self.device_name(device) for device in self.library().devices()]

    def device(self, name):
        if not isinstance(name, str):
            return name
        for device in self.library().devices():
            if self.device_name(device) == name or str(device) == name:
                return device
        raise ValueError(f"jax has no device {name!r}; present: {self.devices()}")

    def device_name(self, device) -> str:
        platform = "cuda" if device.platform == "gpu" else device.platform
        return "cpu" if platform == "cpu" and device.id == 0 else f"{platform}:{device.id}"

    def synchronize(self, device, *arrays) -> None:
        # JAX tracks readiness per array; a fresh array on the device queues behind its work.
        jax = self.library()
        jax.block_until_ready((jax.device_put(0.0, self.device(device)), *arrays))

    def to_host(self, array) -> np.ndarray:
        return np.asarray(array)

    def from_host(self, host, device, dtype=None):
        jax = self.library()
        dtype = self.dtype(dtype)
        if dtype is not None and np.dtype(dtype).itemsize == 8 and not jax.config.jax_enable_x64:
            raise ValueError(f"jax computes in 32 bits unless jax_enable_x64 is set; asked for "
                             f"{np.dtype(dtype).name}. Call jax.config.update('jax_enable_x64', "
                             f"True) first.")
        return jax.numpy.asarray(np.asarray(host), dtype=dtype, device=self.device(device))

    def generator(self, seed, device):
        return KeyStream(self.library().random.key(seed))

    def draw_normal(self, generator, shape, device, dtype):
        jax = self.library()
        with jax.default_device(self.device(device)):
            return jax.random.normal(KeyStream.key_of(generator), shape, dtype=dtype)

    def draw_uniform(self, generator, shape, device, dtype):
        jax = self.library()
        with jax.default_device(self.device(device)):
            return jax.random.uniform(KeyStream.key_of(generator), shape, dtype=dtype)

    def erf(self, x):
        return self.library().scipy.special.erf(x)

    def sigmoid(self, x):
        return self.library().nn.sigmoid(x)

    def correlate(self, x, w, stride, dilation, groups):
        lax = self.library().lax
        return lax.conv_general_dilated(x, w, stride, "VALID", rhs_dilation=dilation,
                                        feature_group_count=groups,
                                        precision=lax.Precision.HIGHEST)

    def scatter_add(self, target, indices, values):
        return target.at[indices].add(values)  # functional: a new array, repeats add up

    def torch_view(self, array):
        return None  # immutable: torch must not write into a JAX buffer, so the caller copies


class KeyStream:
    """A JAX generator that gives new numbers at each draw, as a NumPy or torch generator
    does. A JAX key is a value: two draws from one key are the same numbers. So the
    stream splits its key before each draw and keeps one half for the next."""

    def __init__(self, key):
        self.key = key

    @staticmethod
    def key_of(generator):
        """The key to draw with: the next one of a ``KeyStream``, or a caller's own JAX
        key as it is (the same numbers each time, as JAX does)."""
        if not isinstance(generator, KeyStream):
            return generator
        import jax

        generator.key, key = jax.random.split(generator.key)
        return key


register(JaxBackend())
