"""Data-parallel training on torch.distributed: gloo on CPUs, NCCL on GPUs, any mnn backend.

Every rank (process) runs the same script on its own share of the data; after each
``backward`` the gradients are averaged across the ranks, so every rank takes the
same step and the copies of the model stay identical. The pieces, one file each:

* ``process_group.py``: ``init_process_group`` joins the job that torchrun's
  environment describes (rank, world size, rendezvous address), with a timeout on
  every wait; ``DistributedError`` when a rank crashed or stalled.
* ``buckets.py``: gradients packed into a few flat buckets, handed to torch through
  DLPack without a copy (NumPy, CuPy, torch), copied where there is no view (JAX,
  array-api-strict).
* ``data_parallel.py``: ``DistributedDataParallel``, the model wrapper: rank 0's weights
  broadcast at the start, the bucketed average after every backward.
* ``launch.py``: ``launch`` starts N ranks on this machine (``mnn train --nproc N``).

The data side is ``mnn.data.DistributedBatches``: each rank's share of every batch.
Launching, on one machine and on several: docs/distributed.md.

``import mnn.distributed`` does not import torch; the first call that needs it does.
"""

from mnn.distributed.data_parallel import (
    DEFAULT_BUCKET_CAP_MB,
    DistributedDataParallel,
    broadcast_parameters,
    check_same_parameters,
)
from mnn.distributed.launch import free_port, launch, rank_environment
from mnn.distributed.process_group import (
    DEFAULT_TIMEOUT_S,
    DistributedError,
    Job,
    current_job,
    default_backend,
    destroy_process_group,
    init_process_group,
    launched,
    sum_across_ranks,
)

__all__ = ["DistributedDataParallel", "broadcast_parameters", "check_same_parameters",
           "DEFAULT_BUCKET_CAP_MB", "DEFAULT_TIMEOUT_S", "DistributedError", "Job",
           "init_process_group", "destroy_process_group", "current_job", "launched",
           "default_backend", "sum_across_ranks", "launch", "rank_environment", "free_port"]
