"""Buckets of ``mnn.distributed`` in one process: the plan, packing, views, the torch view."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mnn.backends import Placement
from mnn.distributed.buckets import Bucket, plan

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed (the view is a torch tensor)")
SHAPES = [(3, 4), (4,), (2, 3), (5,)]


def test_plan_cuts_at_the_cap_and_keeps_placements_apart(target):
    here = target.placement
    other = Placement.named("numpy", "cpu", "float32")
    entries = [(here, shape) for shape in SHAPES]
    assert [indices for _, indices in plan(entries, cap_bytes=0)] == [[0], [1], [2], [3]]
    assert [indices for _, indices in plan(entries, cap_bytes=1e9)] == [[0, 1, 2, 3]]
    # float64: (3, 4) is 96 bytes, a bucket; then 32 + 48 = 80 < 96, and + 40 closes at 120
    assert [indices for _, indices in plan(entries, cap_bytes=96)] == [[0], [1, 2, 3]]
    mixed = [(here, (3,)), (other, (3,)), (here, (2,))]
    buckets = plan(mixed, cap_bytes=1e9)
    assert sorted(indices for _, indices in buckets) == [[0, 2], [1]]
    for bucket, indices in buckets:
        assert bucket.shapes == [mixed[i][1] for i in indices]
        assert bucket.placement == mixed[indices[0]][0]


def test_pack_and_unpack_give_the_arrays_back_with_presence_flags(target):
    rng = np.random.default_rng(0)
    hosts = [rng.standard_normal(shape) for shape in SHAPES]
    bucket = Bucket(target.placement, SHAPES)
    arrays = [target.asarray(h) for h in hosts]
    arrays[1] = None
    flat = bucket.pack(arrays)
    packed = target.to_host(flat)
    assert packed.shape == (12 + 4 + 6 + 5 + 4,)  # the values, then one flag per array
    np.testing.assert_array_equal(packed[:12], hosts[0].ravel())
    np.testing.assert_array_equal(packed[12:16], 0.0)  # None counts as zeros
    np.testing.assert_array_equal(packed[-4:], [1.0, 0.0, 1.0, 1.0])
    back = bucket.unpack(flat, [a is not None for a in arrays])
    assert back[1] is None, "no rank had it (its flag is 0): it stays None"
    for got, host in zip(back[::2], hosts[::2], strict=True):
        np.testing.assert_array_equal(target.to_host(got), host)
    # another rank had it: its flag counts that rank, and this rank gets the values
    flat = bucket.pack(arrays)
    summed = target.asarray(target.to_host(flat) + np.r_[np.ones(27), 0, 1, 0, 0])
    assert bucket.unpack(summed, [a is not None for a in arrays])[1] is not None


def test_unpacked_arrays_are_views_of_the_kept_bucket_where_arrays_are_writable(target):
    bucket = Bucket(target.placement, SHAPES)
    arrays = [target.asarray(np.full(shape, float(i))) for i, shape in enumerate(SHAPES)]
    flat = bucket.pack(arrays)
    views = bucket.unpack(flat, [True] * 4)
    if bucket.buffer is None:  # JAX: a new bucket each time, nothing to share
        assert target.backend.name == "jax"
        return
    assert flat is bucket.buffer and bucket.pack(arrays) is flat, "the bucket is kept"
    flat[0] = 42.0
    assert float(views[0][0, 0]) == 42.0, "the arrays handed back are views of the bucket"
    views[2][...] = 7.0  # a view that is still there is not copied in again: it is in place
    np.testing.assert_array_equal(target.to_host(bucket.pack(views))[16:22], 7.0)


@needs_torch
def test_the_tensor_is_a_view_where_the_adapter_has_one_else_a_copy(target):
    import torch

    bucket = Bucket(target.placement, SHAPES, presence=False)
    arrays = [target.asarray(np.ones(shape)) for shape in SHAPES]
    tensor = bucket.tensor_of(arrays)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float64
    tensor.mul_(3.0)  # what a collective does: writes its result into the tensor
    shared = target.backend.name in ("numpy", "torch", "cupy")  # DLPack; JAX, strict copy
    if bucket.buffer is not None:
        np.testing.assert_array_equal(target.to_host(bucket.buffer), 3.0 if shared else 1.0)
    for got, shape in zip(bucket.arrays_of(tensor), SHAPES, strict=True):
        np.testing.assert_array_equal(target.to_host(got), np.full(shape, 3.0))
    if not shared:
        assert target.backend.torch_view(arrays[0]) is None
