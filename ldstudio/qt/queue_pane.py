"""QueuePane: the running and pending jobs, with cancel one / cancel all; GUI thread.

Each job reads "#3 · running · a red circle"; a job that is not txt2img says what it does first
("#4 · waiting · upscale ×4 · a red circle", "· inpaint ·"), as its prompt may be empty.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core.jobs import Job, JobState
from ldstudio.core.request import KIND_TXT2IMG, Request

JobIdRole = Qt.ItemDataRole.UserRole + 1
PROMPT_SHOWN = 48  # characters of a prompt in its row (the tooltip has all of it)


def job_face_text(request: Request) -> str:
    """What a job does, when it is not txt2img: "upscale ×4", "img2img", "outpaint"; "" else."""
    face = request.face
    if face == KIND_TXT2IMG:
        return ""
    if request.upscale is not None:
        return f"{face} ×{request.upscale.scale}"
    return face


def job_text(job: Job, status: str) -> str:
    prompt = job.params.prompt.replace("\n", " ")
    if len(prompt) > PROMPT_SHOWN:
        prompt = prompt[: PROMPT_SHOWN - 1] + "…"
    face = job_face_text(job.request)
    if not face:
        return f"#{job.id} · {status} · {prompt}"
    return " · ".join(part for part in (f"#{job.id}", status, face, prompt) if part)


class QueuePane(QWidget):
    cancel_requested = Signal(int)  # job id
    cancel_all_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel()
        self.list = QListWidget()
        self.list.setObjectName("queue")
        self.list.setToolTip("Jobs waiting or running; Delete cancels the selected one")
        self.title.setBuddy(self.list)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setWordWrap(False)
        self.cancel_button = QPushButton("Cancel selected")
        self.cancel_button.setToolTip("Cancel the selected job (Delete)")
        self.cancel_button.clicked.connect(self._cancel_selected)
        self.cancel_all_button = QPushButton("Cancel all")
        self.cancel_all_button.setToolTip(
            "Cancel the running job and every waiting one (Shift+Esc)"
        )
        self.cancel_all_button.clicked.connect(self.cancel_all_requested)
        delete = QShortcut(QKeySequence.StandardKey.Delete, self.list)
        delete.setContext(Qt.ShortcutContext.WidgetShortcut)
        delete.setWhatsThis("Cancel the selected job")
        delete.activated.connect(self._cancel_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.cancel_all_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self.set_jobs([], {})

    def set_jobs(self, jobs: list[Job], progress: dict[int, str]) -> None:
        """Show `jobs` (running first); `progress` maps a job id to a short status text."""
        selected = self.selected_job_id()
        self.list.clear()
        for job in jobs:
            running = job.state is JobState.RUNNING
            status = progress.get(job.id, "running" if running else "waiting")
            item = QListWidgetItem(job_text(job, status))
            item.setData(JobIdRole, job.id)
            face = job_face_text(job.request)
            item.setToolTip(f"{face}: {job.params.prompt}" if face else job.params.prompt)
            self.list.addItem(item)
            if job.id == selected:
                self.list.setCurrentItem(item)
        count = len(jobs)
        self.title.setText(f"&Queue — {count} job{'s' if count != 1 else ''}")
        self.cancel_button.setEnabled(count > 0)
        self.cancel_all_button.setEnabled(count > 0)

    def selected_job_id(self) -> int | None:
        item = self.list.currentItem()
        return None if item is None else int(item.data(JobIdRole))

    def _cancel_selected(self) -> None:
        job_id = self.selected_job_id()
        if job_id is None and self.list.count():
            job_id = int(self.list.item(0).data(JobIdRole))
        if job_id is not None:
            self.cancel_requested.emit(job_id)
