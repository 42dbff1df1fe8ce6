"""Vary subtle / strong: an image's own txt2img job again, with a new variation seed; any thread.

Plain functions over a LibraryEntry (no Qt): the details view and the gallery's menu offer them,
the window's job controller queues the request.
"""

from __future__ import annotations

import dataclasses
import secrets

from ldstudio.core.library import LibraryEntry
from ldstudio.core.params import SEED_MAX
from ldstudio.core.request import KIND_TXT2IMG, Request

# "Vary subtle" / "Vary strong": A1111's variation strengths for a near and a far variation.
VARY_STRENGTHS: dict[str, float] = {"subtle": 0.1, "strong": 0.5}
VARY_TIPS = {
    "subtle": "Make this image again with a random variation seed at strength 0.1: the same "
    "picture, slightly different",
    "strong": "Make this image again with a random variation seed at strength 0.5: the same "
    "prompt and composition's cousin",
}


def vary_problem(entry: LibraryEntry) -> str:
    """Why `entry` cannot be varied ("" when it can): only a txt2img job can be rerun as is."""
    request = entry.request
    if request is None:
        return "Cannot vary: the image does not hold parameters ldstudio can run again"
    if request.kind != KIND_TXT2IMG or request.face != KIND_TXT2IMG:
        return (
            f"Cannot vary a {request.face} image: only txt2img images can be made again with a "
            "variation seed"
        )
    return ""


def varied_request(
    entry: LibraryEntry, strength: float, variation_seed: int | None = None
) -> Request:
    """The entry's own txt2img request again, with a variation seed (a new random one unless
    given) at `strength`; everything else as the image was made. ValueError when it cannot."""
    problem = vary_problem(entry)
    request = entry.request
    if problem or request is None:
        raise ValueError(problem)
    seed = secrets.randbelow(SEED_MAX + 1) if variation_seed is None else variation_seed
    params = request.params.replace(variation_seed=seed, variation_strength=strength)
    return dataclasses.replace(request, params=params)
