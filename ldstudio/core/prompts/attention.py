"""Attention (emphasis) syntax: a prompt's text split into weighted runs; pure Python, any thread.

The rules are AUTOMATIC1111's documented ones, so prompts copied from its images weigh the same:
`(x)` multiplies x's weight by 1.1, `[x]` divides it by 1.1, `(x:w)` multiplies it by w, and
nesting multiplies. `\\(` `\\)` `\\[` `\\]` `\\\\` are literal characters. A bracket left open
is closed at the end of the prompt; a closer with nothing to close is literal text. A whole-word
`BREAK` becomes the segment `("BREAK", -1.0)`, which the chunker turns into a chunk break.

`syntax_problems` runs the same scan and reports what a prompt box should underline.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

ROUND_MULTIPLIER = 1.1
# A1111 multiplies by this constant, not divides by 1.1: it decides the last bits of a weight.
SQUARE_MULTIPLIER = 1 / 1.1
BREAK = "BREAK"
BREAK_WEIGHT = -1.0

Segment = tuple[str, float]

_ESCAPABLE = frozenset("()[]\\")
_SYNTAX = frozenset("()[]\\:")
# The weight suffix of a round group, `:1.2)`; only a plain decimal counts as a number.
_WEIGHT_RE = re.compile(r":\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\)")
_BREAK_RE = re.compile(r"\bBREAK\b")


@dataclass(frozen=True)
class Problem:
    """Something a prompt box should underline: where it starts (a str index) and why."""

    offset: int
    message: str


def is_break(segment: Segment) -> bool:
    """Whether a parsed segment is the BREAK marker rather than text."""
    return segment[0] == BREAK and segment[1] == BREAK_WEIGHT


def parse_attention(text: str) -> list[Segment]:
    """Split a prompt into (text, weight) runs; equal-weight neighbours are merged."""
    return _scan(text)[0]


def syntax_problems(text: str) -> list[Problem]:
    """The bracket and weight mistakes in a prompt, in order of their offset."""
    return sorted(_scan(text)[1], key=lambda problem: problem.offset)


class _Piece:
    __slots__ = ("is_break", "text", "weight")

    def __init__(self, text: str, is_break: bool = False) -> None:
        self.text = text
        self.weight = BREAK_WEIGHT if is_break else 1.0
        self.is_break = is_break


def _scan(text: str) -> tuple[list[Segment], list[Problem]]:
    pieces: list[_Piece] = []
    problems: list[Problem] = []
    # Open brackets as (first piece they cover, offset). The two kinds close independently,
    # as in A1111: `)` only ever closes a `(`.
    round_open: list[tuple[int, int]] = []
    square_open: list[tuple[int, int]] = []
    # Offset of the last plain ':' directly inside each open '(', for "(x:notanumber)".
    colons: dict[int, int] = {}
    run: list[str] = []

    def flush() -> None:
        parts = _BREAK_RE.split("".join(run))
        run.clear()
        last = len(parts) - 1
        for index, part in enumerate(parts):
            # BREAK takes the whitespace around it: it separates, and the spaces would cost
            # tokens. Stripped here, not in the regex: `\s*BREAK` backtracks quadratically.
            if index:
                pieces.append(_Piece(BREAK, is_break=True))
                part = part.lstrip()
            if index < last:
                part = part.rstrip()
            if part:
                pieces.append(_Piece(part))

    def multiply(start: int, multiplier: float) -> None:
        for piece in pieces[start:]:
            if not piece.is_break:  # a BREAK stays a break whatever surrounds it
                piece.weight *= multiplier

    def innermost_is_round() -> bool:
        return bool(round_open) and (not square_open or round_open[-1][1] > square_open[-1][1])

    def check_crossing(closer: str, opened_at: int, other: list[tuple[int, int]]) -> None:
        if other and other[-1][1] > opened_at:
            problems.append(
                Problem(
                    offset,
                    f"'{closer}' closes the bracket at {opened_at} across the one "
                    f"at {other[-1][1]}",
                )
            )

    offset = 0
    while offset < len(text):
        char = text[offset]
        if char not in _SYNTAX:
            run.append(char)
            offset += 1
            continue
        if char == "\\":
            following = text[offset + 1 : offset + 2]
            if following and following in _ESCAPABLE:
                run.append(following)
                offset += 2
            else:  # a lone backslash is itself
                run.append(char)
                offset += 1
            continue
        if char == ":":
            match = _WEIGHT_RE.match(text, offset)
            if match and round_open and not math.isfinite(float(match.group(1))):
                problems.append(Problem(offset, "weight is too large"))
                run.append(char)
                offset += 1
                continue
            if match and round_open:
                flush()
                start, opened_at = round_open.pop()
                colons.pop(opened_at, None)
                check_crossing(")", opened_at, square_open)
                multiply(start, float(match.group(1)))
                offset = match.end()
                continue
            if innermost_is_round():
                colons[round_open[-1][1]] = offset
            run.append(char)
            offset += 1
            continue
        flush()
        if char == "(":
            round_open.append((len(pieces), offset))
        elif char == "[":
            square_open.append((len(pieces), offset))
        elif char == ")" and round_open:
            start, opened_at = round_open.pop()
            if opened_at in colons:
                colon = colons.pop(opened_at)
                weight = text[colon + 1 : offset].strip()
                message = f"weight '{weight[:20]}' is not a number" if weight else "no weight"
                problems.append(Problem(colon, message))
            check_crossing(")", opened_at, square_open)
            multiply(start, ROUND_MULTIPLIER)
        elif char == "]" and square_open:
            start, opened_at = square_open.pop()
            check_crossing("]", opened_at, round_open)
            multiply(start, SQUARE_MULTIPLIER)
        else:
            problems.append(Problem(offset, f"'{char}' closes nothing"))
            run.append(char)
        offset += 1
    flush()

    # Unclosed groups apply to the rest of the prompt: round ones first, outermost first.
    for start, opened_at in round_open:
        problems.append(Problem(opened_at, "'(' is never closed"))
        multiply(start, ROUND_MULTIPLIER)
    for start, opened_at in square_open:
        problems.append(Problem(opened_at, "'[' is never closed"))
        multiply(start, SQUARE_MULTIPLIER)
    return _merge(pieces), problems


def _merge(pieces: list[_Piece]) -> list[Segment]:
    runs: list[tuple[list[str], float, bool]] = []  # texts joined once: no quadratic `+`
    for piece in pieces:
        if runs and not piece.is_break and not runs[-1][2] and runs[-1][1] == piece.weight:
            runs[-1][0].append(piece.text)
        else:
            runs.append(([piece.text], piece.weight, piece.is_break))
    return [("".join(texts), weight) for texts, weight, _ in runs] or [("", 1.0)]
