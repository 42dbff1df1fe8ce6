"""Expanding a base request over X/Y/Z axes into one request per cell; pure, any thread.

A1111's order: X varies fastest, then Y, then Z; each cell applies X, then Y, then Z. Every cell
shares the base request's seed (resolved once here) unless a seed axis sets it, so the grid
compares like with like.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ldstudio.core.grid.axes import Axis, AxisError, AxisValue
from ldstudio.core.request import KIND_INPAINT, KIND_TXT2IMG, Request

MAX_CELLS = 10_000
# Turns a model axis value (a name or a path) into the path the request carries; ValueError
# worded "model: ..." when it names no model.
ModelResolver = Callable[[str], str]


@dataclass(frozen=True)
class Cell:
    """One cell: where it sits, its request, and the axis values that made it."""

    x: int
    y: int
    z: int
    request: Request
    values: tuple[AxisValue, ...]  # X's, Y's, Z's value (as many as there are axes)


@dataclass(frozen=True)
class GridPlan:
    """The axes (X, then Y and Z when given) and the cells in A1111's order."""

    axes: tuple[Axis, ...]
    cells: tuple[Cell, ...]

    def size(self, i: int) -> int:
        return len(self.axes[i]) if i < len(self.axes) else 1

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.size(0), self.size(1), self.size(2)

    def label(self, cell: Cell) -> str:
        """The cell's values as its grid labels them, e.g. "CFG Scale: 5, Sampler: Euler a"."""
        return values_label(self.axes, cell.values)


def values_label(axes: Sequence[Axis], values: Sequence[AxisValue]) -> str:
    return ", ".join(a.value_label(v) for a, v in zip(axes, values, strict=True))


def expand(
    base: Request, axes: Sequence[Axis], resolve_model: ModelResolver | None = None
) -> GridPlan:
    """The cells of `base` over `axes` (1 to 3), each validated; AxisError naming the axis."""
    if not 1 <= len(axes) <= 3:
        raise AxisError(f"a grid has 1 to 3 axes (X, Y, Z); got {len(axes)}")
    _check_distinct(axes)
    if base.params.image_count != 1:
        raise AxisError(
            f"batch size × count: a grid cell makes one image; got {base.params.batch_size} × "
            f"{base.params.batch_count} (use a seed axis for several seeds)"
        )
    base = base.resolved()  # one seed for every cell
    shape = [len(axis) for axis in axes] + [1] * (3 - len(axes))
    total = shape[0] * shape[1] * shape[2]
    if total > MAX_CELLS:
        raise AxisError(f"the grid has {total} cells; allowed: at most {MAX_CELLS}")
    # Each axis value applied alone first: a bad value is named once, by its axis.
    for axis in axes:
        for value in axis.values:
            _checked(apply(base, axis, value, resolve_model), axis, value)
    cells: list[Cell] = []
    for z in range(shape[2]):
        for y in range(shape[1]):
            for x in range(shape[0]):
                at = (x, y, z)
                request = base
                values: list[AxisValue] = []
                for i, axis in enumerate(axes):
                    value = axis.values[at[i]]
                    values.append(value)
                    request = apply(request, axis, value, resolve_model)
                cells.append(Cell(x, y, z, _cell_checked(request, axes, values), tuple(values)))
    return GridPlan(tuple(axes), tuple(cells))


def apply(
    request: Request, axis: Axis, value: AxisValue, resolve_model: ModelResolver | None = None
) -> Request:
    """`request` with the axis set to `value` (not validated; see `expand`)."""
    params = request.params
    key = axis.type.key
    where = f"{axis.option} {key}"
    if key == "prompt":
        search = str(axis.values[0])
        if search not in params.prompt and search not in params.negative_prompt:
            raise AxisError(
                f"{where}: Prompt S/R did not find {search!r} in the prompt or the negative "
                "prompt; the first value is the text each other value replaces"
            )
        return _params(
            request,
            prompt=params.prompt.replace(search, str(value)),
            negative_prompt=params.negative_prompt.replace(search, str(value)),
        )
    if key == "seed":
        return _params(request, seed=value)
    if key == "steps":
        return _params(request, steps=value)
    if key == "cfg":
        return _params(request, guidance_scale=value)
    if key == "sampler":
        return _params(request, scheduler=value)
    if key == "clip_skip":
        return _params(request, clip_skip=value)
    if key == "model":
        if resolve_model is None:
            return _params(request, model=str(value))
        try:
            model = resolve_model(str(value))
        except ValueError as exc:  # the resolver names the axis type ("model: ...")
            raise AxisError(f"{axis.option} {exc}") from None
        return _params(request, model=model)
    if key == "size":
        assert isinstance(value, tuple)
        return _params(request, width=value[0], height=value[1])
    if key == "lora":
        return _params(request, loras=_lora_weight(params.loras, axis, _float(value), where))
    if key == "strength":
        return _strength(request, _float(value), where)
    raise AssertionError(f"axis type {key} has no apply")  # every AXIS_TYPES key is above


def _float(value: AxisValue) -> float:
    assert isinstance(value, int | float)  # parse_axis made a number axis's values numbers
    return float(value)


def _params(request: Request, **changes: object) -> Request:
    return dataclasses.replace(request, params=request.params.replace(**changes))


def _strength(request: Request, value: float, where: str) -> Request:
    # img2img-type requests carry it in their inpaint settings; a txt2img one only in its
    # hires fix (A1111's "Denoising" sets the hires fix's strength when it is on).
    if request.kind == KIND_INPAINT and request.inpaint is not None:
        return dataclasses.replace(request, inpaint=request.inpaint.replace(strength=value))
    if request.kind == KIND_TXT2IMG and request.hires is not None:
        return dataclasses.replace(request, hires=request.hires.replace(strength=value))
    raise AxisError(
        f"{where}: a strength axis needs an img2img or inpaint request (an input image) or a "
        f"hires fix; this is a {request.face} request without one"
    )


def _lora_weight(
    loras: tuple[tuple[str, float], ...], axis: Axis, weight: float, where: str
) -> tuple[tuple[str, float], ...]:
    names = [Path(path).stem for path, _w in loras]
    if axis.target:
        chosen = [i for i, name in enumerate(names) if name.lower() == axis.target.lower()]
        if not chosen:
            raise AxisError(
                f"{where}: the request has no LoRA named {axis.target!r}; it has: "
                f"{', '.join(names) or 'none (add a LoRA first)'}"
            )
    elif len(loras) == 1:
        chosen = [0]
    else:
        raise AxisError(
            f"{where}: a LoRA weight axis needs exactly one LoRA, or lora:NAME=... "
            f"naming one; the request has {len(loras)}"
            + (f": {', '.join(names)}" if names else "")
            + " (a <lora:name:w> tag in the prompt can vary with a Prompt S/R axis)"
        )
    return tuple((path, weight if i in chosen else w) for i, (path, w) in enumerate(loras))


def _checked(request: Request, axis: Axis, value: AxisValue) -> Request:
    try:
        return request.validate()
    except ValueError as exc:
        raise AxisError(
            f"{axis.option} {axis.type.key}: {axis.value_label(value)}: {exc}"
        ) from None


def _cell_checked(request: Request, axes: Sequence[Axis], values: Sequence[AxisValue]) -> Request:
    try:
        return request.validate()
    except ValueError as exc:  # each value passed alone: it is their combination
        raise AxisError(f"the cell {values_label(axes, values)}: {exc}") from None


def _check_distinct(axes: Sequence[Axis]) -> None:
    seen: dict[tuple[str, str], Axis] = {}
    for axis in axes:
        # Two Prompt S/R axes search for different words; any other type twice would fight.
        key = (axis.type.key, str(axis.values[0]) if axis.type.key == "prompt" else axis.target)
        if key in seen:
            raise AxisError(
                f"{axis.option} {axis.type.key}: the same axis as {seen[key].option}; "
                "each setting can vary along one axis only"
            )
        seen[key] = axis
