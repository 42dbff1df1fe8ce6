"""Choosing the torch device and precision; engine thread."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ldstudio.core.options import DEVICES, DTYPES

_TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # torch device string: "cuda", "mps", "cpu"
    dtype: str  # "fp16", "bf16", "fp32"

    @property
    def torch_dtype(self) -> torch.dtype:
        return _TORCH_DTYPES[self.dtype]

    @property
    def label(self) -> str:
        """What the status bar shows, e.g. "CUDA · fp16"."""
        return f"{self.device.upper()} · {self.dtype}"


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(device: str = "auto", dtype: str = "auto") -> DeviceChoice:
    """CUDA, then MPS, then CPU unless overridden; fp16 on GPUs, fp32 on the CPU by default."""
    if device not in DEVICES:
        raise ValueError(f"device: {device!r} is not supported; allowed: {', '.join(DEVICES)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype: {dtype!r} is not supported; allowed: {', '.join(DTYPES)}")
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif mps_available():
            device = "mps"
        else:
            device = "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was requested but no CUDA GPU is available to torch")
    elif device == "mps" and not mps_available():
        raise ValueError("device: 'mps' was requested but Apple MPS is not available to torch")
    if dtype == "auto":
        # Half precision on the CPU is slow and poorly supported; GPUs want fp16.
        dtype = "fp32" if device == "cpu" else "fp16"
    return DeviceChoice(device=device, dtype=dtype)


# How each allocator words running out: CUDA/MPS "out of memory"; torch's CPU allocator
# "DefaultCPUAllocator: can't allocate memory" (Linux, macOS) or "not enough memory" (Windows).
_OOM_WORDS = ("out of memory", "can't allocate memory", "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for out-of-memory errors of CUDA, MPS (a plain RuntimeError) and the CPU."""
    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(words in text for words in _OOM_WORDS)


def total_memory(device: str) -> int | None:
    """Bytes of memory the device can use: VRAM on CUDA, system RAM on MPS (unified)."""
    if device == "cuda":
        return int(torch.cuda.get_device_properties(0).total_memory)
    if device == "mps":
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def free_memory(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
    elif device == "mps":
        torch.mps.empty_cache()
