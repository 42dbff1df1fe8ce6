"""`ldstudio models`: list the models in the user's folders, manage those folders, convert
pickle checkpoints; main thread.

Folders and choices live in `home_dir()/models.json` (see `ModelFolderStore`); listing reads
only file headers, so it is quick even over folders of large checkpoints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ldstudio.cli.common import EXIT_FAILED, EXIT_OK, BadInput, checked_model
from ldstudio.core.models import (
    KIND_CHECKPOINT,
    KIND_DIFFUSERS,
    KIND_EMBEDDING,
    PICKLE_SUFFIXES,
    STATUS_OK,
    VARIANT_LABELS,
    VARIANTS,
    ModelEntry,
    ModelFolderStore,
    ModelRegistry,
    hf_cache_dir,
    inspect_file,
    scan_library,
)
from ldstudio.core.models.detection import family_label


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "models",
        help="list and manage your model folders",
        description="Models found in your model folders (A1111, ComfyUI or any folder) and the "
        "Hugging Face cache, scanned in place.",
    )
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    listing = sub.add_parser(
        "list",
        help=(
            "list every model with family (upscalers: architecture and scale; embeddings: "
            "vectors), size and status"
        ),
    )
    listing.add_argument("--json", action="store_true", help="print JSON on stdout")
    listing.add_argument(
        "--folder",
        action="append",
        default=[],
        metavar="DIR",
        help="also scan this folder (not saved; repeatable)",
    )
    listing.add_argument(
        "--no-hf-cache", action="store_true", help=f"skip the Hugging Face cache ({hf_cache_dir()})"
    )
    listing.set_defaults(handler=run_list)

    add = sub.add_parser("add-folder", help="remember a model folder (scanned in place)")
    add.add_argument("folder", help="e.g. stable-diffusion-webui/models or ComfyUI/models")
    add.set_defaults(handler=run_add_folder)

    remove = sub.add_parser("remove-folder", help="forget a model folder (files are kept)")
    remove.add_argument("folder")
    remove.set_defaults(handler=run_remove_folder)

    default = sub.add_parser("set-default", help="the model `generate` uses without --model")
    default.add_argument("model", help="NAME_OR_PATH, or '' for the bundled model")
    default.set_defaults(handler=run_set_default)

    variant = sub.add_parser(
        "set-variant",
        help="choose the config of a single-file checkpoint (e.g. SD 2.x v-prediction, Turbo)",
    )
    variant.add_argument("model", help="NAME_OR_PATH of a .safetensors checkpoint")
    variant.add_argument(
        "variant",
        help="; ".join(f"{family}: {', '.join(names)}" for family, names in VARIANTS.items()),
    )
    variant.set_defaults(handler=run_set_variant)

    convert = sub.add_parser(
        "convert",
        help="convert a .ckpt/.pt/.bin/.pth to .safetensors (tensors only, nothing executed)",
    )
    convert.add_argument("file")
    convert.add_argument("--out", default=None, help="target .safetensors (default: beside it)")
    convert.set_defaults(handler=run_convert)


def _store() -> ModelFolderStore:
    try:
        return ModelFolderStore.load()
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _family(entry: ModelEntry) -> str:
    """The FAMILY column: "SD 1.x", "SDXL base inpainting"; an upscaler's "Compact ×4"; an
    embedding's family and vectors, "SD 1.x, 8 vectors"."""
    if entry.upscaler_text:
        return entry.upscaler_text
    if entry.kind == KIND_EMBEDDING:
        family = family_label(entry.family) if entry.family else "custom width"
        return f"{family}, {entry.vectors} vector{'s' if entry.vectors != 1 else ''}"
    family = VARIANT_LABELS[entry.variant] if entry.variant else entry.family or "-"
    # Visible, since canvas jobs treat these models differently (auto strength 1 when masked).
    return f"{family} inpainting" if entry.inpainting else family


def run_list(args: argparse.Namespace) -> int:
    store = _store()
    extra = [Path(f).expanduser() for f in args.folder]
    entries = scan_library(store, extra, include_hf_cache=not args.no_hf_cache)
    if args.json:
        payload = {
            "folders": store.folders + [str(f) for f in extra],
            "hf_cache": None if args.no_hf_cache else str(hf_cache_dir()),
            "default": store.default,
            "models": [e.to_dict() for e in entries],
        }
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not store.folders and not extra:
        sys.stderr.write(
            "no model folders yet: add one with `ldstudio models add-folder PATH` "
            "(an A1111 or ComfyUI `models` folder works as is)\n"
        )
    rows = [("NAME", "KIND", "FAMILY", "PRECISION", "SIZE", "STATUS", "FOLDER")]
    for e in entries:
        name = e.name + (" (default)" if store.default and str(e.path) == store.default else "")
        rows.append(
            (
                name,
                e.kind,
                _family(e),
                e.precision or "-",
                _size(e.size_bytes),
                e.status,
                str(e.source),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    problems = [e for e in entries if e.status != STATUS_OK]
    if problems:
        print()
        for e in problems:
            print(f"{e.status}: {e.error}")
    return EXIT_OK


def run_add_folder(args: argparse.Namespace) -> int:
    store = _store()
    known = list(store.folders)
    try:
        folder = store.add_folder(Path(args.folder))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    found = scan_library(ModelFolderStore(folders=[str(folder)]), include_hf_cache=False)
    ok = sum(e.status == STATUS_OK for e in found)
    if str(folder) in known:
        print(f"{folder} is already added: {len(found)} model file(s), {ok} usable")
        return EXIT_OK
    store.save()
    print(f"added {folder}: {len(found)} model file(s), {ok} usable")
    return EXIT_OK


def run_remove_folder(args: argparse.Namespace) -> int:
    store = _store()
    try:
        store.remove_folder(Path(args.folder))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    store.save()
    print(f"removed {args.folder} from the list (no files were touched)")
    return EXIT_OK


def run_set_default(args: argparse.Namespace) -> int:
    store = _store()
    if args.model:
        try:
            path = ModelRegistry().resolve_reference(
                args.model, (KIND_CHECKPOINT, KIND_DIFFUSERS), "model"
            )
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        # The check `generate --model` makes: a default that cannot load would break every
        # later `generate` without --model.
        try:
            checked_model(path)
        except BadInput as exc:
            current = store.default or "the bundled model"
            raise BadInput(f"{str(exc).rstrip('.')}; the default model stays {current}") from None
        store.default = str(path)
    else:
        store.default = ""
    store.save()
    print(f"default model: {store.default or 'the bundled model'}")
    return EXIT_OK


def run_set_variant(args: argparse.Namespace) -> int:
    store = _store()
    try:
        path = ModelRegistry().resolve_reference(args.model, (KIND_CHECKPOINT,), "model")
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    entry = inspect_file(path)
    if entry.kind != KIND_CHECKPOINT or entry.status != STATUS_OK:
        raise BadInput(entry.error or f"{path}: not a single-file checkpoint")
    try:
        store.set_variant(path, args.variant, entry.family)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    store.save()
    print(f"{path.name}: loads as {VARIANT_LABELS[args.variant]}")
    return EXIT_OK


def run_convert(args: argparse.Namespace) -> int:
    source = Path(args.file).expanduser()
    pickles = ", ".join(PICKLE_SUFFIXES)
    if source.is_dir():
        raise BadInput(
            f"convert: {source} is a folder; give one pickle checkpoint file ({pickles})"
        )
    if not source.is_file():
        raise BadInput(f"convert: {source} does not exist")
    if source.suffix.lower() not in PICKLE_SUFFIXES:
        raise BadInput(
            f"convert: {source} is not a pickle checkpoint; allowed: {pickles} files "
            "(.safetensors files need no conversion)"
        )
    target = Path(args.out).expanduser() if args.out else source.with_suffix(".safetensors")
    if target.suffix.lower() != ".safetensors":
        raise BadInput(f"--out: {target} must end in .safetensors")
    if target.exists():
        raise BadInput(f"--out: {target} already exists; ldstudio does not overwrite files")
    # torch only now: the other actions stay instant.
    from ldstudio.engine.checkpoints import CheckpointError, convert_to_safetensors

    try:
        written = convert_to_safetensors(source, target)
    except CheckpointError as exc:
        # Already in ldstudio's words: the GUI shows the same text (see conversion_refusal).
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    entry = inspect_file(written)
    print(f"wrote {written} ({entry.kind}, {_family(entry)}, {entry.status})")
    return EXIT_OK
