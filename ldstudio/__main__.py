"""Entry point for `ldstudio` / `python -m ldstudio`: no arguments opens the window; GUI thread."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        return gui_main()
    from ldstudio.cli import main as cli_main

    return cli_main(args)


def gui_main() -> int:
    # Imported here so `ldstudio generate` never loads Qt.
    from ldstudio.app import run

    return run()


if __name__ == "__main__":
    sys.exit(main())
