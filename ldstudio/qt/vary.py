"""Vary subtle / strong: an image's own job again, with a new variation seed; any thread.

Plain functions over a LibraryEntry (no Qt): the details view and the gallery's menu offer them,
the window's job controller queues the request.
"""

from __future__ import annotations

import dataclasses
import secrets

from ldstudio.core.library import LibraryEntry
from ldstudio.core.params import SEED_MAX
from ldstudio.core.request import KIND_UPSCALE, Request

# "Vary subtle" / "Vary strong": A1111's variation strengths for a near and a far variation.
VARY_STRENGTHS: dict[str, float] = {"subtle": 0.1, "strong": 0.5}
VARY_TIPS = {
    "subtle": "Make this image again with a random variation seed at strength 0.1: the same "
    "picture, slightly different",
    "strong": "Make this image again with a random variation seed at strength 0.5: the same "
    "prompt and composition's cousin",
}


def vary_problem(entry: LibraryEntry) -> str:
    """Why `entry` cannot be varied ("" when it can): its job must be runnable again and draw
    noise (txt2img, img2img, inpaint, outpaint, an upscale with a refine)."""
    request = entry.request
    if request is None:
        return "Cannot vary: the image does not hold parameters ldstudio can run again"
    upscale = request.upscale
    if request.kind == KIND_UPSCALE and (upscale is None or not upscale.refines):
        return (
            "Cannot vary an upscale without a refine: it draws no noise, so a variation seed "
            "changes nothing"
        )
    return ""


def varied_request(
    entry: LibraryEntry, strength: float, variation_seed: int | None = None
) -> Request:
    """The entry's own request again (its source images too), with a variation seed (a new
    random one unless given) at `strength`; everything else as the image was made.
    ValueError when it cannot."""
    problem = vary_problem(entry)
    request = entry.request
    if problem or request is None:
        raise ValueError(problem)
    seed = secrets.randbelow(SEED_MAX + 1) if variation_seed is None else variation_seed
    params = request.params.replace(variation_seed=seed, variation_strength=strength)
    return dataclasses.replace(request, params=params)
