"""``mnn check``: "does mnn work on my GPU?" Gradient checks of every layer on every target.

For each layer class that ``mnn`` exports and each backend and device present,
``mnn.testing.gradcheck`` compares the hand-written backward pass with central
finite differences, in float64 on small shapes (see its docstring). The table
says pass or FAIL per layer and target; the exit status is non-zero if any
check fails, so a script or CI job can rely on it.
"""

from __future__ import annotations

import time

from mnn import backends
from mnn.backends import Placement, registry
from mnn.cli.common import CommandError, backend_help, backend_named, warn
from mnn.testing import cases, gradcheck, make_case, place


def add_arguments(parser) -> None:
    parser.add_argument("--backend", action="append", default=None,
                        help="check only this backend, repeatable: "
                             + backend_help("every one installed"))
    parser.add_argument("--device", action="append", default=None,
                        help="check only this device (repeatable; default: every one present)")
    parser.add_argument("--verbose", action="store_true", help="print each failure's message")


def layer_names() -> list[str]:
    """Every registered layer with an ``example``: mnn's own and those of packages."""
    return list(cases())


def targets(only_backends, only_devices) -> list[tuple]:
    """``(backend, device name)`` for every backend and device present, or those asked for.

    A backend asked for by name must work; without ``--backend``, a broken adapter (its
    library's import or its ``devices()`` raises) is skipped with a warning.
    """
    if only_backends:
        offered = [backend_named(name) for name in only_backends]
    else:
        offered = []
        for name, backend in sorted(backends.available().items()):
            here = registry.probe(backend)  # a library that is not installed offers no device
            if here.broken:
                warn(f"skipped the broken backend {name}: {here.broken}")
            offered.append((backend, here.devices))
    found = []
    for backend, present in offered:
        for device in only_devices or present:
            if device not in present:
                if only_devices and only_backends:
                    raise CommandError(f"device {device!r} is not present for backend "
                                       f"{backend.name!r}; present: {', '.join(present) or 'none'}")
                continue
            found.append((backend, device))
    if not found:
        raise CommandError("no backend and device to check (see 'mnn info')")
    return found


def check_one(name: str, backend, device: str) -> str | None:
    """None if ``name``'s gradients pass on ``backend``/``device``, else why not."""
    layer, inputs, feedbacks = place(make_case(name), Placement.named(backend, device))
    try:
        gradcheck(layer, inputs, feedbacks)
    except Exception as error:  # noqa: BLE001  (every failure is a FAIL cell, not a crash)
        return f"{type(error).__name__}: {error}"
    return None


def run(args) -> int:
    chosen = targets(args.backend, args.device)
    for backend, _ in chosen:
        backend.enable_float64()  # gradient checks run in float64
    names = layer_names()
    columns = [f"{backend.name}:{device}" for backend, device in chosen]
    width = max(len("layer"), *map(len, names)) + 2
    cells = [max(len(c), 4) + 2 for c in columns]
    print("gradient checks (float64, finite differences against backward)\n")
    header = "layer".ljust(width) + "".join(c.ljust(w) for c, w in zip(columns, cells, strict=True))
    print(header.rstrip())
    failures = []
    start = time.perf_counter()
    for name in names:
        row = name.ljust(width)
        for (backend, device), column, cell in zip(chosen, columns, cells, strict=True):
            problem = check_one(name, backend, device)
            row += ("pass" if problem is None else "FAIL").ljust(cell)
            if problem is not None:
                failures.append(f"{name} on {column}: {problem}")
        print(row.rstrip(), flush=True)
    print(f"\n{len(names) * len(chosen) - len(failures)} passed, {len(failures)} failed "
          f"({time.perf_counter() - start:.1f} s)")
    for failure in failures:
        print(("  " + failure) if args.verbose else ("  " + failure.splitlines()[0])[:300])
    return 1 if failures else 0
