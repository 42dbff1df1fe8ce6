"""ldstudio on a Ray cluster (the optional `cluster` extra): batch renders and grids over Ray Data.

Qt-free; torch is imported only inside the Ray actors, never in the caller.
"""

from __future__ import annotations

from ldstudio.cluster.data import ClusterBackend, render
from ldstudio.cluster.rows import RenderedImage, RowFailed

__all__ = ["ClusterBackend", "RenderedImage", "RowFailed", "render"]
