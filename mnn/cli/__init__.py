"""The ``mnn`` command: ``mnn train``, ``train-lm``, ``generate``, ``evaluate``, ``info`` and
``check``.

Each subcommand lives in its own file, with an ``add_arguments(parser)`` and a
``run(args)``. Bad input (an unknown backend, a device that is not present, a
missing or corrupt file, a data directory without the IDX files, a library that
is not installed) ends the command with one line ``mnn: error: ...`` on stderr
and exit status 1 (2 for a malformed command line, or none at all: plain ``mnn``
prints the help and exits 2, as argparse does for a missing subcommand), never with
a traceback. A warning (a broken third-party backend, skipped) is one line
``mnn: warning: ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from mnn.cli import check, evaluate, generate, info, train, train_lm
from mnn.cli.common import CommandError, warn
from mnn.errors import MnnError

COMMANDS = {
    "train": (train, "train a network (digits by default) and report its test accuracy"),
    "train-lm": (train_lm, "train a character-level GPT (on Python's help text by default) and "
                           "sample from it"),
    "generate": (generate, "text from a language model saved by train-lm"),
    "evaluate": (evaluate, "a saved model's test accuracy and confusion matrix, or a language "
                           "model's validation loss and perplexity"),
    "info": (info, "backends, versions and devices present on this machine"),
    "check": (check, "gradient checks of every layer on every backend and device present"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (argparse prints the usage too)."""

    def error(self, message):
        _fail(f"{message} (see '{self.prog} --help')", status=2)


def _fail(message: str, status: int = 1):
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    sys.stderr.write(f"mnn: error: {'; '.join(lines)}\n")  # one write: ranks' lines stay whole
    raise SystemExit(status)


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="mnn", description="mnn (Manual Neural Networks): hand-written backward "
                                          "passes on any array API backend.")
    from mnn import __version__

    top.add_argument("--version", action="version", version=f"mnn {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, summary) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return top


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the command: one line, without the source location."""
    text = str(message)
    warn(text.removeprefix("mnn: ") if text.startswith("mnn: ")
         else f"{category.__name__}: {text}")


def main(argv=None) -> int:
    with warnings.catch_warnings():  # the process's own warning display comes back after
        warnings.showwarning = _show_warning
        return _main(argv)


def _main(argv) -> int:
    top = parser()
    args = top.parse_args(argv)
    if args.command is None:
        top.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader went away (mnn ... | head): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CommandError, MnnError, OSError) as error:
        _fail(str(error) or type(error).__name__)
    except KeyboardInterrupt:
        _fail("interrupted", status=130)
