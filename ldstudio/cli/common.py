"""Exit codes and the bad-input error shared by every CLI command."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130


class BadInput(Exception):
    """A command-line value that is not allowed; the message says what and why (exit 2)."""
