"""The timing harness: contenders run in turn (round-robin), after a warm-up, many times.

Why round-robin: on a shared or throttled machine the speed drifts over seconds.
Timing contender A for ten seconds and then B for ten seconds turns that drift
into a difference between A and B. Alternating them (A B C, B C A, C A B, ...)
spreads the drift over all of them, so the ratio of their medians stays honest.

Each sample times ``number`` calls in a row (chosen per contender so one sample
lasts about ``sample_s``) and divides, so that microsecond steps are not lost in
the timer's resolution. We report the min, median and max of the samples, the
ratio of each median to the reference contender's median, and the minor page
faults per call (memory that was freed and is faulted back in, step after step).

``machine_info()`` records what decides the numbers besides the code: the CPU,
the thread counts, and the BLAS kernel that OpenBLAS picked (threadpoolctl's
``architecture`` field: ``Haswell`` is AVX2, ``SkylakeX`` is AVX-512).

Step comparisons (``lstm.py``, ``lenet.py``, ``conv.py``) build each contender from a
``StepRecipe`` and the same problem (weights and data), and ``compare_steps`` times them
with ``compare`` and adds the peak memory of one step of each (``add_peak_bytes``). An
mnn contender's training step is ``MnnStep``'s, the path the README teaches. The torch.nn
contender gets mnn's weights through ``torch_names``, which maps mnn's parameter names to
torch's.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Contender:
    """One way of doing the work.

    ``build()`` prepares everything (arrays, models) and returns the function
    that does one unit of work; ``sync()`` waits for queued device work (a GPU),
    so that the clock stops when the work is done, not when it was queued.
    ``skip`` is the reason it cannot run here (a missing library), or None.
    """

    name: str
    build: Callable[[], Callable[[], object]]
    sync: Callable[[], None] = lambda: None
    skip: str | None = None


def compare(contenders: list[Contender], reference: str, *, repeats: int = 30,
            warmup: int = 5, sample_s: float = 0.02) -> dict:
    """Time every contender round-robin; returns JSON-ready results.

    ``{"reference": name, "results": [{"name", "min_ms", "median_ms", "max_ms",
    "ratio", "number", "samples_ms"} or {"name", "skipped": reason}]}``.
    """
    runnable, results = [], {}
    for contender in contenders:
        if contender.skip:
            results[contender.name] = {"name": contender.name, "skipped": contender.skip}
            continue
        step = contender.build()
        for _ in range(warmup):
            step()
        contender.sync()
        runnable.append((contender, step, calibrate(step, contender.sync, sample_s)))
    samples = {contender.name: [] for contender, _, _ in runnable}
    faults = dict.fromkeys(samples, 0)  # minor page faults: freed memory faulted back in
    calls = dict.fromkeys(samples, 0)
    for r in range(repeats):
        shift = r % max(len(runnable), 1)  # rotate who goes first: A B C, B C A, ...
        for contender, step, number in runnable[shift:] + runnable[:shift]:
            before = minor_faults()
            samples[contender.name].append(seconds_per_call(step, contender.sync, number))
            faults[contender.name] += minor_faults() - before
            calls[contender.name] += number
    for contender, _, number in runnable:
        times = sorted(samples[contender.name])
        results[contender.name] = {
            "name": contender.name, "min_ms": 1e3 * times[0],
            "median_ms": 1e3 * statistics.median(times), "max_ms": 1e3 * times[-1],
            "number": number,
            "minor_faults_per_call": faults[contender.name] / calls[contender.name],
            "samples_ms": [1e3 * t for t in samples[contender.name]]}
    if reference in samples:
        base = results[reference]["median_ms"]
        for name in samples:
            results[name]["ratio"] = results[name]["median_ms"] / base
    return {"reference": reference,
            "results": [results[contender.name] for contender in contenders]}


def seconds_per_call(step, sync, number: int) -> float:
    """Seconds per call, over ``number`` calls in a row."""
    start = time.perf_counter()
    for _ in range(number):
        step()
    sync()
    return (time.perf_counter() - start) / number


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def calibrate(step, sync, sample_s: float) -> int:
    """How many calls make one sample last about ``sample_s`` seconds."""
    once = seconds_per_call(step, sync, 1)
    return max(1, min(10_000, round(sample_s / max(once, 1e-7))))


def peak_bytes_numpy(prepare: Callable[[], object], work: Callable[[object], object]) -> int:
    """Peak bytes that ``work(prepare())`` allocates beyond what existed before it ran.

    NumPy reports its array buffers to ``tracemalloc``, so this counts every
    temporary and the result. What ``prepare`` made (inputs, saved activations)
    is already there when the count starts, so it is not counted.
    """
    tracemalloc.start()
    try:
        state = prepare()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = work(state)
        _, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        tracemalloc.stop()
    return peak - before


def peak_bytes_torch_cpu(work: Callable[[], object]) -> int:
    """Peak bytes PyTorch's CPU allocator holds during ``work()`` beyond what it held before:
    the running sum of the profiler's allocations (each op's own) and frees, in time order."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        work()
    events = sorted(profiler.events(), key=lambda event: event.time_range.start)
    held = peak = 0
    for event in events:
        held += event.self_cpu_memory_usage
        peak = max(peak, held)
    return peak


def peak_bytes_of_call(work: Callable[[], object], library: str) -> int:
    """Peak bytes of one ``work()`` beyond what existed before it, counted where ``library``
    ("numpy" or "torch") allocates its arrays.

    ``tracemalloc`` sees NumPy's buffers; for PyTorch on the CPU the profiler's allocation
    events are summed (``peak_bytes_torch_cpu``). The two counters see different
    allocators: compare an mnn contender with torch.nn through the same counter (mnn-torch),
    and read mnn-numpy's peak as a size only.
    """
    if library == "numpy":
        return peak_bytes_numpy(lambda: None, lambda _: work())
    return peak_bytes_torch_cpu(work)


# --- step comparisons: contenders built from recipes, from the same problem -----------------


@dataclass(frozen=True)
class StepRecipe:
    """How to build one contender of a step comparison.

    ``make(problem, dtype, **options)`` returns the step: a callable that does one unit of
    work (a training step, a layer's forward and backward). ``library`` ("torch" or
    "numpy") is the module it needs, and the allocator whose counter measures its memory.
    """

    make: Callable[..., Callable[[], object]]
    library: str
    options: dict = field(default_factory=dict)

    def missing(self) -> str | None:
        """Why this contender cannot run here, or None."""
        if importlib.util.find_spec(self.library) is None:
            return f"{self.library} is not installed"
        return None

    def build(self, problem, dtype: str) -> Callable[[], object]:
        return self.make(problem, dtype, **self.options)

    def peak_bytes(self, problem, dtype: str) -> int:
        """Peak bytes of one step, after one untimed step (optimizer state, lazy imports and
        caches made by the first step are not the step's memory)."""
        step = self.build(problem, dtype)
        step()
        return peak_bytes_of_call(step, self.library)


def training_recipes(torch_nn: Callable, mnn_trainer: Callable) -> dict[str, StepRecipe]:
    """A training-step comparison's contenders: the ``torch.nn`` reference, and mnn's
    trainer on PyTorch and on NumPy arrays (its ``backend`` option)."""
    return {"torch.nn": StepRecipe(torch_nn, "torch"),
            "mnn-torch": StepRecipe(mnn_trainer, "torch", {"backend": "torch"}),
            "mnn-numpy": StepRecipe(mnn_trainer, "numpy", {"backend": "numpy"})}


def step_contenders(recipes: dict[str, StepRecipe], problem, dtype: str) -> list[Contender]:
    """One ``Contender`` per recipe, each built from ``problem`` in ``dtype``."""
    return [Contender(name, build=lambda recipe=recipe: recipe.build(problem, dtype),
                      skip=recipe.missing())
            for name, recipe in recipes.items()]


def add_peak_bytes(result: dict, recipes: dict[str, StepRecipe], problem, dtype: str) -> None:
    """Add ``peak_bytes`` and ``peak_counter`` (the library whose allocator was counted) to
    every contender of ``compare``'s ``result`` that ran; run.py tables them."""
    for entry in result["results"]:
        if "skipped" not in entry:
            recipe = recipes[entry["name"]]
            entry["peak_bytes"] = recipe.peak_bytes(problem, dtype)
            entry["peak_counter"] = recipe.library


# --- mnn's weights in torch.nn --------------------------------------------------------------

#: mnn's parameter names for what torch.nn calls ``weight`` and ``bias``.
TORCH_PARAMETER_NAMES = {"w": "weight", "b": "bias"}


def torch_names(keys, module_names: dict[str, str] | None = None) -> dict[str, str]:
    """mnn's parameter names -> torch.nn's, for the parameters ``keys`` (mnn's order).

    ``"7.w"`` is ``"7.weight"``: the module keeps its place, ``w`` and ``b`` become
    ``weight`` and ``bias``, and other parameter names (an LSTM's ``weight_ih_l0``) are
    torch's already. ``module_names`` renames the first part: ``{"head": "2"}`` maps
    ``"head.w"`` to ``"2.weight"``.
    """
    module_names = module_names or {}
    names = {}
    for key in keys:
        module, _, parameter = key.rpartition(".")
        first, dot, rest = module.partition(".")
        module = module_names.get(first, first) + dot + rest
        names[key] = f"{module}.{TORCH_PARAMETER_NAMES.get(parameter, parameter)}"
    return names


def copy_into_torch(module, weights: dict, names: dict[str, str]) -> None:
    """Copy ``weights`` (host arrays under mnn's names) into the torch.nn ``module``'s
    parameters, found by ``names`` (``torch_names``'s map)."""
    import torch

    with torch.no_grad():
        for key, value in weights.items():
            module.get_parameter(names[key]).copy_(torch.from_numpy(value))


def torch_weights(module, names: dict[str, str]) -> dict:
    """The torch.nn ``module``'s parameters as host float64 arrays under mnn's names."""
    return {key: module.get_parameter(name).detach().cpu().double().numpy()
            for key, name in names.items()}


class MnnStep:
    """The plain training step of an mnn contender: zero the gradients, forward, backward,
    optimizer step. A subclass sets ``model`` (ending in its loss), ``optimizer``,
    ``inputs`` and ``labels``."""

    def __call__(self):
        self.optimizer.zero_grad()
        loss = self.model(self.inputs, self.labels)
        self.model.backward()
        self.optimizer.step()
        return loss


def step_arguments(description: str, batch: int) -> argparse.ArgumentParser:
    """The options of a step comparison: ``--dtype``, ``--batch``, ``--threads`` and the
    timing's (``add_timing_arguments``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--threads", type=int, default=1)
    add_timing_arguments(parser)
    return parser


def compare_steps(recipes: dict, problem, args: argparse.Namespace, reference: str) -> dict:
    """The recipes' contenders timed round-robin on ``problem`` with ``args.threads``
    threads, then the peak memory of one step of each."""
    limit_threads(args.threads)
    result = compare(step_contenders(recipes, problem, args.dtype), reference=reference,
                     repeats=args.repeats, warmup=args.warmup, sample_s=args.sample_s)
    add_peak_bytes(result, recipes, problem, args.dtype)
    return result


def dtype_and_threads(args: argparse.Namespace) -> str:
    """The end of a comparison's title: ``float32, 1 thread``."""
    return f"{args.dtype}, {args.threads} thread{'s' * (args.threads != 1)}"


def limit_threads(threads: int) -> None:
    """``threads`` CPU threads for NumPy's BLAS and for PyTorch (if installed)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(threads)


def host_float64(backend, arrays: dict) -> dict:
    """``arrays`` (of ``backend``'s library) as host float64 NumPy arrays, same keys."""
    import numpy as np

    return {key: np.array(backend.to_host(value), dtype=np.float64)
            for key, value in arrays.items()}


def machine_info() -> dict:
    """CPU, cores, thread counts, BLAS kernels and versions, as seen by this process."""
    info = {
        "cpu": _cpu_model(), "machine": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_1_5_15min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "platform": platform.platform(),
        "environment": {k: os.environ[k] for k in sorted(os.environ)
                        if k.startswith(("OPENBLAS", "OMP_", "MKL_", "MALLOC_"))},
        "versions": {},
    }
    for module, distribution in (("numpy", "numpy"), ("torch", "torch"), ("tinynn", "tinynn"),
                                 ("array_api_compat", "array-api-compat"), ("mnn", "manual-nn")):
        if module in sys.modules:
            try:
                info["versions"][module] = importlib.metadata.version(distribution)
            except importlib.metadata.PackageNotFoundError:
                info["versions"][module] = getattr(sys.modules[module], "__version__", "?")
    try:
        import threadpoolctl
    except ImportError:
        info["threadpools"] = "threadpoolctl is not installed"
    else:
        keys = ("user_api", "internal_api", "prefix", "version", "num_threads",
                "threading_layer", "architecture")
        info["threadpools"] = [{k: pool.get(k) for k in keys}
                               for pool in threadpoolctl.threadpool_info()]
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch_threads"] = torch.get_num_threads()
        info["torch_interop_threads"] = torch.get_num_interop_threads()
        info["torch_cuda"] = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                              else "no GPU present")
    return info


def add_timing_arguments(parser: argparse.ArgumentParser, *, repeats: int = 30, warmup: int = 5,
                         sample_s: float = 0.02) -> None:
    """The options every comparison takes, and that ``benchmarks/run.py`` passes to each:
    ``--repeats``, ``--warmup``, ``--sample-s`` and ``--json``."""
    parser.add_argument("--repeats", type=int, default=repeats, help="samples per contender")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls first")
    parser.add_argument("--sample-s", type=float, default=sample_s,
                        help="about how long one sample lasts (calls are repeated to fill it)")
    parser.add_argument("--json", help="write the results here (else print them)")


def write_result(result: dict, path: str | None, *, kind: str, title: str, params: dict) -> None:
    """Label ``result`` (kind, title, params, ``machine_info()``) and write it as JSON.

    To ``path`` when given, else to stdout. ``machine_info()`` runs here, after the
    timing, so that the versions and threads of the libraries the contenders imported are in it.
    """
    result.update(kind=kind, title=title, params=params, machine=machine_info())
    text = json.dumps(result, indent=1)
    if path:
        with open(path, "w") as f:
            f.write(text)
    else:
        print(text)


def blas_summary(info: dict) -> str:
    """One line: which BLAS, which kernel, how many threads (e.g. ``openblas Haswell x2``)."""
    pools = info.get("threadpools")
    if not isinstance(pools, list):
        return str(pools)
    parts = [f"{p['internal_api']} {p.get('version') or ''} {p.get('architecture') or ''} "
             f"x{p['num_threads']} ({p['prefix']})" for p in pools if p["user_api"] == "blas"]
    return "; ".join(" ".join(part.split()) for part in parts) or "no BLAS found"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
