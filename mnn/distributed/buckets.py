r"""Buckets: many arrays of one placement packed into one flat array, for one collective call.

Why pack: a collective costs a fixed latency :math:`\alpha` per call plus
:math:`\beta` per byte, so :math:`k` parameters sent one by one cost
:math:`k\alpha + \beta n`, and packed into one bucket :math:`\alpha + \beta n`
plus a copy of the :math:`n` bytes. DDP packs too (``bucket_cap_mb``, 25 MB by
default); so does this module: ``plan`` cuts the parameters into buckets of at most
``cap_bytes`` (a parameter larger than that gets a bucket of its own).

A bucket is an array of the arrays' own library, device and dtype:
``[a_0.ravel(), a_1.ravel(), ..., a_{k-1}.ravel(), presence]``. torch.distributed
reads and writes it through the adapter's ``torch_view`` (DLPack, no copy: NumPy,
CuPy and torch arrays go through the same collective); where there is no view
(JAX, array-api-strict) the bucket is copied to a host tensor and back.

Missing arrays. A gradient is ``None`` until a backward stores one, and a rank may
have used a parameter that another did not. In the bucket a ``None`` counts as
zeros, and the tail holds one presence flag per array, 1 where this rank had it:
after the sum over ranks, flag :math:`i` counts the ranks that had array :math:`i`.
Where that count is 0 the array stays ``None`` (so an optimizer skips it, as it
would in one process); else every rank gets the average, its own zeros included.
That is what ``torch.nn.parallel.DistributedDataParallel`` does with
``find_unused_parameters=True``, and it needs no extra collective here: the flags
travel in the bucket. The flags are read on the host only by a rank that lacked an
array, so the usual step never waits for the device.

After the collective, the arrays handed back are views of the bucket (as DDP's
``gradient_as_bucket_view=True``): no copy back. The bucket is kept for the next
step, and an array that is still one of those views (gradients zeroed with
``set_to_none=False``, then accumulated in place) is not copied in again.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence

import array_api_compat
import numpy as np

from mnn.backends import Placement, dtype_name


class Bucket:
    """The layout of one bucket: ``shapes`` of arrays that all live at ``placement``."""

    def __init__(self, placement: Placement, shapes: Sequence[tuple[int, ...]],
                 presence: bool = True) -> None:
        self.placement = placement
        self.shapes = [tuple(shape) for shape in shapes]
        sizes = [math.prod(shape) for shape in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).tolist()
        self.size = self.offsets[-1]  # values; the presence flags follow them
        self.length = self.size + (len(self.shapes) if presence else 0)
        self.presence = presence
        self.buffer = None  # made by the first pack, for libraries with writable arrays
        self._writable: bool | None = None
        self._buffer_view = None  # torch's view of the buffer, made once
        self._sent: tuple = ()  # what arrays_of needs of the last tensor_of
        self._views: list = [None] * len(self.shapes)  # what the last unpack handed out
        self._flags: dict[tuple[bool, ...], object] = {}  # presence patterns, on the device

    def pack(self, arrays: Sequence) -> object:
        """The flat bucket holding ``arrays`` (``None`` counts as zeros) and their flags."""
        xp, where = self.placement.xp, self.placement
        present = tuple(array is not None for array in arrays)
        if self._writable is None:
            self._writable = array_api_compat.is_writeable_array(where.from_host(np.zeros(1)))
        if self.buffer is None and self._writable:
            self.buffer = xp.empty((self.length,), dtype=where.dtype, device=where.device)
        if self.buffer is None:  # immutable arrays (JAX): one concatenation, a new array
            parts = [xp.zeros(math.prod(shape), dtype=where.dtype, device=where.device)
                     if array is None else xp.reshape(array, (-1,))
                     for array, shape in zip(arrays, self.shapes, strict=True)]
            if self.presence:
                parts.append(self._flag_array(present))
            return xp.concat(parts)
        for i, array in enumerate(arrays):
            start, stop = self.offsets[i], self.offsets[i + 1]
            if array is None:
                self.buffer[start:stop] = 0.0
            elif array is not self._views[i]:  # a view of the bucket is there already
                self.buffer[start:stop] = xp.reshape(array, (-1,))
        if self.presence:
            self.buffer[self.size:] = self._flag_array(present)
        return self.buffer

    def tensor_of(self, arrays: Sequence):
        """``arrays`` packed (``pack``) as the torch tensor a collective works on: a view of
        the bucket where the adapter has one (``torch_view``), else a host copy. The
        collective's result comes back with ``arrays_of``."""
        flat = self.pack(arrays)
        if flat is self.buffer and self._buffer_view is not None:
            tensor = self._buffer_view
        else:
            tensor = self.placement.backend.torch_view(flat)
            if flat is self.buffer:
                self._buffer_view = tensor
        shared = tensor is not None
        if not shared:  # JAX, array-api-strict: a copy on the host
            torch = importlib.import_module("torch")
            tensor = torch.from_numpy(np.array(self.placement.to_host(flat), copy=True))
        self._sent = (flat, shared, [array is not None for array in arrays])
        return tensor

    def arrays_of(self, tensor) -> list:
        """The arrays of ``tensor``, the result of a collective on ``tensor_of``'s tensor, at
        the bucket's placement: views of the bucket (``unpack``), copied back only where
        ``tensor`` was a copy."""
        flat, shared, had = self._sent
        return self.unpack(flat if shared else self.placement.from_host(tensor.numpy()), had)

    def unpack(self, flat, had: Sequence[bool] | None = None) -> list:
        """The arrays of ``flat`` as views of it; with presence flags, ``None`` where no rank
        had the array (``had[i]``: whether this rank had array ``i``; its flag is read on
        the host only where it had not)."""
        xp = self.placement.xp
        views = [xp.reshape(flat[self.offsets[i]:self.offsets[i + 1]], shape)
                 for i, shape in enumerate(self.shapes)]
        if self.presence and had is not None:
            for i, here in enumerate(had):
                if not here and float(flat[self.size + i]) == 0.0:
                    views[i] = None  # no rank had it: stays None, as in one process
        self._views = views if flat is self.buffer else [None] * len(views)
        return views

    def _flag_array(self, present: tuple[bool, ...]):
        if present not in self._flags:  # one small array per pattern, made once
            self._flags[present] = self.placement.from_host(np.asarray(present, np.float64))
        return self._flags[present]


def plan(entries: Sequence[tuple[Placement, tuple[int, ...]]], cap_bytes: float,
         presence: bool = True) -> list[tuple[Bucket, list[int]]]:
    """Cut ``entries`` (placement and shape of each array, in order) into buckets.

    Returns ``(bucket, indices into entries)`` pairs. A bucket holds arrays of one
    placement only, in the order given, and closes once it reaches ``cap_bytes``;
    ``cap_bytes = 0`` gives one bucket per array.
    """
    buckets: list[tuple[Bucket, list[int]]] = []
    open_: dict[Placement, tuple[list[int], int]] = {}  # placement -> (indices, bytes)

    def close(where: Placement) -> None:
        indices, _ = open_.pop(where)
        buckets.append((Bucket(where, [entries[i][1] for i in indices], presence), indices))

    for i, (where, shape) in enumerate(entries):
        indices, nbytes = open_.get(where, ([], 0))
        indices.append(i)
        open_[where] = (indices, nbytes + math.prod(shape) * _itemsize(where))
        if open_[where][1] >= cap_bytes:
            close(where)
    for where in list(open_):
        close(where)
    return buckets


def _itemsize(where: Placement) -> int:
    return np.dtype(dtype_name(where.dtype)).itemsize
