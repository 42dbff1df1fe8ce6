"""Prompt editing and alternation: one prompt box's text as plain prompts per step; pure Python.

AUTOMATIC1111's documented syntax, evaluated before emphasis (which passes through untouched):

- `[from:to:when]` uses `from` up to step `when` and `to` after it; `[to:when]` adds `to` after
  `when`, `[from::when]` removes `from` after it. A `when` below 1 is a fraction of the steps,
  else a step number (truncated, and capped at the step count). Edits nest.
- `[a|b|c]` alternates every step: a at step 1, b at step 2, ...; options may be empty.

A bracket that is none of these (`[x]` emphasis, `[a:b]`, an unclosed `[`) stays literal text,
and so does a `:` or `|` outside square brackets: the prompt is never rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Text without any character the syntax gives a meaning to, taken in one piece.
_PLAIN_RE = re.compile(r"[^\\\[\]():|]+")
_NUMBER_RE = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*")


@dataclass(frozen=True)
class _Edit:
    before: list[_Node]
    after: list[_Node]
    when: float


@dataclass(frozen=True)
class _Alternation:
    options: list[list[_Node]]


@dataclass(frozen=True)
class _Group:
    """Brackets that are text (emphasis, or not syntax at all), with what they hold."""

    nodes: list[_Node]


_Node = str | _Edit | _Alternation | _Group


@dataclass
class _Frame:
    """An open bracket while scanning: its parts so far, split at its ':' or '|'."""

    opener: str
    parts: list[list[_Node]] = field(default_factory=lambda: [[]])
    separators: list[str] = field(default_factory=list)

    def literal(self) -> list[_Node]:
        nodes: list[_Node] = [self.opener]
        for index, part in enumerate(self.parts):
            if index:
                nodes.append(self.separators[index - 1])
            nodes.extend(part)
        return nodes


def prompt_schedules(text: str, steps: int) -> list[tuple[int, str]]:
    """The plain prompts of `text`, each with the last step (1-based, inclusive) it applies to.

    Consecutive steps with the same prompt are one entry, so a prompt without editing syntax
    gives `[(steps, text)]`.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    if "[" not in text:
        return [(steps, text)]
    tree = _parse(text)
    schedule: list[tuple[int, str]] = []
    for step in _boundaries(tree, steps):
        prompt = _render(tree, step, steps)
        if schedule and schedule[-1][1] == prompt:
            schedule[-1] = (step, prompt)
        else:
            schedule.append((step, prompt))
    return schedule


def _parse(text: str) -> list[_Node]:
    # An explicit stack, not recursion: deep nesting must not hit Python's recursion limit.
    stack = [_Frame("")]
    offset = 0
    while offset < len(text):
        top = stack[-1]
        plain = _PLAIN_RE.match(text, offset)
        if plain:
            top.parts[-1].append(plain.group())
            offset = plain.end()
            continue
        char = text[offset]
        if char == "\\":
            top.parts[-1].append(text[offset : offset + 2])  # the encoder unescapes it
            offset += 2
            continue
        if char in "[(":
            stack.append(_Frame(char))
        elif char == "]" and top.opener == "[":
            stack.pop()
            stack[-1].parts[-1].append(_close_square(top))
        elif char == ")" and top.opener == "(":
            stack.pop()
            stack[-1].parts[-1].append(_Group([*top.literal(), ")"]))
        elif char in ":|" and top.opener == "[":
            top.separators.append(char)
            top.parts.append([])
        else:
            top.parts[-1].append(char)
        offset += 1
    while len(stack) > 1:  # unclosed brackets are text, their contents still parsed
        frame = stack.pop()
        stack[-1].parts[-1].append(_Group(frame.literal()))
    return stack[0].parts[0]


def _close_square(frame: _Frame) -> _Node:
    separators = set(frame.separators)
    if separators == {"|"}:
        return _Alternation(frame.parts)
    if separators == {":"} and len(frame.parts) in (2, 3):
        when = frame.parts[-1]
        if all(isinstance(node, str) for node in when):
            number = _NUMBER_RE.fullmatch("".join(str(node) for node in when))
            if number:
                before = frame.parts[0] if len(frame.parts) == 3 else []
                return _Edit(before, frame.parts[-2], float(number.group(1)))
    return _Group([*frame.literal(), "]"])


def _step_of(when: float, steps: int) -> int:
    """The last step of an edit's `from`; 0 when `to` applies from the start."""
    value = when * steps if when < 1 else when
    if value < 1:
        return 0
    # Truncated like A1111's, float product and all, so its prompts switch at the same step.
    return steps if value >= steps else int(value)


def _boundaries(tree: list[_Node], steps: int) -> list[int]:
    found = {steps}
    pending = [tree]
    while pending:
        for node in pending.pop():
            if isinstance(node, _Edit):
                step = _step_of(node.when, steps)
                if step >= 1:
                    found.add(step)
                pending += [node.before, node.after]
            elif isinstance(node, _Alternation):
                return list(range(1, steps + 1))
            elif isinstance(node, _Group):
                pending.append(node.nodes)
    return sorted(found)


def _render(tree: list[_Node], step: int, steps: int) -> str:
    out: list[str] = []
    pending = [iter(tree)]
    while pending:
        node = next(pending[-1], None)
        if node is None:
            pending.pop()
        elif isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Edit):
            pending.append(iter(node.before if step <= _step_of(node.when, steps) else node.after))
        elif isinstance(node, _Group):
            pending.append(iter(node.nodes))
        else:
            pending.append(iter(node.options[(step - 1) % len(node.options)]))
    return "".join(out)
