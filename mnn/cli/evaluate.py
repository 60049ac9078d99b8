"""``mnn evaluate``: a saved model's accuracy on a data set's test split, and its confusion matrix.

Row ``i``, column ``j`` of the confusion matrix counts the test images of digit
``i`` that the model called ``j``: the diagonal holds the correct answers, and
each off-diagonal entry one kind of mistake.
"""

from __future__ import annotations

import os

import numpy as np

import mnn
from mnn.cli.common import (
    DTYPES,
    CommandError,
    add_dataset_arguments,
    add_target_arguments,
    load_dataset,
    predictions,
    resolve_target,
)


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="a .safetensors file written by 'mnn train --save'")
    add_dataset_arguments(parser)
    add_target_arguments(parser)
    parser.add_argument("--dtype", default=None, choices=DTYPES,
                        help="default: the checkpoint's")


def run(args) -> int:
    if not os.path.exists(args.checkpoint):
        raise CommandError(f"{args.checkpoint}: no such file")
    model = mnn.load(args.checkpoint)
    dtype = args.dtype or str(next(iter(model.state_dict().values())).dtype)
    backend, device = resolve_target(args.backend, args.device)
    model.to(xp=backend.name, device=device, dtype=dtype)
    _, test_host = load_dataset(args.dataset, args.data_dir, args.download)
    test = test_host.to(backend, device, dtype)
    predicted, truth = predictions(model, test), test_host.labels  # a misfit raises ShapeError
    n_classes = max(int(truth.max()), int(predicted.max())) + 1
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)  # host NumPy: counting, not array math
    correct = int(np.trace(matrix))
    print(f"{args.checkpoint} on {args.dataset} (test, {len(test)} images), "
          f"{backend.name} {device} {dtype}")
    print(f"accuracy {100 * correct / len(test):.2f}% ({correct}/{len(test)})\n")
    print(confusion_table(matrix))
    return 0


def confusion_table(matrix: np.ndarray) -> str:
    """The matrix as text: true classes down, predicted classes across, totals at the end."""
    n = matrix.shape[0]
    width = max(4, len(str(int(matrix.sum()))) + 1)
    head = "true \\ predicted".ljust(17) + "".join(f"{j:>{width}}" for j in range(n))
    lines = [head + "  accuracy"]
    for i in range(n):
        total = int(matrix[i].sum())
        share = f"{100 * matrix[i, i] / total:7.1f}%" if total else "      -"
        lines.append(f"{i:<17}" + "".join(f"{int(v):>{width}}" for v in matrix[i]) + "  " + share)
    return "\n".join(lines)
