"""Loading an upscaler model from a .safetensors file; torch thread.

Pickles never reach a loader: the file is checked (core/models/preflight.checked_upscaler)
before its tensors are read with safetensors. Compact and ESRGAN run on our own networks
(compact.py, rrdb.py); SwinIR, DAT, HAT and SPAN through spandrel when it is installed, handed
the state dict we loaded (never a path: spandrel's own file loading would torch.jit.load a .pt).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ldstudio.core.backend import JobError
from ldstudio.core.models.preflight import checked_upscaler
from ldstudio.core.models.safetensors import ModelFileError, read_safetensors_header
from ldstudio.core.models.upscalers import (
    ARCH_COMPACT,
    ARCH_ESRGAN,
    UpscalerLayout,
    detect_upscaler,
    esrgan_old_keys,
)


@dataclass
class LoadedUpscaler:
    """An upscaler ready to run: NCHW float RGB in [0, 1] → `scale`× larger."""

    name: str
    path: Path
    layout: UpscalerLayout
    run: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    dtype: torch.dtype

    @property
    def scale(self) -> int:
        return self.layout.scale

    @property
    def label(self) -> str:
        return f"{self.name} ({self.layout.architecture} ×{self.layout.scale})"


def load_upscaler(path: Path, device: str = "cpu", name: str | None = None) -> LoadedUpscaler:
    """Build the network `path` holds; JobError naming the file and the fault otherwise."""
    from safetensors.torch import load_file

    try:
        checked_upscaler(path, "upscaler")
        layout = detect_upscaler(read_safetensors_header(path).tensors)
    except ModelFileError as exc:
        raise JobError(str(exc)) from None
    assert layout is not None  # checked_upscaler found one
    state = load_file(str(path))
    # Half precision on CUDA (these nets are fine in fp16); float32 elsewhere (CPU, MPS).
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    target = torch.device(device)
    module = _build(layout, state, path)
    module.to(device=target, dtype=dtype).eval().requires_grad_(False)
    return LoadedUpscaler(name or path.stem, path, layout, module, target, dtype)


def _build(layout: UpscalerLayout, state: dict[str, torch.Tensor], path: Path) -> torch.nn.Module:
    if layout.architecture == ARCH_COMPACT:
        from ldstudio.engine.upscalers.compact import Compact

        module: torch.nn.Module = Compact(
            layout.in_channels, layout.out_channels, layout.features, layout.blocks, layout.scale
        )
    elif layout.architecture == ARCH_ESRGAN:
        from ldstudio.engine.upscalers.rrdb import RRDBNet

        state = {old: state[key] for old, key in esrgan_old_keys(state).items()}
        ups = int(math.log2(layout.scale * layout.unshuffle))
        module = RRDBNet(
            layout.in_channels,
            layout.out_channels,
            layout.features,
            layout.blocks,
            ups,
            layout.unshuffle,
        )
    else:
        return _spandrel(state, path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise JobError(
            f"upscaler: {path}: its weights do not fit the {layout.architecture} layout they "
            f"were detected as ({str(exc).splitlines()[0]})"
        ) from None
    return module


def _spandrel(state: dict[str, torch.Tensor], path: Path) -> torch.nn.Module:
    try:
        from spandrel import ModelLoader
    except ImportError:
        raise JobError(
            f"upscaler: {path}: this architecture runs through the spandrel package, which is "
            "not installed (pip install spandrel)"
        ) from None
    try:
        descriptor = ModelLoader().load_from_state_dict(state)
    except Exception as exc:  # spandrel raises its own types for layouts it does not know
        raise JobError(f"upscaler: {path}: spandrel cannot load it ({exc})") from None
    model = descriptor.model
    assert isinstance(model, torch.nn.Module)
    return model
