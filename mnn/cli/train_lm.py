"""``mnn train-lm``: a character-level GPT on any backend, by default on Python's own help text.

The corpus is ``pydoc_data.topics`` (the text of ``help('topics')``, about 465,000
characters, shipped with every Python) or ``--text FILE``. Its first 90% trains,
the last 10% validates. Each step draws ``--batch-size`` random windows of
``--context`` characters (the labels: the same windows shifted by one), and AdamW
takes one step on the mean cross-entropy over (batch, time, vocabulary).

Every ``--eval-every`` steps: the validation loss (mean over fixed windows, in eval
mode), a sample from the model, and with ``--save`` a checkpoint (model and optimizer,
written atomically; the vocabulary goes beside it as ``<file>.vocab.json``). At the
end: the loss curves as an image (``--plot``). The loop itself (steps, progress bar,
time limit, checkpoints) is ``mnn.training``'s; this file holds the text, the model,
the evaluation and what is printed.
"""

from __future__ import annotations

import json
import math

import numpy as np

import mnn
from mnn import training
from mnn.cli.common import (
    CommandError,
    add_training_arguments,
    check_at_least_one,
    check_finite_non_negative,
    check_output_path,
    check_training_arguments,
    learning_rate,
    limit_threads,
    plot_destination,
    pyplot,
    resolve_target,
    save_figure,
)
from mnn.data import CharacterVocabulary, TextWindows, pydoc_corpus

DEFAULT_PLOT = "<corpus>-lm-curves.png"
VALIDATION_SHARE = 0.1
#: The vocabulary's file beside the ``--save`` checkpoint: ``<checkpoint><suffix>``.
VOCABULARY_SUFFIX = ".vocab.json"


def add_arguments(parser) -> None:
    parser.add_argument("--text", default=None, metavar="FILE",
                        help="train on this UTF-8 text file (default: Python's pydoc_data.topics, "
                             "about 465k characters, no download)")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps (1000)")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="stop training after this many seconds (evaluation included)")
    parser.add_argument("--context", type=int, default=64, help="characters per window (64)")
    parser.add_argument("--d-model", type=int, default=128, help="model width (128)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (4)")
    parser.add_argument("--layers", type=int, default=4, help="Transformer blocks (4)")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout probability (0)")
    parser.add_argument("--weight-decay", type=float, default=0.01,
                        help="AdamW weight decay (0.01, as torch)")
    parser.add_argument("--eval-every", type=int, default=100,
                        help="steps between validation losses and samples (100)")
    parser.add_argument("--eval-batches", type=int, default=10,
                        help="batches of validation windows per evaluation (10)")
    parser.add_argument("--sample-length", type=int, default=200,
                        help="characters per sample (200; 0: no samples)")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="sampling temperature (0.8; 0 takes the most likely character)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="sample from the k most likely characters only")
    parser.add_argument("--prompt", default=None,
                        help="what samples start from (default: the text's first character)")
    add_training_arguments(parser, DEFAULT_PLOT)


def run(args) -> int:
    _check_arguments(args)
    text, corpus = _corpus(args.text)
    check_output_path("--save", args.save)
    args.plot = plot_destination(args.plot, DEFAULT_PLOT, f"{corpus}-lm-curves.png")
    backend, device = resolve_target(args.backend, args.device)
    limit_threads(backend, args.threads)
    vocabulary = CharacterVocabulary(text)
    prompt = vocabulary.encode(text[0] if args.prompt is None else args.prompt)  # checked now
    tokens = vocabulary.encode(text)
    split = len(tokens) - max(args.context + 1, int(VALIDATION_SHARE * len(tokens)))
    if split < args.context + 1:
        raise CommandError(f"the text has {len(tokens)} characters: too few for training and "
                           f"validation windows of {args.context} (--context)")
    where = mnn.backends.Placement.named(backend, device, args.dtype)
    train = TextWindows(where.from_host(tokens[:split]), args.context, args.batch_size,
                        rng=args.seed)
    validation = TextWindows(where.from_host(tokens[split:]), args.context, args.batch_size,
                             rng=args.seed + 1)
    fixed = [validation.sample() for _ in range(args.eval_batches)]  # the same every time

    gpt = mnn.GPT(len(vocabulary), args.context, args.d_model, args.heads, args.layers,
                  dropout=args.dropout, rng=args.seed)
    model = mnn.SequentialLayers([gpt, mnn.CrossEntropyLossLayer(axis=-1)])
    model.to(xp=backend.name, device=device, dtype=args.dtype)
    optimizer = mnn.optim.AdamW(model, lr=learning_rate(args.lr, "adamw"),
                                weight_decay=args.weight_decay)
    n_params = sum(math.prod(p.shape) for p in model.state_dict().values())
    print(f"mnn {mnn.__version__}: {corpus} ({len(tokens)} characters, vocabulary "
          f"{len(vocabulary)}), GPT {args.layers}x{args.d_model} with {args.heads} heads, "
          f"context {args.context}, {n_params} parameters, on {backend.name} {device} "
          f"{args.dtype}, {optimizer!r}, batch {args.batch_size}, seed {args.seed}", flush=True)

    history: dict[str, list[float]] = {"step": [], "seconds": [], "train": [], "validation": []}

    def after_round(done: training.Round) -> None:
        """The validation loss and a sample, every ``--eval-every`` steps and at the end."""
        history["step"].append(done.steps)
        history["train"].append(done.loss)
        history["validation"].append(_evaluate(model, fixed))
        history["seconds"].append(done.elapsed())
        print(f"step {done.steps}/{args.steps}: train loss {done.loss:.4f}, validation loss "
              f"{history['validation'][-1]:.4f} ({history['seconds'][-1]:.0f} s)", flush=True)
        if args.sample_length:
            sample = gpt.generate(where.from_host(prompt), args.sample_length, args.temperature,
                                  args.top_k, rng=args.seed + done.steps)
            print(f"sample: {vocabulary.decode(sample)!r}", flush=True)

    checkpoint = None
    if args.save:
        record = json.dumps({"characters": vocabulary.characters}, ensure_ascii=False)
        checkpoint = training.Checkpoint(args.save, model, optimizer,
                                         beside={VOCABULARY_SUFFIX: record.encode("utf-8")})
    finished = training.train(training.plain_step(model, optimizer),
                              training.steps(train.sample, args.steps, args.eval_every),
                              after_round, unit="step", progress=not args.no_progress,
                              time_limit=args.time_limit, checkpoint=checkpoint,
                              checkpoint_every=1)
    if finished.out_of_time:
        print(f"stopped after {finished.steps} steps: --time-limit {args.time_limit:g} s",
              flush=True)
    print(f"validation loss {history['validation'][-1]:.4f} nats per character after "
          f"{finished.steps} steps in {history['seconds'][-1]:.1f} s on {backend.name} {device} "
          f"{args.dtype}")
    if args.save:
        print(f"saved the model and optimizer to {args.save}, the vocabulary to "
              f"{args.save}{VOCABULARY_SUFFIX}")
    if args.plot:
        plot_losses(history, args.plot, f"{corpus}, GPT {args.layers}x{args.d_model}, "
                                        f"{backend.name} {device} {args.dtype}")
        print(f"wrote the loss curves to {args.plot}")
    return 0


def _check_arguments(args) -> None:
    check_at_least_one(args, "steps", "context", "d_model", "heads", "layers", "eval_every",
                       "eval_batches")
    check_training_arguments(args)
    check_finite_non_negative("--weight-decay", "the weight decay", args.weight_decay)
    if args.d_model % args.heads:
        raise CommandError(f"--d-model ({args.d_model}) must be divisible by --heads "
                           f"({args.heads})")
    if not 0.0 <= args.dropout < 1.0:
        raise CommandError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.sample_length < 0 or args.temperature < 0:
        raise CommandError("--sample-length and --temperature must not be negative")
    if args.top_k is not None and args.top_k < 1:
        raise CommandError(f"--top-k must be at least 1, got {args.top_k}")
    if args.prompt == "":
        raise CommandError("--prompt must not be empty: samples continue from it")


def _corpus(path: str | None) -> tuple[str, str]:
    """The text and a short name for it."""
    if path is None:
        return pydoc_corpus(), "pydoc-topics"
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except UnicodeDecodeError as error:
        raise CommandError(f"--text {path}: not UTF-8 text ({error})") from None
    name = path.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0] or "text"
    return text, name


def _evaluate(model, batches) -> float:
    """The mean loss over ``batches`` in eval mode (no dropout); training mode afterwards."""
    model.eval()
    try:
        return float(np.mean([float(model(inputs, labels)) for inputs, labels in batches]))
    finally:
        model.train()


def plot_losses(history: dict, path: str, title: str) -> None:
    """Training loss (mean since the last evaluation) and validation loss against steps."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 4))
    axes.plot(history["step"], history["train"], marker=".", label="training (mean since the "
                                                                    "last point)")
    axes.plot(history["step"], history["validation"], marker="o", label="validation")
    axes.set(xlabel="step", ylabel="cross-entropy (nats per character)", title=title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    save_figure(figure, path)
