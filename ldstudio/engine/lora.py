"""Per-job LoRAs and VAE override on the loaded pipeline; engine thread.

LoRA files are read with safetensors (never a pickle) and handed to diffusers as state dicts;
diffusers converts kohya/A1111 key names and loads both layouts as PEFT adapters, so several
LoRAs combine with one strength each and switching jobs only changes adapter weights. The
model's own VAE is kept while an override is active and put back when a job asks for none.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from ldstudio.core.models import (
    KIND_LORA,
    VARIANT_LABELS,
    VARIANTS,
    ModelRegistry,
    detect,
    find_model,
    split_lora_tags,
)
from ldstudio.core.params import GenerationParams
from ldstudio.engine.checkpoints import CheckpointError, checked_safetensors, load_vae_file
from ldstudio.engine.models import LoadedModel, ModelError

log = logging.getLogger(__name__)


def resolve_prompt_loras(params: GenerationParams) -> GenerationParams:
    """Move `<lora:name:w>` tags from the prompt into `loras` as resolved file paths.

    Names are matched against the LoRAs in the user's model folders (file stem, as A1111
    does); a tag may also hold a path. The prompt sent to the text encoder is the one
    without tags, and the saved params say exactly which files were applied.
    """
    text, tags = split_lora_tags(params.prompt)
    if not tags:
        return params
    entries = None
    resolved = list(params.loras)
    for name, weight in tags:
        path = Path(name).expanduser()
        if not path.is_file():
            if entries is None:
                # The scan kept since the last rescan: not the folders walked for every job.
                entries = ModelRegistry.shared().entries()
            try:
                path = find_model(name, entries, (KIND_LORA,)).path
            except ValueError as exc:
                raise ModelError(f"prompt: <lora:{name}>: {exc}") from None
        resolved.append((str(path.resolve()), weight))
    return params.replace(prompt=text, loras=tuple(resolved))


class ExtrasState:
    """Which LoRAs and which VAE the loaded pipeline carries right now."""

    def __init__(self) -> None:
        self._pipe_id: int | None = None
        self._adapters: dict[str, str] = {}  # LoRA file → adapter name
        self._original_vae: Any = None
        self._vae_path = ""
        self._counter = 0

    def apply(self, loaded: LoadedModel, params: GenerationParams) -> bool:
        """Make the pipeline match `params.vae` and `params.loras`; True if the VAE changed."""
        if self._pipe_id != id(loaded.pipe):
            # A freshly loaded pipeline carries nothing of ours.
            self._pipe_id = id(loaded.pipe)
            self._adapters.clear()
            self._original_vae = None
            self._vae_path = ""
        self._apply_loras(loaded, params.loras)
        return self._apply_vae(loaded, params.vae)

    def _apply_loras(self, loaded: LoadedModel, loras: tuple[tuple[str, float], ...]) -> None:
        pipe = loaded.pipe
        wanted = [str(Path(p).expanduser().resolve()) for p, _w in loras]
        if len(set(wanted)) != len(wanted):
            raise ModelError("loras: the same LoRA file is listed twice; give it once")
        stale = [path for path in self._adapters if path not in wanted]
        if stale and not wanted:
            pipe.unload_lora_weights()
            self._adapters.clear()
            return
        if stale:
            pipe.delete_adapters([self._adapters.pop(path) for path in stale])
        for path in wanted:
            if path not in self._adapters:
                self._adapters[path] = self._load_lora(loaded, Path(path))
        if wanted:
            pipe.set_adapters(
                [self._adapters[p] for p in wanted], adapter_weights=[w for _p, w in loras]
            )

    def _load_lora(self, loaded: LoadedModel, path: Path) -> str:
        try:
            header = checked_safetensors(path)
        except CheckpointError as exc:
            raise ModelError(f"LoRA {exc}") from None
        found = detect(header)
        if found.kind != KIND_LORA:
            raise ModelError(f"{path}: not a LoRA file (found a {found.kind} file)")
        if found.family and loaded.family in VARIANTS and found.family != loaded.family:
            raise ModelError(
                f"{path}: this LoRA is for {VARIANT_LABELS[found.family]} models; the loaded "
                f"model {loaded.name} is {VARIANT_LABELS[loaded.family]}"
            )
        from safetensors.torch import load_file

        self._counter += 1
        name = f"lora{self._counter}"
        try:
            with warnings.catch_warnings():
                # PEFT warns that a second adapter joins the first: that is the point here.
                warnings.filterwarnings("ignore", message=".*peft_config.*")
                loaded.pipe.load_lora_weights(load_file(str(path)), adapter_name=name)
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise ModelError(f"{path} could not be applied as a LoRA: {exc}") from exc
        return name

    def _apply_vae(self, loaded: LoadedModel, vae: str) -> bool:
        path = str(Path(vae).expanduser().resolve()) if vae else ""
        if path == self._vae_path:
            return False
        pipe = loaded.pipe
        if not path:
            pipe.vae = self._original_vae
            self._original_vae, self._vae_path = None, ""
            return True
        # A diffusers-folder model's standalone VAE loads with its family's bundled config.
        config = loaded.variant or (loaded.family if loaded.family in VARIANTS else "")
        if not config:
            raise ModelError(
                f"vae: a standalone VAE needs an SD 1.x, SD 2.x or SDXL model; "
                f"{loaded.name} is {loaded.family!r}"
            )
        try:
            override = load_vae_file(Path(path), loaded.choice.torch_dtype, config)
        except CheckpointError as exc:
            raise ModelError(f"vae: {exc}") from None
        if self._original_vae is None:
            self._original_vae = pipe.vae
        pipe.vae = override.to(loaded.choice.device)
        self._vae_path = path
        return True
