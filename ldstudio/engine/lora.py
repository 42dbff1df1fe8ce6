"""Per-job LoRAs and VAE override on the loaded pipeline; engine thread.

LoRA files are read with safetensors (never a pickle) and handed to diffusers as state dicts;
diffusers converts kohya/A1111 key names and loads both layouts as PEFT adapters, so several
LoRAs combine with one strength each and switching jobs only changes adapter weights. The
model's own VAE is kept while an override is active and put back when a job asks for none.
"""

from __future__ import annotations

import logging
import warnings
import weakref
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
    """Which LoRAs and which VAE the loaded model's pipelines carry right now.

    Keyed by the modules LoRA adapters live in (the UNet and the text encoders), not by the
    pipeline object: a `from_pipe` sibling shares them, so applying through it or through the
    base pipeline sees one state. Only weak references: a reload frees the old model. The VAE
    is a slot of each pipeline: it is checked on the one a job runs on.
    """

    def __init__(self) -> None:
        self._modules: tuple[weakref.ref[Any], ...] = ()
        self._adapters: dict[str, str] = {}  # LoRA file → adapter name
        self._original_vae: Any = None  # the model's own VAE
        self._override_vae: Any = None
        self._vae_path = ""
        self._counter = 0

    def apply(self, loaded: LoadedModel, params: GenerationParams, pipe: Any = None) -> bool:
        """Make `pipe` (default `loaded.pipe`, or a from_pipe sibling of it) match `params.vae`
        and `params.loras`; True if its VAE changed."""
        pipe = loaded.pipe if pipe is None else pipe
        modules = _adapter_modules(pipe)
        if len(modules) != len(self._modules) or any(
            ref() is not module for ref, module in zip(self._modules, modules, strict=True)
        ):
            # Modules not seen before (a freshly loaded model) carry nothing of ours.
            self.clear()
            self._modules = tuple(weakref.ref(module) for module in modules)
            self._original_vae = pipe.vae
        self._apply_loras(loaded, pipe, params.loras)
        return self._apply_vae(loaded, pipe, params.vae)

    def clear(self) -> None:
        """Forget the model (it is being reloaded): its VAEs are not held any longer."""
        self._modules = ()
        self._adapters.clear()
        self._original_vae = self._override_vae = None
        self._vae_path = ""

    def _apply_loras(
        self, loaded: LoadedModel, pipe: Any, loras: tuple[tuple[str, float], ...]
    ) -> None:
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
                self._adapters[path] = self._load_lora(loaded, pipe, Path(path))
        if wanted:
            pipe.set_adapters(
                [self._adapters[p] for p in wanted], adapter_weights=[w for _p, w in loras]
            )

    def _load_lora(self, loaded: LoadedModel, pipe: Any, path: Path) -> str:
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
                pipe.load_lora_weights(load_file(str(path)), adapter_name=name)
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise ModelError(f"{path} could not be applied as a LoRA: {exc}") from exc
        return name

    def _apply_vae(self, loaded: LoadedModel, pipe: Any, vae: str) -> bool:
        path = str(Path(vae).expanduser().resolve()) if vae else ""
        if path != self._vae_path:
            self._override_vae = self._load_vae(loaded, path) if path else None
            self._vae_path = path
        wanted = self._override_vae if path else self._original_vae
        if pipe.vae is wanted:
            return False
        pipe.vae = wanted
        return True

    def _load_vae(self, loaded: LoadedModel, path: str) -> Any:
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
        return override.to(loaded.choice.device)


def _adapter_modules(pipe: Any) -> tuple[Any, ...]:
    """The modules a pipeline's LoRA adapters live in, shared by its from_pipe siblings."""
    names = ("unet", "text_encoder", "text_encoder_2")
    return tuple(m for m in (getattr(pipe, name, None) for name in names) if m is not None)
