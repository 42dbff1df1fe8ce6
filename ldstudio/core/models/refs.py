"""References to models by name and content hash instead of by path; any thread.

A request that names a model by its absolute path breaks when the file moves, and says
nothing on another machine. A `ResourceRef` keeps what identifies the model instead: its kind,
the name `--model NAME` matches, and its full content hash (`hashes.py`). `resolve` finds the
local file again: under its name, renamed, or outside the model folders where it was used
before, and only ever hashes files that may be it (same name or same size).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ldstudio.core.models.detection import (
    KIND_CHECKPOINT,
    KIND_DIFFUSERS,
    KIND_LORA,
    KIND_UNKNOWN,
    KIND_UPSCALER,
    KIND_VAE,
)
from ldstudio.core.models.entries import ModelEntry, entry_name, inspect_file
from ldstudio.core.models.hashes import HashStore, hash_store
from ldstudio.core.models.registry import ModelRegistry
from ldstudio.core.models.scan import find_model

REF_KINDS = (KIND_CHECKPOINT, KIND_DIFFUSERS, KIND_VAE, KIND_LORA, KIND_UPSCALER)
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ResourceRef:
    """A model, VAE, LoRA or upscaler as a request names it."""

    kind: str  # KIND_CHECKPOINT, KIND_DIFFUSERS, KIND_VAE, KIND_LORA or KIND_UPSCALER
    name: str  # what `--model NAME` matches: ModelEntry.name (stem, folder name, org/name)
    sha256: str  # full hex content hash (a file's sha256, or a diffusers folder's); "" unknown

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: object) -> ResourceRef:
        """The reference `to_dict` wrote; ValueError naming the bad field and what is allowed."""
        if not isinstance(data, Mapping):
            raise ValueError(
                f"model reference: expected a map of kind, name and sha256, got "
                f"{type(data).__name__}"
            )
        unknown = sorted(str(key) for key in data if key not in ("kind", "name", "sha256"))
        if unknown:
            raise ValueError(
                f"model reference: unknown field(s) {', '.join(unknown)}; allowed: kind, name, "
                "sha256"
            )
        kind, name, sha256 = data.get("kind"), data.get("name"), data.get("sha256", "")
        if kind not in REF_KINDS:
            raise ValueError(f"kind: {kind!r} is not allowed; allowed: {', '.join(REF_KINDS)}")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name: {name!r} is not allowed; allowed: a model name (text)")
        if not isinstance(sha256, str) or (
            sha256 and (len(sha256) != 64 or not set(sha256) <= _HEX)
        ):
            raise ValueError(
                f"sha256: {sha256!r} is not allowed; allowed: 64 lowercase hex digits, or "
                "empty when unknown"
            )
        return cls(kind=str(kind), name=name, sha256=sha256)


def reference(path: Path, kind: str) -> ResourceRef:
    """The reference for the model of `kind` at `path`, named as a scan names it, with its
    content hash (computed once per version of the file, then cached).

    ValueError for a kind that does not fit the path; OSError when it cannot be read.
    """
    if kind not in REF_KINDS:
        raise ValueError(f"kind: {kind!r} is not allowed; allowed: {', '.join(REF_KINDS)}")
    if path.is_dir() != (kind == KIND_DIFFUSERS):
        what = "a diffusers folder" if kind == KIND_DIFFUSERS else f"a {kind} file"
        raise ValueError(f"{path}: a {kind} reference needs {what}")
    return ResourceRef(kind=kind, name=entry_name(path), sha256=hash_store().content_sha256(path))


def resolve(ref: ResourceRef, registry: ModelRegistry | None = None) -> Path | None:
    """The local file or folder `ref` means, or None when none holds that content.

    Looked for in this order: a model of that name in the scanned model folders (`registry`,
    default `ModelRegistry.shared()`) whose hash matches; any scanned model of that kind whose
    hash matches (a renamed file); any file recorded in the hash cache whose size and mtime
    still match, whose hash matches and whose header says that kind (a file used before from
    outside the model folders).
    Files are hashed only when they have the name or the size of the content looked for.
    Without a hash (`sha256 == ""`), the one model of that name and kind, if exactly one.
    ValueError when models.json is damaged.
    """
    store = hash_store()
    bundled = _bundled_upscaler(ref, store)
    if bundled is not None:
        return bundled
    registry = registry if registry is not None else ModelRegistry.shared()
    entries = [e for e in registry.entries() if e.kind == ref.kind]
    if not ref.sha256:
        try:
            return find_model(ref.name, entries, (ref.kind,)).path
        except ValueError:
            return None
    named = [e for e in entries if e.name.lower() == ref.name.lower()]
    named.sort(key=lambda e: e.name != ref.name)  # the exact spelling first
    for entry in named:
        if _content_hash(store, entry) == ref.sha256:
            return entry.path
    sizes = store.sizes_of(ref.sha256)
    for entry in entries:
        if entry in named:
            continue
        cached = store.cached_content_sha256(entry.path)
        if cached is None and _size(store, entry) in sizes:
            cached = _content_hash(store, entry)
        if cached == ref.sha256:
            return entry.path
    for path in store.paths_of(ref.sha256):
        if _kind_fits(path, ref.kind):
            return path
    return None


def _bundled_upscaler(ref: ResourceRef, store: HashStore) -> Path | None:
    """The bundled upscaler (resources/upscalers) a reference names, when its content is the
    one referenced (any machine has it; it is in no model folder)."""
    from ldstudio.core.models.upscalers import bundled_upscaler_path
    from ldstudio.core.upscale import BUNDLED_UPSCALERS

    if ref.kind != KIND_UPSCALER:
        return None
    for scale, name in BUNDLED_UPSCALERS.items():
        path = bundled_upscaler_path(scale)
        same_name = ref.name.lower() == name and path.is_file()
        if same_name and (not ref.sha256 or store.content_sha256(path) == ref.sha256):
            return path
    return None


def _kind_fits(path: Path, kind: str) -> bool:
    """False only when the file says it is another kind of model (a folder for a file ref,
    a LoRA for a VAE ref); a file whose header says nothing known is the content hashed."""
    if path.is_dir() or kind == KIND_DIFFUSERS:
        return path.is_dir() == (kind == KIND_DIFFUSERS)
    found = inspect_file(path).kind
    return found in (kind, KIND_UNKNOWN)


def _content_hash(store: HashStore, entry: ModelEntry) -> str | None:
    try:
        return store.content_sha256(entry.path)
    except (OSError, ValueError, RecursionError):  # gone since the scan, or a damaged folder
        return None


def _size(store: HashStore, entry: ModelEntry) -> int | None:
    try:
        return store.content_size(entry.path)
    except (OSError, ValueError, RecursionError):
        return None
