"""Where ldstudio's runtime data and user data live; pure functions, any thread."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir

DEFAULT_MODEL_NAME = "ldstudio-shapes"


def resource_dir() -> Path:
    """The folder holding bundled runtime data (models, icons, configs).

    One accessor for every way ldstudio runs: a wheel or a frozen bundle carries the data
    inside the package (`ldstudio/resources`), a source checkout or editable install has it
    at the repository's top level (`resources/`).
    """
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir / "resources", package_dir.parent / "resources"):
        # configs/ always ships (single-file model configs); it marks the real folder.
        if (candidate / "configs").is_dir():
            return candidate
    raise FileNotFoundError(
        f"ldstudio's resources folder is missing: looked in {package_dir / 'resources'} and "
        f"{package_dir.parent / 'resources'}; the installation is incomplete"
    )


def resource_path(*parts: str) -> Path:
    """A path inside the bundled resources folder."""
    return resource_dir().joinpath(*parts)


def bundled_model_dir() -> Path:
    """The diffusers folder of the small model that ships inside ldstudio."""
    return resource_path("models", DEFAULT_MODEL_NAME)


def home_dir() -> Path:
    """ldstudio's user data folder: `LDSTUDIO_HOME` if set, else the platform's data folder."""
    override = os.environ.get("LDSTUDIO_HOME")
    if override:
        return Path(override).expanduser()
    return Path(user_data_dir("ldstudio", appauthor=False))


def cache_dir() -> Path:
    """Per-user cache (fitted preview tables, thumbnails)."""
    return home_dir() / "cache"
