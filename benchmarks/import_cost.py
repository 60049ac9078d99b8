"""What ``import mnn`` costs on top of ``import numpy``, from ``python -X importtime``.

Each run is a fresh interpreter that imports ``MODULE`` (``mnn`` by default) under
``-X importtime``. Python then prints one line per module with its cumulative import
time in microseconds; NumPy is imported inside mnn, so one run gives both numbers:

* ``numpy``: the cumulative time of the line for ``numpy``;
* ``mnn``: the cumulative time of the line for ``mnn`` (NumPy included);
* ``mnn - numpy``: what mnn adds.

The medians over ``--runs`` runs are printed, with the spread (the 10th and 90th
percentiles), and the modules that mnn imports beyond NumPy's, slowest first.
Import times vary with the disk cache and the machine's load: report the machine
with the figure, and rerun on a quiet one. The runs import compiled bytecode, as an
installed package does (pip writes the ``.pyc`` files at install): the first, untimed run
writes it, with ``PYTHONDONTWRITEBYTECODE`` removed from the runs' environment, where it
would make every run compile mnn's sources again.

    python benchmarks/import_cost.py --runs 41
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys

LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def one_run(module: str) -> dict[str, tuple[int, int, int]]:
    """module name -> (self us, cumulative us, depth) for one ``import module``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                            capture_output=True, text=True, check=True, env=env)
    found = {}
    for line in result.stderr.splitlines():
        match = LINE.match(line)
        if match:
            own, cumulative, indent, name = match.groups()
            found.setdefault(name, (int(own), int(cumulative), len(indent) // 2))
    return found


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=41, help="fresh interpreters (41)")
    parser.add_argument("--module", default="mnn", help="what to import (mnn)")
    parser.add_argument("--top", type=int, default=12, help="modules to list (12)")
    args = parser.parse_args(argv)
    one_run(args.module)  # warm the disk cache and the bytecode
    runs = [one_run(args.module) for _ in range(args.runs)]
    numpy = [run["numpy"][1] / 1000 for run in runs]
    total = [run[args.module][1] / 1000 for run in runs]
    extra = [t - n for t, n in zip(total, numpy, strict=True)]
    print(f"python -X importtime -c 'import {args.module}', {args.runs} fresh interpreters "
          f"(median, 10th-90th percentile, ms)")
    for label, values in (("numpy", numpy), (args.module, total),
                          (f"{args.module} - numpy", extra)):
        print(f"  {label:<14} {statistics.median(values):7.1f}   "
              f"({percentile(values, 10):.1f} - {percentile(values, 90):.1f})")
    others: dict[str, list[float]] = {}
    for run in runs:
        for name in _modules_under(run, args.module) - _modules_under(run, "numpy"):
            others.setdefault(name, []).append(run[name][0] / 1000)
    print(f"\nslowest modules that {args.module} imports beyond NumPy's (median self time, ms):")
    for name, times in sorted(others.items(), key=lambda kv: -statistics.median(kv[1]))[:args.top]:
        print(f"  {statistics.median(times):6.2f}  {name}")
    return 0


def _modules_under(run: dict[str, tuple[int, int, int]], top: str) -> set[str]:
    """The modules that ``import top`` imported: the lines printed before its own, deeper."""
    names = list(run)  # in the order Python printed them: children before their parent
    end = names.index(top)
    depth = run[top][2]
    start = end
    while start > 0 and run[names[start - 1]][2] > depth:
        start -= 1
    return set(names[start:end + 1])


if __name__ == "__main__":
    raise SystemExit(main())
