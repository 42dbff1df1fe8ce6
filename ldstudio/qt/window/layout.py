"""The main window's columns and status-bar widgets, and how wide the columns are; GUI thread.

Left: the prompt and parameters, and the selected image's details, as two tabs. Middle: the
image (preview) and the canvas, as two tabs, with the error bar above them and the progress bar
below, so a refusal or a running job is seen from either. Right: the library above the queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QLabel,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QStatusBar,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ldstudio.qt.image_details import ImageDetailsView
from ldstudio.qt.params_pane import ParamsPane
from ldstudio.qt.preview_view import PreviewPane

# Side columns (prompt and parameters | library) at 1280 px and wider, and on a narrower window;
# the image in the middle takes the rest.
SIDE_WIDTHS = (370, 300)
NARROW_SIDE_WIDTHS = (330, 250)
NARROW_WINDOW = 1280
PREVIEW_MIN_WIDTH = 500  # side columns wider than SIDE_WIDTHS give way to the image up to this
GENERATE_TAB, DETAILS_TAB = 0, 1
PREVIEW_TAB, CANVAS_TAB = 0, 1


@dataclass(frozen=True)
class Columns:
    left_tabs: QTabWidget
    center_tabs: QTabWidget
    left_splitter: QSplitter
    right_splitter: QSplitter
    main_splitter: QSplitter

    def splitters(self) -> dict[str, QSplitter]:
        """The splitters whose state the settings keep, by the names they are saved under."""
        return {
            "main": self.main_splitter,
            "left": self.left_splitter,
            # Not "right": that held three panes before the details became a tab.
            "side": self.right_splitter,
        }


def build_columns(
    prompt_pane: QWidget,
    params_pane: ParamsPane,
    details_view: ImageDetailsView,
    preview_pane: PreviewPane,
    canvas_pane: QWidget,
    library_pane: QWidget,
    queue_pane: QWidget,
) -> Columns:
    params_scroll = QScrollArea()
    params_scroll.setWidget(params_pane)
    params_scroll.setWidgetResizable(True)
    params_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    # As needed, not off: a pane squeezed narrower than its form scrolls instead of
    # clipping fields at the edge (the default splitter width leaves room for the form).
    params_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    params_pane.setMinimumWidth(params_pane.minimumSizeHint().width())
    # The form never narrower than its fields (plus room for the vertical scroll bar): on
    # a small window the preview gives way, not the Add… button and the spin boxes. That
    # makes the window at least ~870 px wide; a screen narrower than 1024 px keeps the
    # horizontal scroll bar instead, so the window still fits on it.
    screen = QGuiApplication.primaryScreen()
    if screen is None or screen.availableGeometry().width() >= 1024:
        params_scroll.setMinimumWidth(
            params_pane.minimumWidth() + params_scroll.verticalScrollBar().sizeHint().width()
        )
    left_splitter = QSplitter(Qt.Orientation.Vertical)
    left_splitter.addWidget(prompt_pane)
    left_splitter.addWidget(params_scroll)
    left_splitter.setStretchFactor(0, 2)
    left_splitter.setStretchFactor(1, 3)
    left_splitter.setChildrenCollapsible(False)
    details_scroll = QScrollArea()
    details_scroll.setWidget(details_view)
    details_scroll.setWidgetResizable(True)
    details_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    # The image in the middle is the selected one, large: the details' own copy would only
    # take the height its parameters need to be read without scrolling.
    details_view.image_label.hide()
    # The image's parameters get the whole height of the side column, as a tab beside the
    # prompt and parameters (a fourth pane under the library left them one row at 800 px).
    left_tabs = QTabWidget()
    left_tabs.setObjectName("left_tabs")
    left_tabs.setDocumentMode(True)
    left_tabs.addTab(left_splitter, "Generate")
    left_tabs.addTab(details_scroll, "Image details")
    left_tabs.setTabToolTip(GENERATE_TAB, "Prompt and parameters of the next image (Ctrl+L)")
    left_tabs.setTabToolTip(
        DETAILS_TAB, "How the selected image was made, and what to do with it (Ctrl+Shift+I)"
    )
    right_splitter = QSplitter(Qt.Orientation.Vertical)
    right_splitter.addWidget(library_pane)
    right_splitter.addWidget(queue_pane)
    right_splitter.setStretchFactor(0, 1)
    right_splitter.setStretchFactor(1, 0)
    right_splitter.setChildrenCollapsible(False)
    right_splitter.setSizes([600, 130])
    center_tabs, center = _build_center(preview_pane, canvas_pane)
    main_splitter = QSplitter()
    for widget in (left_tabs, center, right_splitter):
        main_splitter.addWidget(widget)
    main_splitter.setStretchFactor(0, 0)
    main_splitter.setStretchFactor(1, 1)
    main_splitter.setStretchFactor(2, 0)
    main_splitter.setSizes([SIDE_WIDTHS[0], 600, SIDE_WIDTHS[1]])
    main_splitter.setChildrenCollapsible(False)
    return Columns(left_tabs, center_tabs, left_splitter, right_splitter, main_splitter)


def _build_center(preview_pane: PreviewPane, canvas_pane: QWidget) -> tuple[QTabWidget, QWidget]:
    """The preview and the canvas as tabs; the preview's error bar and progress bar are taken
    out of it and put around both: Generate on the canvas is refused, or runs, in view."""
    tabs = QTabWidget()
    tabs.setObjectName("center_tabs")
    tabs.setDocumentMode(True)
    tabs.addTab(preview_pane, "Preview")
    # In a scroll area: on a narrow window the canvas scrolls instead of widening the window
    # past the screen (`make_room` first takes width from the side columns).
    canvas_scroll = QScrollArea()
    canvas_scroll.setObjectName("canvas_scroll")
    canvas_scroll.setWidget(canvas_pane)
    canvas_scroll.setWidgetResizable(True)
    canvas_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    tabs.addTab(canvas_scroll, "Canvas")
    tabs.setTabToolTip(PREVIEW_TAB, "The image being made, or the one selected in the library")
    tabs.setTabToolTip(
        CANVAS_TAB,
        "Work on an image: img2img, inpaint (paint a mask) or outpaint (drag the edges); "
        "Generate runs on it while this tab is shown (Alt+2)",
    )
    own = preview_pane.layout()
    assert own is not None
    for shared in (preview_pane.error_bar, preview_pane.progress):
        own.removeWidget(shared)
    center = QWidget()
    center_layout = QVBoxLayout(center)
    center_layout.setContentsMargins(0, 0, 0, 0)
    center_layout.addWidget(preview_pane.error_bar)
    center_layout.addWidget(tabs, 1)
    center_layout.addWidget(preview_pane.progress)
    return tabs, center


def fit_columns(main_splitter: QSplitter, window_width: int, use_defaults: bool = False) -> None:
    """Size the three columns for this window: the defaults for its width, or (restored
    from settings) side columns wider than the defaults give way until the image in the
    middle is PREVIEW_MIN_WIDTH wide, so a layout saved on a wider window or by an older
    version never leaves the image small."""
    sizes = main_splitter.sizes()
    total = sum(sizes)
    if use_defaults:
        narrow = window_width < NARROW_WINDOW
        left, right = NARROW_SIDE_WIDTHS if narrow else SIDE_WIDTHS
        main_splitter.setSizes([left, max(total - left - right, 0), right])
        return
    need = PREVIEW_MIN_WIDTH - sizes[1]
    for side, default in ((2, SIDE_WIDTHS[1]), (0, SIDE_WIDTHS[0])):
        give = min(max(need, 0), max(sizes[side] - default, 0))
        sizes[side] -= give
        sizes[1] += give
        need -= give
    if sizes != main_splitter.sizes():
        main_splitter.setSizes(sizes)


def make_room(main_splitter: QSplitter, need: int) -> list[int] | None:
    """Widen the middle column to `need` px, taking width from the library column (down to
    its minimum) and then the left one (down to its narrow width): the canvas and its settings
    fit a 1280 px window. Returns the sizes before, to put back; None when nothing changed."""
    sizes = main_splitter.sizes()
    short = need - sizes[1]
    if short <= 0:
        return None
    before = list(sizes)
    right = main_splitter.widget(2)
    right_min = right.minimumSizeHint().width() if right is not None else 0
    for side, floor in ((2, right_min), (0, NARROW_SIDE_WIDTHS[0])):
        give = min(short, max(sizes[side] - floor, 0))
        sizes[side] -= give
        sizes[1] += give
        short -= give
    if sizes == before:
        return None
    main_splitter.setSizes(sizes)
    return before


@dataclass(frozen=True)
class StatusWidgets:
    busy_bar: QProgressBar
    device_label: QLabel
    latent_label: QLabel


def build_status(status: QStatusBar) -> StatusWidgets:
    busy_bar = QProgressBar()
    busy_bar.setRange(0, 0)
    busy_bar.setMaximumWidth(120)
    busy_bar.hide()
    device_label = QLabel("Starting engine…")
    device_label.setObjectName("device")
    device_label.setToolTip("The device and precision the engine runs on")
    latent_label = QLabel()
    latent_label.setObjectName("latent")
    latent_label.setToolTip("The latent the model denoises; the VAE turns it into pixels")
    status.addPermanentWidget(busy_bar)
    status.addPermanentWidget(latent_label)
    status.addPermanentWidget(device_label)
    return StatusWidgets(busy_bar, device_label, latent_label)
