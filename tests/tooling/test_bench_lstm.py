"""The LSTM benchmark's contenders do the whole step: after two steps in float64 their losses and
weights agree, and run.py runs it in the full benchmark and tables its peak memory.

A contender that skipped work (no bias update, gradients that pile up across steps, a
time step left out of backpropagation through time) would look fast; this catches it.
"""

from __future__ import annotations

import pytest
from helpers import assert_two_steps_match, import_benchmark, skip_if_missing

lstm, run, harness = (import_benchmark(name) for name in ("lstm", "run", "harness"))
OTHERS = [name for name in lstm.TRAINERS if name != "torch.nn"]


@pytest.mark.parametrize("name", OTHERS)
def test_weights_after_two_steps_match_torch_nn(name):
    skip_if_missing(lstm.TRAINERS, "torch.nn", name)
    problem = lstm.make_problem(batch=3, seed=1)
    reference, other = (lstm.TRAINERS[n].build(problem, "float64") for n in ("torch.nn", name))
    assert_two_steps_match(reference, other, problem.weights, name)


def test_peak_memory_of_a_step_is_counted_for_each_library():
    problem = lstm.make_problem(batch=2)
    for name, recipe in lstm.TRAINERS.items():
        if not recipe.missing():
            # the logits alone, (2, 64, 103) float32, are more than 50 kB
            assert recipe.peak_bytes(problem, "float32") > 50_000, name


def test_run_py_runs_it_and_tables_the_peak_memory(tmp_path):
    assert ["benchmarks.lstm"] in run.comparisons(quick=False, gpu=False)
    result = {"name": "mnn-numpy", "min_ms": 1.0, "median_ms": 2.0, "max_ms": 3.0, "ratio": 1.5,
              "minor_faults_per_call": 0.0, "peak_bytes": 3 * 2**20, "peak_counter": "numpy"}
    report = {"command": "python benchmarks/run.py", "date": "today", "environment": {},
              "comparisons": [{"kind": "lstm", "title": "LSTM step", "reference": "torch.nn",
                               "results": [result], "machine": harness.machine_info()}]}
    run.write_markdown(report, tmp_path / "benchmarks.md")
    assert "| mnn-numpy | 1 | 2 | 3 | 1.50x | 0 | 3 | numpy |" in (
        tmp_path / "benchmarks.md").read_text()
