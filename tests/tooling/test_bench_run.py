"""``benchmarks/run.py --quick`` writes the JSON, the Markdown table and the chart: every contender.

It also checks that the benchmark environment drops ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` for the benchmark subprocesses only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, import_benchmark

mlp, run = import_benchmark("mlp"), import_benchmark("run")


def test_the_benchmark_environment_unsets_openblas_variables_there_only(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    env, changes = run.bench_environment(malloc_tuning=True)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert changes["OPENBLAS_CORETYPE"] == "unset (was 'Haswell')"
    assert env["MALLOC_MMAP_THRESHOLD_"] == run.MALLOC["MALLOC_MMAP_THRESHOLD_"]
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"  # this process keeps them
    env, changes = run.bench_environment(malloc_tuning=False)
    assert env.get("MALLOC_MMAP_THRESHOLD_") == os.environ.get("MALLOC_MMAP_THRESHOLD_")
    assert changes["MALLOC_MMAP_THRESHOLD_"] == "left as it was"


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason="matplotlib is not installed; run.py draws benchmarks.png with it")
def test_quick_run_writes_every_contender(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "benchmarks.json").read_text())
    markdown = (tmp_path / "benchmarks.md").read_text()
    assert (tmp_path / "benchmarks.png").read_bytes().startswith(b"\x89PNG")
    assert "benchmarks/run.py --quick" in markdown
    assert set(report["environment"]) >= {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}
    kinds = [c["kind"] for c in report["comparisons"]]
    assert kinds == ["mlp", "softmax", "gpt"]
    mlp_run, softmax_run, gpt_run = report["comparisons"]
    assert [r["name"] for r in mlp_run["results"]] == list(mlp.TRAINERS)
    for result in mlp_run["results"]:
        reason = mlp.missing(result["name"])
        if reason:  # skipped only when this Python lacks what it needs, and says why
            assert result["skipped"] == reason
        else:
            assert result["median_ms"] > 0 and result["ratio"] > 0
        assert result["name"] in markdown
    ran = {r["name"] for r in mlp_run["results"] if "median_ms" in r}
    for a, b in run.PAIRS:  # every ratio of README.md's table whose two contenders ran
        assert (f"{a} / {b}" in mlp_run["pairs"]) == ({a, b} <= ran), (a, b, mlp_run["pairs"])
    assert mlp_run["pairs"]["mnn-numpy / floor"] > 0
    assert mlp_run["pairs"]["mnn-numpy-optim / floor"] > 0
    assert run.mlp_summary(report) in markdown
    assert "| MLP batch 64, float32 |" in run.mlp_summary(report)
    assert "blas" in json.dumps(mlp_run["machine"]["threadpools"]) or \
        mlp_run["machine"]["threadpools"] == "threadpoolctl is not installed"
    numpy_cases = [r for r in softmax_run["results"] if r["name"] in ("floor (NumPy)", "mnn-numpy")]
    assert len(numpy_cases) == 2
    for result in numpy_cases:
        # the backward's own peak, result included: at least one (B, n) array, and O(B n)
        assert 1.0 <= result["peak_over_input"] < 4.0
    gpt = import_benchmark("gpt")
    assert "GPT training step" in markdown and gpt_run["reference"] == "torch.nn"
    assert [r["name"] for r in gpt_run["results"]] == ["torch.nn", "mnn-numpy"]
    for result in gpt_run["results"]:
        reason = gpt.missing(result["name"])
        assert result["skipped"] == reason if reason else result["median_ms"] > 0
