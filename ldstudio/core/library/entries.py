"""What the library holds and reports: filters, entries, new rows, operation reports."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import ReadResult, read_file

# SQLite's INTEGER is signed 64-bit; other tools write bigger numbers (ComfyUI seeds reach
# 2**64 - 1).
_SQLITE_INTEGERS = range(-(2**63), 2**63)


@dataclass(frozen=True)
class LibraryFilter:
    """What a library view shows. Empty fields filter nothing.

    `text`: prompt words (each word matches as a prefix, all must match). `tags`: images carrying
    all of them. `since`/`until`: creation time in Unix seconds, since <= created < until.
    `trashed`: the trash instead of the library. `missing`: include rows whose file is gone.
    """

    text: str = ""
    model: str = ""
    favourites: bool = False
    tags: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    trashed: bool = False
    missing: bool = True
    newest_first: bool = True


@dataclass(frozen=True)
class LibraryEntry:
    """One image in the library, as the index records it."""

    id: int
    path: Path
    prompt: str
    negative_prompt: str
    model: str
    seed: int | None
    width: int | None
    height: int | None
    steps: int | None
    guidance_scale: float | None
    scheduler: str
    seconds: float | None
    device: str
    dtype: str
    created: float
    favourite: bool
    source: str
    mtime_ns: int
    file_size: int
    trashed_at: float | None
    original_path: Path | None
    missing: bool
    params_json: str | None = field(default=None, repr=False)
    extra_json: str | None = field(default=None, repr=False)
    tags: tuple[str, ...] = ()

    @property
    def params(self) -> GenerationParams | None:
        """The exact parameters (ldstudio images, or other tools' when they map fully)."""
        if self.params_json is None:
            return None
        try:
            return GenerationParams.from_json(self.params_json)
        except ValueError:
            return None

    @property
    def extra(self) -> dict[str, Any]:
        """Values the source tool wrote that have no GenerationParams field."""
        if not self.extra_json:
            return {}
        data = json.loads(self.extra_json)
        return data if isinstance(data, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": str(self.path),
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "model": self.model,
            "seed": self.seed,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "scheduler": self.scheduler,
            "seconds": self.seconds,
            "created": datetime.fromtimestamp(self.created).isoformat(timespec="seconds"),
            "favourite": self.favourite,
            "tags": list(self.tags),
            "source": self.source,
            "trashed": self.trashed_at is not None,
            "missing": self.missing,
            "params": self.params.to_dict() if self.params else None,
        }


@dataclass(frozen=True)
class CopySource:
    """The file a copy-import copied into the library, as it was when copied."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class NewEntry:
    """A row to add for a file that is already in place (imports, adoption, benchmarks)."""

    path: Path
    created: float
    prompt: str = ""
    negative_prompt: str = ""
    model: str = ""
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    scheduler: str = ""
    seconds: float | None = None
    device: str = ""
    dtype: str = ""
    params_json: str | None = None
    extra_json: str | None = None
    source: str = "ldstudio"
    mtime_ns: int = 0
    file_size: int = 0
    trashed_at: float | None = None
    copied_from: CopySource | None = None

    @classmethod
    def from_file(cls, path: Path, *, trashed_at: float | None = None) -> NewEntry:
        """Describe an image file from its metadata. FileNotFoundError / UnreadableImage."""
        result = read_file(path)
        stat = path.stat()
        with Image.open(path) as image:
            width, height = image.size
        return cls.from_read(
            path, result, created=stat.st_mtime, width=width, height=height, stat=stat
        )._with_trash(trashed_at)

    @classmethod
    def from_read(
        cls,
        path: Path,
        result: ReadResult,
        *,
        created: float,
        width: int,
        height: int,
        stat: os.stat_result,
    ) -> NewEntry:
        fields = result.fields
        extra = dict(result.extra)
        extra.pop("prompt_graph", None)  # ComfyUI graphs stay in the file; the index needs none
        extra.pop("workflow", None)
        if result.warnings:  # what the reader left out (metadata too large, ...): kept in view
            extra["metadata_warnings"] = "\n".join(result.warnings)
        # An integer too big for its column leaves it empty; `extra` keeps the exact value.
        seed = _column_int("seed", fields.get("seed"), extra)
        steps = _column_int("steps", fields.get("steps"), extra)
        return cls(
            path=path,
            created=created,
            prompt=str(fields.get("prompt", "")),
            negative_prompt=str(fields.get("negative_prompt", "")),
            model=str(result.extra.get("model_name") or fields.get("model", "")),
            seed=seed,
            width=width,
            height=height,
            steps=steps,
            guidance_scale=_float_or_none(fields.get("guidance_scale")),
            scheduler=str(fields.get("scheduler", "")),
            params_json=result.params.to_json() if result.params else None,
            extra_json=json.dumps(extra, ensure_ascii=False, default=str) if extra else None,
            source=result.source,
            mtime_ns=stat.st_mtime_ns,
            file_size=stat.st_size,
        )

    def _with_trash(self, trashed_at: float | None) -> NewEntry:
        if trashed_at is None:
            return self
        return NewEntry(**{**self.__dict__, "trashed_at": trashed_at})


def _column_int(name: str, value: Any, extra: dict[str, Any]) -> int | None:
    """`value` if an INTEGER column holds it; a bigger integer goes to `extra` instead.

    The index so keeps the exact value where `library show` and the details view read it,
    while the column (sorting, filtering) stays empty.
    """
    if not isinstance(value, int):
        return None
    if value in _SQLITE_INTEGERS:
        return value
    extra.setdefault(name, value)
    return None


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class ReconcileReport:
    """What reconcile() changed."""

    adopted: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)  # or refused by the index; left alone
    flagged_missing: list[int] = field(default_factory=list)
    found_again: list[int] = field(default_factory=list)
    moves_finished: list[int] = field(default_factory=list)
    temp_files_removed: list[Path] = field(default_factory=list)
    thumbnails_removed: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(
            self.adopted
            or self.flagged_missing
            or self.found_again
            or self.moves_finished
            or self.temp_files_removed
        )


@dataclass
class ImportReport:
    """What import_folder() did."""

    added: list[int] = field(default_factory=list)
    already_in_library: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class RebuildReport:
    """What rebuild_index() did."""

    damaged_copy: Path | None  # where the old index file was kept (None: there was none)
    images: int  # rows in the new index
    recovered: int  # of them, rows whose favourite, tags and dates came from the old index
    unreadable: list[Path] = field(default_factory=list)  # image files not indexed, left alone
    salvage_error: str | None = None  # why the old index could not be read to the end
