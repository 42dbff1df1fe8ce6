"""Questions about jobs kept across a quit: keep them on quitting, restore them at start.

Module functions (GUI thread), so tests and scripts can answer them without a modal dialog.
"""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

KEEP, DISCARD, STAY = "keep", "discard", "stay"


def ask_keep_queue(parent: QWidget, count: int) -> str:
    """Quitting with jobs waiting: KEEP them for the next start, DISCARD them, or STAY."""
    box = QMessageBox(QMessageBox.Icon.Question, "Jobs are waiting", "", parent=parent)
    jobs = f"{count} job{'s are' if count != 1 else ' is'}"
    box.setText(f"{jobs} waiting in the queue. Quit anyway?")
    box.setInformativeText(
        "Kept jobs are offered again at the next start. A running job stops at its next step "
        "either way; the images it saved stay in the library."
    )
    keep = box.addButton("Quit and &keep them for next time", QMessageBox.ButtonRole.AcceptRole)
    discard = box.addButton("Quit and &discard them", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(keep)
    box.exec()
    return {id(keep): KEEP, id(discard): DISCARD}.get(id(box.clickedButton()), STAY)


def ask_restore_queue(parent: QWidget, count: int) -> bool:
    """At start, jobs kept at the last quit: True to queue them again, False to discard them."""
    box = QMessageBox(QMessageBox.Icon.Question, "Jobs from the last session", "", parent=parent)
    box.setText(f"{count} job{'s were' if count != 1 else ' was'} waiting when ldstudio quit.")
    restore = box.addButton(
        f"&Restore the {count} queued job{'s' if count != 1 else ''}",
        QMessageBox.ButtonRole.AcceptRole,
    )
    box.addButton("&Discard them", QMessageBox.ButtonRole.DestructiveRole)
    box.setDefaultButton(restore)
    box.exec()
    return box.clickedButton() is restore
