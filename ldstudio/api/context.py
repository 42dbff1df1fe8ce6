"""What every route shares: the engine service, its tracker, the library, the models, and
A1111's options (the checkpoint later jobs use); any thread (the options behind a lock).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ldstudio.api.catalogue import Model, ModelCatalogue
from ldstudio.api.jobs import JobTracker
from ldstudio.core.library import LibraryStore
from ldstudio.core.params import CLIP_SKIP_RANGE
from ldstudio.core.service import EngineService

VAE_AUTOMATIC, VAE_NONE = "Automatic", "None"


@dataclass
class Options:
    """The A1111 options the server honours: its `sd_model_checkpoint`, `sd_vae` and
    `CLIP_stop_at_last_layers`, the defaults of every A1111 job that does not override them."""

    checkpoint: Model
    vae: Model | None = None  # None: the checkpoint's own ("Automatic")
    clip_skip: int = 1


@dataclass
class ServerContext:
    service: EngineService
    tracker: JobTracker
    library: LibraryStore
    catalogue: ModelCatalogue
    options: Options
    lock: threading.Lock = field(default_factory=threading.Lock)

    def current_options(self) -> Options:
        with self.lock:
            return Options(self.options.checkpoint, self.options.vae, self.options.clip_skip)

    def checkpoint(self, text: object, what: str = "sd_model_checkpoint") -> Model:
        if not isinstance(text, str):
            raise ValueError(f"{what}: {text!r} is not a model name (text)")
        return self.catalogue.find(self.catalogue.checkpoints(), text, what)

    def vae(self, text: object, what: str = "sd_vae") -> Model | None:
        """None for "Automatic"/"None" (the checkpoint's own VAE), else a VAE on the server."""
        if not isinstance(text, str):
            raise ValueError(f"{what}: {text!r} is not a VAE name (text)")
        if text.strip() in ("", VAE_AUTOMATIC, VAE_NONE):
            return None
        return self.catalogue.find(self.catalogue.vaes(), text, what)

    def update_options(self, values: dict[str, object]) -> None:
        """Apply the writable keys of an A1111 options dict (all or nothing); ValueError
        naming a key whose value is not allowed."""
        with self.lock:
            options = Options(self.options.checkpoint, self.options.vae, self.options.clip_skip)
        if "sd_model_checkpoint" in values:
            options.checkpoint = self.checkpoint(values["sd_model_checkpoint"])
        if "sd_vae" in values:
            options.vae = self.vae(values["sd_vae"])
        if "CLIP_stop_at_last_layers" in values:
            options.clip_skip = clip_skip(values["CLIP_stop_at_last_layers"])
        with self.lock:
            self.options = options


def clip_skip(value: object, what: str = "CLIP_stop_at_last_layers") -> int:
    low, high = CLIP_SKIP_RANGE
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(
            f"{what}: {value!r} is not allowed; allowed: integers from {low} to {high}"
        )
    return value
