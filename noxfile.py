"""The test matrix: one session per backend x device, plus lint, docs and a summary table.

    nox -l                       # list the sessions
    nox                          # every test session whose hardware is present, lint, docs
    nox -s docs                  # the documentation site: build/site, checked in Chromium
    nox -s "tests(torch-cuda)"   # one session; fails loudly if its device is absent
    nox -s integration           # the tests that take no target (CLI, files, processes), once
    nox -s matrix                # every test session, then a table of what ran where
    nox -s downstream            # the example project of tests/downstream/ on each CPU backend
    nox -s typecheck             # mypy --strict on downstream code that uses mnn's API
    nox -s versions              # the oldest and the newest versions that pyproject.toml allows

nox builds each environment with uv where uv is installed (``pip install "nox[uv]"``),
else with virtualenv and pip; the versions sessions need uv.

A device counts as present only if an allocation on it works, probed in the
session's own Python after the install. Under plain ``nox`` an absent device skips
its session with the reason; a session asked for by name with ``-s`` fails instead,
so a GPU runner whose GPU went missing cannot pass by skipping.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.sessions = ["tests", "integration", "versions", "downstream", "typecheck", "lint",
                        "docs"]
# uv resolves in seconds and installs from one cache by hardlinks: torch lies on disk once,
# not once per environment. The versions sessions need it (its lowest-direct resolution).
nox.options.default_venv_backend = "uv|virtualenv"

# The exact pin takes the local CPU wheel; a looser spec would pull a multi-GB CUDA build.
TORCH = "torch==2.13.0"
# On a GPU runner the same pin may resolve to that CPU wheel too (the session then skips:
# "Torch not compiled with CUDA enabled"). Point this at a CUDA build there, e.g.
# MNN_TORCH_CUDA_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128".
TORCH_CUDA = tuple(shlex.split(os.environ.get("MNN_TORCH_CUDA_SPEC", TORCH)))


@dataclass(frozen=True)
class Cell:
    """One test session: what to install, how to probe the device, which targets to test."""

    backend: str
    device: str
    extras: tuple[str, ...]
    targets: tuple[str, ...]
    probe: str | None = None  # Python that raises when the device is absent
    cuda: bool = False

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.device}"


CELLS = [
    # torch too: torch.distributed is the engine of mnn.distributed, whose tests on a target
    # (tests/distributed/) run here on NumPy arrays.
    Cell("numpy", "cpu", (TORCH,), ("numpy:cpu",)),
    # CPU_DEVICE plus the two fake devices: device propagation is tested without a GPU.
    Cell("array_api_strict", "cpu", (),
         ("array_api_strict:CPU_DEVICE", "array_api_strict:device1", "array_api_strict:device2")),
    Cell("torch", "cpu", (TORCH,), ("torch:cpu",)),
    Cell("torch", "cuda", TORCH_CUDA, ("torch:cuda:0",),
         probe="import torch; torch.zeros(1, device='cuda')", cuda=True),
    Cell("cupy", "cuda", ("cupy-cuda12x",), ("cupy:cuda:0",),
         probe="import cupy; cupy.zeros(1)", cuda=True),
    Cell("jax", "cpu", ("jax[cpu]",), ("jax:cpu",)),
]

# The tests that take no target (the CLI, checkpoints, processes, scikit-learn, the plugin,
# tooling) do not change with it: they run once, here, beside every CPU library that they
# compare against. The CPU tests sessions run only the tests that take a target; the CUDA
# ones run everything, as a GPU machine has libraries (cupy) that this cell lacks.
INTEGRATION_CELLS = [Cell("numpy", "cpu", (TORCH, "jax[cpu]"), ("numpy:cpu",))]

# tests/downstream/: a project built on mnn (a custom layer tested through mnn's pytest
# plugin) and a third-party adapter, dask.array through the mnn.backends entry point.
DOWNSTREAM = ROOT / "tests" / "downstream"
# The example needs no torch on NumPy (the numpy cell has it for mnn's own distributed tests).
DOWNSTREAM_CELLS = [replace(cell, extras=()) if cell.backend == "numpy" else cell
                    for cell in CELLS if not cell.cuda] + [
    Cell("dask", "cpu", (str(DOWNSTREAM / "mnn-dask"),), ("dask:cpu",))]
# The matrix: each family of sessions and its cells.
SUITES = {"tests": CELLS, "integration": INTEGRATION_CELLS, "downstream": DOWNSTREAM_CELLS}

# The two ends of what pyproject.toml allows: the oldest Python that requires-python admits,
# with each dependency at its lower bound (uv's lowest-direct resolution), and the newest
# Python with the newest releases. 3.13 is the newest that this project's machines have
# (pyenv's; uv cannot download a Python here).
VERSIONS = [nox.param("3.11", "lowest-direct", id="oldest"),
            nox.param("3.13", "highest", id="newest")]
# The NumPy and array-api-strict targets of the tests sessions.
VERSIONS_TARGETS = tuple(target for cell in CELLS if cell.backend in ("numpy", "array_api_strict")
                         for target in cell.targets)


def _every_pyenv_python_findable() -> None:
    """Let nox find each Python that pyenv installed, not only the active one.

    nox finds ``3.11`` or ``3.13`` through pyenv's shims, and a shim runs only the versions
    that PYENV_VERSION (else ``pyenv global``) names. Naming every installed version after
    the active ones makes each findable, while ``python3`` stays the active one.
    """
    root = os.environ.get("PYENV_ROOT")
    pyenv = shutil.which("pyenv")
    if not root or pyenv is None or not Path(root, "versions").is_dir():
        return
    named = subprocess.run([pyenv, "version-name"], capture_output=True, text=True, timeout=60)
    active = [v for v in named.stdout.strip().split(":") if v] if named.returncode == 0 else []
    installed = sorted(path.name for path in Path(root, "versions").iterdir())
    os.environ["PYENV_VERSION"] = ":".join(dict.fromkeys([*active, *installed]))


_every_pyenv_python_findable()


@functools.cache
def _pip_find_links() -> tuple[str, ...]:
    """The find-links of pip's configuration (pip.conf, PIP_FIND_LINKS): folders or pages of
    wheels that pip searches besides the index.

    uv reads no pip configuration. Given these, it takes a wheel that a machine keeps on
    disk as pip does: torch's CPU wheel, where the index has a multi-GB CUDA build.
    """
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                            capture_output=True, text=True, timeout=60)
    links = []
    for line in listed.stdout.splitlines():  # e.g. global.find-links='/opt/wheels'
        key, _, value = line.partition("=")
        if key.endswith(".find-links"):
            links += ast.literal_eval(value).split()
    return tuple(dict.fromkeys(links))


def _install(session: nox.Session, *args: str) -> None:
    """``session.install``; with uv, pip's find-links come too (see ``_pip_find_links``)."""
    if session.venv_backend == "uv":
        args = (*(f"--find-links={link}" for link in _pip_find_links()), *args)
    session.install(*args)



def _nvidia_gpu_absent() -> str | None:
    """Why this machine has no NVIDIA GPU, or None if it has one: asked of the driver
    before anything is installed, so a CPU-only machine downloads no CUDA wheels."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return None
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "no NVIDIA driver here (no /proc/driver/nvidia/gpus, no nvidia-smi)"
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
    if listed.returncode == 0 and "GPU" in listed.stdout:
        return None
    return f"nvidia-smi -L lists no GPU ({(listed.stderr or listed.stdout).strip()[:200]})"


# Runs the cell's probe; any exception means the device is absent. Prints one verdict line.
PROBE = """import sys
try: exec(sys.argv[1])
except BaseException as e: print("MNN_PROBE absent:", type(e).__name__, *str(e).splitlines()[:1])
else: print("MNN_PROBE present")"""


def _sessions_asked_for() -> set[str]:
    """The session names given with -s/-e/--session(s) or NOXSESSION (not -k or -t filters)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-s", "-e", "--session", "--sessions", nargs="*", action="extend",
                        dest="sessions", default=[])
    argv = sys.argv[1:]
    if "--" in argv:
        argv = argv[: argv.index("--")]
    names, _ = parser.parse_known_args(argv)
    names = names.sessions or os.environ.get("NOXSESSION", "").split(",")
    return {"".join(name.split()) for name in names if name.strip()}


def _absent(session: nox.Session, reason: str) -> None:
    """Fail if this session was asked for by name, else skip it with the reason."""
    if "".join(session.name.split()) in _sessions_asked_for():
        session.error(f"{session.name} was asked for by name, but {reason}")
    session.skip(reason)


@nox.session
@nox.parametrize("cell_id", [nox.param(cell.id, id=cell.id) for cell in CELLS])
def tests(session: nox.Session, cell_id: str) -> None:
    """Run the tests that take a target on one backend and device (MNN_TEST_TARGETS).

    On a CPU the tests that take no target are left to the integration session; on CUDA
    the whole suite runs. Tests named after ``--`` run whatever they are."""
    # Parametrized by the id, a string: nox's --report (used by `matrix`) writes it as JSON.
    cell = next(cell for cell in CELLS if cell.id == cell_id)
    if cell.cuda and (reason := _nvidia_gpu_absent()):
        _absent(session, f"no usable {cell.device} device for {cell.backend}: {reason}")
    _install(session, ".[test]", *cell.extras)
    if cell.probe:
        output = session.run("python", "-c", PROBE, cell.probe, silent=True)
        verdicts = [line for line in output.splitlines() if line.startswith("MNN_PROBE")]
        if verdicts != ["MNN_PROBE present"]:
            detail = verdicts[-1].removeprefix("MNN_PROBE absent:").strip() if verdicts else output
            _absent(session, f"no usable {cell.device} device for {cell.backend}: {detail}")
    if cell.cuda:  # TF32 would make float32 matmuls agree to 1e-3 only; one process per GPU
        _run_suite(session, cell.targets,
                   {"NVIDIA_TF32_OVERRIDE": "0", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "0"},
                   every_core=False)
    else:
        _run_suite(session, cell.targets, scope="per-target")


@nox.session
@nox.parametrize("cell_id", [nox.param(cell.id, id=cell.id) for cell in INTEGRATION_CELLS])
def integration(session: nox.Session, cell_id: str) -> None:
    """Run the tests that take no target once: the CLI, checkpoints, processes, scikit-learn.

    They do not change with the target, so the CPU tests sessions leave them here, where
    torch and JAX are installed for the tests that compare against them."""
    cell = next(cell for cell in INTEGRATION_CELLS if cell.id == cell_id)
    _install(session, ".[test]", *cell.extras)
    _run_suite(session, cell.targets, scope="shared")


@nox.session(venv_backend="uv")
@nox.parametrize(("python", "resolution"), VERSIONS)
def versions(session: nox.Session, resolution: str) -> None:
    """Run the suite on NumPy and array-api-strict at the two ends of what pyproject.toml allows.

    ``versions(oldest)``: the oldest Python that requires-python admits, and the lowest
    version that each bound of mnn's dependencies and of its test and examples extras
    admits (uv's ``--resolution lowest-direct``). ``versions(newest)``: the newest Python
    and the newest releases. Without torch, whose wheel on this kind of machine is for
    Python 3.11 only (elsewhere the pin pulls a multi-GB CUDA build): the torch
    comparisons skip, saying so, and tests(numpy-cpu) runs them.
    """
    # --upgrade: a reused environment is resolved again, not kept as it was.
    _install(session, f"--resolution={resolution}", "--upgrade", ".[test,examples]")
    session.run("python", "-c", "import sys, numpy; print('Python', sys.version.split()[0], "
                "'with NumPy', numpy.__version__)")
    _run_suite(session, VERSIONS_TARGETS)


def _run_suite(session: nox.Session, targets: tuple[str, ...], env: dict | None = None,
               scope: str = "", every_core: bool = True) -> None:
    """pytest on mnn's suite (or the tests given after ``--``) for the targets, on the
    installed mnn; of the whole suite, only the tests of ``scope`` (MNN_TEST_SCOPE in
    tests/conftest.py), if given; spread over one process per core (pytest-xdist's
    ``-n auto``, work-stealing: the suite mixes 1 ms tests with 10 s runs of real
    processes) with ``every_core``, which a ``-n`` after ``--`` overrides."""
    # pytest runs from a scratch folder so that the installed package is what gets tested:
    # from the repository root, the source mnn/ (which lacks mnn/backends) would shadow it.
    args = [_from_root(arg) for arg in session.posargs]
    env = {"MNN_TEST_TARGETS": ",".join(targets), **(env or {})}
    if not any(Path(arg.split("::")[0]).exists() for arg in args):
        args.insert(0, str(ROOT / "tests"))
        if scope:
            env["MNN_TEST_SCOPE"] = scope
    if every_core and not any(arg.startswith(("-n", "--numprocesses")) for arg in args):
        args += ["-n", "auto", "--dist", "worksteal"]  # an idle worker takes a busy one's tests
    args += _junit_report(session)
    session.chdir(session.create_tmp())
    session.run("pytest", *args, env=env)


def _junit_report(session: nox.Session, suffix: str = "") -> list[str]:
    """pytest's ``--junitxml`` into MNN_MATRIX_DIR, which `nox -s matrix` sets; else nothing."""
    folder = os.environ.get("MNN_MATRIX_DIR")
    return [f"--junitxml={Path(folder, session.name + suffix)}.xml"] if folder else []


def _from_root(arg: str) -> str:
    """A test path given from the repository root (tests/test_x.py::test_y), made absolute."""
    path = arg.split("::")[0]
    return str(ROOT / arg) if path and not arg.startswith("-") and (ROOT / path).exists() else arg


@nox.session
@nox.parametrize("cell_id", [nox.param(cell.id, id=cell.id) for cell in DOWNSTREAM_CELLS])
def downstream(session: nox.Session, cell_id: str) -> None:
    """The example project of tests/downstream/ on one CPU backend (MNN_TEST_TARGETS).

    mnn is installed, and the project's tests run through mnn's pytest plugin (-p mnn). On
    dask, the third-party adapter, mnn's adapter-protocol tests (tests/backends/test_backends.py)
    run too.
    """
    cell = next(cell for cell in DOWNSTREAM_CELLS if cell.id == cell_id)
    _install(session, ".[test]", str(DOWNSTREAM / "example"), *cell.extras)
    env = {"MNN_TEST_TARGETS": ",".join(cell.targets)}
    scratch = Path(session.create_tmp()).resolve()  # before the chdir: it is relative
    session.chdir(DOWNSTREAM / "example")  # its pyproject.toml holds its pytest configuration
    session.run("pytest", "-p", "no:cacheprovider", *_junit_report(session), *session.posargs,
                env=env)
    if cell.backend == "dask":
        session.chdir(scratch)
        session.run("pytest", str(ROOT / "tests" / "backends" / "test_backends.py"),
                    *_junit_report(session, "-protocol"), env=env)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on downstream code that uses mnn's API, against an installed mnn.

    The code is tests/downstream/typed_usage.py and the example library of
    tests/downstream/example; mnn's hints come from its py.typed."""
    _install(session, ".", "mypy>=1.10")
    session.chdir(session.create_tmp())  # from the root, mypy would read the source mnn/ instead
    session.run("mypy", "--strict", str(DOWNSTREAM / "typed_usage.py"),
                str(DOWNSTREAM / "example" / "src" / "mnn_example"), *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check on the whole tree (configuration in pyproject.toml)."""
    _install(session, "ruff>=0.15")
    session.run("ruff", "check", ".", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into build/site, warnings as errors, then read it in Chromium.

    The build writes the pages of the guides and of the layers from docs/*.md and the
    docstrings (docs/site/mnn_pages.py); none is committed, so none can go stale.
    tests/docs/test_docs_site.py opens every page in headless Chromium (Debian's chromium and
    chromium-driver, which .ci/run installs); without them its browser tests skip, saying so.
    """
    session.install(".[docs,sklearn]")  # autodoc imports mnn.sklearn
    site = ROOT / "build" / "site"
    shutil.rmtree(site, ignore_errors=True)  # a fresh build: no page survives from an older one
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", str(ROOT / "docs" / "site"),
                str(site))
    session.chdir(session.create_tmp())  # test the installed mnn, as the tests sessions do
    session.run("pytest", str(ROOT / "tests" / "docs" / "test_docs_site.py"), *session.posargs,
                env={"MNN_DOCS_SITE": str(site)})
    if missing := _chromium_missing(session):  # the session passes all the same: say so last
        session.warn(f"docs: the site was built, but its browser checks did not run: {missing}")


def _chromium_missing(session: nox.Session) -> str:
    """Why the session's Python cannot drive Chromium (docs/site/sitecheck.py), or ''."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import sitecheck; "
            "print(sitecheck.chromium_missing() or '')")
    return (session.run("python", "-c", code, str(ROOT / "docs" / "site"), silent=True,
                        log=False) or "").strip()


@nox.session(venv_backend="none")
def matrix(session: nox.Session) -> None:
    """Run every test session, then print a table of what ran where and why tests skipped.

    mnn's suite runs first (the tests sessions, then integration), then the downstream
    example; the table gives suite, backend, device, passed, skipped, failed and the
    reasons for skips. Arguments after ``--`` go to the tests sessions only."""
    with tempfile.TemporaryDirectory() as folder:
        results = {}
        for suite in SUITES:
            report = Path(folder, f"{suite}.json")
            posargs = session.posargs if suite == "tests" else []
            session.run(sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "-r",
                        "-s", suite, "--report", str(report), "--", *posargs,
                        env={"MNN_MATRIX_DIR": folder}, success_codes=[0, 1], external=True)
            results |= {(entry["signatures"] or [entry["name"]])[0]: entry
                        for entry in json.loads(report.read_text())["sessions"]}
        rows, reasons = [], []
        for suite, cells in SUITES.items():
            for cell in cells:
                name = f"{suite}({cell.id})"
                entry = results.get(name, {"result": "not run",
                                           "reason": "missing from nox's report"})
                junits = sorted(Path(folder).glob(f"{name}*.xml"))
                if not junits:  # skipped (device absent) or failed before pytest ran
                    rows.append((suite, cell.backend, cell.device, "-", "-", "-",
                                 entry["result"]))
                    reasons.append(f"{name} {entry['result']}: {entry.get('reason')}")
                    continue
                counts, skips = _junit_counts(junits, cell)
                for target, (passed, skipped, failed) in counts.items():
                    backend, device = (target.split(":", 1) if ":" in target
                                       else (cell.backend, target))
                    rows.append((suite, backend, device, passed, skipped, failed,
                                 entry["result"]))
                reasons += [f"{name} {target}: {n} x {why}" for (target, why), n in skips.items()]
    header = ("suite", "backend", "device", "passed", "skipped", "failed", "session")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        session.log("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    if reasons:
        session.log("skipped, and why:")
        for line in reasons:
            session.log("  " + line)
    if any(entry["result"] == "failed" for entry in results.values()):
        session.error("some test sessions failed (see the table above)")


def _junit_counts(paths: list[Path], cell: Cell):
    """Per target: (passed, skipped, failed); and skip reasons counted per (target, reason)."""
    ids = {target: "-".join(target.split(":", 1)) for target in cell.targets}
    counts = {target: [0, 0, 0] for target in [*cell.targets, "(no target)"]}
    skips: dict[tuple[str, str], int] = {}
    cases = [case for path in paths for case in ET.parse(path).iter("testcase")]
    for case in cases:
        params = case.get("name", "").partition("[")[2].rstrip("]")
        target = next((t for t, i in ids.items() if f"-{i}-" in f"-{params}-"), "(no target)")
        kind = 2 if case.find("failure") is not None or case.find("error") is not None else (
            1 if case.find("skipped") is not None else 0)
        counts[target][kind] += 1
        if kind == 1:
            why = case.find("skipped").get("message", "")
            skips[(target, why)] = skips.get((target, why), 0) + 1
    return {t: tuple(c) for t, c in counts.items() if any(c) or t in ids}, skips


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: mnn against the NumPy floor, torch.nn + autograd and tinynn (benchmarks/results).

    ``nox -s bench -- --quick`` for a smoke run. benchmarks/run.py unsets OPENBLAS_CORETYPE
    and OPENBLAS_L2_SIZE in its timing subprocesses only.
    """
    _install(session, ".[torch,sklearn]", "matplotlib", "tinynn==0.1.1")
    session.run("python", "benchmarks/run.py", *session.posargs)
