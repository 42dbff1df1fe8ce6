"""Persistent user settings as one JSON file in the ldstudio home folder; any thread.

Writes are atomic (temp file + rename), so a crash mid-save leaves the previous settings. A file
that cannot be read is kept aside as `settings.json.bad` rather than overwritten, so a user who
edited it by hand does not lose the edit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ldstudio.core import paths
from ldstudio.core.atomic import atomic_file
from ldstudio.core.params import GenerationParams

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
RECENT_PROMPTS_MAX = 20


@dataclass
class Settings:
    """What the app remembers between runs. Byte blobs (Qt geometry) are stored as base64."""

    last_params: dict[str, Any] = field(default_factory=dict)
    window_geometry: str = ""
    window_state: str = ""
    splitters: dict[str, str] = field(default_factory=dict)
    library_folder: str = ""  # empty: <data folder>/library
    preview_method: str = "latent2rgb"
    preview_interval: int = 1
    model_folders: list[str] = field(default_factory=list)
    recent_prompts: list[str] = field(default_factory=list)
    engine_options: dict[str, Any] = field(default_factory=dict)  # EngineOptions.to_dict()

    def params(self) -> GenerationParams | None:
        """The last parameters, or None when there are none or they no longer validate."""
        if not self.last_params:
            return None
        try:
            return GenerationParams.from_dict(self.last_params)
        except (ValueError, TypeError) as exc:
            log.warning("ignoring saved parameters: %s", exc)
            return None

    def library_dir(self) -> Path:
        """The gallery library the app opens (takes effect at start-up)."""
        return Path(self.library_folder) if self.library_folder else paths.home_dir() / "library"

    def remember_prompt(self, prompt: str) -> None:
        """Put `prompt` first in the recent list (no duplicates, bounded)."""
        prompt = prompt.strip()
        if not prompt:
            return
        recent = [p for p in self.recent_prompts if p != prompt]
        self.recent_prompts = [prompt, *recent][:RECENT_PROMPTS_MAX]


def settings_path() -> Path:
    return paths.home_dir() / SETTINGS_FILE


def load_settings(path: Path | None = None) -> Settings:
    """Read settings; defaults when the file is absent; a broken file is moved aside."""
    path = path or settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(Settings)}
        defaults = Settings()
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name not in known:
                continue  # written by a newer version
            expected = type(getattr(defaults, name))
            if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
                raise ValueError(
                    f"{name}: expected {expected.__name__}, got {type(value).__name__}"
                )
            values[name] = value
        return Settings(**values)
    except ValueError as exc:
        backup = path.with_name(path.name + ".bad")
        os.replace(path, backup)
        log.warning("settings file %s is unreadable (%s); kept it as %s", path, exc, backup)
        return Settings()


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Write settings atomically: the file is either the old one or the complete new one."""
    path = path or settings_path()
    text = json.dumps(dataclasses.asdict(settings), ensure_ascii=False, indent=2, sort_keys=True)
    with atomic_file(path, private=True) as handle:  # prompts and paths: the user's alone
        handle.write(text.encode("utf-8"))
