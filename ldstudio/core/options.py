"""EngineOptions: how the engine runs (device, precision, memory, compilation); pure data.

Unlike GenerationParams these never change what an image looks like (except tiled VAE decode
at the pixel level), so they are settings of the engine, not part of a job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "fp16", "bf16", "fp32")
SWITCHES = ("auto", "on", "off")


@dataclass(frozen=True)
class EngineOptions:
    """`auto` lets the engine choose from the device and its memory (see engine.performance)."""

    device: str = "auto"
    dtype: str = "auto"
    sdpa: bool = True  # scaled-dot-product attention (fused kernels); off = classic attention
    channels_last: str = "auto"
    compile_unet: bool = False  # torch.compile of the UNet's repeated blocks, one-time warm-up
    vae_tiling: str = "auto"
    attention_slicing: str = "auto"
    cpu_offload: str = "auto"  # model CPU offload, for GPUs with little memory

    def validate(self) -> EngineOptions:
        _one_of("device", self.device, DEVICES)
        _one_of("dtype", self.dtype, DTYPES)
        for name in ("channels_last", "vae_tiling", "attention_slicing", "cpu_offload"):
            _one_of(name, getattr(self, name), SWITCHES)
        for name in ("sdpa", "compile_unet"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: {getattr(self, name)!r} is not allowed; use true/false")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}).validate()


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: {value!r} is not supported; allowed: {', '.join(allowed)}")
