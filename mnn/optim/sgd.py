r"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from typing import Any

from mnn.backends import Placement
from mnn.base import BaseLayer
from mnn.checks import finite_non_negative
from mnn.optim.optimizer import Optimizer
from mnn.types import Array


class SGD(Optimizer):
    r"""Stochastic gradient descent, with exactly the rule of ``torch.optim.SGD``.

    For every parameter :math:`\theta` with gradient :math:`\nabla_\theta` (from
    ``grads``), learning rate :math:`\gamma` (``lr``), momentum :math:`\mu`,
    dampening :math:`\tau` and weight decay :math:`\lambda`, step :math:`t = 1, 2, \dots`:

    Weight decay (an L2 penalty :math:`\tfrac{\lambda}{2}\lVert\theta\rVert^2` added
    to the loss) adds its gradient:

    .. math::
        g_t = \nabla_\theta + \lambda\, \theta_{t-1}  \qquad (1)

    Momentum keeps a running sum of past gradients, the buffer :math:`b`; the first
    step starts it at the gradient itself (no dampening on the first step):

    .. math::
        b_1 = g_1, \qquad b_t = \mu\, b_{t-1} + (1 - \tau)\, g_t \quad (t > 1)  \qquad (2)

    The direction of the step is the buffer, or with Nesterov momentum a look
    ahead along it:

    .. math::
        d_t = b_t \quad \text{or (Nesterov)} \quad d_t = g_t + \mu\, b_t  \qquad (3)

    and without momentum (:math:`\mu = 0`, no buffer is kept) :math:`d_t = g_t`. Then

    .. math::
        \theta_t = \theta_{t-1} - \gamma\, d_t  \qquad (4)

    With every option at its default this is ``BaseLayer.step``: :math:`\theta \leftarrow
    \theta - \gamma \nabla_\theta`. State per parameter: ``momentum_buffer`` (:math:`b`).
    """

    hyperparameters = ("lr", "momentum", "dampening", "nesterov", "weight_decay")

    def __init__(self, model: BaseLayer, lr: float = 0.01, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(model, lr=lr, momentum=momentum, dampening=dampening,
                         nesterov=nesterov, weight_decay=weight_decay)

    def check_hyperparameters(self) -> None:
        for key in ("lr", "momentum", "dampening", "weight_decay"):
            setattr(self, key, finite_non_negative(self.name, key, getattr(self, key)))
        self.nesterov = bool(self.nesterov)
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise ValueError(f"{self.name}: Nesterov momentum needs momentum > 0 and dampening "
                             f"== 0, got momentum={self.momentum}, dampening={self.dampening}")

    def state_keys(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum != 0.0 else ()

    def update(self, where: Placement, param: Array, grad: Array,
               state: dict[str, Any]) -> Array:
        if self.weight_decay != 0.0:
            grad = grad + self.weight_decay * param  # Eq. (1)
        if self.momentum != 0.0:
            if "momentum_buffer" not in state:
                buffer = where.xp.asarray(grad, copy=True)  # Eq. (2), t = 1
            else:
                buffer = (self.momentum * state["momentum_buffer"]
                          + (1.0 - self.dampening) * grad)  # Eq. (2)
            state["momentum_buffer"] = buffer
            grad = grad + self.momentum * buffer if self.nesterov else buffer  # Eq. (3)
        # Eq. (4), in place and in one pass where the library can (the adapter's add_scaled):
        # the path BaseLayer.step takes too.
        return where.backend.add_scaled(param, -self.lr, grad)
