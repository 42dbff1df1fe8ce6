"""`ldstudio grid`: an X/Y/Z plot, headless. Each cell is a job on the engine service saved as
its own image; the labelled grid is saved beside them (in the library, linked to its cells)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ldstudio.cli import generate, hires, inpaint, runs
from ldstudio.cli.common import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, BadInput, make_folder
from ldstudio.core.events import JobCancelled, JobFailed, JobFinished
from ldstudio.core.grid import ALLOWED_TYPES, Z_LAYOUTS, AxisError, GridPlan, parse_axis
from ldstudio.core.request import Request

if TYPE_CHECKING:
    from ldstudio.core.service import Outcome

_AXIS_HELP = (
    'TYPE=VALUES, e.g. cfg=3,5,7 or "sampler=Euler a,DPM++ 2M". Types: {types}. Values: a '
    'comma list ("double quotes" keep a comma in a value); numbers also as ranges 1-5, '
    "1-10 (+2) or 1-10 [5] (a count). prompt=A,B,C is A1111's Prompt S/R: A is searched in "
    "the prompt and negative prompt and replaced by each value (A itself first)"
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    grid = commands.add_parser(
        "grid",
        help="an X/Y/Z plot: one image per combination of values, and a labelled grid",
        description="Make every combination of up to three axes of values (A1111's X/Y/Z "
        "plot). Each cell is saved as its own image; the labelled grid image is saved too, "
        "and in the library it links to its cells. Takes every option of `generate` as the "
        "values the axes do not change.",
    )
    grid.add_argument("prompt", help="what to draw")
    grid.add_argument(
        "--x", required=True, metavar="TYPE=VALUES", help=_AXIS_HELP.format(types=ALLOWED_TYPES)
    )
    grid.add_argument("--y", default=None, metavar="TYPE=VALUES", help="the Y axis (rows)")
    grid.add_argument("--z", default=None, metavar="TYPE=VALUES", help="the Z axis (grids)")
    grid.add_argument(
        "--z-layout",
        default=None,
        choices=Z_LAYOUTS,
        help="with --z: one image with a column of grids (default) or one image per Z value",
    )
    added = runs.generation_options(grid)
    runs.cluster_options(grid)
    grid.set_defaults(handler=run_grid, generate_options=added)


def plan_from_args(args: argparse.Namespace, registry: Any, blobs: Any) -> GridPlan:
    """The checked grid: generate's request from the options, expanded over the axes."""
    from ldstudio.core.grid import expand
    from ldstudio.core.models import KIND_CHECKPOINT, KIND_DIFFUSERS

    params = generate.params_from_args(args, registry)
    try:
        axes = [
            parse_axis(text, f"--{name}")
            for name, text in (("x", args.x), ("y", args.y), ("z", args.z))
            if text
        ]
    except AxisError as exc:
        raise BadInput(str(exc)) from None
    if args.z is not None and args.y is None:
        raise BadInput("--z: only with --y (the grid's rows) as well")
    if args.z_layout is not None and args.z is None:
        raise BadInput("--z-layout: only with --z (it says how the Z axis's grids are laid out)")
    source = inpaint.source_from_args(args)
    hires_fix = hires.settings_from_args(args, params)
    if hires_fix is not None and (hint := hires_fix.hint()) is not None:
        sys.stderr.write(f"note: {hint}\n")
    request = Request.txt2img(params, hires_fix)
    if source is not None:
        request = source.request(params, blobs)

    def resolve_model(name: str) -> str:
        kinds = (KIND_CHECKPOINT, KIND_DIFFUSERS)
        return str(registry.resolve_reference(name, kinds, "model"))

    try:
        plan = expand(request, axes, resolve_model)
    except AxisError as exc:
        raise BadInput(str(exc)) from None
    # The model files of every distinct cell, checked as generate checks them, before loading.
    checked: set[tuple[str, str, tuple[tuple[str, float], ...]]] = set()
    for cell in plan.cells:
        p = cell.request.params
        if (p.model, p.vae, p.loras) not in checked:
            checked.add((p.model, p.vae, p.loras))
            default = not args.model and bool(p.model) and p.model == params.model
            generate.refuse_problems(p, registry, default=default)
    return plan


def run_grid(args: argparse.Namespace) -> int:
    from ldstudio.core.models import ModelRegistry

    setup = runs.setup(args, "grid")
    plan = plan_from_args(args, ModelRegistry(), setup.blobs)
    requests = [cell.request for cell in plan.cells]
    backend = runs.make_cluster_backend(args, requests, setup.blobs, "cell")
    if backend is None:
        backend = runs.make_backend(setup.options, setup.blobs)
    if setup.folder is not None:
        make_folder(setup.folder, "--out")
    return run_plan(plan, backend, setup.folder, args.z_layout or "column", args.json)


def run_plan(
    plan: GridPlan, backend: Any, folder: Path | None, z_layout: str, as_json: bool
) -> int:
    """Run every cell, then save the grid sheet(s); print the paths (or JSON); the exit code."""
    from ldstudio.core.library import IndexDamaged
    from ldstudio.core.library.grid_sheets import save_sheets

    nx, ny, nz = plan.shape
    total = len(plan.cells)
    sys.stderr.write(
        f"grid: {total} cell(s), " + " × ".join(f"{len(a)} {a.label}" for a in plan.axes) + "\n"
    )
    try:
        sink, library = runs.open_sink(folder)
    except IndexDamaged as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    progress = runs.RunProgress(sys.stderr, total)

    def on_outcome(i: int, outcome: Outcome) -> None:
        if isinstance(outcome, JobFinished):
            progress.finished(i + 1, plan.label(plan.cells[i]))

    try:
        result = runs.run_requests(
            [c.request for c in plan.cells], backend, sink, progress, on_outcome
        )
        cells = [o.records[0].path for o in result.outcomes if isinstance(o, JobFinished)]
        failed = next((o for o in result.outcomes if isinstance(o, JobFailed)), None)
        if result.aborted or result.interrupted or failed or len(cells) != total:
            if not as_json:
                for path in cells:
                    print(path)
            if failed is not None:
                sys.stderr.write(f"error: {failed.message}\n")
            why = "failed" if failed else "cancelled"
            sys.stderr.write(
                f"grid {why}: {len(cells)} of {total} cell(s) saved; no grid image made\n"
            )
            if as_json:
                print(json.dumps({"status": why, "cells": [str(p) for p in cells], "grids": []}))
            cancelled = result.interrupted or any(
                isinstance(o, JobCancelled) for o in result.outcomes
            )
            return EXIT_CANCELLED if cancelled and not failed else EXIT_FAILED
        grids = save_sheets(plan, cells, z_layout, folder, library)
    finally:
        if library is not None:
            library.close()
    if as_json:
        payload = {
            "status": "finished",
            "shape": [nx, ny, nz],
            "cells": [str(p) for p in cells],
            "grids": [str(p) for p in grids],
        }
        print(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        for path in [*cells, *grids]:
            print(path)
        sys.stderr.write(f"done: {total} cell(s) and {len(grids)} grid image(s)\n")
    return EXIT_OK
