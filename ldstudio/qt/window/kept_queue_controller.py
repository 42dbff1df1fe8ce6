"""KeptQueueController: jobs waiting at quit are kept (if the user says so) and offered again at
the next start; GUI thread, the queue file read and written through the BackgroundRunner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMessageBox

from ldstudio.core.jobs import load_queue, save_queue, saved_queue_file
from ldstudio.core.request import Request
from ldstudio.qt import kept_queue

if TYPE_CHECKING:
    from ldstudio.qt.main_window import MainWindow


class KeptQueueController(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window

    async def offer_saved_queue(self) -> None:
        """Jobs kept at the last quit: ask, then queue them again or drop them."""
        w = self.window
        try:
            kept = await w.background.run(load_queue)
        except ValueError as exc:  # the file stays as it is, for the user to look at
            w.preview_pane.show_error(f"The jobs kept at the last quit were not read: {exc}")
            return
        if not kept:
            return
        # Asked from a plain callback, not from this task: a modal loop inside a qasync task
        # stops every other task that wakes meanwhile (the model list, the model info).
        w.background.later(lambda: self._ask_restore_kept(kept))

    def _ask_restore_kept(self, kept: list[Request]) -> None:
        restore = kept_queue.ask_restore_queue(self.window, len(kept))
        # Queued again, they are kept anew at the next quit if still waiting.
        self.window.background.call(save_queue, [], then=lambda _: self._restored(kept, restore))

    def _restored(self, kept: list[Request], restore: bool) -> None:
        w = self.window
        if not restore:
            w.statusBar().showMessage(f"{len(kept)} kept job(s) discarded", 6000)
            return
        for request in kept:
            w.background.spawn(w.jobs.run_job(request))
        w.statusBar().showMessage(f"{len(kept)} job(s) from the last session queued", 6000)

    def keep_at_quit(self) -> bool:
        """Closing with jobs waiting: ask whether to keep them, and keep them. False when the
        window stays open (the user said so, or the jobs could not be kept)."""
        w = self.window
        waiting = [job.request for job in w.controller.queue.pending()]
        if not waiting:
            return True
        answer = kept_queue.ask_keep_queue(w, len(waiting))
        if answer == kept_queue.STAY:
            return False
        try:
            save_queue(waiting if answer == kept_queue.KEEP else [])
        except OSError as exc:
            QMessageBox.critical(
                w,
                "Jobs not kept",
                f"The waiting jobs could not be kept in {saved_queue_file()}: {exc}\n\n"
                "ldstudio stays open with them.",
            )
            return False
        return True
