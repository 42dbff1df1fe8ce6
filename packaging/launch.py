"""PyInstaller's entry script: the bundle runs `ldstudio` exactly as the installed command does."""

from __future__ import annotations

import sys

from ldstudio.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
