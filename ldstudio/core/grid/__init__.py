"""X/Y/Z plots: axes parsed as A1111 reads them, a base request expanded into one request per
cell, and the labelled grid image with its metadata; pure (no Qt, no torch), any thread.

Running the cells is any front end's: submit each cell's request to the EngineService, then
`compose` the finished images and save the sheets (`ldstudio.core.library.grids.save_grid`
links a grid to its cells in the library).
"""

from __future__ import annotations

from ldstudio.core.grid.axes import (
    ALLOWED_TYPES,
    AXIS_TYPES,
    MAX_VALUES,
    Axis,
    AxisError,
    AxisType,
    parse_axis,
)
from ldstudio.core.grid.cells import MAX_CELLS, Cell, GridPlan, apply, expand
from ldstudio.core.grid.layout import GridImage, Label, draw_grid, stack
from ldstudio.core.grid.sheet import (
    GRID_KEY,
    SCRIPT,
    Z_LAYOUTS,
    Sheet,
    compose,
    grid_text,
    script_pairs,
)

__all__ = [
    "ALLOWED_TYPES",
    "AXIS_TYPES",
    "GRID_KEY",
    "MAX_CELLS",
    "MAX_VALUES",
    "SCRIPT",
    "Z_LAYOUTS",
    "Axis",
    "AxisError",
    "AxisType",
    "Cell",
    "GridImage",
    "GridPlan",
    "Label",
    "Sheet",
    "apply",
    "compose",
    "draw_grid",
    "expand",
    "grid_text",
    "parse_axis",
    "script_pairs",
    "stack",
]
