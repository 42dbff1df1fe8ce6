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


def build_scheduler(name: str, base_config: Any, seed: int) -> Any:
    """A fresh scheduler of the named kind from the model's own scheduler config.

    Built per job: it is cheap, and it keeps step state from leaking between jobs. `seed`
    feeds the one sampler that draws its noise outside the pipeline's generators (SDE).
    """
    try:
        cls, overrides = _TABLE[name]
    except KeyError:
        raise ValueError(
            f"scheduler: {name!r} is not supported; allowed: {', '.join(SCHEDULERS)}"
        ) from None
    extra = dict(overrides)
    if cls is DPMSolverSDEScheduler:
        extra["noise_sampler_seed"] = seed
    return cls.from_config(base_config, **extra)
