"""X/Y/Z plot axes: `TYPE=VALUES` parsed and checked the way A1111's X/Y/Z plot reads them; pure.

Values are a comma list read as CSV (double quotes keep a value holding commas), and on a
numeric axis each item may be a range: `1-5` (every integer), `1-10 (+2)` (a step), `1-3 [5]`
(a count, spread evenly; an integer axis truncates, as A1111 does: `1-10 [5]` is 1, 3, 5, 7, 10).
"""

from __future__ import annotations

import csv
import io
import math
import re
import secrets
from dataclasses import dataclass

from ldstudio.core.params import RANDOM_SEED, SCHEDULERS, SEED_MAX

MAX_VALUES = 1000  # per axis: a typo like 1-1000000 must be refused, not expanded
NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_STEP_RANGE = re.compile(rf"\s*({NUMBER})\s*-\s*({NUMBER})\s*(?:\(\s*({NUMBER})\s*\))?\s*")
_COUNT_RANGE = re.compile(rf"\s*({NUMBER})\s*-\s*({NUMBER})\s*\[\s*(\d+)\s*\]\s*")
_SIZE = re.compile(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class AxisType:
    """One kind of axis: its key on the command line, A1111's label and how values read."""

    key: str
    label: str  # what A1111 writes as `X Type` (ours where A1111 has no such axis)
    aliases: tuple[str, ...]
    number: str = ""  # "int" or "float" for numeric axes (ranges allowed), "" otherwise
    label_values: bool = True  # cell labels read "Steps: 20" (False: the value alone)


AXIS_TYPES: tuple[AxisType, ...] = (
    AxisType("prompt", "Prompt S/R", ("prompt", "promptsr", "prompts/r", "sr", "s/r"), "", False),
    AxisType("seed", "Seed", ("seed",), "int"),
    AxisType("steps", "Steps", ("steps",), "int"),
    AxisType("cfg", "CFG Scale", ("cfg", "cfgscale", "guidance", "guidancescale"), "float"),
    AxisType("sampler", "Sampler", ("sampler", "scheduler"), "", False),
    AxisType("model", "Checkpoint name", ("model", "checkpoint", "checkpointname"), "", False),
    AxisType("size", "Size", ("size",)),
    AxisType("strength", "Denoising", ("strength", "denoising", "denoisingstrength"), "float"),
    AxisType("lora", "LoRA weight", ("lora", "loraweight"), "float"),
    AxisType("clip_skip", "Clip skip", ("clipskip",), "int"),
)
_BY_ALIAS = {alias: kind for kind in AXIS_TYPES for alias in kind.aliases}
ALLOWED_TYPES = ", ".join(kind.key for kind in AXIS_TYPES)

AxisValue = str | int | float | tuple[int, int]


@dataclass(frozen=True)
class Axis:
    """A parsed axis: its type, values (typed), and the text the user gave (A1111's `X Values`).

    `target`: for a LoRA weight axis, the LoRA it sets when the request has several
    (`lora:NAME=...`); "" for the only one.
    """

    type: AxisType
    values: tuple[AxisValue, ...]
    text: str
    option: str = "--x"
    target: str = ""

    @property
    def label(self) -> str:
        return f"{self.type.label} ({self.target})" if self.target else self.type.label

    def value_label(self, value: AxisValue) -> str:
        """A cell's label for `value`, as the grid image prints it."""
        if isinstance(value, tuple):
            shown = f"{value[0]}x{value[1]}"
        elif isinstance(value, float):
            shown = f"{value:g}"
        else:
            shown = str(value)
        return f"{self.type.label}: {shown}" if self.type.label_values else shown

    def labels(self) -> list[str]:
        return [self.value_label(value) for value in self.values]

    def __len__(self) -> int:
        return len(self.values)


class AxisError(ValueError):
    """An axis that cannot be used; the message names the option, the axis and the value."""


def parse_axis(spec: str, option: str = "--x") -> Axis:
    """`TYPE=VALUES` (e.g. `cfg=3,5,7`, `sampler=Euler a,DPM++ 2M`) as an Axis, or AxisError."""
    key, sep, text = spec.partition("=")
    if not sep or not key.strip():
        raise AxisError(
            f"{option}: {spec!r} is not TYPE=VALUES; allowed types: {ALLOWED_TYPES} "
            '(e.g. "cfg=3,5,7")'
        )
    name, _colon, target = key.partition(":")
    kind = _BY_ALIAS.get(re.sub(r"[\s_\-]", "", name.lower()))
    if kind is None:
        raise AxisError(
            f"{option}: axis type {name.strip()!r} is not known; allowed: {ALLOWED_TYPES}"
        )
    if target.strip() and kind.key != "lora":
        raise AxisError(
            f"{option}: {key.strip()!r}: only a LoRA weight axis names a target (lora:NAME=...)"
        )
    where = f"{option} {kind.key}"
    items = split_values(text, where)
    values: list[AxisValue] = []
    for item in items:
        values.extend(_values(kind, item, where))
        if len(values) > MAX_VALUES:
            raise AxisError(
                f"{where}: more than {MAX_VALUES} values; allowed: at most {MAX_VALUES}"
            )
    if kind.key == "prompt" and len(values) < 2:
        raise AxisError(
            f"{where}: Prompt S/R needs the text to search for and at least one replacement, "
            'e.g. "prompt=cat,dog,fox"'
        )
    return Axis(kind, tuple(values), text.strip(), option, target.strip())


def split_values(text: str, where: str) -> list[str]:
    """The comma list as CSV: `a, "b, c", d` is three values. An empty value is refused."""
    if not text.strip():
        raise AxisError(f"{where}: no values given; allowed: a comma list, e.g. 3,5,7")
    rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    items = [item.strip() for row in rows for item in row]
    for position, item in enumerate(items, 1):
        if not item:
            raise AxisError(f"{where}: value {position} of {text.strip()!r} is empty")
    return items


def _values(kind: AxisType, item: str, where: str) -> list[AxisValue]:
    if kind.number:
        return list(_numbers(kind, item, where))
    if kind.key == "sampler":
        return [_sampler(item, where)]
    if kind.key == "size":
        found = _SIZE.fullmatch(item)
        if found is None:
            raise AxisError(f"{where}: {item!r} is not WIDTHxHEIGHT; allowed: e.g. 512x512")
        return [(int(found.group(1)), int(found.group(2)))]
    return [item]  # prompt S/R text, model names (resolved by the front end)


def _sampler(item: str, where: str) -> str:
    for name in SCHEDULERS:
        if name.lower() == item.lower():
            return name
    raise AxisError(f"{where}: sampler {item!r} is not supported; allowed: {', '.join(SCHEDULERS)}")


def _numbers(kind: AxisType, item: str, where: str) -> list[int | float]:
    whole = kind.number == "int"
    if kind.key == "seed" and item.lower() in ("-1", RANDOM_SEED):
        return [secrets.randbelow(SEED_MAX + 1)]  # A1111's -1: drawn now, so it is recorded
    if (found := _COUNT_RANGE.fullmatch(item)) is not None:
        start, end = _number(found.group(1), whole, where), _number(found.group(2), whole, where)
        count = int(found.group(3))
        if not 1 <= count <= MAX_VALUES:
            raise AxisError(f"{where}: {item!r}: a count of {count}; allowed: 1 to {MAX_VALUES}")
        spread = (
            [start + (end - start) * i / (count - 1) for i in range(count)]
            if count > 1
            else [start]
        )
        return [int(v) if whole else _tidy(v) for v in spread]
    if (found := _STEP_RANGE.fullmatch(item)) is not None:
        start, end = _number(found.group(1), whole, where), _number(found.group(2), whole, where)
        step: int | float = 1 if end >= start else -1
        if found.group(3) is not None:
            step = _number(found.group(3), whole, where)
        if step == 0 or (end - start) * step < 0:
            raise AxisError(
                f"{where}: {item!r}: the step {step:g} never reaches {end:g} from {start:g}"
            )
        count = math.floor((end - start) / step + 1e-9) + 1
        if count > MAX_VALUES:
            raise AxisError(
                f"{where}: {item!r} makes {count} values; allowed: at most {MAX_VALUES}"
            )
        return [start + step * i if whole else _tidy(start + step * i) for i in range(count)]
    return [_number(item, whole, where)]


def _number(text: str, whole: bool, where: str) -> int | float:
    text = text.strip()
    try:
        return int(text) if whole else float(text)
    except ValueError:
        kind = "an integer" if whole else "a number"
        raise AxisError(
            f"{where}: {text!r} is not {kind}; allowed: {kind}, a range like 1-5, "
            "1-10 (+2) or 1-10 [5], or a comma list of those"
        ) from None


def _tidy(value: float) -> float:
    """Ranges add steps in binary floating point: 0.6000000000000001 is meant as 0.6."""
    return round(value, 10)
