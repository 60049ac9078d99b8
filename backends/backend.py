"""``Backend``: the adapter protocol, one subclass per array library (see docs/adapters.md).

The array API standard covers the math. What a training library needs beyond it
lives here, as methods an adapter overrides where its library differs:

* ``to_host`` / ``from_host``: copy to and from a NumPy array on the host
  (checkpoints, finite differences, initial parameters);
* ``devices``: which devices are present (an allocation works, an import is not enough);
* ``synchronize``: wait for queued work, so that timings mean something;
* ``random_normal``, ``random_uniform``: seeded random numbers, drawn on the device
  where the adapter gives the library's own generator (``generator``, ``draw_normal``,
  ``draw_uniform``);
* ``erf``: the error function (exact GELU), where the library has one;
* ``sigmoid``: the logistic function, in one pass where the library has a kernel for it;
* ``scatter_add``: index accumulation (repeated indices add up), which the
  standard has no function for;
* ``add_scaled``: ``target += alpha * source`` (the gradient descent update) in
  place and in one pass where the library can; the standard needs two passes;
* ``transpose_matmul``: ``left.T @ right`` (a weight gradient), where the
  standard's way is slow on a library (NumPy at batch 1);
* ``windows``: every window of an image that a convolution multiplies by its
  kernel (im2col), where a library gives them as a view (NumPy);
* ``correlate``: a convolution, where the library has its own (PyTorch, JAX);
* ``enable_float64``: what the library needs before it computes in 64 bits (JAX);
* ``torch_view``: a torch tensor on an array's own memory (DLPack), which
  ``mnn.distributed`` hands to torch.distributed's collectives without a copy.
"""

from __future__ import annotations

import importlib
import math
import sys
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from mnn.types import Array, Device, DType, Namespace


class Backend:
    """The adapter protocol. A subclass names its library and overrides what differs.

    ``name`` is how people and nox call the backend (``"numpy"``), ``module`` the
    name under which the library appears in ``sys.modules``. An adapter never
    imports its library at module level: ``self.library()`` fetches it from
    ``sys.modules`` inside the methods, so ``import mnn`` stays free of it.
    """

    name: str
    module: str

    @property
    def distribution(self) -> str:
        """What to ``pip install`` for the library; an adapter overrides it where the names
        differ (``"cupy-cuda12x"`` for ``cupy``)."""
        return self.module

    def is_loaded(self) -> bool:
        """Whether the library is imported already (only then can an array be its own)."""
        return self.module in sys.modules

    def library(self) -> ModuleType:
        """The library itself; only called once it is already imported."""
        if self.module not in sys.modules:
            __import__(self.module)  # asked for by name (to(xp="torch"), a test target)
        return sys.modules[self.module]

    def owns(self, array: Array) -> bool:
        """Whether ``array`` belongs to this library: its type comes from ``module`` or one of
        its submodules (``torch.nn.parameter``, ``dask.array.core``)."""
        home = type(array).__module__
        return home == self.module or home.startswith(self.module + ".")

    def namespace(self) -> Namespace:
        """The array API namespace of this library (array_api_compat wraps where needed).

        Found once, from a one-element array on the default device, then remembered.
        """
        if getattr(self, "_namespace", None) is None:
            probe = self.from_host(np.zeros(1), self.default_device())
            self._namespace = array_api_compat.array_namespace(probe)
        return self._namespace

    def enable_float64(self) -> None:
        """Make float64 and int64 available (gradient checks, labels). Most libraries have them."""

    def dtype(self, dtype: DType | str | None) -> DType:
        """The library's dtype for a name such as ``"float32"``; a dtype passes through."""
        if isinstance(dtype, str):
            return getattr(self.namespace(), dtype)
        return dtype

    # --- devices -------------------------------------------------------------------

    def devices(self) -> list[str]:
        """Names of the devices present on this machine, default first."""
        raise NotImplementedError

    def default_device(self) -> Device:
        """The device object of the first device present; ``RuntimeError`` if there is none."""
        present = self.devices()
        if not present:
            raise RuntimeError(f"backend {self.name!r} has no device present on this machine")
        return self.device(present[0])

    def device(self, name: Device | str) -> Device:
        """The library's device object for a device name such as ``"cpu"``."""
        return name

    def device_name(self, device: Device) -> str:
        """The name of a device object, as ``devices()`` lists it (the inverse of ``device``)."""
        return str(device)

    def synchronize(self, device: Device | str, *arrays: Array) -> None:
        """Wait until the work queued on ``device`` has finished (no-op on the host).

        Libraries that track readiness per array (JAX) also wait for ``arrays``.
        """

    # --- host <-> device -----------------------------------------------------------

    def to_host(self, array: Array) -> np.ndarray:
        """A NumPy array on the host with the values, shape and dtype of ``array``."""
        return np.asarray(array)

    def from_host(self, host: np.ndarray, device: Device,
                  dtype: DType | str | None = None) -> Array:
        """A new array (never a view of ``host``: parameters are updated in place).

        This default asks the library's own ``asarray`` for the array (every array
        library has one, and takes a NumPy array), then the array API namespace of the
        result for the device and dtype: array_api_compat gives ``device=`` to libraries
        whose own ``asarray`` lacks it (dask.array). ``host`` is copied first, because a
        lazy library (dask) would otherwise keep reading it.
        """
        array = self.library().asarray(np.array(host, copy=True))
        xp = array_api_compat.array_namespace(array)
        return xp.asarray(array, device=device, dtype=self.dtype(dtype))

    # --- what the standard lacks ---------------------------------------------------

    def random_normal(self, shape: tuple[int, ...], seed: int | np.random.Generator | Any,
                      device: Device, dtype: DType | str = "float64") -> Array:
        """Standard normal numbers of ``shape`` on ``device``, the same ones for the same ``seed``.

        ``seed`` is an int, a ``numpy.random.Generator`` or the library's own generator
        (see ``generator``). A NumPy generator draws on the host, and the numbers are
        copied to ``device``: the same numbers on every library. An int seed gives the
        library's own generator, which draws on the device: the numbers then differ
        between libraries, but not between runs.
        """
        return self._draw(shape, seed, device, dtype, np.random.Generator.standard_normal,
                          self.draw_normal)

    def random_uniform(self, shape: tuple[int, ...], seed: int | np.random.Generator | Any,
                       device: Device, dtype: DType | str = "float64") -> Array:
        """Numbers uniform on :math:`[0, 1)` of ``shape`` on ``device``, the same ones for the
        same ``seed``, which is taken as in ``random_normal``. Dropout masks and sampling
        from a language model draw with it."""
        return self._draw(shape, seed, device, dtype, np.random.Generator.random,
                          self.draw_uniform)

    def _draw(self, shape, seed, device, dtype, on_host, on_device) -> Array:
        """The seed handling of ``random_normal`` and ``random_uniform``, in one place, so that
        an adapter only supplies ``generator``, ``draw_normal`` and ``draw_uniform``."""
        shape, dtype = tuple(shape), self.dtype(dtype)
        if isinstance(seed, (int, np.integer)):
            seed = self.generator(int(seed), device)
        if isinstance(seed, np.random.Generator):
            return self.from_host(on_host(seed, shape), device, dtype)
        return on_device(seed, shape, device, dtype)

    def generator(self, seed: int, device: Device) -> Any:
        """The generator that an int ``seed`` stands for: the library's own, made for
        ``device``, where the library draws on the device. This default is NumPy's,
        which draws on the host."""
        return np.random.default_rng(seed)

    def draw_normal(self, generator: Any, shape: tuple[int, ...], device: Device,
                    dtype: DType) -> Array:
        """Standard normal numbers from the library's own ``generator`` (what ``generator``
        returns, or what a caller passed as ``seed``), on ``device``, of a library dtype.

        Only an adapter whose ``generator`` is the library's own needs it: this default
        refuses every generator but NumPy's, which ``random_normal`` draws from itself.
        """
        raise self._foreign(generator)

    def draw_uniform(self, generator: Any, shape: tuple[int, ...], device: Device,
                     dtype: DType) -> Array:
        """Numbers uniform on :math:`[0, 1)`, from the library's own ``generator`` as in
        ``draw_normal``."""
        raise self._foreign(generator)

    def _foreign(self, generator: Any) -> TypeError:
        """The error for a seed that this adapter cannot draw from."""
        return TypeError(f"backend {self.name!r} draws from an int seed or a "
                         f"numpy.random.Generator, got {generator!r}")

    def erf(self, x: Array) -> Array:
        r"""The error function :math:`\operatorname{erf}(x) = \frac{2}{\sqrt\pi}\int_0^x
        e^{-t^2} dt`, elementwise, in the namespace of ``x``.

        The standard has no ``erf``. Adapters whose library has one return it;
        this default raises ``NotImplementedError`` saying so.
        """
        raise NotImplementedError(f"{self.name} has no erf function")

    def sigmoid(self, x: Array) -> Array:
        r"""The logistic function :math:`\sigma(x) = 1 / (1 + e^{-x})`, elementwise.

        The standard can compute it, but in several passes over ``x``, which is what this
        default does; PyTorch, JAX and CuPy override it with their one-pass kernels.
        ``Sigmoid`` and ``GELU`` compute with it.

        Only :math:`e^{-|x|}`, which lies in :math:`(0, 1]`, is computed, so nothing
        overflows: with :math:`s = 1 / (1 + e^{-|x|}) = \sigma(|x|)`,

        .. math::
            \sigma(x) = s \quad (x \ge 0), \qquad
            \sigma(x) = 1 - s = e^{-|x|}\, s \quad (x < 0).

        For :math:`x \ll 0` the result is :math:`e^{x}`, down to the smallest float and
        then 0, as it should be (float16 reaches 0 at :math:`x \approx -17.3`). Each step
        rounds once, so the result is good to a few units in the last place: no
        difference of nearly equal numbers is taken.
        """
        xp = array_api_compat.array_namespace(x)
        e = xp.exp(-xp.abs(x))
        s = e + 1.0
        s = 1.0 / s
        return xp.where(x < 0, e * s, s)

    def scatter_add(self, target: Array, indices: Array, values: Array) -> Array:
        r"""``target`` with ``values[k]`` added to row ``indices[k]``; repeated indices add up.

        ``target`` has shape :math:`(n, \dots)`, ``indices`` integer shape :math:`(k,)`,
        ``values`` shape :math:`(k, \dots)`. ``target`` itself is not changed.

        The standard has no scatter-add (``x[idx] += v`` keeps only the last write of a
        repeated index, and is not allowed on every library), so this default uses only
        the standard, without the :math:`n \times k` one-hot matrix: sort the rows of
        ``values`` by index, take their running sums :math:`C_0 = 0,
        C_j = \sum_{l \le j} v_{(l)}`, and find with ``searchsorted`` where each row
        index :math:`i` starts (:math:`a_i`) and ends (:math:`b_i`) among the sorted
        indices; then

        .. math::  \text{out}_i = \text{target}_i + C_{b_i} - C_{a_i}.

        :math:`O(k \log k + n \log k)` comparisons and :math:`O((n + k) m)` memory for
        rows of :math:`m` entries. The differences of running sums round a little more
        than direct sums do (relative to the largest running sum rather than to each
        row's own), which is why adapters replace it with their library's scatter-add.
        """
        xp = array_api_compat.array_namespace(target, indices, values)
        n, k = target.shape[0], indices.shape[0]
        flat = xp.reshape(values, (k, math.prod(target.shape[1:])))
        order = xp.argsort(indices, stable=True)
        sorted_indices = xp.take(indices, order)
        running = xp.cumulative_sum(xp.take(flat, order, axis=0), axis=0, include_initial=True)
        rows = xp.arange(n, dtype=indices.dtype, device=array_api_compat.device(target))
        starts = xp.searchsorted(sorted_indices, rows, side="left")
        ends = xp.searchsorted(sorted_indices, rows, side="right")
        sums = xp.take(running, ends, axis=0) - xp.take(running, starts, axis=0)
        return target + xp.reshape(sums, target.shape)

    def add_scaled(self, target: Array, alpha: float, source: Array) -> Array:
        """``target + alpha * source``, written into ``target`` where the library allows.

        The update of gradient descent (``alpha = -lr``). The standard has neither
        in-place functions nor a fused multiply-add, so this default computes
        ``alpha * source`` into a temporary first: two passes over memory, where
        an adapter can make one (torch's ``add_(source, alpha=...)``).
        Returns the result: ``target`` itself, or a new array where arrays are
        immutable (JAX).

        Python's ``+=`` makes a new array when the array type has no in-place add; a
        library that still allows item assignment (dask.array) gets the sum written
        into ``target`` then, as NumPy and torch arrays are updated in place.
        """
        result = target
        result += source if alpha == 1.0 else alpha * source  # alpha 1: no temporary
        if result is not target and array_api_compat.is_writeable_array(target):
            target[...] = result  # += made a new array (dask.array): write it in
            return target
        return result

    def transpose_matmul(self, left: Array, right: Array) -> Array:
        r"""``left.T @ right`` for 2-D arrays: :math:`\sum_i l_{ik} r_{ij}`, a sum over rows.

        The weight gradient of a linear layer (``g.T @ x``, summed over the batch).
        The default is the standard's ``tensordot`` over axis 0; NumPy overrides it
        with ``np.dot``, which stays fast when the summed axis has length 1 (batch 1),
        where NumPy's ``matmul`` is slow.
        """
        xp = array_api_compat.array_namespace(left, right)
        return xp.tensordot(left, right, axes=([0], [0]))

    def windows(self, x: Array, kernel: tuple[int, int], stride: tuple[int, int],
                dilation: tuple[int, int]) -> Array:
        r"""Every ``kernel``-sized window of a channels-last image: the im2col of a
        convolution, read-only (it may be a view of ``x``).

        For ``x`` of shape :math:`(N, H, W, C)`, the result has shape
        :math:`(N, H', W', k_h, k_w, C)` with
        :math:`H' = \lfloor (H - d_h (k_h - 1) - 1) / s_h \rfloor + 1` (the same for the
        width) and

        .. math::
            \text{out}_{n, h, w, i, j, c} = x_{n,\, s_h h + d_h i,\, s_w w + d_w j,\, c}.

        The channels come last so that the taps of one window row and their channels lie
        side by side in memory: reshaped into a matrix with a row per output pixel, the
        copy moves runs of :math:`k_w C` numbers. This default stacks strided slices, basic
        indexing that every library supports, immutable arrays too: one slice per kernel
        tap (every window's entry :math:`(i, j)`), or one per output pixel (its window)
        where there are fewer of those, as in the weight gradient of ``Conv2d``. NumPy
        overrides it with ``sliding_window_view``, a view that copies nothing.
        """
        xp = array_api_compat.array_namespace(x)
        (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
        n, height, width, channels = x.shape
        out_h = (height - dh * (kh - 1) - 1) // sh + 1
        out_w = (width - dw * (kw - 1) - 1) // sw + 1
        # The entries laid out in channels-last order (the standard has no
        # ascontiguousarray; a reshape to one axis copies into that order where it must),
        # so that each slice below copies whole runs of W' C numbers
        x = xp.reshape(xp.reshape(x, (-1,)), x.shape)
        if kh * kw <= out_h * out_w:  # (N, H', W', C) per tap
            parts = [x[:, dh * i:dh * i + sh * (out_h - 1) + 1:sh,
                       dw * j:dw * j + sw * (out_w - 1) + 1:sw, :]
                     for i in range(kh) for j in range(kw)]
            stacked = xp.stack(parts, axis=3)  # (N, H', W', kh kw, C)
        else:  # (N, kh, kw, C) per output pixel
            parts = [x[:, sh * h:sh * h + dh * (kh - 1) + 1:dh,
                       sw * w:sw * w + dw * (kw - 1) + 1:dw, :]
                     for h in range(out_h) for w in range(out_w)]
            stacked = xp.stack(parts, axis=1)  # (N, H' W', kh, kw, C)
        return xp.reshape(stacked, (n, out_h, out_w, kh, kw, channels))

    def correlate(self, x: Array, w: Array, stride: tuple[int, int],
                  dilation: tuple[int, int], groups: int) -> Array | None:
        r"""The library's own convolution (cross-correlation) of ``x`` (N, C, H, W) with the
        kernel ``w`` (O, C/G, k_h, k_w), without padding or bias: ``Conv2d``'s Eq. (1), in
        (N, O, H', W'); ``None`` where the library has none.

        The standard has no convolution, and this default returns ``None``: ``Conv2d`` then
        multiplies the ``windows`` by its kernel (its Eq. (13)). PyTorch and JAX return
        their own kernels' result (``torch.nn.functional.conv2d``,
        ``jax.lax.conv_general_dilated``). ``Conv2d`` derives its backward as two more
        correlations, so the same call serves forward, input gradient and weight gradient.
        """
        return None

    def torch_view(self, array: Array) -> Any:
        """A ``torch.Tensor`` on the memory of ``array``, or ``None`` where there can be none.

        ``mnn.distributed`` hands gradients to torch.distributed's collectives this way:
        the collective writes its result into the tensor, and so into ``array``. The
        default goes through DLPack (``torch.from_dlpack``, the array API standard's
        exchange protocol): no copy, same device, for NumPy and CuPy arrays. An adapter
        returns ``None`` where torch must not or cannot write into the library's
        arrays (JAX arrays are immutable); the caller then copies through the host.
        Only called once torch is imported (``mnn.distributed`` imports it).
        """
        return importlib.import_module("torch").from_dlpack(array)

    def __repr__(self) -> str:
        return f"<mnn backend {self.name!r}>"
