"""The figure and numbers of docs/recurrence.md: ``mnn train-lm`` with ``--model gpt``, ``lstm``
and ``gru`` for the same wall time on the default corpus, one after another on one thread.

Run from the repository root::

    python docs/figures/recurrence.py [SECONDS]

Each model trains for ``SECONDS`` (120 by default) with the defaults of ``mnn train-lm``
(context 64, width 128; 4 blocks for the GPT, 2 layers for the LSTM and the GRU), is
saved, and ``mnn generate`` samples 200 characters from it. Writes
``docs/figures/recurrence-curves.png`` (validation loss against seconds, the three on the same axes)
and prints a Markdown table of the final losses and the samples.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODELS = ("gpt", "lstm", "gru")
STEP = re.compile(r"^step (\d+)/\d+: train loss [\d.]+, validation loss ([\d.]+) \((\d+) s\)$",
                  re.MULTILINE)
FIGURE = Path(__file__).with_name("recurrence-curves.png")


def mnn(*args: str) -> str:
    """The standard output of ``python -m mnn ARGS``; a failure stops the script."""
    result = subprocess.run([sys.executable, "-m", "mnn", *args], capture_output=True,
                            text=True, check=False)
    if result.returncode:
        sys.exit(f"mnn {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def train(model: str, seconds: float, folder: str) -> tuple[list[tuple[int, float, int]], str]:
    """``(step, validation loss, seconds)`` at every evaluation, and a 200-character sample."""
    checkpoint = f"{folder}/{model}.safetensors"
    output = mnn("train-lm", "--model", model, "--time-limit", str(seconds), "--steps",
                 "1000000", "--eval-every", "25", "--sample-length", "0", "--threads", "1",
                 "--no-progress", "--plot", "none", "--save", checkpoint)
    print(output, file=sys.stderr)
    points = [(int(step), float(loss), int(s)) for step, loss, s in STEP.findall(output)]
    sample = mnn("generate", checkpoint, "--prompt", "The ", "-n", "200", "--seed", "0")
    return points, sample.removesuffix("\n")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 120.0
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for model in MODELS:
            runs[model] = train(model, seconds, folder)
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for model, (points, _) in runs.items():
        axes.plot([p[2] for p in points], [p[1] for p in points], marker=".",
                  label=model.upper())
    axes.set(xlabel="seconds of training (one thread, NumPy, float32)",
             ylabel="validation cross-entropy (nats per character)",
             title=f"mnn train-lm on pydoc-topics, {seconds:g} s each")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(FIGURE, dpi=110)
    print("| model | steps | validation loss |\n| --- | --- | --- |")
    for model, (points, _) in runs.items():
        print(f"| {model.upper()} | {points[-1][0]} | {points[-1][1]:.4f} |")
    for model, (_, sample) in runs.items():
        print(f"\n{model.upper()}:\n\n```text\n{sample}\n```")


if __name__ == "__main__":
    main()
