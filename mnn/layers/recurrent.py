r"""Recurrent layers: ``RNN`` (tanh), ``LSTM`` and ``GRU``, on one backpropagation through time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import array_api_compat
import numpy as np

from mnn import backends
from mnn.base import BaseLayer, Example
from mnn.checks import (
    allocating,
    check_kind,
    check_same_placement,
    fits_in_memory,
    flag,
    namespace_of,
    positive_int,
)
from mnn.errors import ArgumentError, ShapeError, describe
from mnn.initializers import he_uniform, host_generator
from mnn.types import Array, Namespace, Seed


class RecurrentLayer(BaseLayer):
    r"""What ``RNN``, ``LSTM`` and ``GRU`` share: the stack of layers, the loop over time
    and backpropagation through time. The three differ only in their cell (Eq. (3)).

    Shapes are batch-first, as everywhere in mnn: inputs :math:`(B, T, n)`, outputs
    :math:`(B, T, H)` (``H = hidden_size``), states :math:`(L, B, H)` for ``L =
    num_layers``, as in ``torch.nn.RNN(..., batch_first=True)``.

    Forward
    -------
    Layer :math:`l` has the parameters ``weight_ih_l{l}`` (:math:`W_{ih}`, shape
    :math:`(kH, n_l)`), ``weight_hh_l{l}`` (:math:`W_{hh}`, :math:`(kH, H)`) and, with
    ``bias=True``, ``bias_ih_l{l}`` and ``bias_hh_l{l}`` (:math:`(kH,)`), with
    :math:`k` gates (1 for the RNN, 4 for the LSTM, 3 for the GRU) stacked in torch's
    order, so that a torch state dict loads by name. Its input :math:`x_t \in
    \mathbb{R}^{B \times n_l}` at time :math:`t` is the layer's input for :math:`l = 0`
    and the output of layer :math:`l - 1` otherwise. Its state :math:`s_t` is
    :math:`h_t` (and the cell :math:`c_t` for the LSTM), starting from the given
    :math:`s_0` (``h0=``, ``c0=``) or zeros. For :math:`t = 1, \dots, T`:

    .. math::
        u_t = x_t W_{ih}^\top + b_{ih}  \qquad (1)

    .. math::
        v_t = h_{t-1} W_{hh}^\top + b_{hh}  \qquad (2)

    .. math::
        s_t = \mathrm{cell}(u_t, v_t, s_{t-1}), \qquad y_t = h_t  \qquad (3)

    (1) does not depend on the state: all :math:`T` steps are one matrix product
    before the loop. Only (2) and (3) run step by step. Where the cell uses only the
    sum :math:`a_t = u_t + v_t` (the RNN and the LSTM: ``sums_u_and_v``), :math:`b_{hh}`
    is added once to (1) rather than to (2) at every step. The output is
    :math:`(y_1, \dots, y_T)` of the last layer; the final state :math:`s_T` of
    every layer is readable after the forward as ``layer.final_state`` (torch's
    ``h_n``, or ``(h_n, c_n)`` for the LSTM), so the output is torch's first element.

    Backpropagation through time
    ----------------------------
    :math:`h_t` reaches the loss along two paths: through the output :math:`y_t`
    (its gradient :math:`G_t` arrives in ``backward``) and through step
    :math:`t + 1`. Write :math:`\delta s_t` for the whole gradient of :math:`\ell`
    with respect to :math:`s_t`. At the end nothing comes from a later step, only
    what the caller gives for the final state (``backward(g, h_n_grad=...,
    c_n_grad=...)``, zero by default):

    .. math::
        \delta h_T = G_T + \bar h_T, \qquad \delta c_T = \bar c_T  \qquad (4)

    Walking :math:`t = T, \dots, 1` backwards, the cell's vector-Jacobian product
    (each class derives its own) turns :math:`\delta s_t` into the gradients of its
    arguments in (3): :math:`\delta u_t`, :math:`\delta v_t`, and the part of
    :math:`\delta s_{t-1}` that goes straight through the cell (the GRU's
    :math:`z \odot h_{t-1}`, the LSTM's :math:`f \odot c_{t-1}`; the RNN has none):

    .. math::
        (\delta u_t, \delta v_t, \delta s_{t-1}^{\mathrm{direct}})
            = \mathrm{cell}^\top(\delta s_t)  \qquad (5)

    (2) is an affine map of :math:`h_{t-1}` (``LinearLayer`` Eq. (2)), and
    :math:`h_{t-1}` is also the output :math:`y_{t-1}`; the chain rule adds the
    three paths:

    .. math::
        \delta h_{t-1} = G_{t-1} + \delta h_{t-1}^{\mathrm{direct}} + \delta v_t W_{hh},
        \qquad \delta c_{t-1} = \delta c_{t-1}^{\mathrm{direct}}  \qquad (6)

    with :math:`G_0 = 0`: :math:`\delta s_0` is the gradient of the initial state,
    readable after the backward as ``layer.initial_state_grads`` (the same structure
    as ``final_state``), whether :math:`s_0` was given or the zeros.

    The same :math:`W_{hh}` and :math:`W_{ih}` act at every step, so their
    gradients sum over time (``LinearLayer`` Eqs. (3), (4)); the loop only keeps
    :math:`\delta u_t, \delta v_t`, and each sum is one matrix product after it:

    .. math::
        \frac{\partial \ell}{\partial W_{hh}} = \sum_t \delta v_t^\top h_{t-1}, \qquad
        \frac{\partial \ell}{\partial b_{hh}} = \sum_t \sum_{b} (\delta v_t)_{b\cdot}
        \qquad (7)

    .. math::
        \frac{\partial \ell}{\partial W_{ih}} = \sum_t \delta u_t^\top x_t, \qquad
        \frac{\partial \ell}{\partial b_{ih}} = \sum_t \sum_{b} (\delta u_t)_{b\cdot},
        \qquad \delta x_t = \delta u_t W_{ih}  \qquad (8)

    With several layers, the top one goes first: its :math:`\delta x_t` of (8) is
    the :math:`G_t` of the layer below. No Jacobian is formed: every step is a few
    elementwise products and one :math:`(B, kH) \times (kH, H)` matrix product, so
    the backward costs about what the forward does, and keeps the forward's
    per-step values (:math:`O(L T B k H)` numbers).

    Initialisation, as torch: every weight and bias uniform on
    :math:`[-1/\sqrt{H}, 1/\sqrt{H}]`. Not supported (torch has them):
    ``batch_first=False`` (transpose the inputs), ``dropout``, ``bidirectional``,
    ``proj_size`` and inputs without a batch axis.
    """

    #: The number of gates k stacked in W_ih and W_hh, and the names of the state's parts.
    gates = 1
    state_names: tuple[str, ...] = ("h0",)
    #: Whether the cell uses u_t and v_t only through their sum (then delta u = delta v).
    sums_u_and_v = False

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = True, *, rng: Seed = None) -> None:
        super().__init__()
        input_size = positive_int(self.name, "input_size", input_size)
        hidden_size = positive_int(self.name, "hidden_size", hidden_size)
        num_layers = positive_int(self.name, "num_layers", num_layers)
        bias = flag(self.name, "bias", bias)
        if flag(self.name, "batch_first", batch_first) is not True:
            raise ArgumentError(f"{self.name}: expected batch_first=True (mnn is batch-first: "
                                f"inputs (batch, time, features)), got batch_first=False; "
                                f"transpose the inputs instead")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bias, batch_first
        rows = self.gates * hidden_size
        # A config may say num_layers=10**9: its hidden-to-hidden weights alone are refused
        # before a shape is listed.
        layers = "its layer" if num_layers == 1 else f"each of its {num_layers} layers"
        fits_in_memory(self.name, f"parameters of shape {(rows, hidden_size)} in {layers}",
                       num_layers * rows * hidden_size)
        shapes = {}
        for layer in range(num_layers):
            shapes[f"weight_ih_l{layer}"] = (rows, input_size if layer == 0 else hidden_size)
            shapes[f"weight_hh_l{layer}"] = (rows, hidden_size)
            if bias:
                shapes[f"bias_ih_l{layer}"] = (rows,)
                shapes[f"bias_hh_l{layer}"] = (rows,)
        generator = host_generator(rng)
        with allocating(self.name, *shapes.values()):
            for key, shape in shapes.items():
                # He-uniform's bound is sqrt(6 / fan_in): fan_in = 6 H gives torch's 1/sqrt(H)
                self.add_param(key, he_uniform(shape, 6 * hidden_size, generator))
        self.expect_inputs(min_rank=3, max_rank=3, sizes={-1: input_size})
        self.final_state = None
        self.initial_state_grads = None

    # --- the cell: what each class writes -----------------------------------------------

    def cell_forward(self, xp: Namespace, u: Array, v: Array,
                     state: tuple[Array, ...]) -> tuple[tuple[Array, ...], Any]:
        """Eq. (3): ``(new_state, saved)`` from ``u``, ``v`` (``(B, kH)``) and ``state`` (a
        tuple of ``(B, H)`` arrays); ``saved`` is what ``cell_backward`` needs."""
        raise NotImplementedError(f"{self.name} does not define cell_forward")

    def cell_backward(self, xp: Namespace, saved: Any, grad_state: tuple[Array | None, ...]
                      ) -> tuple[Array, Array, tuple[Array | None, ...]]:
        """Eq. (5): ``(grad_u, grad_v, grad_state_direct)``; an entry of
        ``grad_state_direct`` is None where no path goes straight through the cell."""
        raise NotImplementedError(f"{self.name} does not define cell_backward")

    def before_backward(self, xp: Namespace, steps: list) -> list:
        """What ``cell_backward`` gets for each step, from what ``cell_forward`` saved. Here
        the same; a cell may compute the factors of its Eq. (5) that do not depend on the
        incoming gradient here, for every step at once (one operation over the stacked
        steps in place of one per step)."""
        return steps

    # --- the time loop, shared ---------------------------------------------------------

    def run_forward(self, xp: Namespace, inputs: Array,
                    initial: Mapping[str, Array | None]) -> Array:
        """Eqs. (1) to (3) for every layer and step; ``initial`` maps a state name to the
        array given for it or None. Sets ``final_state``; returns the last layer's outputs."""
        batch, length, _ = inputs.shape
        if length == 0:
            raise ShapeError(f"{self.name}: expected inputs with at least one time step, got "
                             f"{describe(inputs)}")
        shape = (self.num_layers, batch, self.hidden_size)
        start = [self._initial_state(xp, inputs, name, initial.get(name), shape)
                 for name in self.state_names]
        x, saved, finals = inputs, [], []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._weights(layer)
            u = x @ w_ih.T  # Eq. (1), every step at once
            if b_ih is not None:
                u = u + (b_ih + b_hh if self.sums_u_and_v else b_ih)
            step_bias = None if self.sums_u_and_v else b_hh
            state = tuple(part[layer, :, :] for part in start)
            outputs, steps, previous = [], [], []
            w_hh_t = w_hh.T
            for t in range(length):
                v = state[0] @ w_hh_t  # Eq. (2)
                if step_bias is not None:
                    v = v + step_bias
                previous.append(state[0])
                state, kept = self.cell_forward(xp, u[:, t, :], v, state)  # Eq. (3)
                outputs.append(state[0])
                steps.append(kept)
            saved.append((x, steps, previous))
            finals.append(state)
            x = xp.stack(outputs, axis=1)  # y_t, the next layer's x_t
        self.save_for_backward(saved)
        final = tuple(xp.stack([state[i] for state in finals], axis=0)
                      for i in range(len(self.state_names)))
        self.final_state = final if len(final) > 1 else final[0]
        return x

    def run_backward(self, xp: Namespace, gradients: Array, saved: list,
                     final_grads: tuple[Array | None, ...]) -> Array | None:
        """Eqs. (4) to (8), top layer first; ``final_grads`` maps a state name to the
        gradient given for the final state or None. Sets ``initial_state_grads``."""
        backend = self.placement.backend
        firsts = []
        for layer in reversed(range(self.num_layers)):
            x, steps, previous = saved[layer]
            w_ih, w_hh, _, _ = self._weights(layer)
            grad_state = tuple(None if grad is None else grad[layer, :, :]
                               for grad in final_grads)  # Eq. (4)
            steps = self.before_backward(xp, steps)
            grad_u, grad_v = [None] * len(steps), [None] * len(steps)
            for t in reversed(range(len(steps))):
                grad_h = _add(grad_state[0], gradients[:, t, :])  # Eqs. (4), (6): + G_t
                grad_u[t], grad_v[t], direct = self.cell_backward(
                    xp, steps[t], (grad_h, *grad_state[1:]))  # Eq. (5)
                grad_state = (_add(direct[0], grad_v[t] @ w_hh), *direct[1:])  # Eq. (6)
            firsts.append(grad_state)
            # Time first, (T, B, .): each step's rows lie together
            stacked_u = xp.stack(grad_u)
            stacked_v = stacked_u if self.sums_u_and_v else xp.stack(grad_v)
            flat_u = xp.reshape(stacked_u, (-1, stacked_u.shape[-1]))
            flat_v = xp.reshape(stacked_v, (-1, stacked_v.shape[-1]))
            h_previous = xp.reshape(xp.stack(previous), (-1, self.hidden_size))
            x_rows = xp.reshape(xp.permute_dims(x, (1, 0, 2)), (-1, x.shape[-1]))
            self.add_grad(f"weight_hh_l{layer}", backend.transpose_matmul(flat_v, h_previous))
            self.add_grad(f"weight_ih_l{layer}",
                          backend.transpose_matmul(flat_u, x_rows))  # Eqs. (7), (8)
            if self.bias:
                self.add_grad(f"bias_hh_l{layer}", xp.sum(flat_v, axis=0))
                self.add_grad(f"bias_ih_l{layer}", xp.sum(flat_u, axis=0))
            if layer > 0 or self.input_grad:  # Eq. (8): the G of the layer below, (B, T, I)
                gradients = xp.permute_dims(stacked_u @ w_ih, (1, 0, 2))
        grads = tuple(xp.stack([state[i] for state in reversed(firsts)], axis=0)
                      for i in range(len(self.state_names)))
        self.initial_state_grads = grads if len(grads) > 1 else grads[0]
        return gradients if self.input_grad else None

    def _weights(self, layer):
        params = self.params
        return (params[f"weight_ih_l{layer}"], params[f"weight_hh_l{layer}"],
                params.get(f"bias_ih_l{layer}"), params.get(f"bias_hh_l{layer}"))

    def _initial_state(self, xp, inputs, name, given, shape):
        """The given initial state, checked, or zeros of ``shape``."""
        if given is None:
            return xp.zeros(shape, dtype=inputs.dtype, device=array_api_compat.device(inputs))
        self._check_state(xp, given, inputs, name, shape)
        return given

    def _check_state(self, xp, array, reference, name, shape):
        """A state (or its gradient): a float array like ``reference``, of ``shape``."""
        check_kind(self, namespace_of(self, array, name), array, "real floating", name)
        check_same_placement(self, array, reference, name, "inputs")
        if tuple(array.shape) != shape:
            raise ShapeError(f"{self.name}: expected {name} of shape {shape} (num_layers, "
                             f"batch, hidden_size) for inputs of shape "
                             f"{tuple(reference.shape)}, got {describe(array)}")

    def _final_grads(self, xp, saved, given):
        """The gradients given for the final state, checked: like ``final_state``."""
        x = saved[0][0]
        shape = (self.num_layers, x.shape[0], self.hidden_size)
        for name, grad in given.items():
            if grad is not None:
                self._check_state(xp, grad, x, name, shape)
        return tuple(given.values())


def _add(total, term):
    """``total + term``, where ``total`` None stands for zero (no path contributes)."""
    return term if total is None else total + term


def _gates(v, count: int, hidden: int):
    """The ``count`` gate blocks of a ``(..., count * hidden)`` array, in torch's order."""
    return [v[..., k * hidden:(k + 1) * hidden] for k in range(count)]


def _sigmoid(x):
    return backends.for_array(x).sigmoid(x)


class RNN(RecurrentLayer):
    r"""Elman RNN with tanh, as ``torch.nn.RNN(nonlinearity="tanh", batch_first=True)``.

    The time loop and backpropagation through time are ``RecurrentLayer``'s (Eqs. (1)
    to (8) there); this class writes its cell. Per call: ``rnn(x, h0=h0)``, with
    ``h0`` of shape ``(num_layers, batch, hidden_size)``; after it, ``rnn.final_state``
    is :math:`h_T` of every layer (torch's ``h_n``). ``rnn.backward(g, h_n_grad=gh)``
    adds a gradient for the final state; ``rnn.initial_state_grads`` is then the
    gradient of ``h0``.

    Cell
    ----
    One gate (:math:`k = 1`): with :math:`a_t = u_t + v_t`,

    .. math::
        h_t = \tanh(a_t)  \qquad (9)

    Its Jacobian is diagonal: :math:`\partial h_{t,bj} / \partial a_{t,bj'} =
    \delta_{jj'} (1 - h_{t,bj}^2)`, and :math:`a_t` is a sum, so (Eq. (5))

    .. math::
        \delta u_t = \delta v_t = \delta h_t \odot (1 - h_t^2)  \qquad (10)

    and nothing goes straight to :math:`h_{t-1}`: it reaches :math:`h_t` only
    through :math:`v_t`, i.e. Eq. (6)'s :math:`\delta v_t W_{hh}`. The factor
    :math:`1 - h_t^2` does not wait for the step before: it is computed for all steps
    at once before the loop (``before_backward``).
    """

    sums_u_and_v = True

    def cell_forward(self, xp, u, v, state):
        h = xp.tanh(u + v)  # Eq. (9)
        return (h,), h

    def before_backward(self, xp, steps):
        derivative = 1.0 - xp.stack(steps) ** 2  # Eq. (10): 1 - h_t^2 of every step at once
        return [derivative[t, ...] for t in range(len(steps))]

    def cell_backward(self, xp, derivative, grad_state):
        grad_a = grad_state[0] * derivative  # Eq. (10)
        return grad_a, grad_a, (None,)

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(3, 4, num_layers=2, rng=rng), rng.standard_normal((2, 3, 3)), None

    def compute_forward(self, xp, inputs, feedbacks, h0=None):
        """``h0``: the initial state, ``(num_layers, batch, hidden_size)``; zeros if None."""
        return self.run_forward(xp, inputs, {"h0": h0})

    def compute_backward(self, xp, gradients, saved, h_n_grad=None):
        """``h_n_grad``: the gradient of the loss with respect to ``final_state``, if any."""
        final = self._final_grads(xp, saved, {"h_n_grad": h_n_grad})
        return self.run_backward(xp, gradients, saved, final)


class LSTM(RecurrentLayer):
    r"""Long short-term memory, as ``torch.nn.LSTM(batch_first=True)``.

    The time loop and backpropagation through time are ``RecurrentLayer``'s (Eqs. (1)
    to (8) there); this class writes its cell. Per call: ``lstm(x, h0=h0, c0=c0)``,
    each ``(num_layers, batch, hidden_size)``, either one may be left out (zeros);
    after it, ``lstm.final_state`` is ``(h_n, c_n)``. ``lstm.backward(g,
    h_n_grad=gh, c_n_grad=gc)`` adds gradients for the final state;
    ``lstm.initial_state_grads`` is then ``(grad of h0, grad of c0)``.

    Cell
    ----
    Four gates (:math:`k = 4`) in torch's order input, forget, cell, output: with
    :math:`a_t = u_t + v_t` cut into four :math:`(B, H)` blocks
    :math:`a^i, a^f, a^g, a^o` and :math:`\sigma` the logistic sigmoid,

    .. math::
        i = \sigma(a^i), \quad f = \sigma(a^f), \quad g = \tanh(a^g),
        \quad o = \sigma(a^o)  \qquad (11)

    .. math::
        c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t)  \qquad (12)

    Every map is elementwise, so every Jacobian is diagonal and the vector-Jacobian
    products are elementwise products. :math:`c_t` reaches the loss through
    :math:`h_t` and through step :math:`t + 1`; with :math:`\tau = \tanh(c_t)`,

    .. math::
        \delta o = \delta h_t \odot \tau, \qquad
        \hat\delta c_t = \delta c_t + \delta h_t \odot o \odot (1 - \tau^2)  \qquad (13)

    .. math::
        \delta i = \hat\delta c_t \odot g, \quad \delta f = \hat\delta c_t \odot c_{t-1},
        \quad \delta g = \hat\delta c_t \odot i, \quad
        \delta c_{t-1}^{\mathrm{direct}} = \hat\delta c_t \odot f  \qquad (14)

    and through (11), with :math:`\sigma' = \sigma (1 - \sigma)` and
    :math:`\tanh' = 1 - \tanh^2`,

    .. math::
        \delta a^i = \delta i \odot i (1 - i), \quad
        \delta a^f = \delta f \odot f (1 - f), \quad
        \delta a^g = \delta g \odot (1 - g^2), \quad
        \delta a^o = \delta o \odot o (1 - o)  \qquad (15)

    :math:`a_t` is a sum, so :math:`\delta u_t = \delta v_t = [\delta a^i, \delta a^f,
    \delta a^g, \delta a^o]`; :math:`h_{t-1}` has no direct path (only :math:`v_t`).

    The code takes :math:`\sigma` of all of :math:`a_t` in one operation (the g block's
    goes unused). Of (13) to (15), only the products with :math:`\delta h_t` and
    :math:`\hat\delta c_t` wait for the step before; the rest, :math:`o (1 - \tau^2)`
    and the factors :math:`[g\, i(1-i),\ c_{t-1} f(1-f),\ i(1-g^2),\ \tau\, o(1-o)]`
    that multiply :math:`[\hat\delta c_t, \hat\delta c_t, \hat\delta c_t, \delta h_t]`, is
    computed for all steps at once before the loop (``before_backward``): at a small
    batch, each operation costs more in overhead than in arithmetic.
    """

    gates = 4
    state_names = ("h0", "c0")
    sums_u_and_v = True

    def cell_forward(self, xp, u, v, state):
        _, c_previous = state
        a = u + v
        s = _sigmoid(a)  # Eq. (11): sigma of every block; the g block's goes unused
        i, f, _, o = _gates(s, 4, self.hidden_size)
        g = xp.tanh(_gates(a, 4, self.hidden_size)[2])  # Eq. (11)
        c = f * c_previous + i * g  # Eq. (12)
        tanh_c = xp.tanh(c)
        return (o * tanh_c, c), (s, g, c_previous, tanh_c)

    def before_backward(self, xp, steps):
        # each saved part stacked over the steps: (T, B, .)
        s, g, c_previous, tanh_c = (xp.stack(parts) for parts in zip(*steps, strict=True))
        i, f, _, o = _gates(s, 4, self.hidden_size)
        d_i, d_f, _, d_o = _gates(s * (1.0 - s), 4, self.hidden_size)  # sigma' of every block
        # Eqs. (13) to (15): delta a = [delta c-hat, delta c-hat, delta c-hat, delta h] * factors
        factors = xp.concat([g * d_i, c_previous * d_f, i * (1.0 - g * g), tanh_c * d_o],
                            axis=-1)
        through_c = o * (1.0 - tanh_c * tanh_c)  # Eq. (13)
        return [(factors[t, ...], through_c[t, ...], f[t, ...]) for t in range(len(steps))]

    def cell_backward(self, xp, saved, grad_state):
        factors, through_c, f = saved
        grad_h, grad_c = grad_state
        grad_c = _add(grad_c, grad_h * through_c)  # Eq. (13)
        grad_a = xp.concat([grad_c, grad_c, grad_c, grad_h], axis=-1) * factors  # (13)-(15)
        return grad_a, grad_a, (None, grad_c * f)  # Eq. (14): the direct path of c

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(3, 4, rng=rng), rng.standard_normal((2, 3, 3)), None

    def compute_forward(self, xp, inputs, feedbacks, h0=None, c0=None):
        """``h0``, ``c0``: the initial state, each ``(num_layers, batch, hidden_size)``;
        zeros where None."""
        return self.run_forward(xp, inputs, {"h0": h0, "c0": c0})

    def compute_backward(self, xp, gradients, saved, h_n_grad=None, c_n_grad=None):
        """``h_n_grad``, ``c_n_grad``: gradients with respect to ``final_state``, if any."""
        final = self._final_grads(xp, saved, {"h_n_grad": h_n_grad, "c_n_grad": c_n_grad})
        return self.run_backward(xp, gradients, saved, final)


class GRU(RecurrentLayer):
    r"""Gated recurrent unit, as ``torch.nn.GRU(batch_first=True)``.

    The time loop and backpropagation through time are ``RecurrentLayer``'s (Eqs. (1)
    to (8) there); this class writes its cell. Per call: ``gru(x, h0=h0)``; after it,
    ``gru.final_state`` is torch's ``h_n``; ``gru.backward(g, h_n_grad=gh)`` adds a
    gradient for it; ``gru.initial_state_grads`` is then the gradient of ``h0``.

    Cell
    ----
    Three gates (:math:`k = 3`) in torch's order reset, update, new: :math:`u_t` and
    :math:`v_t` are cut into blocks :math:`u^r, u^z, u^n` and :math:`v^r, v^z, v^n`.
    As in torch, the reset gate multiplies :math:`v^n = h_{t-1} W_{hn}^\top + b_{hn}`,
    bias included, which is why the GRU keeps :math:`u` and :math:`v` apart:

    .. math::
        r = \sigma(u^r + v^r), \quad z = \sigma(u^z + v^z), \quad
        n = \tanh(u^n + r \odot v^n)  \qquad (16)

    .. math::
        h_t = (1 - z) \odot n + z \odot h_{t-1}  \qquad (17)

    All elementwise, so every Jacobian is diagonal. From (17),

    .. math::
        \delta n = \delta h_t \odot (1 - z), \quad
        \delta z = \delta h_t \odot (h_{t-1} - n), \quad
        \delta h_{t-1}^{\mathrm{direct}} = \delta h_t \odot z  \qquad (18)

    and from (16), with :math:`\delta a^n = \delta n \odot (1 - n^2)`,

    .. math::
        \delta u^n = \delta a^n, \quad \delta v^n = \delta a^n \odot r, \quad
        \delta u^r = \delta v^r = \delta a^n \odot v^n \odot r (1 - r), \quad
        \delta u^z = \delta v^z = \delta z \odot z (1 - z)  \qquad (19)
    """

    gates = 3

    def cell_forward(self, xp, u, v, state):
        h_previous = state[0]
        u_r, u_z, u_n = _gates(u, 3, self.hidden_size)
        v_r, v_z, v_n = _gates(v, 3, self.hidden_size)
        r, z = _sigmoid(u_r + v_r), _sigmoid(u_z + v_z)  # Eq. (16)
        n = xp.tanh(u_n + r * v_n)
        h = (1.0 - z) * n + z * h_previous  # Eq. (17)
        return (h,), (r, z, n, v_n, h_previous)

    def cell_backward(self, xp, saved, grad_state):
        r, z, n, v_n, h_previous = saved
        grad_h = grad_state[0]
        grad_a_n = grad_h * (1.0 - z) * (1.0 - n * n)  # Eqs. (18), (19)
        grad_a_r = grad_a_n * v_n * r * (1.0 - r)
        grad_a_z = grad_h * (h_previous - n) * z * (1.0 - z)
        grad_u = xp.concat([grad_a_r, grad_a_z, grad_a_n], axis=-1)  # Eq. (19)
        grad_v = xp.concat([grad_a_r, grad_a_z, grad_a_n * r], axis=-1)
        return grad_u, grad_v, (grad_h * z,)  # Eq. (18): the direct path of h

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(3, 4, rng=rng), rng.standard_normal((2, 3, 3)), None

    def compute_forward(self, xp, inputs, feedbacks, h0=None):
        """``h0``: the initial state, ``(num_layers, batch, hidden_size)``; zeros if None."""
        return self.run_forward(xp, inputs, {"h0": h0})

    def compute_backward(self, xp, gradients, saved, h_n_grad=None):
        """``h_n_grad``: the gradient of the loss with respect to ``final_state``, if any."""
        final = self._final_grads(xp, saved, {"h_n_grad": h_n_grad})
        return self.run_backward(xp, gradients, saved, final)
