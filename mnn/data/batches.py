"""``Batches``: an epoch of mini-batches, shuffled by a seeded generator, cut out on the device.

Where the work happens:

* The shuffle is a permutation of the sample indices, drawn on the host by a
  NumPy generator seeded once (``rng=``). So the same seed gives the same batches,
  in the same order, on every backend, and each epoch gets a new order.
* The permutation is copied to the data's device once per epoch (``n`` integers),
  and each batch is ``xp.take(inputs, indices, axis=0)`` of a slice of it: the
  inputs themselves never go back to the host. Move the data there first, once,
  with ``Dataset.to``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import array_api_compat

from mnn.backends import Placement
from mnn.data.dataset import Dataset
from mnn.initializers import host_generator
from mnn.types import Array, Seed


class Batches:
    """Iterate over ``(inputs, labels)`` mini-batches of ``batch_size`` samples.

    ``inputs`` and ``labels`` are arrays of one backend and device (or give a
    ``Dataset`` as ``inputs`` and no labels). Each ``iter()`` is one epoch. The
    last batch is smaller when ``batch_size`` does not divide the data, unless
    ``drop_last=True``. ``rng`` is an int seed or a ``numpy.random.Generator``.
    """

    def __init__(self, inputs: Array | Dataset, labels: Array = None, batch_size: int = 32,
                 shuffle: bool = True, rng: Seed = 0, drop_last: bool = False) -> None:
        if isinstance(inputs, Dataset):
            inputs, labels = inputs.inputs, inputs.labels
        if labels is None or int(labels.shape[0]) != int(inputs.shape[0]):
            raise ValueError(f"Batches: expected one label per input ({inputs.shape[0]}), got "
                             f"{'none' if labels is None else labels.shape[0]}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Batches: batch_size must be a positive int, got {batch_size!r}")
        self.inputs, self.labels = inputs, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator = host_generator(rng)
        self.xp = array_api_compat.array_namespace(inputs, labels)
        self.placement = Placement.of(inputs)

    @property
    def n_samples(self) -> int:
        """How many samples an epoch goes through."""
        return int(self.inputs.shape[0])

    def __len__(self) -> int:
        """Batches per epoch."""
        divide = math.floor if self.drop_last else math.ceil
        return divide(self.n_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Array, Array]]:
        n, xp = self.n_samples, self.xp
        if self.shuffle:  # drawn on the host: the same order on every backend
            order = self.placement.from_host(self.generator.permutation(n), "int64")
        else:
            order = xp.arange(n, dtype=xp.int64, device=self.placement.device)
        for b in range(len(self)):
            indices = order[b * self.batch_size:min((b + 1) * self.batch_size, n)]
            yield xp.take(self.inputs, indices, axis=0), xp.take(self.labels, indices, axis=0)
