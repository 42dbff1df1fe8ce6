"""The user's model folders, default model and variant choices (`models.json`); any thread."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ldstudio.core import paths
from ldstudio.core.atomic import atomic_file
from ldstudio.core.models.detection import VARIANTS

# Called after every `ModelFolderStore.save`: what was scanned from the old folders is stale
# (the shared `ModelRegistry` registers itself here).
SAVE_LISTENERS: list[Callable[[], None]] = []


@dataclass
class ModelFolderStore:
    """The model folders the user added, the default model and per-file variant choices.

    Kept in `home_dir()/models.json`; written atomically and durably (`atomic_file`), so a
    crash or a power cut never leaves half a file.
    """

    folders: list[str] = field(default_factory=list)
    default: str = ""
    variants: dict[str, str] = field(default_factory=dict)  # file path → bundled config name

    @staticmethod
    def file() -> Path:
        return paths.home_dir() / "models.json"

    @classmethod
    def load(cls) -> ModelFolderStore:
        path = cls.file()
        if not os.path.lexists(path):
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:  # a folder, a dangling link, no permission
            raise ValueError(
                f"{path}: cannot be read ({exc.strerror or exc}); fix or delete it"
            ) from None
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise ValueError(f"{path}: not valid JSON ({reason}); fix or delete it") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        folders, variants = data.get("folders", []), data.get("variants", {})
        if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
            raise ValueError(f'{path}: "folders" must be a list of folder paths; fix or delete it')
        if not isinstance(variants, dict) or not all(isinstance(v, str) for v in variants.values()):
            raise ValueError(
                f'{path}: "variants" must map file paths to config names; fix or delete it'
            )
        return cls(
            folders=folders,
            default=str(data.get("default", "")),
            variants=variants,
        )

    def save(self) -> None:
        payload = {"folders": self.folders, "default": self.default, "variants": self.variants}
        with atomic_file(self.file()) as handle:
            handle.write(json.dumps(payload, indent=2, ensure_ascii=False).encode("utf-8"))
        for listener in SAVE_LISTENERS:
            listener()

    def add_folder(self, folder: Path) -> Path:
        resolved = folder.expanduser().resolve()
        if not resolved.is_dir():
            raise ValueError(f"model folder: {folder} does not exist or is not a folder")
        if str(resolved) not in self.folders:
            self.folders.append(str(resolved))
        return resolved

    def remove_folder(self, folder: Path) -> None:
        resolved = str(folder.expanduser().resolve())
        if resolved not in self.folders:
            raise ValueError(
                f"model folder: {folder} is not in the list ({', '.join(self.folders) or 'empty'})"
            )
        self.folders.remove(resolved)

    def set_variant(self, file: Path, variant: str, family: str) -> None:
        allowed = VARIANTS.get(family, ())
        if variant not in allowed:
            raise ValueError(
                f"variant: {variant!r} does not fit a {family or 'unknown'} model; allowed: "
                f"{', '.join(allowed) or 'none (not a single-file checkpoint)'}"
            )
        self.variants[str(file.expanduser().resolve())] = variant

    def variant_for(self, file: Path) -> str | None:
        return self.variants.get(str(file.expanduser().resolve()))


# The tiny decoders (TAESD, `AutoencoderTiny`) for live previews, per family.
TAESD_FOLDERS = {"sd1": "taesd", "sd2": "taesd", "sdxl": "taesdxl"}


def taesd_dir(family: str) -> Path:
    """Where ldstudio looks for a family's TAESD weights (a diffusers AutoencoderTiny folder)."""
    if family not in TAESD_FOLDERS:
        raise ValueError(
            f"preview_method: 'taesd' has no tiny decoder for {family!r} models; TAESD exists "
            "for SD 1.x, SD 2.x and SDXL. Use 'latent2rgb' or 'vae' for this model."
        )
    return paths.home_dir() / "models" / "taesd" / TAESD_FOLDERS[family]
