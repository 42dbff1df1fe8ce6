"""The canvas: a source image, its painted mask and outpaint, for img2img/inpaint/outpaint jobs."""

from ldstudio.qt.canvas.pane import CanvasPane
from ldstudio.qt.canvas.view import CanvasView

__all__ = ["CanvasPane", "CanvasView"]
