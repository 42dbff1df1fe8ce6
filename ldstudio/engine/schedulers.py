"""Sampler names (as A1111 writes them) mapped to diffusers schedulers; engine thread."""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    UniPCMultistepScheduler,
)

from ldstudio.core.params import SCHEDULERS

_TABLE: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "Euler": (EulerDiscreteScheduler, {}),
    "Euler a": (EulerAncestralDiscreteScheduler, {}),
    "DPM++ 2M": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "DPM++ 2M Karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
    "DPM++ SDE Karras": (DPMSolverSDEScheduler, {"use_karras_sigmas": True}),
    "DDIM": (DDIMScheduler, {}),
    "UniPC": (UniPCMultistepScheduler, {}),
    "LCM": (LCMScheduler, {}),
}
assert tuple(_TABLE) == SCHEDULERS, "core.params.SCHEDULERS and the engine table must agree"


def build_scheduler(name: str, base_config: Any, seeds: int | list[int]) -> Any:
    """A fresh scheduler of the named kind from the model's own scheduler config.

    Built per job: it is cheap, and it keeps step state from leaking between jobs. `seeds`
    (one per image of the pass) feed the one sampler that draws its noise outside the
    pipeline's generators (SDE): one Brownian tree per image, so image i of a batch is the
    image a single run with its seed makes. A lone seed goes in as an int, as it always did:
    a tree of shape (C, H, W) draws the same noise as one of (1, C, H, W).
    """
    try:
        cls, overrides = _TABLE[name]
    except KeyError:
        raise ValueError(
            f"scheduler: {name!r} is not supported; allowed: {', '.join(SCHEDULERS)}"
        ) from None
    extra = dict(overrides)
    if cls is DPMSolverSDEScheduler:
        if isinstance(seeds, list):
            seeds = seeds[0] if len(seeds) == 1 else seeds
        extra["noise_sampler_seed"] = seeds
    return cls.from_config(base_config, **extra)
