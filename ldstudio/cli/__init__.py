"""The headless command line: one module per command, registered here.

Exit codes: 0 done, 1 runtime failure, 2 bad input, 130 cancelled with Ctrl+C, 141 output
cut short by a closed pipe (`ldstudio library list | head -1`).
"""

from __future__ import annotations

import argparse
import os
import sys

from ldstudio import __version__
from ldstudio.cli import batch, generate, grid, info, library, models, serve, styles, upscale
from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_OK, BadInput

# Each command module exposes add_parser(subparsers) and sets `handler` on its parser.
COMMANDS = (generate, upscale, info, library, models, styles, grid, batch, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldstudio",
        description="ldstudio: latent-diffusion image generation.",
    )
    parser.add_argument("--version", action="version", version=f"ldstudio {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        code: int = args.handler(args)
        # Flush here: a reader that went away shows up now, not as a traceback at exit.
        sys.stdout.flush()
    except BadInput as exc:
        sys.stderr.write(f"ldstudio {args.command}: error: {exc}\n")
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    return code


def _drop_stdout() -> None:
    """Point stdout at devnull, as Python's docs advise for SIGPIPE: the interpreter's final
    flush of what is still buffered would otherwise fail again and print a traceback."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (a test's capture): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
