"""What the library holds and reports: filters, entries, new rows, operation reports."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from ldstudio.core.hires import HiresSettings
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import ReadResult, read_file
from ldstudio.core.request import KIND_TXT2IMG, KIND_UPSCALE, Request
from ldstudio.core.upscale import UpscaleSettings

# SQLite's INTEGER is signed 64-bit; other tools write bigger numbers (ComfyUI seeds reach
# 2**64 - 1).
_SQLITE_INTEGERS = range(-(2**63), 2**63)


@dataclass(frozen=True)
class LibraryFilter:
    """What a library view shows. Empty fields filter nothing.

    `text`: prompt words (each word matches as a prefix, all must match). `tags`: images carrying
    all of them. `since`/`until`: creation time in Unix seconds, since <= created < until.
    `trashed`: the trash instead of the library. `missing`: include rows whose file is gone.
    `face`: only images made as txt2img, img2img, inpaint or outpaint (request.face).
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
    face: str = ""


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
    # txt2img, img2img, inpaint or outpaint; "" when the image holds no parameters.
    face: str = ""
    # The request beyond its params (kind, inputs, inpaint settings); None for txt2img.
    request_json: str | None = field(default=None, repr=False)
    tags: tuple[str, ...] = ()

    @property
    def request(self) -> Request | None:
        """The job that made the image (its params are `params`); None when not known.

        An inpaint request read from another tool's text has no inputs (its source image and
        mask were not recorded): `LibraryStore.inputs_of` says so.
        """
        params = self.params
        if params is None:
            return None
        if not self.request_json:
            return Request.txt2img(params)
        try:
            return request_from_json(params, self.request_json)
        except (ValueError, TypeError, KeyError):
            return None

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
            "face": self.face,
            **_job_dict(self.request_json),
        }


def request_json(request: Request | None) -> str | None:
    """What the index keeps of a request beside its params: kind, inputs, inpaint, hires or
    upscale settings (None for a plain txt2img request, which is all params)."""
    if request is None or (request.kind == KIND_TXT2IMG and request.hires is None):
        return None
    data = {
        "kind": request.kind,
        "inputs": dict(request.inputs),
        "inpaint": request.inpaint.to_dict() if request.inpaint else None,
        "hires": request.hires.to_dict() if request.hires else None,
        "upscale": request.upscale.to_dict() if request.upscale else None,
    }
    return json.dumps(data, sort_keys=True)


def request_from_json(params: GenerationParams, text: str) -> Request:
    """The request `request_json` wrote, with `params`. ValueError for what is not one."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), dict):
        raise ValueError("request_json: not a request")
    inpaint = data.get("inpaint")
    hires = data.get("hires")
    upscale = data.get("upscale")
    kind = str(data["kind"])
    if kind == KIND_UPSCALE:  # the index's params carry the output size; the request none
        params = params.replace(width=None, height=None)
    return Request(
        params=params,
        kind=kind,
        inputs=tuple(sorted((str(k), str(v)) for k, v in data["inputs"].items())),
        inpaint=None if inpaint is None else InpaintSettings.from_dict(inpaint),
        hires=None if hires is None else HiresSettings.from_dict(hires),
        upscale=None if upscale is None else UpscaleSettings.from_dict(upscale),
    )


def _job_dict(text: str | None) -> dict[str, Any]:
    data = _json_dict(text)
    inputs = data.get("inputs")
    return {
        "inputs": inputs if isinstance(inputs, dict) else {},
        "inpaint": data.get("inpaint"),
        "hires": data.get("hires"),
        "upscale": data.get("upscale"),
    }


def _json_dict(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class EntryInputs:
    """What an image was made from (`LibraryStore.inputs_of`): its request, and the files of
    its source image and mask in the library's blob store (None when it has none, or they
    are not in this library: `missing` says which and why, worded for the user)."""

    request: Request | None
    image: Path | None = None
    mask: Path | None = None
    missing: tuple[str, ...] = ()

    @property
    def face(self) -> str:
        return self.request.face if self.request is not None else ""


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
    face: str = ""
    request_json: str | None = None
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
            face=result.face,
            request_json=request_json(result.request),
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
