"""Entry point for `ldstudio` and `python -m ldstudio`: a command runs the CLI."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from ldstudio.cli import main as cli_main

    return cli_main(sys.argv[1:] if argv is None else argv)


def gui_main() -> int:
    return main([])


if __name__ == "__main__":
    sys.exit(main())
