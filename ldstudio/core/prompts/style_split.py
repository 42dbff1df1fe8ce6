"""Styles taken back out of a prompt they were applied to (reusing an image); pure Python.

An image records the prompt with its styles applied and the styles' names (`Styles`). To edit
it as A1111 does, each named style whose text is found where `apply_styles` put it is taken
out again, so the prompt box shows the user's own words and the style is picked, not applied
twice. The names are undone from the last applied inwards; the first one that is not known or
whose text is not there (the styles.csv changed) stops it: that style and those applied
before it stay in the prompt's text as written, and keep their names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ldstudio.core.prompts.styles import PROMPT_PLACEHOLDER, Style, merge_style_text


@dataclass(frozen=True)
class SplitPrompt:
    prompt: str
    negative_prompt: str
    kept: tuple[str, ...]  # names whose text stays in the prompt as written (applied first)
    picked: tuple[Style, ...]  # styles taken out: applied again, in this order, on submit


def unmerge_style_text(style_text: str, merged: str) -> str | None:
    """The text that `merge_style_text(style_text, text)` turned into `merged`, or None."""
    if PROMPT_PLACEHOLDER in style_text:
        parts = style_text.split(PROMPT_PLACEHOLDER)
        room = len(merged) - sum(len(part) for part in parts)
        if room < 0 or room % (len(parts) - 1):
            return None
        start = len(parts[0])
        text = merged[start : start + room // (len(parts) - 1)]
    elif not style_text.strip():
        text = merged
    elif merged == style_text.strip():
        text = ""
    else:
        text = merged.removesuffix(", " + style_text.strip())
    # The check that it really is the inverse (a comma inside the user's text, a
    # placeholder-wrapped text that only looks like it).
    return text if merge_style_text(style_text, text) == merged else None


def split_styles(
    prompt: str, negative: str, names: Sequence[str], known: Sequence[Style]
) -> SplitPrompt:
    """Take the named styles (in the order applied) out of the prompts, as far as possible."""
    by_name = {style.name: style for style in known}
    by_lower = {style.name.lower(): style for style in known}
    picked: list[Style] = []
    remaining = len(names)
    while remaining:
        name = names[remaining - 1]
        style = by_name.get(name) or by_lower.get(name.lower())
        if style is None:
            break
        new_prompt = unmerge_style_text(style.prompt, prompt)
        new_negative = unmerge_style_text(style.negative_prompt, negative)
        if new_prompt is None or new_negative is None:
            break
        prompt, negative = new_prompt, new_negative
        picked.insert(0, style)
        remaining -= 1
    return SplitPrompt(prompt, negative, tuple(names[:remaining]), tuple(picked))
