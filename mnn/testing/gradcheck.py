r"""Finite-difference gradient checking for any layer that keeps the mnn contract.

``gradcheck(layer, inputs, feedbacks)`` compares what ``layer.backward`` returns
(and accumulates into ``layer.grads``) with central differences of ``layer.forward``:

.. math::
    \frac{\partial f}{\partial x_j} \approx
    \frac{f(x + \varepsilon e_j) - f(x - \varepsilon e_j)}{2\varepsilon},

whose truncation error is :math:`O(\varepsilon^2)` and rounding error
:math:`O(u / \varepsilon)` for unit roundoff :math:`u`; hence the per-dtype
:math:`\varepsilon` below.

Two comparisons, chosen per variable (each floating input and each parameter):

* **Full Jacobian**, when the variable and the output both have at most
  ``full_jacobian_max`` entries: every column :math:`J e_j` by central
  differences, every row :math:`e_k^\top J` by ``backward`` with a unit cotangent,
  compared entry by entry, so a failure names the exact output and input index.
* **Random projections** otherwise: for random :math:`u` and :math:`w`,
  :math:`\langle u, J^\top w\rangle = \langle J u, w\rangle`, where the left side
  comes from one ``backward`` and the right from one directional difference.

An entry passes when :math:`|a - n| \le \text{atol} + \text{rtol}\,|n|`.
Tolerances and steps per dtype (close to ``torch.autograd.gradcheck``, whose
float64 defaults are the same, and to JAX's ``check_grads``):

=============== ========= ======== ========
dtype           eps       atol     rtol
=============== ========= ======== ========
float64         1e-6      1e-5     1e-3
float32         1e-3      1e-2     1e-2
float16/bf16    1e-2      1e-1     1e-1
=============== ========= ======== ========

Anything but float64 gets a ``GradcheckPrecisionWarning``: in lower precision
the differences themselves are noisy and a wrong gradient can pass.

Integer inputs (token ids) have no gradient; a layer that takes only integers
(``Embedding``, ``GPT``) is checked in its parameters, in their dtype. Layers
that draw random numbers (``Dropout``, which counts its masks in ``draws``) are
reset to the same count before every forward, so that the finite differences
see one function, as ``torch.random.fork_rng`` does for torch's checks.

Inputs, targets and parameters must be finite: a NaN or an infinity among them
is an ``ArgumentError`` that names where it is, before any difference is taken
(differences of NaNs are NaN, and every comparison would fail for that reason).

It also checks that every input gradient ``backward`` returns is an array of
its input's shape, dtype, library and device (a wrong one is a failure with a
message, never a raw exception); that two forward/backward pairs return the same
input gradient and accumulate the parameter gradients twice; and that neither
``forward`` nor ``backward`` writes into its inputs or the cotangent.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import array_api_compat
import numpy as np

from mnn.backends import Placement, dtype_name, to_host
from mnn.errors import ArgumentError, ArgumentTypeError, describe
from mnn.initializers import host_generator

if TYPE_CHECKING:
    from mnn.base import BaseLayer

TOLERANCES = {  # dtype name -> (eps, atol, rtol); see the table in the module docstring
    "float64": (1e-6, 1e-5, 1e-3),
    "float32": (1e-3, 1e-2, 1e-2),
    "float16": (1e-2, 1e-1, 1e-1),
    "bfloat16": (1e-2, 1e-1, 1e-1),
}


class GradcheckError(AssertionError):
    """A gradient disagrees with finite differences; the message says where and by how much."""


class GradcheckPrecisionWarning(UserWarning):
    """gradcheck was run in a dtype less precise than float64."""


@dataclass
class _Variable:
    """One thing to differentiate with respect to: an input or a parameter."""

    label: str  # "inputs", "inputs[1]" or "parameter 'w'"
    get: object  # () -> the current array
    set: object  # (array) -> None
    pick: object  # (input_gradients, parameter_gradients) -> this variable's gradient


def gradcheck(layer: BaseLayer, inputs: Any, feedbacks: Any = None, *,
              eps: float | None = None, atol: float | None = None, rtol: float | None = None,
              full_jacobian_max: int = 256, projections: int = 3,
              rng: int | np.random.Generator = 0) -> bool:
    """Check ``layer``'s backward pass against central finite differences.

    ``inputs`` is an array or a tuple of arrays (for layers such as
    ``MatrixProduct`` that take several); ``feedbacks`` the targets of a loss
    layer. ``rng`` (an int seed or a ``numpy.random.Generator``) draws the random
    cotangent and projections. Returns True, or
    raises ``GradcheckError`` naming the layer, the variable, the backend, device
    and dtype, the worst index, the analytic and numeric values and the tolerance.
    """
    rng = host_generator(rng)
    several = isinstance(inputs, (tuple, list))
    inputs = list(inputs) if several else [inputs]
    arrays = [i for i, x in enumerate(inputs) if _is_array(x)]
    floating = [i for i in arrays if _is_floating(inputs[i])]
    if not floating and not any(True for _ in layer.parameters()):
        raise ArgumentTypeError(f"gradcheck: {layer.name} got no floating-point inputs and "
                                f"has no parameters: nothing to check")
    if not arrays:
        raise ArgumentTypeError(f"gradcheck: {layer.name} got no input arrays")
    numbers = [(f"inputs[{i}]" if several else "inputs", inputs[i]) for i in floating]
    if _is_array(feedbacks) and _is_floating(feedbacks):
        numbers.append(("targets", feedbacks))
    numbers += [(f"parameter {name!r}", owner.params[key])
                for name, owner, key in layer.parameters()]
    _check_finite(layer, numbers)
    # Layers that draw random numbers (Dropout) count their draws; every forward below
    # starts from the same count, so that it draws the same numbers (torch.random.fork_rng).
    random_layers = [(sub, sub.draws) for _, sub in layer.named_layers() if hasattr(sub, "draws")]

    def call():
        for sub, draws in random_layers:
            sub.draws = draws
        return layer.forward(tuple(inputs) if several else inputs[0], feedbacks)

    reference = Placement.of(inputs[(floating or arrays)[0]])
    backend, device = reference.backend, reference.device
    untouched = [backend.to_host(inputs[i]).copy() for i in arrays]  # before any forward
    out = call()
    if floating:
        dtype = dtype_name(reference.dtype)
    else:  # integer inputs (token ids): the parameters' dtype, now that they are placed
        dtype = dtype_name(next(owner for _, owner, _ in layer.parameters()).placement.dtype)
    default_eps, default_atol, default_rtol = TOLERANCES.get(dtype, TOLERANCES["float32"])
    eps = default_eps if eps is None else eps
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    if dtype != "float64":
        warnings.warn(f"gradcheck of {layer.name} in {dtype}: finite differences are noisy below "
                      f"float64 and may pass a wrong gradient", GradcheckPrecisionWarning,
                      stacklevel=2)
    where = f"{layer.name} on {backend.name}, device {backend.device_name(device)}, {dtype}"

    def place(host, like):
        return Placement.of(like).from_host(host, dtype=like.dtype)

    def output_host():
        return backend.to_host(call()).astype(np.float64)

    is_loss = getattr(layer, "is_loss", False)
    out_shape = tuple(out.shape)
    cotangent_host = None if is_loss else rng.standard_normal(out_shape)

    def backward_once(cotangent_host):
        """One forward and backward: input gradients and parameter gradients, on the host
        in float64, each checked against what it is the gradient of."""
        call()
        if is_loss:
            returned = layer.backward()
        else:
            cotangent = place(cotangent_host, out)
            kept = backend.to_host(cotangent).copy()
            returned = layer.backward(cotangent)
            if not np.array_equal(backend.to_host(cotangent), kept):
                raise GradcheckError(
                    f"gradcheck failed: {where}: backward wrote into its gradients argument")
        returned = list(returned) if several else [returned]
        if len(returned) != len(inputs):
            raise GradcheckError(f"gradcheck failed: {where}: backward returned {len(returned)} "
                                 f"input gradients for {len(inputs)} inputs")
        for i in (floating if getattr(layer, "input_grad", True) else ()):
            label = f"inputs[{i}]" if several else "inputs"
            _check_gradient_fits(returned[i], inputs[i], f"{where}: the gradient of {label}")
        grads = {}
        for name, owner, key in layer.parameters():
            _check_gradient_fits(owner.grads[key], owner.params[key],
                                 f"{where}: the gradient of parameter {name!r}")
            grads[name] = backend.to_host(owner.grads[key]).astype(np.float64)
        return [None if g is None else backend.to_host(g).astype(np.float64)
                for g in returned], grads

    def analytic(cotangent_host):
        """``backward_once`` from zero gradients."""
        layer.zero_grads()
        return backward_once(cotangent_host)

    variables = []
    # A layer told that nobody needs its input gradient (input_grad = False) returns None.
    for i in floating if getattr(layer, "input_grad", True) else ():
        label = f"inputs[{i}]" if several else "inputs"
        variables.append(_Variable(label, lambda i=i: inputs[i],
                                   lambda v, i=i: inputs.__setitem__(i, v),
                                   lambda returned, grads, i=i: returned[i]))
    for name, owner, key in layer.parameters():
        variables.append(_Variable(f"parameter {name!r}", lambda o=owner, k=key: o.params[k],
                                   lambda v, o=owner, k=key: o.params.__setitem__(k, v),
                                   lambda returned, grads, n=name: grads[n]))

    _check_no_writes(inputs, arrays, untouched, backend, cotangent_host, analytic, where)
    _check_accumulates(layer, cotangent_host, analytic, backward_once, where, atol, rtol)

    def numeric_direction(var, direction):
        """(f(v + eps d) - f(v - eps d)) / (2 eps), a host float64 array of the output's shape."""
        original = var.get()
        host = backend.to_host(original).astype(np.float64)
        try:
            var.set(place(host + eps * direction, original))
            plus = output_host()
            var.set(place(host - eps * direction, original))
            minus = output_host()
        finally:
            var.set(original)
        return (plus - minus) / (2 * eps)

    def analytic_for(var, cotangent):
        return var.pick(*analytic(cotangent))

    n_out = int(np.prod(out_shape, dtype=np.int64))
    unit_backwards: dict[int, tuple] = {}

    def analytic_row(var, k):
        """Row k of ``var``'s Jacobian: the backward of the k-th unit cotangent. One backward
        gives every variable's gradient, so it runs once per k, not once per variable."""
        if k not in unit_backwards:
            unit = np.zeros(n_out)
            unit[k] = 1.0
            unit_backwards[k] = analytic(unit.reshape(out_shape))
        return var.pick(*unit_backwards[k])

    for var in variables:
        shape = tuple(var.get().shape)
        n_in = int(np.prod(shape, dtype=np.int64))
        if n_in == 0:
            continue
        if n_out == 0:  # no outputs (an empty batch): every gradient must be zero
            exact = analytic_for(var, np.zeros(out_shape)).reshape(1, -1)
            _compare(exact, np.zeros_like(exact), atol, rtol, where, var.label,
                     lambda k, j, s=shape, v=var: f"{_what(v)} index {_unravel(j, s)} "
                                                  f"(no outputs: the gradient must be zero)")
        elif n_in <= full_jacobian_max and n_out <= full_jacobian_max:
            numeric = np.empty((n_out, n_in))
            for j in range(n_in):
                direction = np.zeros(n_in)
                direction[j] = 1.0
                numeric[:, j] = numeric_direction(var, direction.reshape(shape)).reshape(-1)
            exact = np.stack([analytic_row(var, k).reshape(-1) for k in range(n_out)])
            _compare(exact, numeric, atol, rtol, where, var.label,
                     lambda k, j, s=shape, v=var: f"output index {_unravel(k, out_shape)}, "
                                                  f"{_what(v)} index {_unravel(j, s)}")
        else:
            for r in range(projections):
                u = rng.standard_normal(shape)
                w = np.ones(out_shape) if is_loss else rng.standard_normal(out_shape)
                numeric = float(np.sum(numeric_direction(var, u) * w))
                exact = float(np.sum(u * analytic_for(var, w)))
                _compare(np.array([[exact]]), np.array([[numeric]]), atol, rtol, where, var.label,
                         lambda k, j, r=r: f"random projection {r} (<u, J^T w> against <J u, w>)")
    layer.zero_grads()
    return True


def _is_array(x) -> bool:
    try:
        array_api_compat.array_namespace(x)
    except TypeError:
        return False
    return True


def _is_floating(x) -> bool:
    return array_api_compat.array_namespace(x).isdtype(x.dtype, "real floating")


def _check_finite(layer, named: list[tuple[str, Any]]) -> None:
    """Each ``(label, array)`` holds finite numbers only, else an ``ArgumentError`` naming
    the array, how many entries are not finite, and the first of them."""
    for label, array in named:
        host = to_host(array)
        bad = ~np.isfinite(host)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ArgumentError(
                f"gradcheck: {label} of {layer.name} is not finite at {int(bad.sum())} of its "
                f"{bad.size} entries, the first {host[first]} at index {first}; finite "
                f"differences need finite numbers")


def _unravel(flat: int, shape: tuple) -> tuple:
    return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()


def _what(var: _Variable) -> str:
    return var.label.removeprefix("parameter ").strip("'")


def _compare(exact, numeric, atol, rtol, where, label, describe_index) -> None:
    excess = np.abs(exact - numeric) - (atol + rtol * np.abs(numeric))
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    if not np.isfinite(exact).all() or excess[worst] > 0:
        if not np.isfinite(exact).all():
            worst = np.unravel_index(int(np.argmax(~np.isfinite(exact))), exact.shape)
        a, n = exact[worst], numeric[worst]
        raise GradcheckError(
            f"gradcheck failed: {where}: gradient with respect to {label} is wrong at "
            f"{describe_index(*worst)}: analytic {a:.10g}, numeric {n:.10g}, "
            f"|difference| {abs(a - n):.3g} > tolerance {atol + rtol * abs(n):.3g} "
            f"(atol {atol:g} + rtol {rtol:g} * |numeric|)")


def _check_no_writes(inputs, arrays, untouched, backend, cotangent_host, analytic,
                     where) -> None:
    analytic(cotangent_host)  # one more forward and backward
    for i, old in zip(arrays, untouched, strict=True):
        if not np.array_equal(backend.to_host(inputs[i]), old, equal_nan=True):
            raise GradcheckError(f"gradcheck failed: {where}: forward or backward wrote into "
                                 f"its inputs (input {i} changed)")


def _check_accumulates(layer, cotangent_host, analytic, backward_once, where,
                       atol, rtol) -> None:
    """Two forward/backward pairs: the same input gradients, parameter gradients added twice."""
    first_inputs, first = analytic(cotangent_host)
    second_inputs, second = backward_once(cotangent_host)  # no zero_grads in between
    for g1, g2 in zip(first_inputs, second_inputs, strict=True):
        if g1 is not None and not np.allclose(g1, g2, atol=atol, rtol=rtol):
            raise GradcheckError(f"gradcheck failed: {where}: two forward/backward pairs on the "
                                 f"same inputs returned different input gradients")
    for name, g1 in first.items():
        if not np.allclose(second[name], 2 * g1, atol=atol, rtol=rtol):
            raise GradcheckError(f"gradcheck failed: {where}: two forward/backward pairs did not "
                                 f"accumulate parameter {name!r} twice (grads must add up until "
                                 f"zero_grads())")


def _check_gradient_fits(gradient, like, what: str) -> None:
    """``gradient`` is an array with the shape, dtype, library and device of ``like``."""
    if gradient is None:
        raise GradcheckError(f"gradcheck failed: {what} is None; expected an array like "
                             f"{describe(like)}")
    try:
        got = Placement.of(gradient)
    except (TypeError, AttributeError):
        raise GradcheckError(f"gradcheck failed: {what} is not an array: got an object of type "
                             f"{type(gradient).__name__}") from None
    expected = Placement.of(like)
    if got != expected or tuple(gradient.shape) != tuple(like.shape):
        raise GradcheckError(f"gradcheck failed: {what} is {describe(gradient)}; expected "
                             f"{describe(like)}")
