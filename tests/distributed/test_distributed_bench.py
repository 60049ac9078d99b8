"""benchmarks/distributed.py: a smoke run with two real ranks, and the docs' tables are its runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from helpers import ROOT, import_benchmark

distributed, run = import_benchmark("distributed"), import_benchmark("run")
DOCS_RUNS = list(run.RESULTS.glob("distributed-batch*.json"))


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


def by_batch(runs):
    return sorted(runs, key=lambda run: run["params"]["batch"])


def test_the_docs_and_readme_show_the_runs_in_docs():
    """docs/distributed.md holds the tables of benchmarks/results/distributed-batch*.json (its
    first run) and of the full bench run in benchmarks/results/benchmarks.json; the README
    that of the bench run."""
    assert DOCS_RUNS, ("benchmarks/results/distributed-batch*.json is missing "
                       "(python -m benchmarks.distributed)")
    first = distributed.table(by_batch(json.loads(path.read_text()) for path in DOCS_RUNS))
    report = json.loads((run.RESULTS / "benchmarks.json").read_text(encoding="utf-8"))
    bench = by_batch(c for c in report["comparisons"] if c.get("kind") == "distributed")
    assert bench, ("benchmarks/results/benchmarks.json has no data-parallel comparison "
                   "(python benchmarks/run.py)")
    latest = distributed.table(bench)
    for page, tables in (("docs/distributed.md",
                          {"benchmarks/results/distributed-batch*.json": first,
                           "benchmarks/results/benchmarks.json": latest}),
                         ("README.md", {"benchmarks/results/benchmarks.json": latest})):
        text = (ROOT / page).read_text(encoding="utf-8")
        for source, table in tables.items():
            assert table in text, (f"{page} lacks the data-parallel table of {source}, as "
                                   "benchmarks.distributed.table prints it")
