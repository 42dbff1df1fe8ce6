"""Content hashes of models: sha256 computed once per version of a file, and kept; any thread.

A model's full sha256 is its identity: references name models by it (`refs.py`), A1111 writes
its first 10 hex digits (`Model hash`, `VAE hash`). Hashing a 6 GB checkpoint takes seconds, so
every hash is kept in `home_dir()/hashes.json`, keyed by the file's resolved path and valid
while the file's size and mtime_ns are unchanged; another version of the file is hashed again.
The cache only saves time: a damaged or unreadable cache file is ignored (and rewritten with
the next hash), never an error. Hashes are also kept in memory for the process.

A diffusers folder's content hash (`folder_sha256`) is the sha256 of the text made of one line
`relative/path <sha256 of the file>` (paths with "/", relative to the folder, each line ending
in "\\n", lines sorted) for model_index.json and every file in the component folders it names
(hidden files — names starting with "." — left out); so a copy of the folder elsewhere has
the same hash, and changing, adding or removing a weights or config file changes it.

Every function may be called from any thread (one lock per cache file); hashing itself runs
outside the lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldstudio.core import paths
from ldstudio.core.atomic import atomic_file
from ldstudio.core.models.entries import diffusers_components

log = logging.getLogger(__name__)

CACHE_FILE = "hashes.json"
_FORMAT = 1


@dataclass(frozen=True)
class HashRecord:
    """One hashed version of a file (or diffusers folder): valid while size and mtime match."""

    size: int  # bytes; for a folder, of every file its hash covers
    mtime_ns: int  # for a folder, the newest of those files
    sha256: str


def _sha256(path: Path, skip: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        handle.seek(skip)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_files(folder: Path) -> list[tuple[str, Path]]:
    """(relative path, file) for every file a diffusers folder's content hash covers, sorted.

    ValueError (or OSError) when model_index.json cannot be read as a JSON object.
    """
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text(encoding="utf-8"))
    if not isinstance(index, dict):
        raise ValueError(f"{index_file}: not a JSON object")
    found = [("model_index.json", index_file)]
    for component in diffusers_components(index):
        for root, dirs, files in os.walk(folder / component, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                if not name.startswith("."):
                    path = Path(root) / name
                    found.append((path.relative_to(folder).as_posix(), path))
    return sorted(found)


def _identity(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file is replaced or edited: device, inode (a re-pointed symlink, as
    in Hugging Face's cache, names another), size and mtime."""
    info = path.stat()
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _stat(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


# Process-wide: (resolved path, size, mtime_ns) → sha256, whichever cache file is in use.
_MEMO: dict[tuple[str, int, int], str] = {}
_MEMO_LOCK = threading.Lock()


class HashStore:
    """The hashes kept in one cache file; thread-safe."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self._lock = threading.Lock()
        self._files: dict[str, HashRecord] | None = None  # read on first use
        self._folders: dict[str, HashRecord] = {}
        # (folder, its files' identities) → content hash, for this process (see folder_sha256)
        self._folder_memo: dict[tuple[str, tuple[tuple[str, tuple[int, ...]], ...]], str] = {}

    # -- single files -------------------------------------------------------------------------

    def sha256(self, path: Path) -> str:
        """The full sha256 of a file: from the cache when this version is known, else read."""
        digest, new = self._file_sha256(path)
        self._record(new, {})
        return digest

    def _file_sha256(self, path: Path) -> tuple[str, dict[str, HashRecord]]:
        """(sha256, the record to keep if the cache file lacks it)."""
        key = str(path.resolve())
        size, mtime = _stat(path)
        found = self._lookup(key, size, mtime)
        if found is not None:
            return found, {}
        with _MEMO_LOCK:
            digest = _MEMO.get((key, size, mtime))
        if digest is None:
            digest = _sha256(path, 0)
            with _MEMO_LOCK:
                _MEMO[(key, size, mtime)] = digest
        return digest, {key: HashRecord(size, mtime, digest)}

    def cached_sha256(self, path: Path) -> str | None:
        """The file's sha256 if this version of it was hashed before; None otherwise (and for
        a file that cannot be read). Never reads the file's content."""
        try:
            key = str(path.resolve())
            size, mtime = _stat(path)
        except OSError:
            return None
        found = self._lookup(key, size, mtime)
        if found is None:
            with _MEMO_LOCK:
                found = _MEMO.get((key, size, mtime))
        return found

    # -- diffusers folders --------------------------------------------------------------------

    def folder_sha256(self, folder: Path) -> str:
        """The content hash of a diffusers folder (see the module docstring); each file in it
        is hashed once (cached like any file).

        Asked again while no file in it changed (same names, inodes, sizes and mtimes), the
        answer comes from memory after one walk and one stat per file: every image saved
        writes its model's hash, and resolving and looking up each file took milliseconds.
        """
        files = folder_files(folder)
        version = (str(folder), tuple((relative, _identity(path)) for relative, path in files))
        with self._lock:
            known = self._folder_memo.get(version)
        if known is not None:
            return known
        lines, new = [], {}
        for relative, path in files:
            file_digest, record = self._file_sha256(path)
            lines.append(f"{relative} {file_digest}\n")
            new.update(record)
        digest = hashlib.sha256("".join(sorted(lines)).encode("utf-8")).hexdigest()
        size, mtime = self._folder_version(folder)
        self._record(new, {str(folder.resolve()): HashRecord(size, mtime, digest)})
        with self._lock:
            self._folder_memo[version] = digest
        return digest

    def cached_folder_sha256(self, folder: Path) -> str | None:
        """The folder's content hash if every file in it was hashed before; None otherwise."""
        try:
            files = folder_files(folder)
        except (OSError, ValueError, RecursionError):
            return None
        lines = []
        for relative, path in files:
            digest = self.cached_sha256(path)
            if digest is None:
                return None
            lines.append(f"{relative} {digest}\n")
        return hashlib.sha256("".join(sorted(lines)).encode("utf-8")).hexdigest()

    def _folder_version(self, folder: Path) -> tuple[int, int]:
        stats = [_stat(path) for _relative, path in folder_files(folder)]
        return sum(size for size, _m in stats), max(mtime for _s, mtime in stats)

    # -- any model ----------------------------------------------------------------------------

    def content_sha256(self, path: Path) -> str:
        """`sha256` of a file, `folder_sha256` of a folder."""
        return self.folder_sha256(path) if path.is_dir() else self.sha256(path)

    def cached_content_sha256(self, path: Path) -> str | None:
        return self.cached_folder_sha256(path) if path.is_dir() else self.cached_sha256(path)

    def content_size(self, path: Path) -> int:
        """The bytes a content hash covers: the file's size, or the folder's hashed files'."""
        return self._folder_version(path)[0] if path.is_dir() else path.stat().st_size

    def sizes_of(self, sha256: str) -> set[int]:
        """The sizes of every version recorded with this hash (current or not)."""
        files, folders = self._snapshot()
        return {r.size for r in [*files.values(), *folders.values()] if r.sha256 == sha256}

    def paths_of(self, sha256: str) -> list[Path]:
        """Files and folders recorded with this hash whose size and mtime still match, so they
        still hold that content (barring an edit that kept both)."""
        files, folders = self._snapshot()
        found = []
        for key, record in sorted(files.items()):
            if record.sha256 == sha256:
                try:
                    if _stat(Path(key)) == (record.size, record.mtime_ns):
                        found.append(Path(key))
                except OSError:
                    continue
        for key, record in sorted(folders.items()):
            if record.sha256 == sha256:
                try:
                    if self._folder_version(Path(key)) == (record.size, record.mtime_ns):
                        found.append(Path(key))
                except (OSError, ValueError, RecursionError):
                    continue
        return found

    # -- the cache file -----------------------------------------------------------------------

    def _lookup(self, key: str, size: int, mtime: int) -> str | None:
        with self._lock:
            files = self._loaded()
            record = files.get(key)
        if record is not None and (record.size, record.mtime_ns) == (size, mtime):
            return record.sha256
        return None

    def _snapshot(self) -> tuple[dict[str, HashRecord], dict[str, HashRecord]]:
        with self._lock:
            return dict(self._loaded()), dict(self._folders)

    def _loaded(self) -> dict[str, HashRecord]:
        """The records, read from the file on first use; the caller holds the lock."""
        if self._files is None:
            self._files, self._folders = _read(self.file)
        return self._files

    def _record(self, files: dict[str, HashRecord], folders: dict[str, HashRecord]) -> None:
        with self._lock:
            known = self._loaded()
            if all(known.get(k) == r for k, r in files.items()) and all(
                self._folders.get(k) == r for k, r in folders.items()
            ):
                return  # nothing new
            # Merged with what another process (the CLI beside the window) wrote meanwhile.
            on_disk_files, on_disk_folders = _read(self.file)
            self._files = {**on_disk_files, **known, **files}
            self._folders = {**on_disk_folders, **self._folders, **folders}
            payload = {
                "format": _FORMAT,
                "files": {k: _to_json(r) for k, r in sorted(self._files.items())},
                "folders": {k: _to_json(r) for k, r in sorted(self._folders.items())},
            }
            try:
                # Not fsynced: a cache lost in a power cut costs hashing again, nothing more.
                with atomic_file(self.file, durable=False) as handle:
                    handle.write(json.dumps(payload, indent=1).encode("utf-8"))
            except OSError as exc:
                log.warning("hash cache %s not written: %s", self.file, exc)


def _to_json(record: HashRecord) -> dict[str, Any]:
    return {"size": record.size, "mtime_ns": record.mtime_ns, "sha256": record.sha256}


def _read(file: Path) -> tuple[dict[str, HashRecord], dict[str, HashRecord]]:
    """The records in a cache file; a missing, unreadable or damaged file holds none, and a
    damaged record is left out."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}, {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return {}, {}
    return _records(data.get("files")), _records(data.get("folders"))


def _records(data: object) -> dict[str, HashRecord]:
    if not isinstance(data, dict):
        return {}
    found = {}
    for key, value in data.items():
        if not isinstance(value, dict):
            continue
        size, mtime, digest = value.get("size"), value.get("mtime_ns"), value.get("sha256")
        if (
            type(size) is int
            and type(mtime) is int
            and isinstance(digest, str)
            and len(digest) == 64
            and all(c in "0123456789abcdef" for c in digest)
        ):
            found[key] = HashRecord(size, mtime, digest)
    return found


_STORES: dict[Path, HashStore] = {}
_STORES_LOCK = threading.Lock()


def hash_store() -> HashStore:
    """The store of the current data folder (`home_dir()/hashes.json`)."""
    file = paths.home_dir() / CACHE_FILE
    with _STORES_LOCK:
        if file not in _STORES:
            _STORES[file] = HashStore(file)
        return _STORES[file]


def file_sha256(path: Path) -> str:
    """The full sha256 of a file, cached (see `HashStore.sha256`)."""
    return hash_store().sha256(path)


def content_sha256(path: Path) -> str:
    """The full content hash of a model file or diffusers folder, cached."""
    return hash_store().content_sha256(path)


def model_hash(path: Path) -> str:
    """A1111's `Model hash`: the first 10 hex of the content hash (a file's sha256, or a
    diffusers folder's content hash)."""
    return content_sha256(path)[:10]


def file_hash(path: Path) -> str:
    """The short hash A1111 writes for models and VAEs (sha256 of the file, 10 hex)."""
    return file_sha256(path)[:10]


_ADDNET: dict[tuple[str, int, int], str] = {}
_ADDNET_LOCK = threading.Lock()


def lora_hash(path: Path) -> str:
    """The short hash A1111 writes in `Lora hashes` (sha256 of the tensor data, 12 hex)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _ADDNET_LOCK:
        found = _ADDNET.get(key)
    if found is None:
        # kohya's "addnet" hash: the tensor data only, so editing metadata keeps it.
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
        found = _sha256(path, 8 + length)[:12]
        with _ADDNET_LOCK:
            _ADDNET[key] = found
    return found
