"""`ldstudio library ...`: list, show, export, import, trash and tag library images; main thread.

Works headless on the same library the app uses (`--library DIR` picks another one). Exit
codes: 0 done, 1 when some images could not be handled (each is named on stderr), 2 bad input.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sqlite3
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ldstudio.cli.common import EXIT_FAILED, EXIT_OK, BadInput, make_folder
from ldstudio.core.request import FACES

if TYPE_CHECKING:
    from ldstudio.core.library import LibraryEntry, LibraryFilter, LibraryStore

FORMAT_CHOICES = ("png", "jpeg", "webp")
# SQLite's INTEGER: ids, limits and offsets beyond it cannot even be asked about.
SQLITE_MAX = 2**63 - 1


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    library = commands.add_parser(
        "library",
        aliases=["gallery"],  # its name before 0.2; scripts that use it keep working
        help="browse and manage the image library, headless",
        description="Browse and manage the image library (the same one the app shows).",
    )
    library.add_argument(
        "--library", default=None, metavar="DIR", help="library folder (default: the app's)"
    )
    verbs = library.add_subparsers(dest="verb", metavar="VERB", required=True)

    listing = verbs.add_parser("list", help="list images, newest first")
    _add_filter_options(listing)
    listing.add_argument("--limit", type=int, default=50, help="at most N images (default 50)")
    listing.add_argument("--offset", type=int, default=0, help="skip the first N images")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=run_list)

    show = verbs.add_parser("show", help="every parameter of one image")
    show.add_argument("id", type=int, help="image id (from `library list`)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=run_show)

    export = verbs.add_parser(
        "export",
        help="save images to a folder as PNG, JPEG or WebP",
        description="Export images chosen by id, or by filters, to a folder. Existing files "
        "are never overwritten.",
    )
    export.add_argument("ids", type=int, nargs="*", help="image ids (default: use the filters)")
    _add_filter_options(export)
    export.add_argument("--to", required=True, metavar="DIR", help="destination folder")
    export.add_argument("--format", choices=FORMAT_CHOICES, default="png", help="file format")
    export.add_argument(
        "--strip-metadata",
        action="store_true",
        help="write no prompt or parameters into the files (privacy)",
    )
    export.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1-100")
    export.add_argument("--limit", type=int, default=None, help="at most N images")
    export.set_defaults(handler=run_export)

    imp = verbs.add_parser("import", help="add a folder of existing images to the library")
    imp.add_argument("folder", help="folder of PNG/JPEG/WebP images (searched recursively)")
    imp.add_argument(
        "--copy",
        action="store_true",
        help="copy the files into the library (default: index them where they are)",
    )
    imp.set_defaults(handler=run_import)

    delete = verbs.add_parser("delete", help="move images to the library's trash")
    delete.add_argument("ids", type=int, nargs="+", help="image ids")
    delete.set_defaults(handler=run_delete)

    restore = verbs.add_parser("restore", help="bring images back from the trash")
    restore.add_argument("ids", type=int, nargs="+", help="image ids (see `list --trash`)")
    restore.set_defaults(handler=run_restore)

    empty = verbs.add_parser("empty-trash", help="delete the trashed images for good")
    empty.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    empty.set_defaults(handler=run_empty_trash)

    fav = verbs.add_parser("favourite", help="mark (or with --off unmark) images as favourites")
    fav.add_argument("ids", type=int, nargs="+", help="image ids")
    fav.add_argument("--off", action="store_true", help="remove the favourite mark")
    fav.set_defaults(handler=run_favourite)

    tag = verbs.add_parser("tag", help="add (or with --remove remove) tags on an image")
    tag.add_argument("id", type=int, help="image id")
    tag.add_argument("tags", nargs="+", help="tags")
    tag.add_argument("--remove", action="store_true", help="remove these tags instead")
    tag.set_defaults(handler=run_tag)

    reconcile = verbs.add_parser(
        "reconcile", help="adopt image files the index lacks and flag missing ones"
    )
    reconcile.set_defaults(handler=run_reconcile)

    rebuild = verbs.add_parser(
        "rebuild",
        help="build a new index from the image files (for a damaged index)",
        description="Build a new library index from the image files, which carry their "
        "parameters. The old index is kept beside it as library.sqlite3.bad-<date>; "
        "favourites, tags and dates are carried over from it as far as it still reads.",
    )
    rebuild.set_defaults(handler=run_rebuild)

    # A damaged index file is named with the way out, by every verb, instead of a traceback.
    for parser in verbs.choices.values():
        parser.set_defaults(handler=_reports_damage(parser.get_default("handler")))


def _add_filter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--search", default="", metavar="TEXT", help="prompt words")
    parser.add_argument("--model", default="", help="only images of this model")
    parser.add_argument("--favourites", action="store_true", help="only favourites")
    parser.add_argument("--tag", action="append", default=[], help="only images with this tag")
    parser.add_argument("--since", default=None, metavar="DATE", help="made on/after YYYY-MM-DD")
    parser.add_argument("--until", default=None, metavar="DATE", help="made on/before YYYY-MM-DD")
    parser.add_argument("--trash", action="store_true", help="the trash instead of the library")
    parser.add_argument(
        "--face",
        default="",
        metavar="KIND",
        help=f"only images made as one of: {', '.join(FACES)}",
    )


def parse_date(text: str | None, option: str, *, end_of_day: bool = False) -> float | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(
            f"{option}: {text!r} is not a date; allowed: YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        ) from None
    if end_of_day and len(text) <= 10:
        moment += timedelta(days=1)  # --until 2026-11-26 includes that whole day
    return moment.timestamp()


def filter_from_args(args: argparse.Namespace) -> LibraryFilter:
    from ldstudio.core.library import LibraryFilter

    if args.face and args.face not in FACES:
        raise BadInput(f"--face: {args.face!r} is not supported; allowed: {', '.join(FACES)}")
    return LibraryFilter(
        face=args.face,
        text=args.search,
        model=args.model,
        favourites=args.favourites,
        tags=tuple(args.tag),
        since=parse_date(args.since, "--since"),
        until=parse_date(args.until, "--until", end_of_day=True),
        trashed=args.trash,
    )


def _reports_damage(handler: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from ldstudio.core.library import IndexDamaged, is_damage

        try:
            return handler(args)
        except IndexDamaged as exc:
            message = str(exc)
        except sqlite3.DatabaseError as exc:  # a damaged page met after opening
            if not is_damage(exc):
                raise
            message = str(IndexDamaged(library_root(args).expanduser().resolve(), exc))
        sys.stderr.write(f"ldstudio library: error: {message}\n")
        return EXIT_FAILED

    return run


def library_root(args: argparse.Namespace) -> Path:
    """The app's library (a folder chosen in the app is a setting) unless --library says."""
    from ldstudio.core.settings import load_settings

    return Path(args.library).expanduser() if args.library else load_settings().library_dir()


def open_store(args: argparse.Namespace) -> LibraryStore:
    # Every verb opens the library first: the ids it was given are checked before that.
    ids = [args.id] if getattr(args, "id", None) is not None else getattr(args, "ids", [])
    for image_id in ids:
        if not 1 <= image_id <= SQLITE_MAX:
            raise BadInput(f"image id {image_id} is out of range; allowed: 1 to {SQLITE_MAX}")
    root = library_root(args)
    if root.exists() and not root.is_dir():
        raise BadInput(f"--library: {str(root)!r} is a file; give a folder")
    return open_library(root)


def open_library(root: Path) -> LibraryStore:
    """The library at `root`, created if needed; BadInput when that folder cannot be used.

    IndexDamaged (not bad input: rebuild it) when its index file is damaged.
    """
    from ldstudio.core.library import IndexDamaged, LibraryError, LibraryStore

    try:
        return LibraryStore(root)
    except IndexDamaged:
        raise
    except LibraryError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:  # the folder (or its database) cannot be created or opened
        raise BadInput(f"cannot use {root} as the library folder: {exc.strerror or exc}") from None


# A file name that is not valid UTF-8 reaches Python with surrogate escapes (U+DC80..U+DCFF
# for the bytes 0x80..0xFF), which a UTF-8 stdout refuses.
_SURROGATES = re.compile("[\ud800-\udfff]")


def _shown(value: object) -> str:
    """Text for a terminal: such a name's odd bytes appear as \\xNN escapes."""
    return _SURROGATES.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", str(value))


def _json(payload: object) -> str:
    """JSON text that any UTF-8 stdout takes: such a name's surrogates become \\uDCNN escapes,
    which json.loads turns back into the same str (os.fsencode: the same bytes)."""
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
    return _SURROGATES.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _check_count(value: int | None, option: str, minimum: int) -> None:
    if value is not None and not minimum <= value <= SQLITE_MAX:
        what = "too small" if value < minimum else "too large"
        raise BadInput(f"{option}: {value} is {what}; allowed: {minimum} to {SQLITE_MAX}")


def _line(entry: LibraryEntry) -> str:
    when = datetime.fromtimestamp(entry.created).strftime("%Y-%m-%d %H:%M")
    flags = ("★" if entry.favourite else "") + (" missing" if entry.missing else "")
    prompt = " ".join(entry.prompt.split())  # one line: no newlines or tabs in a listing
    if len(prompt) > 70:
        prompt = prompt[:69] + "…"
    size = f"{entry.width}x{entry.height}" if entry.width else "?"
    seed = f"seed {entry.seed}" if entry.seed is not None else "no seed"
    return f"{entry.id:>7}  {when}  {size:>9}  {seed:<15}  {flags}  {prompt}".rstrip()


def run_list(args: argparse.Namespace) -> int:
    _check_count(args.limit, "--limit", 1)
    _check_count(args.offset, "--offset", 0)
    f = filter_from_args(args)
    with open_store(args) as store:
        total = store.count(f)
        entries = store.page(f, args.offset, args.limit)
    if args.json:
        payload = {"total": total, "images": [e.to_dict() for e in entries]}
        print(_json(payload))
        return EXIT_OK
    for entry in entries:
        print(_line(entry))
    sys.stderr.write(f"{len(entries)} of {total} image(s)\n")
    return EXIT_OK


def _get(store: LibraryStore, image_id: int) -> LibraryEntry:
    from ldstudio.core.library import LibraryError

    try:
        return store.get(image_id)
    except LibraryError as exc:
        raise BadInput(f"{exc}; see `ldstudio library list`") from None


def run_show(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        entry = _get(store, args.id)
    if args.json:
        payload = {**entry.to_dict(), "extra": entry.extra}
        print(_json(payload))
        return EXIT_OK
    data = entry.to_dict()
    for key in ("id", "path", "created", "source", "model", "prompt", "negative_prompt"):
        print(f"{key}: {_shown(data[key])}")
    for key in ("steps", "scheduler", "guidance_scale", "seed", "width", "height", "seconds"):
        if data[key] not in (None, ""):
            value = f"{data[key]:.2f}" if key == "seconds" else data[key]
            print(f"{key}: {value}")
    print(f"favourite: {'yes' if entry.favourite else 'no'}")
    if entry.tags:
        print(f"tags: {', '.join(entry.tags)}")
    if entry.trashed_at is not None:
        print("trashed: yes (restore with `ldstudio library restore`)")
    if entry.missing:
        print("missing: the file is gone")
    for key, value in entry.extra.items():
        print(f"{key}: {value}")
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    from ldstudio.core.export import check_outside, export_to_folder
    from ldstudio.core.library import LibraryFilter

    _check_count(args.limit, "--limit", 1)
    if not 1 <= args.quality <= 100:
        raise BadInput(f"--quality: {args.quality} is out of range; allowed: 1 to 100")
    folder = Path(args.to).expanduser()
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"--to: {args.to!r} is a file; give a folder")
    f = filter_from_args(args)
    if args.ids and f != LibraryFilter(trashed=args.trash):
        raise BadInput("give image ids or filters (--search, --model, ...), not both")
    with open_store(args) as store:
        try:
            check_outside(folder, store.root)
        except ValueError as exc:
            raise BadInput(f"--to: {exc}") from None
        if args.ids:
            entries = [_get(store, i) for i in args.ids]
        else:
            entries = store.page(f, 0, args.limit or store.count(f))
    if args.limit:
        entries = entries[: args.limit]
    make_folder(folder, "--to")
    report = export_to_folder(
        [(entry.id, entry.path) for entry in entries],
        folder,
        fmt=args.format,
        keep_metadata=not args.strip_metadata,
        quality=args.quality,
    )
    for target in report.written:
        print(_shown(target))
    for source, why in report.failed:
        sys.stderr.write(f"{source.name}: not exported: {why}\n")
    failed = len(report.failed)
    sys.stderr.write(f"exported {len(entries) - failed} of {len(entries)} image(s) to {folder}\n")
    return EXIT_FAILED if failed else EXIT_OK


def _progress_line() -> Callable[[int, int], None] | None:
    """On a terminal, one line that counts up during a long import; nothing in a pipe."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:  # import_folder calls it twice a second at most
        end = "\n" if done == total else ""
        sys.stderr.write(f"\rlooked at {done:,} of {total:,} files{end}")
        sys.stderr.flush()

    return show


def run_import(args: argparse.Namespace) -> int:
    from ldstudio.core.library import LibraryError

    folder = Path(args.folder).expanduser()
    if not folder.is_dir():
        raise BadInput(f"{args.folder}: not a folder; give a folder of images to import")
    with open_store(args) as store:
        try:
            report = store.import_folder(folder, copy=args.copy, progress=_progress_line())
        except LibraryError as exc:
            raise BadInput(str(exc)) from None
    for path, why in report.skipped:
        sys.stderr.write(f"skipped {path}: {why}\n")
    how = "copied" if args.copy else "indexed in place"
    sys.stderr.write(
        f"imported {len(report.added)} image(s) ({how}); "
        f"{len(report.already_in_library)} already in the library, "
        f"{len(report.skipped)} skipped\n"
    )
    return EXIT_OK


def run_delete(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        for image_id in args.ids:
            _get(store, image_id)
        done = store.trash(args.ids)
    sys.stderr.write(
        f"moved {len(done)} image(s) to the trash; `ldstudio library restore ID` brings them back\n"
    )
    return EXIT_OK


def run_restore(args: argparse.Namespace) -> int:
    from ldstudio.core.library import LibraryError

    with open_store(args) as store:
        for image_id in args.ids:
            _get(store, image_id)
        try:
            done = store.restore(args.ids)
        except LibraryError as exc:  # a file gone from the trash: nothing was changed
            raise BadInput(str(exc)) from None
        for image_id in done:
            print(_shown(store.get(image_id).path))
    sys.stderr.write(f"restored {len(done)} image(s)\n")
    return EXIT_OK


def run_empty_trash(args: argparse.Namespace) -> int:
    if not args.yes:
        raise BadInput("empty-trash deletes the trashed images for good; add --yes to confirm")
    with open_store(args) as store:
        removed = store.empty_trash()
    sys.stderr.write(f"deleted {removed} image(s) for good\n")
    return EXIT_OK


def run_favourite(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        for image_id in args.ids:
            _get(store, image_id)
        for image_id in args.ids:
            store.set_favourite(image_id, not args.off)
    return EXIT_OK


def run_tag(args: argparse.Namespace) -> int:
    from ldstudio.core.library import LibraryError

    with open_store(args) as store:
        _get(store, args.id)
        try:
            if args.remove:
                store.remove_tags(args.id, args.tags)
            else:
                store.add_tags(args.id, args.tags)
        except LibraryError as exc:
            raise BadInput(str(exc)) from None
        print(", ".join(store.get(args.id).tags))
    return EXIT_OK


def run_reconcile(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        report = store.reconcile()
    for path in report.unreadable:
        sys.stderr.write(f"not an image, left alone: {path}\n")
    sys.stderr.write(
        f"adopted {len(report.adopted)}, flagged missing {len(report.flagged_missing)}, "
        f"found again {len(report.found_again)}, temp files removed "
        f"{len(report.temp_files_removed)} ({report.seconds:.2f} s)\n"
    )
    return EXIT_OK


def run_rebuild(args: argparse.Namespace) -> int:
    from ldstudio.core.library import LibraryError, rebuild_index

    root = library_root(args)
    if not root.is_dir():
        raise BadInput(f"--library: {str(root)!r} is not a library folder; nothing to rebuild")
    try:
        report = rebuild_index(root)
    except LibraryError as exc:
        raise BadInput(str(exc)) from None
    for path in report.unreadable:
        sys.stderr.write(f"not an image, left alone: {_shown(path)}\n")
    if report.damaged_copy is not None:
        sys.stderr.write(f"the old index is kept as {_shown(report.damaged_copy)}\n")
    if report.salvage_error is not None:
        sys.stderr.write(
            f"the old index could not be read to the end ({report.salvage_error}): favourites, "
            "tags and dates of the images it could not read are lost, and so are images it "
            "had indexed in place outside the library (import their folders again)\n"
        )
    sys.stderr.write(
        f"rebuilt the index: {report.images} image(s) from their files; favourites, tags and "
        f"dates of {report.recovered} carried over from the old index\n"
    )
    return EXIT_OK
