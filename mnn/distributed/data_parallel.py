r"""``DistributedDataParallel``: one model per rank, the same weights on all, averaged gradients.

Data parallelism. Each of the :math:`W` ranks holds a copy of the model and
takes its own share of every batch (``mnn.data.DistributedBatches``): :math:`B`
samples per rank, :math:`WB` per step in all. With the loss a mean over the
batch, the gradient of the whole step's loss is the average of the ranks' own
gradients:

.. math::
    \nabla_\theta \frac{1}{WB} \sum_{i=1}^{WB} \ell_i
    = \frac{1}{W} \sum_{r=1}^{W} \underbrace{\nabla_\theta \frac{1}{B}
      \sum_{i \in \text{rank } r} \ell_i}_{g_r \text{, rank } r\text{'s backward}}.  \qquad (1)

So after every rank's ``backward``, one all-reduce (a sum over ranks that leaves
the result on every rank) and a division by :math:`W` give every rank
:math:`\bar g = \frac1W \sum_r g_r` (Eq. 1), and every rank's optimizer takes the
same step from the same weights: the ranks stay identical, and :math:`W` ranks
with :math:`B` samples each train exactly as one process with :math:`WB` samples
(up to the order of the floating-point sums). For that they must start from the
same weights: the constructor broadcasts rank 0's.

The all-reduce runs over packed buckets of gradients (``mnn.distributed.buckets``),
one asynchronous collective per bucket: bucket :math:`k` is on the wire while
bucket :math:`k+1` is packed. A ``None`` gradient counts as zeros, and stays
``None`` where every rank had ``None`` (DDP's ``find_unused_parameters=True``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mnn.backends import dtype_name
from mnn.base import BaseLayer
from mnn.distributed.buckets import plan
from mnn.distributed.process_group import DistributedError, collective, torch_distributed
from mnn.errors import describe

#: DDP's default bucket size.
DEFAULT_BUCKET_CAP_MB = 25.0


class DistributedDataParallel:
    """Wrap ``model`` for data-parallel training, as ``torch.nn.parallel.DistributedDataParallel``.

    Construct it in every rank after ``mnn.distributed.init_process_group()``: it checks
    that the ranks hold the same parameters (names, shapes, dtypes) and copies rank 0's
    values to all. Then train through it::

        ddp = DistributedDataParallel(model)
        optimizer = mnn.optim.SGD(model, lr=0.1)      # the model's own parameters
        for inputs, labels in DistributedBatches(train, batch_size=16, rng=seed):
            optimizer.zero_grad()
            loss = ddp(inputs, labels)                # model(inputs, labels)
            ddp.backward()                            # model.backward(), then the average
            optimizer.step()

    ``backward`` is the model's, followed by ``all_reduce_gradients``; inside
    ``with ddp.no_sync():`` it skips the average and gradients add up locally
    (gradient accumulation; the next ``backward`` outside averages the sum).
    ``bucket_cap_mb`` is the most gradient data packed into one collective, as in DDP.
    With ``broadcast_buffers`` (DDP's default), every forward in training starts from
    rank 0's buffers, BatchNorm's running statistics, so that every rank evaluates and
    saves the same ones.
    Calling ``model.backward()`` directly leaves the gradients un-averaged: call
    ``ddp.all_reduce_gradients()`` afterwards.
    """

    def __init__(self, model: BaseLayer, *, bucket_cap_mb: float = DEFAULT_BUCKET_CAP_MB,
                 broadcast: bool = True, broadcast_buffers: bool = True) -> None:
        if not isinstance(model, BaseLayer):
            raise TypeError(f"DistributedDataParallel: expected a model (a BaseLayer, e.g. "
                            f"SequentialLayers), got {describe(model)}")
        if not bucket_cap_mb >= 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be >= 0, got "
                             f"{bucket_cap_mb}")
        self.module = model
        self.bucket_cap_bytes = bucket_cap_mb * 2**20
        self._sync = True
        self._layout: tuple | None = None  # (placement, shape) of every parameter
        self._buckets: list = []
        self.broadcast_buffers = broadcast_buffers
        if broadcast:
            broadcast_parameters(model, src=0, bucket_cap_mb=bucket_cap_mb)
            _broadcast(model, "buffers", src=0, bucket_cap_mb=bucket_cap_mb)

    def __call__(self, inputs, feedbacks=None):
        self._sync_buffers()
        return self.module(inputs, feedbacks)

    def forward(self, inputs, feedbacks=None):
        self._sync_buffers()
        return self.module.forward(inputs, feedbacks)

    def _sync_buffers(self) -> None:
        """In training, rank 0's buffers (BatchNorm's running statistics) to every rank before
        the forward, as DDP's ``broadcast_buffers=True`` does: each rank's forward updates
        them from its own share of the batch, and without this they would drift apart."""
        if self.broadcast_buffers and self.module.training:
            _broadcast(self.module, "buffers", src=0,
                       bucket_cap_mb=self.bucket_cap_bytes / 2**20)

    def backward(self, gradients=None, *, retain_graph: bool = False):
        """The model's ``backward``, then the gradients averaged over the ranks (Eq. 1)."""
        result = self.module.backward(gradients, retain_graph=retain_graph)
        if self._sync:
            self.all_reduce_gradients()
        return result

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backwards inside add up gradients locally, without the average (as DDP's)."""
        before, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = before

    def all_reduce_gradients(self) -> None:
        """Replace every gradient by its average over the ranks (bucketed, asynchronous)."""
        entries = list(self.module.parameters())
        layout = tuple((layer.placement, tuple(layer.params[key].shape))
                       for _, layer, key in entries)
        if layout != self._layout:  # the first call, or the model moved (to(), a first forward)
            check_same_parameters(self.module, "averaging the gradients")
            self._buckets = plan(layout[::-1], self.bucket_cap_bytes)  # last layers first
            self._layout = layout
        order = entries[::-1]
        dist = torch_distributed()
        with collective("averaging the gradients") as job:
            pending = []
            for bucket, indices in self._buckets:  # each on the wire while the next is packed
                tensor = bucket.tensor_of([order[i][1].grads[order[i][2]] for i in indices])
                pending.append((bucket, indices, tensor, dist.all_reduce(tensor, async_op=True)))
            for bucket, indices, tensor, work in pending:
                work.wait()
                if job.world_size > 1:
                    tensor.div_(job.world_size)  # Eq. (1): the sum over ranks / W
                for i, grad in zip(indices, bucket.arrays_of(tensor), strict=True):
                    _, layer, key = order[i]
                    layer.grads[key] = grad


def broadcast_parameters(model: BaseLayer, src: int = 0,
                         bucket_cap_mb: float = DEFAULT_BUCKET_CAP_MB) -> None:
    """Give every rank rank ``src``'s parameter values (bucketed, like the gradients)."""
    check_same_parameters(model, "broadcasting the parameters")
    _broadcast(model, "params", src, bucket_cap_mb)


def _broadcast(model: BaseLayer, store: str, src: int, bucket_cap_mb: float) -> None:
    """Give every rank rank ``src``'s arrays of every layer's ``store`` (``"params"`` or
    ``"buffers"``), bucketed."""
    entries = [(layer, key) for _, layer in model.named_layers() for key in getattr(layer, store)]
    if not entries:
        return
    layout = [(layer.placement, tuple(getattr(layer, store)[key].shape)) for layer, key in entries]
    dist = torch_distributed()
    with collective(f"broadcasting the {'parameters' if store == 'params' else store}"):
        for bucket, indices in plan(layout, bucket_cap_mb * 2**20, presence=False):
            tensor = bucket.tensor_of([getattr(layer, store)[key]
                                       for layer, key in (entries[i] for i in indices)])
            dist.broadcast(tensor, src=src)
            for i, value in zip(indices, bucket.arrays_of(tensor), strict=True):
                layer, key = entries[i]
                getattr(layer, store)[key] = value


def check_same_parameters(model: BaseLayer, what: str) -> None:
    """Every rank holds parameters of the same names, shapes and dtypes; else one
    ``DistributedError`` on every rank, naming the first rank that differs from rank 0."""
    mine = [(name, tuple(layer.params[key].shape), dtype_name(layer.placement.dtype))
            for name, layer, key in model.parameters()]
    with collective(f"comparing the parameters before {what}") as job:
        everyone: list = [None] * job.world_size
        torch_distributed().all_gather_object(everyone, mine)
    for rank, theirs in enumerate(everyone):
        if theirs != everyone[0]:
            differ = next((f"{a} on rank 0, {b} on rank {rank}"
                           for a, b in zip(everyone[0], theirs, strict=False) if a != b),
                          f"{len(everyone[0])} parameters on rank 0, {len(theirs)} on rank {rank}")
            raise DistributedError(f"rank {job.rank} of {job.world_size}: before {what}, the "
                                   f"ranks hold different parameters ({differ}); every rank "
                                   f"must build the same model")
