"""The main window's menus and their actions; GUI thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu

if TYPE_CHECKING:
    from ldstudio.qt.main_window import MainWindow


@dataclass(frozen=True)
class WindowActions:
    """The actions whose state the window changes (or tests trigger)."""

    generate: QAction
    cancel: QAction
    export: QAction


def build_menus(window: MainWindow) -> WindowActions:
    menu = window.menuBar()

    def add(into: QMenu, text: str, slot: Callable[[], Any], *keys: Any, tip: str = "") -> QAction:
        # The window owns every action: the F1 list finds them there.
        action = QAction(text, window)
        if keys:
            action.setShortcuts([QKeySequence(k) for k in keys])
        action.setStatusTip(tip)
        action.triggered.connect(lambda _=False: slot())
        into.addAction(action)
        return action

    library = window.library
    file_menu = menu.addMenu("&File")
    add(
        file_menu,
        "&Open image…",
        library.open_image_dialog,
        QKeySequence.StandardKey.Open,
        tip="Read the generation parameters of a PNG, JPEG or WebP and restore them",
    )
    add(
        file_menu,
        "&Import images…",
        library.import_folder_dialog,
        "Ctrl+I",
        tip="Add a folder of PNG/JPEG/WebP images (from ldstudio, A1111, ComfyUI, …) "
        "to the library",
    )
    add(
        file_menu,
        "&Add model…",
        window.add_model_folder,
        tip="Add a .safetensors checkpoint or a diffusers model folder to the model list",
    )
    export = add(
        file_menu,
        "&Export animation…",
        window.export_animation_dialog,
        "Ctrl+E",
        tip="Save the selected image's denoising as animated WebP or GIF",
    )
    add(
        file_menu,
        "&Library folder…",
        window.choose_library_folder,
        tip="Choose the folder where the image library lives (used from the next start)",
    )
    add(
        file_menu,
        "E&mpty trash…",
        library.empty_trash,
        tip="Delete the images in the library's trash for good",
    )
    file_menu.addSeparator()
    # Ctrl+Q itself: the platform's standard Quit keys are none on some desktops.
    add(file_menu, "&Quit", window.close, "Ctrl+Q")

    controller = window.controller
    gen_menu = menu.addMenu("&Generate")
    generate = add(
        gen_menu,
        "&Generate",
        window.generate,
        "Ctrl+Return",
        "Ctrl+Enter",
        tip="Queue a job with the current prompt and parameters",
    )
    cancel = add(
        gen_menu,
        "&Cancel running job",
        controller.cancel_running,
        "Escape",
        tip="Stop the running job at its next step",
    )
    add(
        gen_menu,
        "Cancel &all jobs",
        controller.cancel_all,
        "Shift+Escape",
        tip="Cancel the running job and every queued one",
    )
    gen_menu.addSeparator()
    add(
        gen_menu,
        "&X/Y/Z plot…",
        window.grid.open_dialog,
        "Ctrl+Shift+X",
        tip="One image for every combination of up to three axes of values, and the labelled "
        "grid of them",
    )
    add(
        gen_menu,
        "&Upscale selected image…",
        window.upscale.upscale_selected,
        tip="Enlarge the image highlighted in the library ×2 or ×4 into a new library image",
    )

    preview = window.preview_pane
    view_menu = menu.addMenu("&View")
    add(view_menu, "&Fit to window", lambda: preview.set_fit(True), "Ctrl+0")
    add(view_menu, "&Actual size (100 %)", lambda: preview.set_fit(False), "Ctrl+1")
    view_menu.addSeparator()
    add(view_menu, "Focus &prompt", window.focus_prompt, "Ctrl+L")
    add(
        view_menu,
        "Image &details",
        window.show_details,
        "Ctrl+Shift+I",
        tip="How the selected image was made, and what to do with it",
    )
    add(view_menu, "Focus &library", window.library_pane.view.setFocus, "Ctrl+G")
    add(view_menu, "Focus &queue", window.queue_pane.list.setFocus, "Ctrl+K")
    view_menu.addSeparator()
    add(view_menu, "P&review", window.show_preview, "Alt+1", tip="The image being made")
    add(
        view_menu,
        "Ca&nvas",
        window.show_canvas,
        "Alt+2",
        tip="The canvas: Generate works on its image while it is shown",
    )

    canvas = window.canvas
    canvas_menu = menu.addMenu("&Canvas")
    add(
        canvas_menu,
        "&Open image…",
        canvas.open_dialog,
        tip="Open a PNG, JPEG or WebP on the canvas, to redraw, inpaint or outpaint it",
    )
    add(
        canvas_menu,
        "&Paste image",
        canvas.paste,
        "Ctrl+Shift+V",
        tip="Put the image on the clipboard on the canvas",
    )
    add(
        canvas_menu,
        "Load &mask…",
        canvas.load_mask_dialog,
        tip="A mask PNG (white = repaint) or an image whose transparent area is repainted",
    )
    add(
        canvas_menu,
        "&Upscale canvas image…",
        window.upscale.upscale_canvas,
        tip="Enlarge the canvas's source image ×2 or ×4 into a new library image",
    )

    models_menu = menu.addMenu("&Models")
    add(
        models_menu,
        "Model &manager…",
        window.open_model_manager,
        "Ctrl+Shift+M",
        tip="Model folders, every model found in them, VAE and LoRAs for the next images",
    )
    add(
        models_menu,
        "&Rescan model folders",
        lambda: window.spawn(window.refresh_models()),
        tip="Read the model folders again and refill the model list",
    )
    settings_menu = menu.addMenu("&Settings")
    add(
        settings_menu,
        "&Engine options…",
        window.open_engine_options,
        tip="Device, precision, memory and compilation options of the engine",
    )

    help_menu = menu.addMenu("&Help")
    add(help_menu, "&Keyboard shortcuts", window.show_shortcuts, "F1")
    return WindowActions(generate=generate, cancel=cancel, export=export)
