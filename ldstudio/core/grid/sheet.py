"""A finished grid's images and metadata: the labelled sheet(s) for a plan's cell images, and
the PNG text A1111 writes for an X/Y/Z plot; pure, any thread.

A1111 stores the first cell's parameters in the grid plus `Script: X/Y/Z plot`, `X Type`,
`X Values`, ...; ldstudio adds a `ldstudio-grid` chunk naming the axes and the cell files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PIL import Image

from ldstudio.core.grid.cells import GridPlan
from ldstudio.core.grid.layout import GridImage, draw_grid, stack
from ldstudio.core.metadata import PARAMETERS_KEY

SCRIPT = "X/Y/Z plot"
GRID_KEY = "ldstudio-grid"
GRID_FORMAT = "ldstudio-grid"
Z_LAYOUTS = ("column", "separate")  # one image with a column of Z grids, or one image per Z
_AXIS_NAMES = ("X", "Y", "Z")


@dataclass(frozen=True)
class Sheet:
    """One grid image to save and the cells (indices into the plan) it shows, in order."""

    image: Image.Image
    cells: tuple[int, ...]
    z: int | None  # the Z value it shows alone ("separate"); None for all of them
    parts: tuple[GridImage, ...]  # each Z value's grid, as drawn


def compose(plan: GridPlan, images: Sequence[Image.Image], z_layout: str = "column") -> list[Sheet]:
    """The sheet(s) for the plan's cell images (in the plan's order). ValueError for a
    `z_layout` not in Z_LAYOUTS or images that are not one per cell."""
    if z_layout not in Z_LAYOUTS:
        raise ValueError(f"Z layout: {z_layout!r} is not known; allowed: {', '.join(Z_LAYOUTS)}")
    if len(images) != len(plan.cells):
        raise ValueError(f"grid: {len(images)} images for {len(plan.cells)} cells")
    nx, ny, nz = plan.shape
    x_labels = plan.axes[0].labels()
    y_labels = plan.axes[1].labels() if len(plan.axes) > 1 else []
    per_z = nx * ny
    parts = []
    for z in range(nz):
        title = plan.axes[2].labels()[z] if len(plan.axes) > 2 else ""
        chunk = images[z * per_z : (z + 1) * per_z]
        parts.append(draw_grid(chunk, nx, x_labels, y_labels, title))
    if z_layout == "separate" and nz > 1:
        return [
            Sheet(part.image, tuple(range(z * per_z, (z + 1) * per_z)), z, (part,))
            for z, part in enumerate(parts)
        ]
    image = parts[0].image if nz == 1 else stack([part.image for part in parts])
    return [Sheet(image, tuple(range(len(images))), None, tuple(parts))]


def script_pairs(plan: GridPlan) -> dict[str, str]:
    """A1111's keys for the plot: `Script`, then each axis's `Type` and `Values`."""
    pairs = {"Script": SCRIPT}
    for name, axis in zip(_AXIS_NAMES, plan.axes, strict=False):
        pairs[f"{name} Type"] = axis.label
        pairs[f"{name} Values"] = axis.text
    return pairs


def grid_text(
    first_cell: Mapping[str, str], plan: GridPlan, sheet: Sheet, cell_names: Sequence[str]
) -> dict[str, str]:
    """The grid PNG's text chunks: the first cell's (its parameters and ldstudio request, so
    reusing the grid reuses that cell, as in A1111) with the plot's keys added, and the
    `ldstudio-grid` chunk. `cell_names`: the sheet's cell files, in its order."""
    text = {k: v for k, v in first_cell.items() if k != GRID_KEY}
    pairs = ", ".join(f"{k}: {_quote(v)}" for k, v in script_pairs(plan).items())
    parameters = text.get(PARAMETERS_KEY, "")
    text[PARAMETERS_KEY] = f"{parameters}, {pairs}" if parameters else pairs
    text[GRID_KEY] = json.dumps(
        {
            "format": GRID_FORMAT,
            "version": 1,
            "axes": [
                {"name": n, "type": a.type.key, "label": a.label, "values": a.text}
                for n, a in zip(_AXIS_NAMES, plan.axes, strict=False)
            ],
            "shape": list(plan.shape),
            "z": sheet.z,
            "cells": list(cell_names),
        },
        ensure_ascii=False,
    )
    return text


def _quote(value: str) -> str:
    # As A1111 writes a value holding its separators: as a JSON string.
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ',:"\n') else value
