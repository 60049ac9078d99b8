"""The README: its example is examples/quickstart.py and trains; its table is the bench run."""

import json
import re
import subprocess
import sys
from pathlib import Path

from helpers import import_benchmark

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"),
                        flags=re.DOTALL)
    assert blocks, "README.md has no ```python block"
    return blocks[0]


def test_readme_example_is_examples_quickstart():
    assert readme_example() == (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8"), (
        "README.md's example and examples/quickstart.py differ; keep them identical")


def test_readme_example_runs_and_trains_the_same_on_both_backends(tmp_path):
    result = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = re.search(r"on NumPy: ([\d.]+), on array-api-strict: ([\d.]+)", result.stdout)
    assert found, f"unexpected output: {result.stdout!r}"
    loss_numpy, loss_strict = map(float, found.groups())
    assert loss_numpy == loss_strict, "the same seed must give the same training on both"
    assert loss_numpy < 0.25, f"the network did not learn: final loss {loss_numpy} (chance: 0.69)"


def test_readme_benchmark_tables_are_the_run_in_benchmarks_results():
    """The README's tables are those of benchmarks/results/benchmarks.json, as
    benchmarks/run.py writes them (rerun the bench, then copy them from benchmarks.md)."""
    run = import_benchmark("run")
    report = json.loads((run.RESULTS / "benchmarks.json").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = run.mlp_summary(report)
    assert table, "benchmarks/results/benchmarks.json has no float32 CPU MLP comparison"
    assert table in readme, ("README.md lacks the MLP table of benchmarks/results/benchmarks.json:"
                             f"\n{table}")
    for comparison in report["comparisons"]:
        if comparison["kind"] == "softmax" and comparison["params"]["n"] == 32768:
            mnn = next(r for r in comparison["results"] if r["name"] == "mnn-numpy")
            row = f"| {comparison['params']['op']} | {mnn['peak_over_input']:.2f} |"
            assert row in readme, (f"README.md lacks the row {row!r} of "
                                   "benchmarks/results/benchmarks.json")
