"""The training loop that ``mnn train``, ``mnn train-lm`` and ``mnn.sklearn`` share.

Training runs in *rounds*, and after each one the caller looks at the model:

* ``epochs(batches, n)``: ``n`` passes over ``mnn.data.Batches``. ``mnn train`` scores
  the test set after each, ``mnn.sklearn`` applies scikit-learn's stopping rule.
* ``steps(draw, n, every)``: ``n`` steps on batches from ``draw()``, ``every`` steps a
  round. ``mnn train-lm`` computes the validation loss and draws a sample after each.

``train(step, rounds, after_round)`` runs them. A step is ``step(inputs, targets)``,
which trains on one batch and returns its loss. ``plain_step(model, optimizer)`` is
the step that the README teaches, through the public API only::

    model.zero_grads()
    loss = model(inputs, targets)
    model.backward()
    optimizer.step()

``mnn.sklearn`` writes its own step (scikit-learn's objective: a separate loss and
an L2 penalty added to the gradients). The loop owns what every caller needs:

* **the mean training loss of each round**, over its samples (``unit="sample"``) or
  its steps (``unit="step"``). The sum is taken in whatever ``step`` returns: a
  Python float has been read from the device at every step, an array (what
  ``mnn.sklearn``'s step returns) is read once per round;
* **a progress bar** per round on stderr (tqdm, where it is installed and
  ``progress=True``): the samples or steps done, their rate and the running loss;
* **a time limit**, checked after every step: the round ends there, ``after_round``
  still runs (the evaluation), and it is the last round;
* **early stopping**: ``after_round`` returns True to end training;
* **checkpoints**: ``Checkpoint.save`` (``mnn.save``, atomic) every
  ``checkpoint_every`` rounds and after the last one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from mnn.checkpoint import save

#: ``step(inputs, targets)``: one optimizer step on one batch; returns the batch's loss.
Step = Callable[[Any, Any], Any]
UNITS = ("sample", "step")


class RoundPlan(NamedTuple):
    """What one round trains on: its name on the progress bar, its size (samples or
    steps, the bar's total) and its batches."""

    description: str
    size: int
    batches: Iterable[tuple[Any, Any]]


@dataclass(frozen=True)
class Round:
    """A round just trained, as ``after_round`` sees it."""

    number: int  #: 1 for the first round
    steps: int  #: steps since training started, this round's included
    total: Any  #: the sum of the step losses, each times its weight (samples, or 1 a step)
    count: int  #: the sum of the weights: samples or steps
    out_of_time: bool  #: the time limit ended this round early; it is the last
    started: float  #: ``time.perf_counter()`` when training started

    @property
    def loss(self) -> float:
        """The mean training loss over the round's samples (or steps)."""
        return float(self.total) / self.count

    def elapsed(self) -> float:
        """Seconds since training started."""
        return time.perf_counter() - self.started


@dataclass(frozen=True)
class Run:
    """What ``train`` returns: how training ended."""

    rounds: int  #: rounds trained
    steps: int  #: steps taken
    seconds: float  #: wall time of the loop: steps, ``after_round`` and checkpoints
    stopped: bool  #: ``after_round`` asked to stop
    out_of_time: bool  #: the time limit ended training


class Checkpoint:
    """The model and optimizer at ``path`` (``mnn.save``), with the caller's ``metadata``
    in the same file (``mnn train-lm``'s vocabulary).

    The write is atomic: an old file is replaced only by a complete new one, so the
    model and its metadata are never out of step.
    """

    def __init__(self, path: str, model, optimizer=None,
                 metadata: Mapping[str, str] | None = None) -> None:
        self.path, self.model, self.optimizer = path, model, optimizer
        self.metadata = dict(metadata or {})

    def save(self) -> None:
        save(self.model, self.path, optimizer=self.optimizer, metadata=self.metadata)


def plain_step(model, optimizer, through=None) -> Step:
    """The README's step on ``model`` with ``optimizer``; it returns the loss as a float.

    ``through`` runs the forward and backward instead of the model itself: a
    ``mnn.distributed.DistributedDataParallel`` of ``model``, whose ``backward`` then
    averages the gradients over the ranks. Reading the loss as a float waits for the
    device: the running loss of the progress bar needs it at every step anyway.
    """
    network = model if through is None else through

    def step(inputs, targets) -> float:
        model.zero_grads()  # None: backward then stores the gradients, no pass of zeros
        loss = network(inputs, targets)
        network.backward()
        optimizer.step()
        return float(loss)

    return step


def epochs(batches, n: int) -> Iterator[RoundPlan]:
    """``n`` rounds, each one pass over ``batches`` (``mnn.data.Batches``): a new
    shuffle each time."""
    for epoch in range(1, n + 1):
        yield RoundPlan(f"epoch {epoch}/{n}", batches.samples_per_epoch, batches)


def steps(draw: Callable[[], tuple[Any, Any]], n: int, every: int) -> Iterator[RoundPlan]:
    """``n`` steps on batches from ``draw()``, in rounds of ``every`` (the last may be
    shorter). A batch is drawn just before its step."""
    for start in range(0, n, every):
        size = min(every, n - start)
        yield RoundPlan(f"steps {start + 1}-{start + size}", size,
                        (draw() for _ in range(size)))


def train(step: Step, rounds: Iterable[RoundPlan],
          after_round: Callable[[Round], bool | None] | None = None, *, unit: str = "sample",
          progress: bool = False, time_limit: float | None = None,
          checkpoint: Checkpoint | None = None, checkpoint_every: int | None = None) -> Run:
    """Run ``step`` on every batch of every round; after each round, ``after_round``.

    ``unit``: what a round's mean loss and its progress bar count, ``"sample"`` (each
    step's loss weighs its batch's size) or ``"step"``. ``time_limit``: seconds from
    the start after which no further step begins. ``checkpoint``: saved every
    ``checkpoint_every`` rounds (None: never on the way) and after the last round.
    """
    if unit not in UNITS:
        raise ValueError(f"train: expected unit to be one of {UNITS}, got {unit!r}")
    started = time.perf_counter()
    taken, number, saved = 0, 0, 0
    stopped = out_of_time = False
    for number, (description, size, batches) in enumerate(rounds, start=1):
        bar = progress_bar(size, description, unit) if progress else None
        total, count = 0.0, 0
        for inputs, targets in batches:
            loss = step(inputs, targets)
            weight = int(inputs.shape[0]) if unit == "sample" else 1
            total, count, taken = total + loss * weight, count + weight, taken + 1
            if bar is not None:
                bar.update(weight)
                bar.set_postfix(loss=f"{float(total) / count:.4f}", refresh=False)
            out_of_time = time_limit is not None and time.perf_counter() - started > time_limit
            if out_of_time:
                break
        if bar is not None:
            bar.close()
        stopped = bool(after_round(Round(number, taken, total, count, out_of_time, started))
                       if after_round is not None else False)
        if checkpoint is not None and checkpoint_every and number % checkpoint_every == 0:
            checkpoint.save()
            saved = number
        if stopped or out_of_time:
            break
    if checkpoint is not None and saved != number:
        checkpoint.save()
    return Run(number, taken, time.perf_counter() - started, stopped, out_of_time)


def progress_bar(total: int, description: str, unit: str = "sample"):
    """A tqdm bar on stderr counting ``unit`` (its rate is per second); None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, unit=unit, leave=False, file=sys.stderr,
                dynamic_ncols=True)  # counts as integers: 70/100, not unit_scale's 70.0/100
