"""``Dataset``: inputs and labels that belong together, moved to a backend and device once.

Copying a batch from the host to a GPU on every step costs more than the step
itself for a small network. So a data set is moved as a whole, once, with
``to(backend, device, dtype)``; batches are then cut out of it where it lives
(see ``mnn.data.batches``).
"""

from __future__ import annotations

import numpy as np

from mnn.backends import Backend, Placement, to_host
from mnn.data.errors import DataError
from mnn.types import Array, Device, DType


class Dataset:
    """``inputs`` of shape ``(n, ...)`` and integer ``labels`` of shape ``(n,)``.

    A new data set usually holds host NumPy arrays; ``to`` gives a copy that lives
    on a backend and device. ``name`` says where it came from, for messages.
    """

    def __init__(self, inputs: Array, labels: Array, name: str = "dataset") -> None:
        if len(inputs.shape) < 1 or tuple(labels.shape) != (inputs.shape[0],):
            raise DataError(f"{name}: expected labels of shape ({inputs.shape[0]},), one per "
                            f"input, got shape {tuple(labels.shape)}")
        self.inputs, self.labels, self.name = inputs, labels, name

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, {len(self)} samples of shape "
                f"{tuple(self.inputs.shape[1:])})")

    @property
    def n_classes(self) -> int:
        """How many classes the labels name: the largest label plus one (0 when empty)."""
        return int(np.max(self.to_host()[1])) + 1 if len(self) else 0

    def to(self, backend: Backend | str = "numpy", device: Device | str | None = None,
           dtype: DType | str = "float32") -> Dataset:
        """This data set on ``backend`` (a name or adapter) and ``device``: one copy each.

        Inputs become floating point of ``dtype``, labels ``int64``. ``device`` is a
        name such as ``"cuda:0"``; the backend's default device if not given.
        """
        where = Placement.named(backend, device, dtype)
        inputs, labels = self.to_host()
        return Dataset(where.from_host(inputs), where.from_host(labels, "int64"), self.name)

    def to_host(self) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs, labels)`` as host NumPy arrays."""
        return to_host(self.inputs), to_host(self.labels)
