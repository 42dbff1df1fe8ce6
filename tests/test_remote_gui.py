"""Settings → Engine: switching the window to an ldstudio server (a real `ldstudio serve` with the
fake backend behind it) and back to this computer; a server that is down leaves the window
usable and the next job connects again."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from api_support import running_server
from gui_support import generate, make_window, qt_loop
from PySide6.QtWidgets import QDialogButtonBox

from ldstudio.api.app import create_app
from ldstudio.api.server import ServerThread
from ldstudio.app import DiffusersEngine
from ldstudio.core.backend import BlobSource
from ldstudio.core.events import JobFailed, JobFinished
from ldstudio.core.models import ModelFolderStore
from ldstudio.core.options import EngineOptions
from ldstudio.core.settings import ENGINE_LOCAL, ENGINE_SERVER, Settings, load_settings
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.engine_options import EngineEnvironment, EngineOptionsDialog
from ldstudio.qt.window import jobs_controller

pytestmark = pytest.mark.gui
__all__ = ["make_window", "qt_loop"]  # fixtures used by name

TIMEOUT_MS = 20_000


class LocalFakes:
    """This computer's backend in these tests: a fake, built by the engine like the real one."""

    def __init__(self) -> None:
        self.built: list[FakeBackend] = []

    def __call__(
        self, options: EngineOptions, blobs: BlobSource | None
    ) -> tuple[FakeBackend, EngineEnvironment, str]:
        backend = FakeBackend(blobs=blobs)
        self.built.append(backend)
        return backend, EngineEnvironment(("cpu",), "CPU · fp32"), "CPU · fp32"

    def jobs(self) -> int:
        return sum(len(backend.jobs_run) for backend in self.built)


def engine_dialog(window) -> EngineOptionsDialog:  # type: ignore[no-untyped-def]
    dialog = window.preferences.open_engine_options()
    assert isinstance(dialog, EngineOptionsDialog)
    return dialog


def choose_server(
    dialog: EngineOptionsDialog, url: str, user: str = "", password: str = ""
) -> None:
    dialog.server_radio.setChecked(True)
    dialog.url_edit.setText(url)
    dialog.user_edit.setText(user)
    dialog.password_edit.setText(password)


def press_ok(dialog: EngineOptionsDialog) -> None:
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert ok.isEnabled(), ok.toolTip()
    ok.click()


def picker_labels(window) -> list[str]:  # type: ignore[no-untyped-def]
    combo = window.params_pane.model_combo
    return [combo.itemText(i) for i in range(combo.count())]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_engine_switches_to_a_server_and_back(
    qtbot, make_window, tmp_path: Path, tiny_model: Path, caplog
) -> None:
    ModelFolderStore(folders=[str(tiny_model.parent)]).save()  # the server lists tiny-sd
    caplog.set_level(logging.DEBUG)
    local = LocalFakes()
    server_fake = FakeBackend()
    with running_server(
        server_fake, tmp_path / "server", credentials=("ann", "pa55word")
    ) as server:
        window = make_window(DiffusersEngine(EngineOptions(), build_local=local))
        qtbot.waitUntil(lambda: window.device_label.text() == "CPU · fp32", timeout=TIMEOUT_MS)
        assert isinstance(generate(qtbot, window, "a fox here"), JobFinished)
        assert local.jobs() == 1

        dialog = engine_dialog(window)
        assert dialog.local_radio.isChecked() and not dialog.server_fields.isEnabled()
        assert "settings file" in dialog.password_edit.toolTip()
        choose_server(dialog, "gpu-box:7860")
        assert "has no http://" in dialog.server_problem.text()
        assert not dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
        choose_server(dialog, server.url, "ann", "pa55word")
        assert not dialog.local_box.isEnabled()  # this computer's options wait for later
        press_ok(dialog)
        qtbot.waitUntil(lambda: load_settings().engine == ENGINE_SERVER, timeout=TIMEOUT_MS)
        saved = load_settings()
        assert (saved.server_url, saved.server_user, saved.server_password) == (
            server.url,
            "ann",
            "pa55word",
        )
        # The picker lists the server's models.
        qtbot.waitUntil(
            lambda: "tiny-sd — on the server" in picker_labels(window), timeout=TIMEOUT_MS
        )
        assert picker_labels(window)[0].endswith("(bundled, on the server)")

        outcome = generate(qtbot, window, "a fox there")
        assert isinstance(outcome, JobFinished), outcome
        assert local.jobs() == 1 and server.saved() == 1
        [record] = outcome.records
        assert record.path.is_relative_to(window.settings.library_dir())
        qtbot.waitUntil(
            lambda: window.device_label.text() == f"server {server.url} · cpu fp32",
            timeout=TIMEOUT_MS,
        )
        # A model only the server has: this computer's model check does not refuse it.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                jobs_controller, "model_problems", lambda request: ["tiny-sd is not here"]
            )
            assert isinstance(generate(qtbot, window, "a fox on the server only"), JobFinished)
        assert server.saved() == 2

        dialog = engine_dialog(window)
        assert dialog.server_radio.isChecked() and dialog.url_edit.text() == server.url
        dialog.local_radio.setChecked(True)
        press_ok(dialog)
        qtbot.waitUntil(lambda: load_settings().engine == ENGINE_LOCAL, timeout=TIMEOUT_MS)
        assert load_settings().server_url == server.url  # kept for switching back
        qtbot.waitUntil(
            lambda: not any("on the server" in label for label in picker_labels(window)),
            timeout=TIMEOUT_MS,
        )
        assert isinstance(generate(qtbot, window, "a fox here again"), JobFinished)
        assert local.jobs() == 2 and server.saved() == 2
        qtbot.waitUntil(lambda: window.device_label.text() == "CPU · fp32", timeout=TIMEOUT_MS)
    assert "pa55word" not in caplog.text


def test_a_server_that_is_down_fails_the_job_and_the_next_one_connects(
    qtbot, make_window, tmp_path: Path
) -> None:
    from ldstudio.api.server import build_context
    from ldstudio.core.library import LibraryStore
    from ldstudio.core.settings import ServerTarget

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings()
    settings.set_server_target(ServerTarget(url))
    local = LocalFakes()
    window = make_window(
        DiffusersEngine(EngineOptions(), server=ServerTarget(url), build_local=local),
        settings=settings,
    )
    qtbot.waitUntil(
        lambda: window.device_label.text() == f"server {url} · not reachable", timeout=TIMEOUT_MS
    )
    failed = generate(qtbot, window, "a fox")
    assert isinstance(failed, JobFailed)
    assert window.preview_pane.error_label.text().startswith(
        f"Cannot reach the ldstudio server {url}"
    )
    assert local.jobs() == 0  # never run here behind the user's back

    library = LibraryStore(tmp_path / "server", reconcile=False)
    ctx = build_context(lambda: FakeBackend(blobs=library.blobs), library)
    thread = ServerThread(create_app(ctx), port=port).start()
    try:
        outcome = generate(qtbot, window, "a fox")
        assert isinstance(outcome, JobFinished), outcome
        assert library.count() == 1
        qtbot.waitUntil(
            lambda: window.device_label.text() == f"server {url} · cpu fp32", timeout=TIMEOUT_MS
        )
    finally:
        ctx.service.close(timeout=10)
        thread.stop()
        library.close()
