"""A guard against PySide6 reference-count bugs that abort the process; any thread.

PySide6 6.12 on CPython 3.11 drops references to singletons it hands back to Python: every
`SignalInstance.emit()` called from Python loses one reference to `True` (it returns `True`
without taking one), and every `None` a Python `data()` returns to Qt loses one reference to
`None`. A few hundred emits or a few thousand painted cells bring them to zero and CPython
aborts with "Fatal Python error: bool_dealloc" (or none_dealloc). CPython 3.12+ makes these
objects immortal, so it is harmless there. `install()` measures whether this PySide leaks and,
if so, gives `True`, `False` and `None` a margin of references no process can spend (2**48).
"""

from __future__ import annotations

import ctypes
import sys
import threading
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Signal

MARGIN = 2**48
_lock = threading.Lock()
_installed = False


class _Probe(QObject):
    fired = Signal()


class _NoneModel(QAbstractListModel):
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 1

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        return None


def leaks() -> bool:
    """Whether this PySide6/CPython pair drops references to True or None."""
    probe, model = _Probe(), _NoneModel()
    index = model.index(0)
    true_before, none_before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(10):
        probe.fired.emit()
        index.data()
    return sys.getrefcount(True) < true_before or sys.getrefcount(None) < none_before


def install() -> bool:
    """Add the margin once if this PySide leaks; True when it did. Idempotent, cheap."""
    global _installed
    with _lock:
        if _installed:
            return False
        _installed = True
        if sys.version_info >= (3, 12) or not leaks():
            return False
        for singleton in (True, False, None):
            # ob_refcnt is the first field of every CPython object (3.11 and older).
            ctypes.c_ssize_t.from_address(id(singleton)).value += MARGIN
        return True
