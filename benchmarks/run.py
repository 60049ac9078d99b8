"""Run every benchmark, one subprocess per comparison; write benchmarks/results/benchmarks.*.

    python benchmarks/run.py            # the full run (a few minutes)
    python benchmarks/run.py --quick    # a smoke run: one MLP, one softmax, one GPT comparison

It writes ``benchmarks.json`` (every sample), ``benchmarks.md`` (the tables, and first
the table that README.md shows) and ``benchmarks.png`` (the ratios, drawn) into
``benchmarks/results/``, or into ``--out``.

Why one process per comparison: each starts from a clean heap and clean caches,
and nothing one contender's library set up (threads, allocator state) leaks into
the next comparison.

The environment of those subprocesses only (never this process, never the tests):

* ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` are removed. Set, they pin
  OpenBLAS to a kernel that need not be this CPU's best (on one machine here NumPy
  ran the MLP step 1.7x slower with them). Each comparison reports the kernel
  that threadpoolctl then sees.
* ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` are raised (unless
  ``--no-malloc-tuning``), so that glibc keeps freed MB-sized buffers instead of
  returning them to the kernel and page-faulting them back in on the next call.
  Measured here: the MLP steps took at most ~100 faults a step either way, but
  softmax backward at n = 32768 took 8,000 (torch autograd) to 24,600 (mnn-torch)
  faults a call without it, and ran 2 to 3x slower (mnn-torch 98 ms -> 34 ms,
  torch autograd 31 -> 15 ms). It applies to every contender alike; the tables
  report page faults per call, and the output says which setting was used.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
RESULTS = ROOT / "benchmarks" / "results"
#: The ratios the README reports, (numerator, denominator) contenders: mnn on its plain
#: path and through ``mnn.optim.SGD``, each beside the reference of its own library.
PAIRS = [("mnn-numpy", "floor"), ("mnn-numpy-optim", "floor"), ("mnn-torch", "torch.nn"),
         ("mnn-torch-optim", "torch.nn"), ("mnn-numpy", "tinynn")]


def comparisons(quick: bool, gpu: bool) -> list[list[str]]:
    """The command-line arguments of every comparison: ``[module, *args]``."""
    if quick:
        return [["benchmarks.mlp", "--batch", "64", "--dtype", "float32"],
                ["benchmarks.softmax_memory", "--op", "softmax", "--n", "1024"],
                ["benchmarks.gpt", "--library", "numpy", "--batch", "4"]]
    runs = [["benchmarks.mlp", "--batch", str(b), "--dtype", d, "--library", library]
            for d in ("float32", "float64") for b in (1, 64, 1024)
            for library in ("numpy", "torch")]
    if gpu:
        runs += [["benchmarks.mlp", "--gpu", "--batch", str(b), "--dtype", "float32"]
                 for b in (1, 64, 1024)]
    runs += [["benchmarks.softmax_memory", "--op", op, "--n", str(n)]
             for op in ("softmax", "log-softmax") for n in (10, 1024, 32768)]
    runs += [["benchmarks.distributed", "--batch", str(b)] for b in (64, 1024)]
    runs.append(["benchmarks.sklearn_digits"])  # mnn.sklearn beside scikit-learn: whole fits
    # The GPT training step of the target (one thread, as its reference run),
    # each mnn backend timed round-robin beside torch.nn in one process.
    runs += [["benchmarks.gpt", "--library", library] for library in ("torch", "numpy")]
    # The LSTM language model's step (1 layer, hidden 128, batch 32, sequence 64), its three
    # contenders round-robin in one process, and the peak memory of one step of each.
    runs.append(["benchmarks.lstm"])
    # The LeNet-style CNN's SGD step (mnn train --model cnn, batch 64 of 28x28 images), and one
    # Conv2d layer's forward and backward through each library's fast and portable windows.
    runs.append(["benchmarks.lenet"])
    runs.append(["benchmarks.conv"])
    return runs


def bench_environment(malloc_tuning: bool) -> tuple[dict, dict]:
    """The subprocesses' environment, and a record of what was changed in it."""
    env = dict(os.environ)
    changes = {name: f"unset (was {env.pop(name)!r})" if name in env else "unset (was not set)"
               for name in UNSET}
    if malloc_tuning:
        env.update(MALLOC)
        changes.update({name: f"set to {value}" for name, value in MALLOC.items()})
    else:
        changes.update({name: "left as it was" for name in MALLOC})
    return env, changes


def gpu_present(env: dict) -> bool:
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([sys.executable, "-c", probe], env=env,
                          capture_output=True).returncode == 0


# ``python -m`` from the repository root would put the root first on sys.path, and its
# source folder mnn/ (which lacks mnn/backends) would shadow the installed package.
# So the root goes last, and the subprocess runs from a scratch folder.
LAUNCH = ("import runpy, sys; sys.path.append(sys.argv.pop(1)); "
          "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)")


def run_one(module_args: list[str], env: dict, timing: list[str], out: str) -> dict:
    command = [sys.executable, "-c", LAUNCH, str(ROOT), *module_args, *timing, "--json", out]
    print("$ python -m", shlex.join(command[4:]), flush=True)
    done = subprocess.run(command, env=env, cwd=os.path.dirname(out), capture_output=True,
                          text=True)
    if done.returncode != 0:
        return {"title": " ".join(module_args), "error": done.stderr[-3000:]}
    with open(out) as f:
        return json.load(f)


# --- reports --------------------------------------------------------------------------


def write_markdown(report: dict, path: Path) -> None:
    lines = ["# Benchmarks", "",
             f"Made by `{report['command']}` on {report['date']}.", ""]
    # Each comparison ran in its own process and saw only its own libraries: merge what they saw.
    machine = None
    for comparison in report["comparisons"]:
        if "machine" in comparison:
            seen = comparison["machine"]
            machine = dict(seen) if machine is None else {**seen, **machine}
            machine["versions"] = {**seen.get("versions", {}), **machine.get("versions", {})}
    if machine:
        lines += [f"- CPU: {machine['cpu']} ({machine['cores_usable']} usable cores)",
                  f"- BLAS: {blas_line(machine)}",
                  f"- torch threads: {machine.get('torch_threads', 'torch not loaded')}; "
                  f"GPU: {machine.get('torch_cuda', 'unknown')}",
                  f"- versions: {', '.join(f'{k} {v}' for k, v in machine['versions'].items())}"]
    changed = ", ".join(f"`{k}` {v}" for k, v in report["environment"].items())
    lines += [f"- benchmark environment: {changed}",
              "- times are per step (MLP) or per backward call (softmax); the ratio is the "
              "contender's median over the reference's median; contenders ran round-robin.", ""]
    summary = mlp_summary(report)
    if summary:
        lines += ["## MLP step, float32, CPU: the table of README.md", "", summary, ""]
    for comparison in report["comparisons"]:
        lines += [f"## {comparison['title']}", ""]
        if "error" in comparison:
            lines += ["Failed:", "", "```", comparison["error"], "```", ""]
            continue
        memory = comparison["kind"] == "softmax"
        # peak MiB of one step, and its counter
        step_memory = comparison["kind"] in ("lstm", "lenet", "conv")
        head = "| contender | min ms | median ms | max ms | ratio to " + comparison["reference"]
        head += (" | page faults / call | peak MiB | peak / input |" if memory else
                 " | page faults / call | peak MiB of one step | counted by |" if step_memory
                 else " | page faults / call |")
        extra = memory or step_memory
        lines += [head, "|---" * (8 if extra else 6) + "|"]
        for r in comparison["results"]:
            if "skipped" in r:
                blanks = " |" * (6 if extra else 4)
                lines.append(f"| {r['name']} | skipped: {r['skipped']} |{blanks}")
                continue
            row = (f"| {r['name']} | {r['min_ms']:.4g} | {r['median_ms']:.4g} | {r['max_ms']:.4g} "
                   f"| {r.get('ratio', float('nan')):.2f}x | {r['minor_faults_per_call']:.3g} |")
            if memory:
                peak = r.get("peak_bytes")
                row += (" not measured (CPU torch) | |" if peak is None else
                        f" {peak / 2**20:.3g} | {r['peak_over_input']:.2f} |")
            if step_memory:
                row += f" {r['peak_bytes'] / 2**20:.3g} | {r['peak_counter']} |"
            lines.append(row)
        pairs = comparison.get("pairs", {})
        if pairs:
            shown = "; ".join(f"{k} = {v:.2f}x" for k, v in pairs.items())
            lines += ["", f"Ratios of medians: {shown}"]
        lines += [line for note in comparison.get("notes", []) for line in ("", note)]
        load = comparison["machine"].get("load_average_1_5_15min")
        lines += ["", f"BLAS in this process: {blas_line(comparison['machine'])}; load average "
                  f"at the end: {', '.join(f'{x:.2f}' for x in load) if load else 'unknown'}", ""]
    path.write_text("\n".join(lines))


def mlp_summary(report: dict) -> str:
    """README.md's table: the ratios of ``PAIRS`` for every MLP batch in float32 on the CPU,
    the largest batch first; a ratio whose contenders did not both run reads "not run"."""
    pairs: dict[int, dict] = {}
    for comparison in report["comparisons"]:
        params = comparison.get("params", {})
        if comparison.get("kind") == "mlp" and params["dtype"] == "float32" and not params["gpu"]:
            pairs.setdefault(params["batch"], {}).update(comparison["pairs"])
    if not pairs:
        return ""
    names = [f"{a} / {b}" for a, b in PAIRS]
    lines = ["| workload | " + " | ".join(names) + " |", "| --- " * (1 + len(names)) + "|"]
    for batch in sorted(pairs, reverse=True):
        cells = [f"{pairs[batch][n]:.2f}x" if n in pairs[batch] else "not run" for n in names]
        lines.append(f"| MLP batch {batch}, float32 | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def blas_line(machine: dict) -> str:
    from benchmarks.harness import blas_summary

    return blas_summary(machine)


def add_pairs(comparison: dict) -> None:
    """Ratios between contenders other than the reference (mnn-torch / torch.nn, ...)."""
    medians = {r["name"]: r["median_ms"] for r in comparison.get("results", []) if "median_ms" in r}
    comparison["pairs"] = {f"{a} / {b}": medians[a] / medians[b]
                           for a, b in PAIRS if a in medians and b in medians}


def write_chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    shown = [c for c in report["comparisons"] if "results" in c]
    cols = min(3, max(len(shown), 1))
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 2.6 * rows), squeeze=False)
    for ax, comparison in zip(axes.flat, shown, strict=False):
        measured = [r for r in comparison["results"] if "ratio" in r]
        names = [r["name"] for r in measured]
        ratios = [r["ratio"] for r in measured]
        colors = ["tab:red" if n.startswith("mnn") else "tab:gray" for n in names]
        ax.barh(names, ratios, color=colors)
        ax.axvline(1.0, color="black", linewidth=0.8)
        if max(ratios, default=1.0) > 10:  # a log axis only where the ratios span decades
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.invert_yaxis()
        ax.set_title(textwrap.fill(comparison["title"], 64), fontsize=8)  # long titles wrap
        ax.set_xlabel(f"median time / {comparison['reference']}", fontsize=7)
        ax.tick_params(labelsize=7)
        for y, ratio in enumerate(ratios):
            ax.text(ratio, y, f" {ratio:.2f}x", va="center", fontsize=6)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: seconds, not minutes")
    parser.add_argument("--out", default=str(RESULTS), help="folder for benchmarks.*")
    parser.add_argument("--malloc-tuning", action=argparse.BooleanOptionalAction, default=True,
                        help="raise glibc's mmap and trim thresholds in the subprocesses")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    env, changes = bench_environment(args.malloc_tuning)
    if args.quick:
        timing = ["--repeats", str(args.repeats or 3), "--warmup", "1", "--sample-s", "0.002"]
    else:
        timing = ["--repeats", str(args.repeats or 60), "--warmup", "5", "--sample-s", "0.05"]
    gpu = not args.quick and gpu_present(env)
    with tempfile.TemporaryDirectory() as folder:
        results = [run_one(c, env, timing, os.path.join(folder, f"{i}.json"))
                   for i, c in enumerate(comparisons(args.quick, gpu))]
    for comparison in results:
        if comparison.get("kind") in ("mlp", "gpt"):
            add_pairs(comparison)
    argv_shown = ["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]
    report = {"command": shlex.join(argv_shown),
              "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
              "environment": changes, "gpu": gpu, "comparisons": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(json.dumps(report, indent=1))
    write_markdown(report, out / "benchmarks.md")
    write_chart(report, out / "benchmarks.png")
    print(f"wrote {out / 'benchmarks.json'}, .md and .png")
    failed = [c["title"] for c in results if "error" in c]
    for title in failed:
        print(f"FAILED: {title}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.append(str(ROOT))  # run as a script: make ``benchmarks`` importable
    sys.exit(main())
