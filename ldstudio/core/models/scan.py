"""Finding models on disk: folder walks, the Hugging Face cache, name lookup; any thread.

Torch-free on purpose: the GUI scans folders off its thread (`run_in_executor`) without waiting
for torch to import, and a scan reads a few kilobytes per file however large the file is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ldstudio.core.models.detection import KIND_CHECKPOINT, KIND_UNKNOWN, STATUS_ERROR, VARIANTS
from ldstudio.core.models.entries import (
    ModelEntry,
    hf_cache_name,
    inspect_diffusers_folder,
    inspect_file,
)
from ldstudio.core.models.folders import ModelFolderStore
from ldstudio.core.models.safetensors import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES


def scan_folder(root: Path, max_depth: int = 6) -> Iterator[ModelEntry]:
    """Every model under `root`, in place: single files by content, diffusers folders by index.

    Works for A1111 (`models/Stable-diffusion`, `models/VAE`, `models/Lora`, and the
    upscalers' `models/ESRGAN`, `models/RealESRGAN`, `models/SwinIR`, `models/DAT`), ComfyUI
    (`models/checkpoints`, `models/vae`, `models/loras`, `models/upscale_models`), the Hugging
    Face cache and plain folders alike, because files are classified from their headers, not
    their folder names.
    """
    root = root.expanduser()
    if not root.is_dir():
        yield ModelEntry(
            root,
            root.name,
            KIND_UNKNOWN,
            root,
            0,
            status=STATUS_ERROR,
            error=f"{root}: model folder does not exist or is not a folder",
        )
        return
    # Links are followed (model folders are often linked in from other disks), each real
    # folder once: a link back to a folder already seen (to itself, to a parent) would
    # otherwise repeat the walk for every combination of links up to max_depth.
    visited: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        try:
            identity = here.stat()
        except OSError:
            dirs[:] = []
            continue
        if (identity.st_dev, identity.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((identity.st_dev, identity.st_ino))
        depth = len(here.relative_to(root).parts)
        hf_name = hf_cache_name(here)
        if (here / "model_index.json").is_file():
            # Its subfolders are the pipeline's components, not models of their own. Files
            # beside model_index.json are: many repos (SD 1.5, SDXL base) ship the single-file
            # checkpoint next to the diffusers layout.
            dirs[:] = []
            yield inspect_diffusers_folder(here, root, hf_name)
        else:
            # .cache/ and blobs/ hold partial downloads and the HF cache's content-addressed
            # copies.
            dirs[:] = sorted(
                d for d in dirs if not d.startswith(".") and d != "blobs" and depth < max_depth
            )
        for name in sorted(files):
            if name.lower().endswith(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES):
                entry = inspect_file(here / name, root)
                if hf_name:
                    entry = replace(entry, name=f"{hf_name}/{entry.path.stem}")
                yield entry


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def library_roots(
    store: ModelFolderStore, extra: list[Path] | None = None, include_hf_cache: bool = True
) -> list[Path]:
    """The folders a library scan walks: the user's, `extra`, then the HF cache if present."""
    roots = [Path(f) for f in store.folders] + list(extra or [])
    if include_hf_cache and hf_cache_dir().is_dir():
        roots.append(hf_cache_dir())
    return roots


def iter_library(store: ModelFolderStore, roots: list[Path]) -> Iterator[ModelEntry]:
    """Every model under `roots`, each file once (folders may overlap), chosen variants applied."""
    seen: set[Path] = set()
    for root in roots:
        for entry in scan_folder(root):
            key = entry.path.resolve()
            if key in seen:
                continue
            seen.add(key)
            chosen = store.variant_for(entry.path) if entry.kind == KIND_CHECKPOINT else None
            if chosen and chosen in VARIANTS.get(entry.family, ()):
                entry = replace(entry, variant=chosen)
            yield entry


def scan_library(
    store: ModelFolderStore, extra: list[Path] | None = None, include_hf_cache: bool = True
) -> list[ModelEntry]:
    """Every model in the user's folders, `extra` folders and the HF cache, variants applied."""
    return list(iter_library(store, library_roots(store, extra, include_hf_cache)))


def find_model(name: str, entries: list[ModelEntry], kinds: tuple[str, ...]) -> ModelEntry:
    """The one entry `name` means (exact name, then case-insensitive); ValueError otherwise."""
    candidates = [e for e in entries if e.kind in kinds]
    for match in (
        [e for e in candidates if e.name == name],
        [e for e in candidates if e.name.lower() == name.lower()],
        [e for e in candidates if e.name.lower().split("/")[-1] == name.lower()],
    ):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            places = "; ".join(str(e.path) for e in match)
            raise ValueError(
                f"{name!r} matches {len(match)} models ({places}); give a path instead"
            )
    # Found, but not as a usable model: say what it is rather than that it does not exist.
    # (Any candidate of this name returned above: what is left is of another kind.)
    for entry in entries:
        if name.lower() in (entry.name.lower(), entry.name.lower().split("/")[-1]):
            article = "an" if entry.kind[:1] in ("a", "e", "i", "o", "u") else "a"
            why = entry.error or f"it is {article} {entry.kind}, not one of: {', '.join(kinds)}"
            raise ValueError(f"{name!r} is {entry.path}, which cannot be used here: {why}")
    known = ", ".join(sorted(e.name for e in candidates)) or "none found"
    raise ValueError(
        f"{name!r} is neither an existing path nor a known model name; known: {known}. "
        "Add folders with `ldstudio models add-folder PATH`."
    )
