"""``mnn generate``: text from a language model that ``mnn train-lm --save`` wrote.

The checkpoint holds the model and its vocabulary (older ones keep the vocabulary
beside it, ``<checkpoint>.vocab.json``). The prompt is encoded with that
vocabulary, ``-n`` characters are sampled after it (``GPT.generate``: temperature,
top-k, a seed), and the prompt and its continuation are printed, nothing else, so
that the output can go straight into a file or a pipe.
"""

from __future__ import annotations

import os

import mnn
from mnn.cli.common import (
    CommandError,
    add_target_arguments,
    check_finite_non_negative,
    resolve_target,
)
from mnn.cli.train_lm import MAX_SAMPLE_LENGTH, language_model
from mnn.data import DataError


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="a .safetensors file written by 'mnn train-lm --save'")
    parser.add_argument("--prompt", default=None,
                        help="the text to continue (default: the vocabulary's first character, "
                             "a newline for most texts)")
    parser.add_argument("-n", type=int, default=200,
                        help=f"characters to sample after the prompt (200; at most "
                             f"{MAX_SAMPLE_LENGTH:,})")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="sampling temperature (0.8; 0 takes the most likely character)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="sample from the k most likely characters only")
    parser.add_argument("--seed", type=int, default=0, help="seeds the sampling (0)")
    add_target_arguments(parser)


def run(args) -> int:
    if not 0 <= args.n <= MAX_SAMPLE_LENGTH:
        raise CommandError(f"-n must be between 0 and {MAX_SAMPLE_LENGTH:,} characters (each is "
                           f"one forward pass), got {args.n}")
    check_finite_non_negative("--temperature", "the temperature", args.temperature)
    if args.top_k is not None and args.top_k < 1:
        raise CommandError(f"--top-k must be at least 1, got {args.top_k}")
    if not 0 <= args.seed < 2**63:
        raise CommandError(f"--seed must be a non-negative integer below 2**63, got {args.seed}")
    if args.prompt == "":
        raise CommandError("--prompt must not be empty: the text continues from it")
    path = os.fspath(args.checkpoint)
    found = language_model(path, *mnn.load(path, with_metadata=True))
    vocabulary = found.vocabulary
    try:
        prompt = vocabulary.encode(vocabulary.characters[0] if args.prompt is None
                                   else args.prompt)
    except DataError as error:
        raise CommandError(f"--prompt: {error} ({path})") from None
    backend, device = resolve_target(args.backend, args.device)
    found.model.to(xp=backend.name, device=device)
    where = mnn.backends.Placement.of(next(iter(found.model.state_dict().values())))
    ids = found.gpt.generate(where.from_host(prompt), args.n, args.temperature, args.top_k,
                             rng=args.seed)
    print(vocabulary.decode(ids))
    return 0
