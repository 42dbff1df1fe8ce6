"""The headless command line: one module per command, registered here.

Exit codes: 0 done, 1 runtime failure, 2 bad input, 130 cancelled with Ctrl+C.
"""

from __future__ import annotations

import argparse
import sys

from ldstudio import __version__
from ldstudio.cli import gallery, generate, info, models
from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_OK, BadInput

# Each command module exposes add_parser(subparsers) and sets `handler` on its parser.
COMMANDS = (generate, info, gallery, models)


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
    except BadInput as exc:
        sys.stderr.write(f"ldstudio {args.command}: error: {exc}\n")
        return EXIT_BAD_INPUT
    return code
