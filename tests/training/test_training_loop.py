"""``mnn.training``: the loop of ``mnn train``, ``mnn train-lm`` and ``mnn.sklearn``.

Rounds, the mean loss of each, the time limit, early stopping and checkpoints,
on tiny models and on steps that only count.
"""

import importlib.util

import numpy as np
import pytest

import mnn
from mnn import training
from mnn.data import Batches


def tiny_model(seed: int = 0):
    return mnn.SequentialLayers([mnn.LinearLayer(4, 3, rng=seed), mnn.CrossEntropyLossLayer()])


def tiny_data(n: int = 10):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


def batch(size: int):
    """A batch of ``size`` samples, for steps that do not look at it."""
    return np.zeros((size, 1)), None


def returning(*losses):
    """A step that trains nothing and returns ``losses`` in turn."""
    values = iter(losses)
    return lambda inputs, targets: next(values)


class CountingCheckpoint:
    def __init__(self):
        self.rounds = []
        self.current = 0

    def save(self):
        self.rounds.append(self.current)


def test_plain_step_is_the_step_the_readme_teaches():
    x, y = tiny_data()
    ours, theirs = tiny_model(), tiny_model()
    step = training.plain_step(ours, mnn.optim.SGD(ours, lr=0.1))
    optimizer = mnn.optim.SGD(theirs, lr=0.1)
    for _ in range(3):
        loss = step(x, y)
        theirs.zero_grads()
        expected = theirs(x, y)
        theirs.backward()
        optimizer.step()
        assert isinstance(loss, float) and loss == float(expected)
    for name, value in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[name], value)


def test_the_mean_loss_weighs_each_step_by_its_samples_or_counts_steps():
    rounds = []
    plan = [training.RoundPlan("r", 4, [batch(3), batch(1)])]
    training.train(returning(1.0, 4.0), plan, rounds.append)
    assert rounds[0].loss == (3 * 1.0 + 1 * 4.0) / 4 and rounds[0].count == 4
    plan = [training.RoundPlan("r", 2, [batch(3), batch(1)])]
    training.train(returning(1.0, 4.0), plan, rounds.append, unit="step")
    assert rounds[1].loss == 2.5 and rounds[1].count == 2 and rounds[1].steps == 2
    with pytest.raises(ValueError, match=r"unit to be one of \('sample', 'step'\), got 'epoch'"):
        training.train(returning(), [], unit="epoch")


def test_epochs_pass_over_the_batches_and_steps_draw_each_batch_just_before_its_step():
    x, y = tiny_data()
    plans = list(training.epochs(Batches(x, y, batch_size=4), 2))
    assert [(p.description, p.size, len(list(p.batches))) for p in plans] == [
        ("epoch 1/2", 10, 3), ("epoch 2/2", 10, 3)]

    drawn = []

    def draw():
        drawn.append(len(drawn))
        return batch(2)

    def step(inputs, targets):
        assert len(drawn) == taken[0] + 1, "the batch of this step, and no further one"
        taken[0] += 1
        return 0.0

    taken = [0]
    plans = list(training.steps(draw, 7, 3))
    assert [(p.description, p.size) for p in plans] == [("steps 1-3", 3), ("steps 4-6", 3),
                                                         ("steps 7-7", 1)]
    finished = training.train(step, plans, unit="step")
    assert (finished.rounds, finished.steps, len(drawn)) == (3, 7, 7)
    assert not finished.stopped and not finished.out_of_time


def test_the_time_limit_ends_the_round_which_is_then_evaluated_and_the_last():
    rounds = []
    drawn = []
    finished = training.train(returning(*[1.0] * 10),
                              training.steps(lambda: drawn.append(1) or batch(1), 10, 5),
                              rounds.append, time_limit=0)
    assert finished.out_of_time and finished.steps == 1 and len(drawn) == 1
    assert [(r.number, r.steps, r.out_of_time) for r in rounds] == [(1, 1, True)]


def test_after_round_stops_training_by_returning_true():
    rounds = []

    def after_round(done):
        rounds.append(done.number)
        return done.number == 2

    finished = training.train(returning(*[1.0] * 5),
                              [training.RoundPlan(str(i), 1, [batch(1)]) for i in range(5)],
                              after_round)
    assert rounds == [1, 2] and finished.stopped and finished.rounds == 2


@pytest.mark.parametrize(("every", "stop_at", "saved"), [
    (2, None, [2, 4, 5]),  # every second round, and after the last
    (None, None, [5]),  # only after the last
    (1, None, [1, 2, 3, 4, 5]),
    (2, 2, [2]),  # stopped where it had just saved: not twice
    (2, 3, [2, 3])])
def test_checkpoints_every_k_rounds_and_after_the_last(every, stop_at, saved):
    checkpoint = CountingCheckpoint()

    def after_round(done):
        checkpoint.current = done.number
        return done.number == stop_at

    training.train(returning(*[1.0] * 5),
                   [training.RoundPlan(str(i), 1, [batch(1)]) for i in range(5)], after_round,
                   checkpoint=checkpoint, checkpoint_every=every)
    assert checkpoint.rounds == saved


def test_a_checkpoint_is_mnn_save_with_its_metadata_in_the_same_file(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    optimizer = mnn.optim.Adam(model, lr=0.01)
    path = str(tmp_path / "model.safetensors")
    checkpoint = training.Checkpoint(path, model, optimizer, metadata={"vocabulary": "ab"})
    training.train(training.plain_step(model, optimizer),
                   training.epochs(Batches(x, y, batch_size=5), 2), checkpoint=checkpoint)
    loaded, state, metadata = mnn.load(path, with_optimizer=True, with_metadata=True)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value)
    assert type(state).__name__ == "Adam" and metadata == {"vocabulary": "ab"}
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # one file


@pytest.mark.skipif(importlib.util.find_spec("tqdm") is None, reason="tqdm is not installed")
def test_the_progress_bar_is_drawn_on_stderr_when_asked_for(capsys):
    plan = [training.RoundPlan("epoch 1/1", 2, [batch(1), batch(1)])]
    training.train(returning(1.0, 2.0), plan, progress=True)
    drawn = capsys.readouterr().err
    assert "epoch 1/1" in drawn and " 0/2 " in drawn and "2.00" not in drawn  # integer counts
    training.train(returning(1.0, 2.0), [plan[0]._replace(batches=[batch(1), batch(1)])])
    assert capsys.readouterr().err == ""
