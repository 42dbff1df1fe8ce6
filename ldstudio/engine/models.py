"""Loading models from local disk, offline: diffusers folders (anywhere, including the
Hugging Face cache) and single-file checkpoints; engine thread.

Every load passes `local_files_only=True` (single files also a bundled config): no call ever
reaches a network. Finding and checking models on disk is `ldstudio.core.models`'s job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ldstudio.core.backend import JobError
from ldstudio.core.models import ModelFileError
from ldstudio.core.models.detection import family_of_variant, is_inpainting_unet, unet_family
from ldstudio.core.models.entries import hf_cache_name
from ldstudio.core.models.entries import resolve_model_path as resolve_model_path
from ldstudio.core.models.preflight import check_diffusers_folder as checked_folder_index
from ldstudio.core.models.preflight import check_model as checked_model_variant

if TYPE_CHECKING:
    # Only for annotations: checking a model (`check_model`) stays free of torch, so a
    # damaged file is refused in milliseconds, before the seconds torch takes to import.
    from ldstudio.engine.device import DeviceChoice

log = logging.getLogger(__name__)


class ModelError(JobError):
    """A model that cannot be found or loaded; the message names the path and what is wrong.

    A JobError: the service shows the message as it is.
    """


@dataclass
class LoadedModel:
    pipe: Any  # a diffusers DiffusionPipeline
    path: Path
    name: str
    family: str
    choice: DeviceChoice
    base_scheduler_config: Any
    native_size: int
    seconds: float
    variant: str = ""  # the bundled config a single-file checkpoint loaded with
    # An inpainting model (9-channel UNet): it runs canvas jobs with the real mask, auto
    # strength 1.0 (InpaintSettings.resolved_strength), and txt2img as a fully masked inpaint.
    inpainting: bool = False
    # Task pipelines built from `pipe` with from_pipe (engine/pipelines.py), by task: they
    # share its modules and go with it.
    tasks: dict[str, Any] = field(default_factory=dict, repr=False)


def model_display_name(path: Path) -> str:
    """A single file shows its stem, as A1111 does; an HF cache snapshot shows org/name."""
    if path.is_file():
        return path.stem
    return hf_cache_name(path) or path.name


def check_model(path: Path) -> str:
    """Check a model path before loading: "" for a diffusers folder, the variant for a file.

    Reads only headers and JSON (`core.models.preflight.check_model`); raises ModelError
    naming the path and what is wrong.
    """
    try:
        return checked_model_variant(path)
    except (ModelFileError, ValueError) as exc:
        raise ModelError(str(exc)) from None


def check_diffusers_folder(path: Path) -> dict[str, Any]:
    """Read model_index.json and check every component folder exists; ModelError otherwise."""
    try:
        return checked_folder_index(path)
    except ModelFileError as exc:
        raise ModelError(str(exc)) from None


def _quiet_libraries() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # Progress is reported through events; library progress bars would only add noise.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    # transformers warns about optional image-processor backends SD pipelines never use;
    # diffusers about dtype/device combinations the engine's device policy already chose.
    transformers_logging.set_verbosity_error()
    diffusers_logging.set_verbosity_error()


def detect_family(pipe: Any) -> str:
    config = pipe.unet.config
    return unet_family(
        getattr(config, "cross_attention_dim", None), getattr(config, "addition_embed_type", None)
    )


def load_pipeline(
    path: Path,
    choice: DeviceChoice,
    place: Callable[[Any], None] | None = None,
    variant: str = "",
) -> LoadedModel:
    """Load a diffusers folder or a single-file checkpoint onto a device.

    Raises ModelError with a readable message. `place` configures the pipeline and puts it
    on its device (memory options such as CPU offload must be set before any weights reach
    the GPU); default: `pipe.to(device)`. `variant` picks a single file's bundled config;
    empty means the user's choice or what detection found.
    """
    if path.is_file():
        return _load_single_file(path, choice, place, variant or check_model(path))
    index = check_diffusers_folder(path)
    from diffusers import DiffusionPipeline

    _quiet_libraries()
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": choice.torch_dtype}
    if "safety_checker" in index:
        # ldstudio shows what the user asked for; a checker would also need hub downloads.
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    started = time.perf_counter()
    try:
        pipe = DiffusionPipeline.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelError(f"model {path} could not be loaded: {exc}") from exc
    _place(pipe, choice, place)
    seconds = time.perf_counter() - started
    native = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
    return LoadedModel(
        pipe=pipe,
        path=path,
        name=model_display_name(path),
        family=detect_family(pipe),
        choice=choice,
        base_scheduler_config=pipe.scheduler.config,
        native_size=native,
        seconds=seconds,
        inpainting=is_inpainting_unet(pipe.unet.config.in_channels),
    )


def _place(pipe: Any, choice: DeviceChoice, place: Callable[[Any], None] | None) -> None:
    if place is None:
        pipe.to(choice.device)
    else:
        place(pipe)
    pipe.set_progress_bar_config(disable=True)


def _load_single_file(
    path: Path, choice: DeviceChoice, place: Callable[[Any], None] | None, variant: str
) -> LoadedModel:
    from ldstudio.engine.checkpoints import CheckpointError, load_single_file

    _quiet_libraries()
    started = time.perf_counter()
    try:
        pipe = load_single_file(path, choice.torch_dtype, variant)
    except CheckpointError as exc:
        raise ModelError(str(exc)) from exc
    _place(pipe, choice, place)
    family = family_of_variant(variant)
    return LoadedModel(
        pipe=pipe,
        path=path,
        name=model_display_name(path),
        family=family,
        choice=choice,
        base_scheduler_config=pipe.scheduler.config,
        native_size=int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor),
        seconds=time.perf_counter() - started,
        variant=variant,
        inpainting=is_inpainting_unet(pipe.unet.config.in_channels),
    )


class PipelineCache:
    """Keeps the one loaded pipeline; reloads only when the model or the device changes."""

    def __init__(self) -> None:
        self._loaded: LoadedModel | None = None
        self._setup: Hashable = None

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    def get(
        self,
        path: Path,
        choice: DeviceChoice,
        place: Callable[[Any], None] | None = None,
        setup: Hashable = None,
        on_reload: Callable[[], None] = lambda: None,
    ) -> tuple[LoadedModel, bool]:
        """(model, cached): cached is True when the loaded pipeline was reused.

        `setup` identifies how `place` configures the pipeline; a different one reloads.
        `on_reload` runs just before a (re)load: the cache alone knows when one happens.
        """
        current = self._loaded
        # A single file's variant is the user's to change (models.json); that needs a reload.
        variant = check_model(path) if path.is_file() else ""
        if current is not None and (
            current.path,
            current.choice,
            current.variant,
            self._setup,
        ) == (path, choice, variant, setup):
            return current, True
        on_reload()
        # Drop the old pipeline first so two models never sit in memory together.
        self._loaded = None
        del current
        self._loaded = load_pipeline(path, choice, place, variant)
        self._setup = setup
        return self._loaded, False

    def clear(self) -> None:
        self._loaded = None
