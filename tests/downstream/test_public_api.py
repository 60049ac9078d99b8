"""The public API: documented name by name, random draws that take ``rng=``, and names that
go away warn first (docs/design.md, "Deprecations")."""

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import mnn
from mnn.testing import gradcheck, make_case

#: Every module whose ``__all__`` is mnn's public API.
PUBLIC_MODULES = ["mnn", "mnn.backends", "mnn.layers", "mnn.optim", "mnn.testing", "mnn.data"]


def public_objects():
    """``(qualified name, object, class or None)`` for every class, function and module in the
    ``__all__`` of PUBLIC_MODULES, and every public method and property of those classes."""
    seen, found = set(), []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if id(obj) in seen or not (inspect.isclass(obj) or inspect.isroutine(obj)
                                       or inspect.ismodule(obj)):
                continue  # constants (TOLERANCES, CASES) are described where they are defined
            seen.add(id(obj))
            found.append((f"{module_name}.{name}", obj, None))
            if inspect.isclass(obj):
                for attr in dir(obj):
                    static = inspect.getattr_static(obj, attr)
                    if attr.startswith("_") or not (inspect.isfunction(static) or isinstance(
                            static, (property, classmethod, staticmethod))):
                        continue
                    member = static if isinstance(static, property) else getattr(obj, attr)
                    found.append((f"{module_name}.{name}.{attr}", member, obj))
    return found


def test_every_public_name_has_a_docstring():
    names = [name for name, _, _ in public_objects()]
    assert len(names) > 150 and "mnn.BaseLayer.compute_backward" in names  # the walk walks
    # inspect.getdoc: a method that overrides a documented one inherits its docstring.
    undocumented = [name for name, obj, _ in public_objects()
                    if not (obj.__doc__ if isinstance(obj, property) else inspect.getdoc(obj))]
    assert not undocumented, f"public names without a docstring: {undocumented}"


def annotated(function) -> bool:
    """Every parameter but self/cls, and the return value (but of __init__), has a type hint."""
    function = function.fget if isinstance(function, property) else function
    signature = inspect.signature(function)
    parameters = [p for name, p in signature.parameters.items() if name not in ("self", "cls")]
    return all(p.annotation is not p.empty for p in parameters) and (
        function.__name__ == "__init__" or signature.return_annotation is not signature.empty)


def test_every_public_callable_has_type_hints():
    """What mypy --strict needs of mnn's public API (nox -s typecheck checks a downstream file).
    A method that overrides a hinted one of a base class counts as hinted: the template's
    compute_forward/compute_backward are hinted once, on BaseLayer."""
    missing = []
    for name, obj, owner in public_objects():
        if inspect.ismodule(obj):
            continue
        function = obj.__init__ if inspect.isclass(obj) else obj
        if not (inspect.isfunction(function) or isinstance(function, property)):
            continue  # a built-in __init__ (the exceptions')
        if annotated(function):
            continue
        overridden = [getattr(base, function.__name__) for base in (owner.__mro__[1:] if owner
                      else ()) if function.__name__ in vars(base)]
        if not (overridden and annotated(overridden[0])):
            missing.append(name)
    assert not missing, f"public callables without type hints: {missing}"


def test_the_typed_downstream_example_runs():
    """tests/downstream/typed_usage.py (mypy --strict clean: nox -s typecheck) also works."""
    path = Path(__file__).parent / "typed_usage.py"
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    found = re.search(r"final loss ([\d.]+); gradcheck True; reloaded True", result.stdout)
    assert found and float(found.group(1)) < 0.3, result.stdout  # chance: 0.69


# --- rng= wherever numbers are drawn ----------------------------------------------------------

def drawing_layers():
    """The layer classes whose construction draws random numbers (two of them differ)."""
    found = []
    for name in mnn.layers.__all__:
        first, second = make_case(name, rng=0)[0], make_case(name, rng=1)[0]
        if any(not np.array_equal(first.state_dict()[key], second.state_dict()[key])
               for key in first.state_dict()):
            found.append(name)
    return found


def test_every_layer_that_draws_takes_rng():
    drawing = drawing_layers()
    assert {"LinearLayer", "MultiHeadAttention", "SequentialLayers"} <= set(drawing)
    for name in drawing:
        cls = getattr(mnn, name)
        if name in ("SequentialLayers", "Residual"):  # draw nothing themselves: the layers
            continue  # they are given take rng=
        assert "rng" in inspect.signature(cls).parameters, f"{name} draws but takes no rng="
        case_layer = make_case(name)[0]
        args = case_layer.config()["args"]
        for rng in (5, np.random.default_rng(5)):
            same = cls(**args, rng=rng).state_dict(), cls(**args, rng=5).state_dict()
            for key in same[0]:
                np.testing.assert_array_equal(same[0][key], same[1][key])


def test_batches_and_checks_take_rng(rng):
    inputs, labels = np.arange(20.0).reshape(10, 2), np.arange(10)
    orders = [[b[1].tolist() for b in mnn.data.Batches(inputs, labels, 3, rng=r)]
              for r in (7, np.random.default_rng(7), 8)]
    assert orders[0] == orders[1] != orders[2]
    layer, x, _ = make_case("LinearLayer", rng=np.random.default_rng(3))
    assert gradcheck(layer, x, rng=np.random.default_rng(4), full_jacobian_max=1)  # projections
    cases = [make_case("LinearLayer", rng=r)[1] for r in (3, np.random.default_rng(3))]
    np.testing.assert_array_equal(*cases)
