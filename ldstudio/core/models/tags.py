"""LoRA references written in prompts (`<lora:name:0.8>`) and on the command line; any thread."""

from __future__ import annotations

import re

# A1111's extra-network syntax: <lora:name>, <lora:name:0.8>, <lora:name:0.8:0.5> (text
# encoder:UNet strengths; ldstudio applies the first to both). `lyco` is the LyCORIS alias.
_LORA_TAG = re.compile(r"<(?:lora|lyco):([^:<>]+)(?::([^:<>]*))?(?::[^<>]*)?>", re.IGNORECASE)


def split_lora_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """(prompt without `<lora:...>` tags, [(name, strength), ...]); ValueError on a bad strength."""
    found: list[tuple[str, float]] = []
    for match in _LORA_TAG.finditer(prompt):
        name, weight = match.group(1).strip(), (match.group(2) or "1").strip()
        try:
            strength = float(weight)
        except ValueError:
            raise ValueError(
                f"prompt: {match.group(0)} has strength {weight!r}; allowed: a number, "
                "e.g. <lora:name:0.8>"
            ) from None
        found.append((name, strength))
    text = _LORA_TAG.sub("", prompt)
    # Tags are usually written as ", <lora:x:1>": drop the separators they leave behind. A match
    # starts only where a whitespace run starts, so a long run is scanned once, not once per space.
    text = re.sub(r"(?<!\s)\s*,(?:\s*,)+", ",", text)
    text = re.sub(r"[ \t]{2,}", " ", text).strip().strip(",").strip()
    return text, found


def parse_lora_argument(text: str) -> tuple[str, float]:
    """`PATH_OR_NAME[:STRENGTH]` → (text, strength); a path may itself contain colons."""
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return text, 1.0
