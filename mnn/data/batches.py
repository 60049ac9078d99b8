"""``Batches``: an epoch of mini-batches, shuffled by a seeded generator, cut out on the device.

Where the work happens:

* The shuffle is a permutation of the sample indices, drawn on the host by a
  NumPy generator seeded once (``rng=``). So the same seed gives the same batches,
  in the same order, on every backend, and each epoch gets a new order.
* The permutation is copied to the data's device once per epoch (``n`` integers),
  and each batch is ``xp.take(inputs, indices, axis=0)`` of a slice of it: the
  inputs themselves never go back to the host. Move the data there first, once,
  with ``Dataset.to``.
* ``epoch_order`` makes an epoch's indices and ``__iter__`` cuts them into batches;
  ``DistributedBatches`` (``distributed_batches.py``) changes only the first: each
  rank keeps its share of the same permutation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import array_api_compat
import numpy as np

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

    @property
    def samples_per_epoch(self) -> int:
        """How many samples one epoch yields: all of them."""
        return self.n_samples

    def __len__(self) -> int:
        """Batches per epoch."""
        divide = math.floor if self.drop_last else math.ceil
        return divide(self.samples_per_epoch / self.batch_size)

    def epoch_order(self) -> np.ndarray:
        """The next epoch's sample indices, in order, on the host (``samples_per_epoch`` of them).

        Shuffled: a new permutation from the generator each epoch, drawn on the host so
        that the order is the same on every backend.
        """
        n = self.n_samples
        return self.generator.permutation(n) if self.shuffle else np.arange(n)

    def __iter__(self) -> Iterator[tuple[Array, Array]]:
        xp, n = self.xp, self.samples_per_epoch
        order = self.placement.from_host(self.epoch_order(), "int64")  # one copy per epoch
        for b in range(len(self)):
            indices = order[b * self.batch_size:min((b + 1) * self.batch_size, n)]
            yield xp.take(self.inputs, indices, axis=0), xp.take(self.labels, indices, axis=0)
