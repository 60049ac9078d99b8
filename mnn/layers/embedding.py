r"""A lookup table: integer ids in, one learned vector per id out."""

from __future__ import annotations

import numpy as np

from mnn.backends import to_host
from mnn.base import BaseLayer, Example
from mnn.checks import allocating, positive_int
from mnn.errors import LabelError
from mnn.initializers import host_generator, normal
from mnn.types import Seed


class Embedding(BaseLayer):
    r"""Row :math:`i_t` of a table :math:`W` for each id :math:`i_t`, as ``torch.nn.Embedding``.

    ``Embedding(num_embeddings, embedding_dim)``: :math:`W \in \mathbb{R}^{V \times d}`
    (``params['w']``, drawn from :math:`\mathcal N(0, 1)` as in torch). Inputs are
    integer ids in :math:`[0, V)` of any shape; outputs have that shape plus an axis
    of size :math:`d`. Integer inputs have no gradient: ``backward`` returns ``None``
    (torch does not differentiate integers either).

    Forward
    -------
    With the ids flattened to :math:`i_1, \dots, i_N`:

    .. math::
        y_{tk} = W_{i_t k}  \qquad (1)

    Jacobian
    --------
    Written as a product, (1) is :math:`Y = H W` with the one-hot matrix
    :math:`H_{tv} = [i_t = v]` of size :math:`N \times V`, so

    .. math::
        \frac{\partial y_{tk}}{\partial W_{vk'}} = [i_t = v]\, \delta_{kk'}.  \qquad (2)

    Vector-Jacobian product
    -----------------------
    Given :math:`G_{tk} = \partial \ell / \partial y_{tk}`, the chain rule sums over
    every output entry, and (2) keeps only the rows that looked :math:`v` up:

    .. math::
        \frac{\partial \ell}{\partial W_{vk}} = \sum_{t} [i_t = v]\, G_{tk}
            = (H^\top G)_{vk}  \qquad (3)

    An id that occurs several times collects the sum of all its rows of :math:`G`.
    Building :math:`H` would cost :math:`O(NV)` memory (a vocabulary of 50,000 and
    a batch of 16,000 tokens: 3 GB in float32), so (3) is computed as a scatter-add
    instead: row :math:`t` of :math:`G` is added into row :math:`i_t` of the
    gradient, repeated ids adding up (the adapter's ``scatter_add``: ``np.add.at``,
    ``Tensor.index_add``, JAX's ``.at[].add``). :math:`O(Nd)` time, no memory
    beyond the gradient itself. The forward keeps the flattened ids.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *, rng: Seed = None) -> None:
        super().__init__()
        num_embeddings = positive_int(self.name, "num_embeddings", num_embeddings)
        embedding_dim = positive_int(self.name, "embedding_dim", embedding_dim)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        shape = (num_embeddings, embedding_dim)
        with allocating(self.name, shape):
            self.add_param("w", normal(shape, 1.0, host_generator(rng)))
        self.expect_inputs(kind="integral")

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(5, 3, rng=rng), rng.integers(0, 5, size=(2, 4)), None  # repeated ids

    def compute_forward(self, xp, inputs, feedbacks):
        ids = xp.reshape(inputs, (-1,))
        if ids.dtype not in (xp.int32, xp.int64):  # uint8 ids, say: torch indexes with these two
            ids = xp.astype(ids, xp.int64)
        outside = xp.count_nonzero((ids < 0) | (ids >= self.num_embeddings))
        if int(outside):  # one wait for the device; out-of-range ids are an error, not a clamp
            given = to_host(inputs)  # as given: a uint64 id of 2**63 is no negative int64
            raise LabelError(f"{self.name}: expected ids in [0, {self.num_embeddings}), got "
                             f"values from {given.min()} to {given.max()}")
        self.save_for_backward(ids)
        rows = xp.take(self.params["w"], ids, axis=0)  # Eq. (1)
        return xp.reshape(rows, (*inputs.shape, self.embedding_dim))

    def compute_backward(self, xp, gradients, ids):
        rows = xp.reshape(gradients, (-1, self.embedding_dim))
        # Eq. (3) as a scatter-add: repeated ids add up, and no N x V one-hot is built.
        zeros = xp.zeros_like(self.params["w"])
        self.add_grad("w", self.placement.backend.scatter_add(zeros, ids, rows))
        return None
