"""``DistributedBatches``: each rank's share of every batch, on every target, in one process."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mnn.data import Batches, Dataset, DistributedBatches
from mnn.distributed import DistributedError


def _data(n: int, target) -> Dataset:
    inputs = np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 3))  # row i holds i
    return Dataset(inputs, np.arange(n, dtype=np.int64), "toy").to(
        target.backend, target.device_name, "float64")


def _samples(batches, target) -> list[np.ndarray]:
    """Each batch as the host array of its sample indices (the labels are the indices)."""
    return [target.to_host(labels) for _, labels in batches]


@pytest.mark.parametrize(("n", "world", "batch"), [(24, 3, 3), (23, 2, 4), (30, 2, 5)])
def test_the_ranks_split_each_batch_of_one_process_with_a_world_times_larger_batch(
        target, n, world, batch):
    data = _data(n, target)
    single = Batches(data, batch_size=world * batch, rng=7)
    ranks = [DistributedBatches(data, batch_size=batch, rng=7, rank=r, world_size=world)
             for r in range(world)]
    for _ in range(2):  # two epochs: a new permutation each, the same on every rank
        expected = _samples(single, target)
        shares = [_samples(rank, target) for rank in ranks]
        assert len({len(share) for share in shares}) == 1, "every rank takes the same steps"
        for k, step in enumerate(zip(*shares, strict=True)):
            got = np.concatenate(step)
            if k < len(expected) - 1 or n % (world * batch) == 0:
                assert sorted(got) == sorted(expected[k]), f"step {k}"
        everything = np.concatenate([np.concatenate(share) for share in shares])
        assert set(everything) == set(range(n)), "every sample at least once per epoch"
        assert len(everything) == world * -(-n // world), "padded to a multiple of the ranks"
        if n % world == 0:
            assert sorted(everything) == list(range(n)), "each sample exactly once"


def test_the_inputs_follow_the_labels_and_stay_on_the_device(target):
    data = _data(10, target)
    for inputs, labels in DistributedBatches(data, batch_size=2, rank=1, world_size=2):
        assert target.backend.owns(inputs) and target.backend.owns(labels)
        np.testing.assert_array_equal(target.to_host(inputs)[:, 0], target.to_host(labels))


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="the cross-check against torch's DistributedSampler needs torch")
@pytest.mark.parametrize(("n", "world"), [(10, 2), (11, 3), (2, 4)])
def test_unshuffled_shares_are_those_of_torch_distributed_sampler(n, world):
    from torch.utils.data import DistributedSampler

    host = Dataset(np.zeros((n, 1)), np.arange(n, dtype=np.int64))
    for rank in range(world):
        ours = DistributedBatches(host, batch_size=n, shuffle=False, rank=rank,
                                  world_size=world)
        theirs = list(DistributedSampler(range(n), num_replicas=world, rank=rank,
                                         shuffle=False))
        assert ours.epoch_order().tolist() == theirs
        assert len(ours) == 1 and ours.samples_per_epoch == len(theirs)


@pytest.mark.parametrize(("rank", "world"), [(2, 2), (-1, 2), (0, 0), (1.0, 2)])
def test_a_rank_outside_the_world_is_refused(rank, world):
    host = Dataset(np.zeros((4, 1)), np.arange(4, dtype=np.int64))
    with pytest.raises(ValueError, match="DistributedBatches: .*rank"):
        DistributedBatches(host, rank=rank, world_size=world)


def test_without_a_process_group_the_rank_must_be_given():
    host = Dataset(np.zeros((4, 1)), np.arange(4, dtype=np.int64))
    with pytest.raises(DistributedError, match="init_process_group"):
        DistributedBatches(host)
