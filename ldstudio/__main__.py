"""Entry point for `ldstudio` / `python -m ldstudio`: no arguments opens the window; GUI thread."""

from __future__ import annotations

import json
import os
import signal
import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl+C (as ldstudio.cli's codes)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        return gui_main()
    # Importing the CLI loads numpy and PIL: a KeyboardInterrupt raised inside a C extension's
    # start-up comes out as an ImportError with a traceback ("PyCapsule_Import could not import
    # module datetime"), so during the import Ctrl+C is only remembered (0.2 s).
    ctrl_c = StartupCtrlC()
    signal.signal(signal.SIGINT, ctrl_c)
    try:
        from ldstudio.cli import main as cli_main
        from ldstudio.cli.common import engine_abandoned
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if ctrl_c.pressed:
        return interrupted(args)
    try:
        code = cli_main(args)
    except KeyboardInterrupt:
        # Ctrl+C before a command handles it itself: while torch imports or a model is
        # checked, say so in one line (and in JSON), not with a traceback from inside torch.
        return interrupted(args)
    if engine_abandoned():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # what was saved is complete (atomic writes); the step is dropped
    return code


def interrupted(args: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not interrupt this
    options = args[: args.index("--")] if "--" in args else args
    command = next((f"ldstudio {arg}" for arg in options if not arg.startswith("-")), "ldstudio")
    sys.stderr.write(f"{command}: interrupted (Ctrl+C)\n")
    if "--json" in options:
        # The shape `ldstudio generate --json` reports a run aborted by Ctrl+C with.
        print(json.dumps({"status": "aborted"}))
    return EXIT_INTERRUPTED


def gui_main() -> int:
    ctrl_c = StartupCtrlC()
    signal.signal(signal.SIGINT, ctrl_c)
    code = _gui_main(ctrl_c)
    if ctrl_c.pressed:
        sys.stderr.write("ldstudio: interrupted (Ctrl+C) while starting the window\n")
        return EXIT_INTERRUPTED
    return code


class StartupCtrlC:
    """SIGINT while the window or the CLI starts: only remembered, and acted on between the
    start-up's steps. A KeyboardInterrupt raised inside PySide6's import is swallowed, or aborts
    the process ("Fatal Python error: libshiboken/signature"); inside numpy's, it becomes an
    ImportError. Once the loop runs, ldstudio.app.CtrlCCloses takes over."""

    def __init__(self) -> None:
        self.pressed = False

    def __call__(self, _signum: int, _frame: object) -> None:
        self.pressed = True


def _gui_main(ctrl_c: StartupCtrlC) -> int:
    # Before Qt loads a platform plugin: without a display or the xcb plugin's system libraries
    # Qt aborts with a core dump and advice to reinstall, which does not help.
    from ldstudio.qt.platform_check import window_problem

    problem = window_problem()
    if ctrl_c.pressed:  # before the problem: Ctrl+C also stops the check's `ldd`
        return EXIT_INTERRUPTED
    if problem is not None:
        sys.stderr.write(problem + "\n")
        return 1
    # Imported here so `ldstudio generate` never loads Qt.
    from ldstudio.app import run

    if ctrl_c.pressed:
        return EXIT_INTERRUPTED
    return run(interrupted=lambda: ctrl_c.pressed)


if __name__ == "__main__":
    sys.exit(main())
