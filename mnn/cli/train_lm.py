"""``mnn train-lm``: a character-level language model (a GPT, or with ``--model lstm|gru`` a
``RecurrentLM``) on any backend, by default on Python's own help text.

The corpus is ``pydoc_data.topics`` (the text of ``help('topics')``, shipped with every
Python; its size depends on the version: 465,048 characters on 3.11) or ``--text
FILE``, a regular UTF-8 file of at most ``--max-text-mb`` megabytes. Its first 90%
trains, the last 10% validates. Each step draws ``--batch-size`` random windows of
``--context`` characters (the labels: the same windows shifted by one), and AdamW
takes one step on the mean cross-entropy over (batch, time, vocabulary).

Every ``--eval-every`` steps: the validation loss (mean over ``--eval-batches``
batches of windows, the same ones every time, in eval mode), a sample from the
model, and with ``--save`` a checkpoint: model, optimizer and vocabulary in one
file, written atomically (the vocabulary, and what the model was trained on, are
entries of the safetensors metadata). At the end: the loss curves as an image
(``--plot``). The loop itself (steps, progress bar, time limit, checkpoints) is
``mnn.training``'s; this file holds the text, the model, the evaluation and what is
printed, and ``language_model``, which ``mnn generate`` and ``mnn evaluate`` use to
read such a checkpoint back.

Every option is checked before the first step, the sizes included: the model and
one step must fit in this machine's memory (an estimate, from the flags), and
``--sample-length`` and ``--eval-batches``, each a forward pass per unit at every
evaluation, are bounded (``MAX_SAMPLE_LENGTH``, ``MAX_EVAL_BATCHES``).
"""

from __future__ import annotations

import json
import math
import os
from typing import NamedTuple

import numpy as np

import mnn
from mnn import training
from mnn.checks import in_words, physical_memory
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
from mnn.data import CharacterVocabulary, DataError, TextWindows, pydoc_corpus
from mnn.data.text import read_text
from mnn.errors import CheckpointError, MnnError
from mnn.initializers import skip_init
from mnn.serialization import MAX_LAYERS

DEFAULT_PLOT = "<corpus>-lm-curves.png"
VALIDATION_SHARE = 0.1
#: The name of the default corpus, in messages and in a checkpoint's metadata.
PYDOC = "pydoc-topics"
#: ``--max-text-mb``'s default: a text costs about 2 to 3 bytes a character in memory.
DEFAULT_MAX_TEXT_MB = 100
#: The longest ``--sample-length`` and the most ``--eval-batches``: each character of a
#: sample, and each batch, is one forward pass of the model at every evaluation.
MAX_SAMPLE_LENGTH = 10_000
MAX_EVAL_BATCHES = 1_000
#: Metadata keys of a train-lm checkpoint: the vocabulary's characters in id order, and
#: the corpus (``PYDOC``, or the absolute path of the ``--text`` file).
VOCABULARY_KEY = "vocabulary"
CORPUS_KEY = "corpus"
#: Where checkpoints written before the vocabulary moved into the metadata keep it:
#: ``<checkpoint><suffix>``, the JSON ``{"characters": ...}``; read when the metadata has none.
VOCABULARY_SUFFIX = ".vocab.json"
#: ``--model``'s choices and the ``--layers`` each gets by default.
MODELS = {"gpt": 4, "lstm": 2, "gru": 2}


def add_arguments(parser) -> None:
    parser.add_argument("--text", default=None, metavar="FILE",
                        help="train on this UTF-8 text file (default: Python's pydoc_data.topics, "
                             "about 465k characters, no download)")
    parser.add_argument("--max-text-mb", type=int, default=DEFAULT_MAX_TEXT_MB, metavar="MB",
                        help=f"refuse a --text file larger than this many megabytes "
                             f"(default: {DEFAULT_MAX_TEXT_MB}; a text costs about 2 to 3 bytes "
                             f"a character in memory)")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps (1000)")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="stop training after this many seconds (evaluation included)")
    parser.add_argument("--context", type=int, default=64, help="characters per window (64)")
    parser.add_argument("--d-model", type=int, default=128, help="model width (128)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (4)")
    parser.add_argument("--model", choices=sorted(MODELS), default="gpt",
                        help="gpt: a Transformer (mnn.GPT); lstm or gru: Embedding, a recurrent "
                             "stack of width --d-model, Linear (mnn.RecurrentLM) (gpt)")
    parser.add_argument("--layers", type=int, default=None,
                        help=f"Transformer blocks or recurrent layers ({MODELS['gpt']} for the "
                             f"GPT, {MODELS['lstm']} for an LSTM or a GRU)")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout probability (0)")
    parser.add_argument("--weight-decay", type=float, default=0.01,
                        help="AdamW weight decay (0.01, as torch)")
    parser.add_argument("--eval-every", type=int, default=100,
                        help="steps between validation losses and samples (100)")
    parser.add_argument("--eval-batches", type=int, default=10,
                        help=f"batches of validation windows per evaluation (10; at most "
                             f"{MAX_EVAL_BATCHES:,})")
    parser.add_argument("--sample-length", type=int, default=200,
                        help=f"characters per sample (200; 0: no samples; at most "
                             f"{MAX_SAMPLE_LENGTH:,})")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="sampling temperature (0.8; 0 takes the most likely character)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="sample from the k most likely characters only")
    parser.add_argument("--prompt", default=None,
                        help="what samples start from (default: the text's first character)")
    add_training_arguments(parser, DEFAULT_PLOT)


def run(args) -> int:
    if args.layers is None:
        args.layers = MODELS[args.model]
    _check_arguments(args)
    check_output_path("--save", args.save)
    args.plot = plot_destination(args.plot, DEFAULT_PLOT, f"{short_name(args.text)}-lm-curves.png")
    backend, device = resolve_target(args.backend, args.device)
    limit_threads(backend, args.threads)
    vocabulary, tokens = _tokens(corpus_text(args.text, args.max_text_mb))
    corpus = short_name(args.text)
    first = vocabulary.decode(tokens[:1])
    prompt = vocabulary.encode(first if args.prompt is None else args.prompt)  # checked now
    split = validation_split(len(tokens), args.context)
    if split < args.context + 1:
        raise CommandError(f"the text has {len(tokens)} characters: too few for training and "
                           f"validation windows of {args.context} (--context)")
    _check_sizes(args, len(vocabulary))
    where = mnn.backends.Placement.named(backend, device, args.dtype)
    train = TextWindows(where.from_host(tokens[:split]), args.context, args.batch_size,
                        rng=args.seed)
    held_out = where.from_host(tokens[split:])

    lm = build_model(args, len(vocabulary))
    model = mnn.SequentialLayers([lm, mnn.CrossEntropyLossLayer(axis=-1)])
    model.to(xp=backend.name, device=device, dtype=args.dtype)
    optimizer = mnn.optim.AdamW(model, lr=learning_rate(args.lr, "adamw"),
                                weight_decay=args.weight_decay)
    n_params = sum(math.prod(p.shape) for p in model.state_dict().values())
    print(f"mnn {mnn.__version__}: {corpus} ({len(tokens)} characters, vocabulary "
          f"{len(vocabulary)}), {describe_model(args)}, context {args.context}, "
          f"{n_params} parameters, on {backend.name} {device} "
          f"{args.dtype}, {optimizer!r}, batch {args.batch_size}, seed {args.seed}", flush=True)

    history: dict[str, list[float]] = {"step": [], "seconds": [], "train": [], "validation": []}

    def after_round(done: training.Round) -> None:
        """The validation loss and a sample, every ``--eval-every`` steps and at the end."""
        history["step"].append(done.steps)
        history["train"].append(done.loss)
        validation = TextWindows(held_out, args.context, args.batch_size, rng=args.seed + 1)
        history["validation"].append(  # the same windows every time: the same seed
            mean_loss(model, (validation.sample() for _ in range(args.eval_batches))))
        history["seconds"].append(done.elapsed())
        print(f"step {done.steps}/{args.steps}: train loss {done.loss:.4f}, validation loss "
              f"{history['validation'][-1]:.4f} ({history['seconds'][-1]:.0f} s)", flush=True)
        if args.sample_length:
            sample = lm.generate(where.from_host(prompt), args.sample_length, args.temperature,
                                  args.top_k, rng=args.seed + done.steps)
            print(f"sample: {vocabulary.decode(sample)!r}", flush=True)

    checkpoint = None
    if args.save:
        origin = PYDOC if args.text is None else os.path.abspath(args.text)
        checkpoint = training.Checkpoint(args.save, model, optimizer, metadata={
            VOCABULARY_KEY: vocabulary.characters, CORPUS_KEY: origin})
    finished = training.train(training.plain_step(model, optimizer),
                              training.steps(train.sample, args.steps, args.eval_every),
                              after_round, unit="step", progress=not args.no_progress,
                              time_limit=args.time_limit, checkpoint=checkpoint,
                              checkpoint_every=1)
    if finished.out_of_time:
        print(f"stopped after {_steps(finished.steps)}: --time-limit {args.time_limit:g} s",
              flush=True)
    print(f"validation loss {history['validation'][-1]:.4f} nats per character after "
          f"{_steps(finished.steps)} in {history['seconds'][-1]:.1f} s on {backend.name} "
          f"{device} {args.dtype}")
    if args.save:
        print(f"saved the model, the optimizer and the vocabulary to {args.save}")
    if args.plot:
        plot_losses(history, args.plot, f"{corpus}, {describe_model(args)}, "
                                        f"{backend.name} {device} {args.dtype}")
        print(f"wrote the loss curves to {args.plot}")
    return 0


def build_model(args, vocabulary_size: int) -> mnn.GPT | mnn.RecurrentLM:
    """The language model that ``--model`` names, without its loss."""
    if args.model == "gpt":
        return mnn.GPT(vocabulary_size, args.context, args.d_model, args.heads, args.layers,
                       dropout=args.dropout, rng=args.seed)
    return mnn.RecurrentLM(vocabulary_size, args.context, args.d_model, args.layers,
                           cell=args.model, rng=args.seed)


def describe_model(args) -> str:
    """The model in one phrase, for the first line and the plot's title."""
    if args.model == "gpt":
        return f"GPT {args.layers}x{args.d_model} with {args.heads} heads"
    return f"{args.model.upper()} {args.layers}x{args.d_model}"


def _steps(count: int) -> str:
    return f"{count} step{'s' * (count != 1)}"


def _check_arguments(args) -> None:
    """The values of the options on their own, before anything is read or built."""
    check_at_least_one(args, "steps", "context", "d_model", "heads", "layers", "eval_every",
                       "eval_batches", "max_text_mb")
    check_training_arguments(args)
    check_finite_non_negative("--weight-decay", "the weight decay", args.weight_decay)
    check_finite_non_negative("--temperature", "the temperature", args.temperature)
    check_finite_non_negative("--time-limit", "the time limit in seconds", args.time_limit)
    if args.d_model % args.heads:
        raise CommandError(f"--d-model ({args.d_model}) must be divisible by --heads "
                           f"({args.heads})")
    if not 0.0 <= args.dropout < 1.0:
        raise CommandError(f"--dropout must be in [0, 1), got {args.dropout}")
    if not 0 <= args.sample_length <= MAX_SAMPLE_LENGTH:
        raise CommandError(f"--sample-length must be between 0 and {MAX_SAMPLE_LENGTH:,} "
                           f"characters (each is one forward pass), got {args.sample_length}")
    if args.eval_batches > MAX_EVAL_BATCHES:
        raise CommandError(f"--eval-batches must be at most {MAX_EVAL_BATCHES:,} (each is one "
                           f"forward pass at every evaluation), got {args.eval_batches}")
    if args.top_k is not None and args.top_k < 1:
        raise CommandError(f"--top-k must be at least 1, got {args.top_k}")
    if args.prompt == "":
        raise CommandError("--prompt must not be empty: samples continue from it")


def _check_sizes(args, vocabulary_size: int) -> None:
    """The sizes the options ask for, before anything is built: the model and one step fit
    in this machine's memory.

    The model is counted on placeholders (``skip_init``: no memory): one block is built,
    and the others are like it. A step keeps, for the backward pass, about ``h T + 2 H +
    12 D`` numbers per position and block (the attention weights, the MLP's hidden
    activations before and after GELU, and the ``D``-wide arrays) and the logits with
    their softmax, ``2 V`` per position; AdamW adds two moments and the gradients to the
    weights: four numbers per parameter. An LSTM or a GRU keeps about ``8 H`` numbers per
    position and layer (its gates, cell and states at every step).
    """
    if args.model == "gpt":
        parameters, per_position = _gpt_sizes(args, vocabulary_size)
    else:
        parameters, per_position = _recurrent_sizes(args, vocabulary_size)
    positions = args.batch_size * args.context
    size = np.dtype(args.dtype).itemsize * (4 * parameters + positions * per_position)
    memory = physical_memory()
    if memory is not None and size > memory:
        raise CommandError(
            f"the model ({parameters:,} parameters) and one step (--batch-size "
            f"{args.batch_size} windows of --context {args.context}) need about "
            f"{in_words(size)} in {args.dtype}, more than the {in_words(memory)} of memory "
            f"this machine has; lower --batch-size, --context, --d-model or --layers")


def _recurrent_sizes(args, vocabulary_size: int) -> tuple[int, int]:
    """``(parameters, numbers kept per position)`` of ``--model lstm`` or ``gru``."""
    with skip_init():
        try:
            model = build_model(args, vocabulary_size)
        except MnnError as error:
            raise CommandError(f"an {args.model.upper()} with --d-model {args.d_model}, "
                               f"--layers {args.layers} and a vocabulary of "
                               f"{vocabulary_size}: {error}") from None
    return _count(model), args.layers * 8 * args.d_model + 2 * vocabulary_size


def _gpt_sizes(args, vocabulary_size: int) -> tuple[int, int]:
    """``(parameters, numbers kept per position)`` of ``--model gpt``."""
    with skip_init():
        try:
            one_block = mnn.GPT(vocabulary_size, args.context, args.d_model, args.heads, 1,
                                dropout=args.dropout)
        except MnnError as error:
            raise CommandError(f"a GPT with --d-model {args.d_model}, --heads {args.heads}, "
                               f"--context {args.context} and a vocabulary of "
                               f"{vocabulary_size}: {error}") from None
    block = one_block.blocks[0]
    layers = len(one_block.named_layers()) + (args.layers - 1) * len(block.named_layers())
    if layers > MAX_LAYERS:  # mnn.load would refuse the checkpoint
        raise CommandError(f"--layers {args.layers} makes a GPT of {layers:,} layers (sublayers "
                           f"included), more than the {MAX_LAYERS:,} that mnn.load builds from "
                           f"a checkpoint; lower --layers")
    parameters = _count(one_block) + (args.layers - 1) * _count(block)
    per_position = (args.layers * (args.heads * args.context + 2 * 4 * args.d_model
                                   + 12 * args.d_model) + 2 * vocabulary_size)
    return parameters, per_position


def _count(layer) -> int:
    """The numbers in a layer's parameters."""
    return sum(math.prod(p.shape) for p in layer.state_dict().values())


def corpus_text(path: str | None, max_text_mb: int) -> str:
    """The text of ``--text`` ``path`` (None: the pydoc corpus), errors naming ``--text``."""
    if path is None:
        return pydoc_corpus()
    try:
        return read_text(path, max_text_mb * 10**6, limit="--max-text-mb")
    except DataError as error:
        raise CommandError(f"--text {error}") from None


def _tokens(text: str) -> tuple[CharacterVocabulary, np.ndarray]:
    """The vocabulary of ``text`` and its tokens, one byte a character up to 256 distinct
    characters (``CharacterVocabulary.dtype``); the text itself is not kept."""
    vocabulary = CharacterVocabulary(text)
    return vocabulary, vocabulary.encode(text, vocabulary.dtype)


def validation_split(length: int, context: int) -> int:
    """Where the validation part of a text of ``length`` tokens starts: the last
    ``VALIDATION_SHARE`` of it, at least one window of ``context`` and its label."""
    return length - max(context + 1, int(VALIDATION_SHARE * length))


def short_name(path: str | None) -> str:
    """The corpus in messages and file names: ``PYDOC``, or the text file's name without its
    suffix."""
    if path is None:
        return PYDOC
    return path.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0] or "text"


def mean_loss(model, batches) -> float:
    """The mean loss of ``model`` (ending in its loss) over ``batches`` of ``(inputs,
    labels)``, each batch's loss counted once, in eval mode (no dropout); training mode
    afterwards."""
    model.eval()
    try:
        return float(np.mean([float(model(inputs, labels)) for inputs, labels in batches]))
    finally:
        model.train()


# --- reading a train-lm checkpoint back: mnn generate, mnn evaluate --------------------------


class LanguageModel(NamedTuple):
    """A checkpoint of ``mnn train-lm`` (or any GPT saved with a vocabulary), as loaded."""

    model: mnn.BaseLayer  #: what the file holds: the GPT, alone or first in a SequentialLayers
    gpt: mnn.GPT | mnn.RecurrentLM  #: the language model that ``generate`` samples from
    vocabulary: CharacterVocabulary
    corpus: str | None  #: ``PYDOC``, a text file's absolute path, or None: not recorded


#: The classes ``mnn generate`` and ``mnn evaluate`` read from a checkpoint.
LANGUAGE_MODELS = (mnn.GPT, mnn.RecurrentLM)


def find_gpt(model) -> mnn.GPT | None:
    """The GPT or RecurrentLM of ``model``: the model itself, or the first layer of a
    SequentialLayers."""
    if isinstance(model, LANGUAGE_MODELS):
        return model
    if isinstance(model, mnn.SequentialLayers) and len(model) and isinstance(model[0],
                                                                           LANGUAGE_MODELS):
        return model[0]
    return None


def language_model(path: str, model, metadata: dict[str, str]) -> LanguageModel:
    """The model loaded from ``path`` (``mnn.load(path, with_metadata=True)``) with its
    vocabulary; a ``CheckpointError`` when the vocabulary is missing or does not fit the
    model's ``vocab_size``.

    The vocabulary is the metadata's ``VOCABULARY_KEY`` entry, or, for checkpoints that
    kept it in a file beside them, ``<path>.vocab.json``.
    """
    gpt = find_gpt(model)
    if gpt is None:
        raise CheckpointError(f"{path}: not a language model (a GPT or a RecurrentLM, alone or "
                              f"first in a SequentialLayers), but a {type(model).__name__}")
    characters = metadata.get(VOCABULARY_KEY)
    if characters is None:
        characters = _vocabulary_beside(path)
    vocabulary = CharacterVocabulary(characters) if characters else None
    if vocabulary is None or vocabulary.characters != characters:
        raise CheckpointError(f"{path}: the stored vocabulary is not a sorted string of "
                              f"distinct characters: {characters[:80]!r}")
    if len(vocabulary) != gpt.vocab_size:
        raise CheckpointError(f"{path}: the vocabulary has {len(vocabulary)} characters, but "
                              f"the model's vocab_size is {gpt.vocab_size}: they do not belong "
                              f"together")
    return LanguageModel(model, gpt, vocabulary, metadata.get(CORPUS_KEY))


def _vocabulary_beside(path: str) -> str:
    """The characters of ``<path>.vocab.json``, the vocabulary file of older checkpoints."""
    beside = f"{path}{VOCABULARY_SUFFIX}"
    try:
        record = json.loads(read_text(beside, 64 * 10**6))
    except DataError as error:
        raise CheckpointError(f"{path}: no vocabulary in the checkpoint's metadata, and none "
                              f"beside it ({error}); was it written by mnn train-lm?") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{beside}: not JSON ({error})") from None
    if not isinstance(record, dict) or not isinstance(record.get("characters"), str):
        raise CheckpointError(f"{beside}: expected {{\"characters\": \"...\"}}, got "
                              f"{str(record)[:80]}")
    return record["characters"]


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
