"""The LeNet and Conv2d benchmarks' contenders do the whole work: in float64 the LeNet
trainers agree after two steps, and every Conv2d contender (mnn's fast and portable paths
alike) gives torch's output and gradients. A smoke run of each module writes its JSON, and
run.py runs both in the full benchmark and tables their peak memory.

A contender that skipped work (no bias update, gradients that pile up across steps, an
input gradient left out) would look fast; this catches it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_two_steps_match, import_benchmark, skip_if_missing

import mnn

lenet, conv, run, harness = (import_benchmark(name) for name in ("lenet", "conv", "run",
                                                                   "harness"))


@pytest.mark.parametrize("name", [name for name in lenet.TRAINERS if name != "torch.nn"])
def test_lenet_weights_after_two_steps_match_torch_nn(name):
    skip_if_missing(lenet.TRAINERS, "torch.nn", name)
    problem = lenet.make_problem(batch=3, seed=1)
    reference, other = (lenet.TRAINERS[n].build(problem, "float64") for n in ("torch.nn", name))
    assert_two_steps_match(reference, other, problem.weights, name)


@pytest.mark.parametrize("name", [name for name in conv.CONTENDERS if name != "torch autograd"])
def test_conv_output_and_gradients_match_torch(name):
    skip_if_missing(conv.CONTENDERS, "torch autograd", name)
    problem = conv.make_problem(batch=2, seed=1)
    reference, other = (conv.CONTENDERS[n].build(problem, "float64")
                        for n in ("torch autograd", name))
    for step in (1, 2):  # the second step catches gradients that pile up across steps
        reference(), other()
        expected, got = reference.results(), other.results()
        assert expected.keys() == got.keys() == {"output", "inputs", "w", "b"}
        for key, value in expected.items():
            np.testing.assert_allclose(got[key], value, rtol=1e-10,
                                       atol=1e-12 * np.abs(value).max(),
                                       err_msg=f"{name}, step {step}, {key}")


def test_conv_portable_contenders_run_the_base_class_methods(monkeypatch):
    """The portable contenders call ``Backend.windows`` and ``Backend.correlate``, the fast
    ones only those their adapter does not override (NumPy has no convolution, torch
    needs no windows), and the adapter's own methods are in place after each step."""
    calls = []

    def counting(name):
        default = getattr(mnn.backends.Backend, name)

        def counted(self, *args):
            calls.append((name, self.name))
            return default(self, *args)
        return counted

    for name in conv.Mnn.FAST_METHODS:
        monkeypatch.setattr(mnn.backends.Backend, name, counting(name))
    problem = conv.make_problem(batch=2)
    for library in ("numpy", "torch"):
        skip_if_missing(conv.CONTENDERS, f"mnn-{library} fast")
        backend = mnn.backends.get(library)
        inherited = {(name, library) for name in conv.Mnn.FAST_METHODS
                     if name not in vars(type(backend))}
        assert inherited < {(name, library) for name in conv.Mnn.FAST_METHODS}  # one is fast
        conv.CONTENDERS[f"mnn-{library} fast"].build(problem, "float32")()
        assert set(calls) <= inherited, f"mnn-{library} fast"
        calls.clear()
        conv.CONTENDERS[f"mnn-{library} portable"].build(problem, "float32")()
        assert set(calls) == {(name, library) for name in conv.Mnn.FAST_METHODS}, library
        assert not set(conv.Mnn.FAST_METHODS) & set(vars(backend))  # the adapter's are back
        calls.clear()


def test_peak_memory_of_a_step_is_counted_for_each_contender():
    lenet_problem, conv_problem = lenet.make_problem(batch=2), conv.make_problem(batch=2)
    for recipes, problem, least in (
            # LeNet: the first convolution's output, (2, 16, 28, 28) float32, 100,352 bytes
            (lenet.TRAINERS, lenet_problem, 2 * 16 * 28 * 28 * 4),
            # Conv2d: its output, (2, 32, 14, 14) float32
            (conv.CONTENDERS, conv_problem, 2 * 32 * 14 * 14 * 4)):
        for name, recipe in recipes.items():
            # torch's own convolutions at batch 2 are too short for the profiler's counter:
            # 40 counts of torch autograd's read from 0 to 93,824 bytes here, and torch.nn's
            # LeNet step read 76,592 once; the mnn contenders are bounded
            if not recipe.missing() and name not in ("torch autograd", "torch.nn"):
                assert recipe.peak_bytes(problem, "float32") >= least, name


@pytest.mark.parametrize("module", [lenet, conv])
def test_a_smoke_run_writes_the_json(module, tmp_path):
    """As run.py runs it: in a subprocess (its thread limits stay there), tiny and brief."""
    pytest.importorskip("torch", reason="torch is not installed: the reference of each "
                                        "ratio is torch.nn or torch autograd")
    kind = module.__name__.rpartition(".")[2]
    env, _ = run.bench_environment(malloc_tuning=True)
    timing = ["--repeats", "2", "--warmup", "1", "--sample-s", "0.001"]
    result = run.run_one([module.__name__, "--batch", "2"], env, timing,
                         str(tmp_path / "result.json"))
    assert "error" not in result, result.get("error")
    assert result == json.loads((tmp_path / "result.json").read_text())
    recipes = module.TRAINERS if module is lenet else module.CONTENDERS
    assert result["kind"] == kind and [entry["name"] for entry in result["results"]] == list(
        recipes)
    for entry in result["results"]:
        if "skipped" not in entry:
            assert entry["median_ms"] > 0 and entry["ratio"] > 0
            assert entry["peak_bytes"] > 0 and entry["peak_counter"] in ("numpy", "torch")


@pytest.mark.parametrize("kind", ["lenet", "conv"])
def test_run_py_runs_them_and_tables_the_peak_memory(kind, tmp_path):
    assert [f"benchmarks.{kind}"] in run.comparisons(quick=False, gpu=False)
    assert [f"benchmarks.{kind}"] not in run.comparisons(quick=True, gpu=False)
    result = {"name": "mnn-numpy", "min_ms": 1.0, "median_ms": 2.0, "max_ms": 3.0, "ratio": 1.5,
              "minor_faults_per_call": 0.0, "peak_bytes": 3 * 2**20, "peak_counter": "numpy"}
    report = {"command": "python benchmarks/run.py", "date": "today", "environment": {},
              "comparisons": [{"kind": kind, "title": "a step", "reference": "torch.nn",
                               "results": [result], "machine": harness.machine_info()}]}
    run.write_markdown(report, tmp_path / "benchmarks.md")
    assert "| mnn-numpy | 1 | 2 | 3 | 1.50x | 0 | 3 | numpy |" in (
        tmp_path / "benchmarks.md").read_text()
