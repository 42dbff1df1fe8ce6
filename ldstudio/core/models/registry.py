"""The models in the user's model folders and the Hugging Face cache, scanned once; any thread.

A scan reads every model file's header: milliseconds per file, seconds for a large library.
`ModelRegistry` keeps one scan until `invalidate()` (the model manager's Rescan, the window's
model refresh, any `ModelFolderStore.save`), so resolving a job's `<lora:name>` tags or a
`--model NAME` does not walk the folders again. A scan is kept for what it walked (where
models.json is, its folders and variant choices, the HF cache folder): a registry asked about
another data folder, or folders another process changed, scans again.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

from ldstudio.core.models.entries import ModelEntry, inspect_diffusers_folder, inspect_file
from ldstudio.core.models.folders import SAVE_LISTENERS, ModelFolderStore
from ldstudio.core.models.safetensors import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES
from ldstudio.core.models.scan import find_model, library_roots, scan_library

_ScanKey = tuple[str, tuple[Path, ...], tuple[tuple[str, str], ...]]


class ModelRegistry:
    """One kept scan of the user's models; every method may be called from any thread.

    The scan itself runs outside the state lock, so `invalidate()` never waits for one (the
    GUI thread may call it); a scan that an `invalidate()` overtook is returned to its caller
    but not kept. Two threads asking at once share one scan.
    """

    _shared: ClassVar[ModelRegistry | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, include_hf_cache: bool = True) -> None:
        self.include_hf_cache = include_hf_cache
        self._lock = threading.Lock()  # the state below
        self._scan_lock = threading.Lock()  # one scan at a time
        self._generation = 0
        self._key: _ScanKey | None = None
        self._entries: list[ModelEntry] | None = None
        self._by_path: dict[Path, ModelEntry] = {}

    @classmethod
    def shared(cls) -> ModelRegistry:
        """The process-wide registry (the window, the engine's per-job lookups)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def invalidate(self) -> None:
        """Forget the scan: the next question scans the folders again."""
        with self._lock:
            self._generation += 1
            self._key, self._entries, self._by_path = None, None, {}

    def entries(self, store: ModelFolderStore | None = None) -> list[ModelEntry]:
        """Every model found, as `scan_library(store)` lists them; scanned on first use.

        `store` defaults to models.json as it is now (ValueError when it is damaged).
        """
        store = store if store is not None else ModelFolderStore.load()
        key = self._key_for(store)
        kept = self._kept(key)
        if kept is not None:
            return kept
        with self._scan_lock:
            kept = self._kept(key)
            if kept is not None:
                return kept
            with self._lock:
                generation = self._generation
            entries = scan_library(store, include_hf_cache=self.include_hf_cache)
            with self._lock:
                if generation == self._generation:
                    self._key, self._entries = key, entries
                    self._by_path = {entry.path: entry for entry in entries}
        return list(entries)

    def kept(self, store: ModelFolderStore | None = None) -> list[ModelEntry] | None:
        """The entries of the last scan if it is still current, else None — never a scan:
        for the GUI thread, which must not wait on the model folders."""
        store = store if store is not None else ModelFolderStore.load()
        return self._kept(self._key_for(store))

    def rescan(self, store: ModelFolderStore | None = None) -> list[ModelEntry]:
        """`invalidate()`, then `entries(store)`: the folders read again now."""
        self.invalidate()
        return self.entries(store)

    def find(self, name: str, kinds: tuple[str, ...]) -> ModelEntry:
        """The one model of one of `kinds` that `name` means (see `find_model`); ValueError
        saying why none or several do."""
        return find_model(name, self.entries(), kinds)

    def resolve_reference(self, text: str, kinds: tuple[str, ...], what: str) -> Path:
        """A path as given if it exists, else the model of one of `kinds` named `text`.

        Names are looked up in the user's model folders and the Hugging Face cache; ValueError
        (prefixed with `what`, e.g. "--model") when neither fits.
        """
        path = Path(text).expanduser()
        if path.exists():
            return path.resolve()
        looks_like_path = (
            path.is_absolute()
            or text.startswith((".", "~"))
            or path.suffix.lower() in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
        )
        try:
            return self.find(text, kinds).path.resolve()
        except ValueError as exc:
            if looks_like_path:
                raise ValueError(
                    f"{what}: model not found: {path.resolve()} does not exist"
                ) from None
            raise ValueError(f"{what}: {exc}") from None

    def family(self, path: Path) -> str:
        """The family of the model at `path` ("sd1", "sd2", "sdxl", "sdxl-refiner", "custom";
        "" for a file that is not a checkpoint or LoRA that says): from the kept scan when it
        lists `path`, else from the file's header or the folder's UNet config."""
        with self._lock:
            entry = self._by_path.get(path) or self._by_path.get(path.resolve())
        if entry is None:
            entry = inspect_diffusers_folder(path, path) if path.is_dir() else inspect_file(path)
        return entry.family

    def _key_for(self, store: ModelFolderStore) -> _ScanKey:
        roots = library_roots(store, include_hf_cache=self.include_hf_cache)
        return str(ModelFolderStore.file()), tuple(roots), tuple(sorted(store.variants.items()))

    def _kept(self, key: _ScanKey) -> list[ModelEntry] | None:
        with self._lock:
            if self._entries is not None and self._key == key:
                return list(self._entries)
        return None


def _invalidate_shared() -> None:
    if ModelRegistry._shared is not None:
        ModelRegistry._shared.invalidate()


SAVE_LISTENERS.append(_invalidate_shared)
