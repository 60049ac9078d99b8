"""mnn.data: Dataset.to, the batch iterator (on every target) and the digits data set."""

import importlib.util

import array_api_compat
import numpy as np
import pytest

from mnn.data import Batches, DataError, Dataset, load_digits

HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
needs_sklearn = pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn is not installed "
                                   "(the cross-check against its copy of the digits needs it)")


def _host_data(n=23, features=3):
    inputs = np.arange(n * features, dtype=np.float64).reshape(n, features)
    return Dataset(inputs, np.arange(n, dtype=np.int64) % 5, "toy")


def _epoch(batches, target):
    return [(target.to_host(x), target.to_host(y)) for x, y in batches]


def test_dataset_to_moves_inputs_and_labels_to_the_target(target):
    moved = _host_data().to(target.backend, target.device_name, "float32")
    assert target.backend.owns(moved.inputs) and target.backend.owns(moved.labels)
    assert str(moved.inputs.dtype).endswith("float32")
    assert str(moved.labels.dtype).endswith("int64")
    np.testing.assert_array_equal(target.to_host(moved.inputs), _host_data().inputs)
    assert len(moved) == 23 and moved.n_classes == 5


def test_batches_are_the_seeded_permutation_on_every_target(target):
    data = _host_data()
    moved = data.to(target.backend, target.device_name, "float64")
    batches = Batches(moved.inputs, moved.labels, batch_size=5, rng=7)
    reference = np.random.default_rng(7)
    for _ in range(2):  # two epochs: a new permutation each, from the one generator
        order = reference.permutation(23)
        got = _epoch(batches, target)
        assert [len(y) for _, y in got] == [5, 5, 5, 5, 3]
        np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), data.inputs[order])
        np.testing.assert_array_equal(np.concatenate([y for _, y in got]), data.labels[order])
    for x, y in batches:
        assert target.backend.owns(x) and target.backend.owns(y)
        assert array_api_compat.device(x) == target.device


def test_batches_copy_only_the_indices_to_the_device_once_per_epoch(target, monkeypatch):
    moved = _host_data().to(target.backend, target.device_name, "float64")
    batches = Batches(moved, batch_size=4, rng=0)
    copies = []
    original = type(target.backend).from_host
    monkeypatch.setattr(type(target.backend), "from_host",
                        lambda self, host, *a, **k: copies.append(np.shape(host))
                        or original(self, host, *a, **k))
    assert sum(1 for _ in batches) == 6
    assert copies == [(23,)], "one host-to-device copy per epoch: the permutation, not the data"


def test_batches_without_shuffle_keep_the_order_and_drop_last_drops(target):
    data = _host_data()
    moved = data.to(target.backend, target.device_name, "float64")
    got = _epoch(Batches(moved, batch_size=10, shuffle=False), target)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), data.inputs)
    dropped = Batches(moved, batch_size=10, drop_last=True)
    assert len(dropped) == 2 and [len(y) for _, y in _epoch(dropped, target)] == [10, 10]


def test_same_seed_same_batches_other_seed_other_batches():
    data = _host_data()
    first = [y for _, y in Batches(data, batch_size=23, rng=3)]
    again = [y for _, y in Batches(data, batch_size=23, rng=3)]
    other = [y for _, y in Batches(data, batch_size=23, rng=4)]
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other[0])


def test_batches_errors():
    data = _host_data()
    with pytest.raises(ValueError, match=r"one label per input \(23\), got 4"):
        Batches(data.inputs, data.labels[:4])
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        Batches(data, batch_size=0)
    with pytest.raises(DataError, match=r"toy: expected labels of shape \(23,\)"):
        Dataset(data.inputs, data.labels[:3], "toy")


@needs_sklearn
def test_digits_fixed_split_scaled_to_unit_interval():
    train, test = load_digits()
    assert (len(train), len(test)) == (1438, 359)  # the last 20% of 1,797 held out
    for part in (train, test):
        assert part.inputs.shape[1] == 64 and part.inputs.dtype == np.float64
        assert part.inputs.min() == 0.0 and part.inputs.max() == 1.0
        assert part.labels.dtype == np.int64 and set(np.unique(part.labels)) == set(range(10))
    again_train, again_test = load_digits()
    np.testing.assert_array_equal(again_test.inputs, test.inputs)
    from sklearn.datasets import load_digits as sklearn_digits

    everything = sklearn_digits().data / 16.0
    rows = {row.tobytes() for row in train.inputs}
    assert len(train.inputs) + len(test.inputs) == len(everything)
    overlap = sum(row.tobytes() in rows for row in test.inputs)
    duplicates = len(everything) - len({row.tobytes() for row in everything})
    assert overlap <= duplicates, "the test images must be held out of the training set"


@needs_sklearn
def test_embedded_digits_are_scikit_learns():
    from sklearn.datasets import load_digits as sklearn_digits

    from mnn.data.digits import SPLIT_SEED

    bunch = sklearn_digits()
    train, test = load_digits()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(bunch.target))
    held_out = order[-len(test):]
    np.testing.assert_array_equal(test.inputs, bunch.data[held_out] / 16.0)
    np.testing.assert_array_equal(test.labels, bunch.target[held_out])
    np.testing.assert_array_equal(train.labels, bunch.target[order[:-len(test)]])
