"""benchmarks/distributed.py: a smoke run with two real ranks, and the docs' table is its run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from helpers import ROOT, import_benchmark

distributed, run = import_benchmark("distributed"), import_benchmark("run")
DOCS_RUNS = list((ROOT / "docs").glob("distributed-batch*.json"))


@pytest.mark.distributed
@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="torch is not installed: the benchmark runs torch.distributed and DDP")
def test_a_smoke_run_times_every_contender_with_and_without_its_all_reduce(tmp_path):
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, "-c", run.LAUNCH, str(ROOT), "benchmarks.distributed",
                           "--batch", "8", "--processes", "2", "--repeats", "2", "--warmup", "1",
                           "--sample-s", "0.001", "--json", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["kind"] == "distributed" and result["params"]["processes"] == [2]
    names = [r["name"] for r in result["results"]]
    expected = [f"{name}{mode} (2 processes)" for name in distributed.CONTENDERS
                for mode in ("", ", no_sync")]
    assert names == expected
    for r in result["results"]:
        assert r["median_ms"] > 0 and r["processes"] == 2 and len(r["samples_ms"]) == 2
        assert ("allreduce_share" in r) == ("no_sync" not in r["name"])
    assert result["pairs"]["mnn-torch / torch DDP (2 processes)"] > 0
    assert "gloo" in result["notes"][0]
    assert len(distributed.table([result]).splitlines()) == 2 + len(distributed.CONTENDERS)


def test_the_docs_and_readme_show_the_runs_in_docs():
    """docs/distributed.md and the README hold the table of docs/distributed-batch*.json."""
    assert DOCS_RUNS, "docs/distributed-batch*.json is missing (python -m benchmarks.distributed)"
    runs = sorted((json.loads(path.read_text()) for path in DOCS_RUNS),
                  key=lambda run: run["params"]["batch"])
    table = distributed.table(runs)
    for page in ("docs/distributed.md", "README.md"):
        assert table in (ROOT / page).read_text(encoding="utf-8"), (
            f"{page} lacks the table of {[p.name for p in DOCS_RUNS]}; print it with "
            f"python -m benchmarks.distributed --table docs/distributed-batch*.json")
