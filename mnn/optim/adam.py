r"""Adam and AdamW: adaptive moment estimation, with L2 or decoupled weight decay."""

from __future__ import annotations

import math
from typing import Any

from mnn.backends import Placement
from mnn.base import BaseLayer
from mnn.checks import finite_non_negative
from mnn.optim.optimizer import Optimizer
from mnn.types import Array


class Adam(Optimizer):
    r"""Adam (Kingma and Ba, 2015), with exactly the rule of ``torch.optim.Adam``.

    For every parameter :math:`\theta` with gradient :math:`\nabla_\theta`, learning
    rate :math:`\gamma` (``lr``), decay rates :math:`\beta_1, \beta_2` (``betas``),
    :math:`\epsilon` (``eps``) and weight decay :math:`\lambda`, at step
    :math:`t = 1, 2, \dots` of this parameter (``step`` in its state):

    Weight decay, as an L2 penalty whose gradient joins the gradient (Adam), or
    decoupled from it and applied to the weights directly (AdamW, Loshchilov and
    Hutter, 2019):

    .. math::
        \text{Adam:}\quad g_t = \nabla_\theta + \lambda\,\theta_{t-1}, \qquad
        \text{AdamW:}\quad g_t = \nabla_\theta,\;\;
        \theta_{t-1} \leftarrow (1 - \gamma\lambda)\,\theta_{t-1}  \qquad (1)

    Running averages of the gradient and of its elementwise square (the first and
    second moments), both starting at :math:`m_0 = v_0 = 0`:

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1)\, g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2  \qquad (2)

    Starting at zero biases both towards zero in the first steps; dividing by
    :math:`1 - \beta^t` (the total weight of the average so far) removes the bias:

    .. math::
        \hat m_t = \frac{m_t}{1 - \beta_1^t}, \qquad
        \hat v_t = \frac{v_t}{1 - \beta_2^t}  \qquad (3)

    The step divides each entry by its own root-mean-square gradient, so every
    parameter moves by about :math:`\gamma` whatever its gradient's scale:

    .. math::
        \theta_t = \theta_{t-1} - \gamma\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}  \qquad (4)

    The code computes (4) as torch does, :math:`\theta_{t-1} - \frac{\gamma}{1 - \beta_1^t}
    \, m_t \big/ \big(\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon\big)`, which is the same
    expression. State per parameter: ``step`` (:math:`t`, an int), ``exp_avg`` (:math:`m`)
    and ``exp_avg_sq`` (:math:`v`).
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")

    #: False: L2 weight decay through the gradient (Adam); True: decoupled (AdamW). Eq. (1).
    decoupled_weight_decay = False

    def __init__(self, model: BaseLayer, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(model, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def check_hyperparameters(self) -> None:
        for key in ("lr", "eps", "weight_decay"):
            setattr(self, key, finite_non_negative(self.name, key, getattr(self, key)))
        if not isinstance(self.betas, (tuple, list)):
            raise ValueError(f"{self.name}: expected betas = (beta1, beta2), got {self.betas!r}")
        self.betas = tuple(finite_non_negative(self.name, "betas", b) for b in self.betas)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"{self.name}: expected betas = (beta1, beta2), each in [0, 1), "
                             f"got {self.betas}")

    def state_keys(self) -> tuple[str, ...]:
        return ("step", "exp_avg", "exp_avg_sq")

    def update(self, where: Placement, param: Array, grad: Array,
               state: dict[str, Any]) -> Array:
        xp, beta1, beta2 = where.xp, *self.betas
        if "step" not in state:  # m_0 = v_0 = 0, where the parameter lives
            state.update(step=0, exp_avg=xp.zeros_like(param), exp_avg_sq=xp.zeros_like(param))
        state["step"] = t = state["step"] + 1
        if self.weight_decay != 0.0:
            if self.decoupled_weight_decay:
                param = param * (1.0 - self.lr * self.weight_decay)  # Eq. (1), AdamW
            else:
                grad = grad + self.weight_decay * param  # Eq. (1), Adam
        m = beta1 * state["exp_avg"] + (1.0 - beta1) * grad  # Eq. (2)
        v = beta2 * state["exp_avg_sq"] + (1.0 - beta2) * (grad * grad)  # Eq. (2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        step_size = self.lr / (1.0 - beta1**t)  # Eq. (3), first moment
        denominator = xp.sqrt(v) / math.sqrt(1.0 - beta2**t) + self.eps  # Eq. (3), second moment
        return param - step_size * (m / denominator)  # Eq. (4)


class AdamW(Adam):
    r"""AdamW: ``Adam`` with decoupled weight decay, exactly ``torch.optim.AdamW``.

    The same rule as ``Adam`` (see its Eqs. (1) to (4)), except that weight decay
    shrinks the weights directly instead of joining the gradient:

    .. math::
        \theta_{t-1} \leftarrow (1 - \gamma\lambda)\,\theta_{t-1}, \qquad g_t = \nabla_\theta.

    With L2 decay through the gradient, Adam divides the decay by
    :math:`\sqrt{\hat v_t}` too, so weights with large gradients are hardly decayed;
    decoupled decay shrinks every weight by the same factor. The default
    :math:`\lambda` is ``1e-2``, as in torch.
    """

    decoupled_weight_decay = True

    def __init__(self, model: BaseLayer, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(model, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
