r"""Dropout: in training mode, zero each entry with probability p and scale the rest."""

from __future__ import annotations

import numpy as np

from mnn.backends import Placement
from mnn.base import BaseLayer, Example
from mnn.checks import probability
from mnn.initializers import host_generator
from mnn.types import Seed


class Dropout(BaseLayer):
    r"""Zero each entry with probability :math:`p` in training mode; pass through in eval mode.

    ``Dropout(p=0.5, *, rng=None)``, as ``torch.nn.Dropout``: any shape, and
    ``layer.eval()`` (or ``eval()`` on any container holding it) turns it into the
    identity; ``train()`` turns it back on.

    Forward
    -------
    In training mode, draw :math:`u_i` uniform on :math:`[0, 1)`, one per entry,
    and keep the entries with :math:`u_i \ge p`:

    .. math::
        m_i = \frac{[u_i \ge p]}{1 - p}, \qquad y_i = m_i x_i  \qquad (1)

    Dividing by :math:`1 - p`, the probability of keeping an entry, makes
    :math:`\operatorname{E}[y_i] = x_i`, so evaluation mode can use :math:`y = x`
    with no rescaling. (:math:`p = 1` drops everything: :math:`y = 0`.)

    Jacobian
    --------
    For a drawn mask, (1) is elementwise and linear in :math:`x`:
    :math:`\partial y_i / \partial x_j = \delta_{ij} m_i`.

    Vector-Jacobian product
    -----------------------
    .. math::
        \frac{\partial \ell}{\partial x_i} = m_i\, g_i  \qquad (2)

    The same mask as the forward: the forward keeps :math:`m`. In evaluation mode
    both passes are the identity.

    Random numbers
    --------------
    The masks come from the backend adapter (``random_uniform``), drawn on the
    inputs' device. ``rng`` (an int seed or a ``numpy.random.Generator``; default,
    the generator that ``mnn.manual_seed`` seeds) fixes this layer's seed when it is
    built. Mask number :math:`k` (``draws`` counts them) is drawn from a seed made
    of that seed and :math:`k`, so a run is reproducible, and setting ``draws``
    back repeats the masks (``mnn.testing.gradcheck`` does that, so that every
    forward of its finite differences sees the same mask; as ``torch.random.fork_rng``
    does for torch's own checks). The same seed gives different masks on different
    libraries, as with ``Backend.random_normal``.
    """

    def __init__(self, p: float = 0.5, *, rng: Seed = None) -> None:
        super().__init__()
        self.p = probability(self.name, "p", p)
        self.seed = int(host_generator(rng).integers(2**63))
        self.draws = 0  # masks drawn so far
        self.expect_inputs()

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(0.4, rng=rng), rng.standard_normal((3, 5)), None  # training: masks drawn

    def compute_forward(self, xp, inputs, feedbacks):
        if not self.training or self.p == 0.0:
            self.save_for_backward(None)
            return inputs
        self.draws += 1
        if self.p == 1.0:
            mask = xp.zeros_like(inputs)
        else:
            # 31 bits: every library takes it (JAX without 64-bit integers too)
            seed = int(np.random.SeedSequence([self.seed, self.draws]).generate_state(1)[0]) >> 1
            where = Placement.of(inputs)
            uniform = where.backend.random_uniform(inputs.shape, seed, where.device, inputs.dtype)
            mask = xp.astype(uniform >= self.p, inputs.dtype) * (1.0 / (1.0 - self.p))  # Eq. (1)
        self.save_for_backward(mask)
        return inputs * mask  # Eq. (1)

    def compute_backward(self, xp, gradients, mask):
        return gradients if mask is None else gradients * mask  # Eq. (2)
