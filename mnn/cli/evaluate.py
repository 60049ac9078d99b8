"""``mnn evaluate``: a saved classifier's accuracy on a data set's test split and its confusion
matrix, or a saved language model's loss and perplexity on a text.

Row ``i``, column ``j`` of the confusion matrix counts the test images of digit
``i`` that the model called ``j``: the diagonal holds the correct answers, and
each off-diagonal entry one kind of mistake.

A checkpoint of ``mnn train-lm`` (a GPT with its vocabulary) is a language model.
Its loss is the mean cross-entropy over every character of the text but the first,
each predicted once from the characters before it in its window: the text is cut
into consecutive windows of the model's context (the last one shorter). The
perplexity is ``exp(loss)``: the model is as unsure as a uniform choice
among that many characters. The text is ``--text``, whole, or by default the
validation split of the corpus the model was trained on (the last 10%, as
``train-lm`` holds it out). ``train-lm``'s own validation loss is a mean over random
windows, whose early positions see fewer characters before them, so the two
numbers are close but not equal.
"""

from __future__ import annotations

import math
import os

import array_api_compat
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
from mnn.cli.train import as_images
from mnn.cli.train_lm import (
    DEFAULT_MAX_TEXT_MB,
    PYDOC,
    LanguageModel,
    corpus_text,
    find_gpt,
    language_model,
    short_name,
    validation_split,
)
from mnn.data import DataError


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="a .safetensors file written by 'mnn train --save' "
                                           "or 'mnn train-lm --save'")
    add_dataset_arguments(parser)
    add_target_arguments(parser)
    parser.add_argument("--dtype", default=None, choices=DTYPES,
                        help="default: the checkpoint's")
    language = parser.add_argument_group("language models (checkpoints of train-lm)")
    language.add_argument("--text", default=None, metavar="FILE",
                          help="the UTF-8 text to score, whole (default: the validation split "
                               "of the corpus the model was trained on)")
    language.add_argument("--max-text-mb", type=int, default=DEFAULT_MAX_TEXT_MB, metavar="MB",
                          help=f"refuse a --text file larger than this many megabytes "
                               f"(default: {DEFAULT_MAX_TEXT_MB})")
    language.add_argument("--batch-size", type=int, default=32,
                          help="windows per forward pass (32)")


def run(args) -> int:
    if not os.path.exists(args.checkpoint):
        raise CommandError(f"{args.checkpoint}: no such file")
    model, metadata = mnn.load(args.checkpoint, with_metadata=True)
    dtype = args.dtype or str(next(iter(model.state_dict().values())).dtype)
    backend, device = resolve_target(args.backend, args.device)
    if find_gpt(model) is not None:
        found = language_model(args.checkpoint, model, metadata)
        model.to(xp=backend.name, device=device, dtype=dtype)
        return _evaluate_language_model(args, found, f"{backend.name} {device} {dtype}")
    if args.text is not None:
        raise CommandError(f"--text scores a language model, and {args.checkpoint} holds a "
                           f"{type(model).__name__}, not a GPT")
    model.to(xp=backend.name, device=device, dtype=dtype)
    _, test_host = load_dataset(args.dataset, args.data_dir, args.download)
    if isinstance(model, mnn.SequentialLayers) and isinstance(model[0], mnn.Conv2d):
        test_host = as_images(test_host)  # mnn train --model cnn's checkpoint takes images
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


def _evaluate_language_model(args, found: LanguageModel, target: str) -> int:
    """Print the loss and perplexity of ``found`` on ``--text`` or on its corpus's
    validation split."""
    if args.batch_size < 1 or args.max_text_mb < 1:
        raise CommandError(f"--batch-size and --max-text-mb must be at least 1, got "
                           f"{args.batch_size} and {args.max_text_mb}")
    context = found.gpt.context
    if args.text is not None:
        text, what = corpus_text(args.text, args.max_text_mb), f"{short_name(args.text)} (whole)"
    else:
        trained_on = PYDOC if found.corpus in (None, PYDOC) else found.corpus
        try:
            text = corpus_text(None if trained_on == PYDOC else trained_on, args.max_text_mb)
        except CommandError as error:
            raise CommandError(f"{args.checkpoint} was trained on {trained_on}, which cannot "
                               f"be read ({error}); give the text with --text") from None
        start = max(validation_split(len(text), context), 0)
        text = text[start:]
        what = (f"{short_name(None if trained_on == PYDOC else trained_on)} (validation split: "
                f"the last {len(text):,} characters)")
    try:
        tokens = found.vocabulary.encode(text, found.vocabulary.dtype)
    except DataError as error:
        raise CommandError(f"{what}: {error} ({args.checkpoint})") from None
    if len(tokens) < 2:
        raise CommandError(f"{what}: the text has {len(tokens)} characters; a loss needs at "
                           f"least 2 (one to predict from, one to predict)")
    where = mnn.backends.Placement.of(next(iter(found.model.state_dict().values())))
    loss = text_loss(found.gpt, where.from_host(tokens), args.batch_size)
    print(f"{args.checkpoint}: {_in_words(found.gpt)} (vocabulary {found.gpt.vocab_size}, "
          f"context {context}) on {what}, {target}")
    print(f"loss {loss:.4f} nats per character, perplexity {math.exp(loss):.3f} "
          f"({len(tokens) - 1:,} characters predicted)")
    return 0


def _in_words(model) -> str:
    """``GPT 4x128``, ``LSTM 2x128``: the language model's kind and size."""
    if isinstance(model, mnn.GPT):
        return f"GPT {model.layers}x{model.d_model}"
    return f"{model.cell.upper()} {model.num_layers}x{model.hidden_size}"


def text_loss(gpt, tokens, batch_size: int) -> float:
    """The mean cross-entropy of ``gpt`` over every next token of ``tokens`` (1-D ids on the
    model's placement), in eval mode: consecutive windows of ``gpt.context`` tokens, each
    predicting the next ones, ``batch_size`` windows a forward pass, the last one shorter."""
    xp = array_api_compat.array_namespace(tokens)
    loss_layer = mnn.CrossEntropyLossLayer(axis=-1)
    predicted = int(tokens.shape[0]) - 1
    context = gpt.context
    full = predicted // context  # whole windows; the rest, if any, is one shorter window
    total = 0.0
    mode = [(layer, layer.training) for _, layer in gpt.named_layers()]
    gpt.eval()
    try:
        for first in range(0, full, batch_size):
            count = min(batch_size, full - first)
            span = tokens[first * context:(first + count) * context + 1]
            inputs = xp.reshape(span[:-1], (count, context))
            labels = xp.reshape(span[1:], (count, context))
            total += float(loss_layer(gpt(xp.astype(inputs, xp.int64)),
                                      xp.astype(labels, xp.int64))) * count * context
        rest = predicted - full * context
        if rest:
            span = tokens[full * context:]
            total += float(loss_layer(gpt(xp.astype(xp.reshape(span[:-1], (1, rest)), xp.int64)),
                                      xp.astype(xp.reshape(span[1:], (1, rest)), xp.int64))) * rest
    finally:
        for layer, training in mode:
            layer.training = training
    return total / predicted
