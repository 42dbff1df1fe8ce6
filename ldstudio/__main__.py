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
    # Before Qt loads a platform plugin: without a display or the xcb plugin's system libraries
    # Qt aborts with a core dump and advice to reinstall, which does not help.
    from ldstudio.qt.platform_check import window_problem

    problem = window_problem()
    if problem is not None:
        sys.stderr.write(problem + "\n")
        return 1
    # Imported here so `ldstudio generate` never loads Qt.
    from ldstudio.app import run

    return run()


if __name__ == "__main__":
    sys.exit(main())
