r"""``DistributedBatches``: each rank's share of every batch, as torch's ``DistributedSampler``.

In data-parallel training (``mnn.distributed``) each of the :math:`W` ranks draws
the same seeded permutation :math:`\pi` of the :math:`n` samples (every rank passes
the same ``rng`` seed), pads it by wrapping around to a multiple of :math:`W`, and
keeps every :math:`W`-th index starting at its rank:

.. math::
    \text{rank } r \text{ keeps } \pi_r, \pi_{r+W}, \pi_{r+2W}, \dots
    \qquad \text{(} \lceil n / W \rceil \text{ indices)}.  \qquad (1)

So in an epoch every sample is seen once across the ranks when :math:`W` divides
:math:`n` (else the first :math:`W \lceil n/W \rceil - n` samples of the
permutation twice, as ``DistributedSampler`` pads), and every rank takes the same
number of steps, which its collectives need. And since the shares interleave,
batch :math:`k` of the :math:`W` ranks with ``batch_size`` :math:`B` holds exactly
the samples :math:`\pi_{kWB}, \dots, \pi_{(k+1)WB-1}` of batch :math:`k` of one
process with ``Batches(batch_size=W * B)`` and the same seed: :math:`W` ranks
train as one process with a :math:`W` times larger batch. Each epoch draws a new
permutation from the generator, on every rank alike (no ``set_epoch`` needed).
"""

from __future__ import annotations

import math

import numpy as np

from mnn.data.batches import Batches
from mnn.data.dataset import Dataset
from mnn.types import Array, Seed


class DistributedBatches(Batches):
    """The mini-batches of one rank: ``Batches`` over the rank's share of each epoch (Eq. 1).

    ``rank`` and ``world_size`` default to those of the process group
    (``mnn.distributed.init_process_group``). Every rank must pass the same ``rng``
    (an int seed, not a shared generator object), ``batch_size`` (per rank) and data.
    """

    def __init__(self, inputs: Array | Dataset, labels: Array = None, batch_size: int = 32,
                 shuffle: bool = True, rng: Seed = 0, drop_last: bool = False, *,
                 rank: int | None = None, world_size: int | None = None) -> None:
        super().__init__(inputs, labels, batch_size, shuffle, rng, drop_last)
        if rank is None or world_size is None:
            from mnn.distributed import current_job

            job = current_job()
            rank = job.rank if rank is None else rank
            world_size = job.world_size if world_size is None else world_size
        for name, value in (("rank", rank), ("world_size", world_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"DistributedBatches: {name} must be an int, got {value!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"DistributedBatches: expected 0 <= rank < world_size, got rank "
                             f"{rank} of world_size {world_size}")
        self.rank, self.world_size = rank, world_size

    @property
    def samples_per_epoch(self) -> int:
        """This rank's share: ceil(n / world_size) samples."""
        return math.ceil(self.n_samples / self.world_size)

    def epoch_order(self) -> np.ndarray:
        order = super().epoch_order()  # the same permutation on every rank
        padded = np.resize(order, self.samples_per_epoch * self.world_size)  # wraps around
        return padded[self.rank::self.world_size]  # Eq. (1)
