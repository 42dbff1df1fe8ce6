"""`ldstudio upscale IMG`: enlarge an image ×2/×4 with an upscaler model, then refine it in
tiles with the diffusion model; the result goes into the library, linked to its source.

Every option is checked before anything loads (exit 2 with the option, the value and what is
allowed), as `ldstudio generate` does. The prompt of the refine is `--prompt`, else the one
the source image's own metadata records (an image made by ldstudio, A1111, ComfyUI, ...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ldstudio.cli import generate
from ldstudio.cli.common import EXIT_FAILED, BadInput, make_folder, remove_folders
from ldstudio.core.models import ModelFileError, ModelRegistry
from ldstudio.core.models.upscalers import resolve_upscaler
from ldstudio.core.options import EngineOptions
from ldstudio.core.params import GenerationParams
from ldstudio.core.upscale import (
    DEFAULT_OVERLAP,
    DEFAULT_REFINE_STRENGTH,
    DEFAULT_TILE,
    RESAMPLERS,
    UPSCALE_SCALES,
    UpscaleSettings,
    upscaler_label,
)

_DEFAULTS = GenerationParams(prompt="")
# A tiled refine runs few steps per tile at a low strength: 20 steps × 0.3 = 6 per tile.
_REFINE_STEPS = 20


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = commands.add_parser(
        "upscale",
        help="enlarge an image ×2 or ×4 (upscaler model + tiled refine), headless",
        description=(
            "Enlarge an image with an upscaler model (the bundled one unless --upscaler names "
            "another: an ESRGAN-family .safetensors in your model folders, or lanczos/bicubic), "
            "then refine it tile by tile with the diffusion model (img2img at --refine-strength; "
            "0 skips it and loads no diffusion model). The result is a new library image that "
            "records its source."
        ),
    )
    up.add_argument("image", help="the image to enlarge (PNG, JPEG, WebP, ...)")
    up.add_argument(
        "--scale", type=int, default=2, help=f"{' or '.join(map(str, UPSCALE_SCALES))} (default 2)"
    )
    up.add_argument(
        "--upscaler",
        default="",
        metavar="NAME|PATH",
        help=f"an upscaler model's name (see `ldstudio models list`) or .safetensors path, or "
        f"{' / '.join(RESAMPLERS)} (default: the bundled ldstudio-compact-x2/x4)",
    )
    up.add_argument(
        "--refine-strength",
        type=float,
        default=DEFAULT_REFINE_STRENGTH,
        metavar="F",
        help=f"img2img strength of the tiled refine, 0-1 (default {DEFAULT_REFINE_STRENGTH:g}; "
        "0: upscaler only)",
    )
    up.add_argument(
        "--tile",
        type=int,
        default=DEFAULT_TILE,
        help=f"refine tile size, px (default {DEFAULT_TILE})",
    )
    up.add_argument(
        "--overlap",
        type=int,
        default=None,
        help=f"overlap of neighbouring refine tiles, px (default {DEFAULT_OVERLAP}, or a quarter "
        "of a smaller tile; at most a quarter of the tile)",
    )
    up.add_argument(
        "--prompt",
        default=None,
        help="the refine's prompt (default: the prompt in the image's own metadata, else none)",
    )
    up.add_argument("--negative", default=None, help="the refine's negative prompt")
    up.add_argument(
        "--steps",
        type=int,
        default=_REFINE_STEPS,
        help=f"refine schedule steps (default {_REFINE_STEPS}; strength × steps run per tile)",
    )
    up.add_argument("--cfg", type=float, default=_DEFAULTS.guidance_scale, help="guidance scale")
    up.add_argument("--seed", default="random", help="integer 0..4294967295 or 'random'")
    up.add_argument("--scheduler", default=_DEFAULTS.scheduler, metavar="NAME", help="sampler")
    up.add_argument(
        "--model",
        default="",
        metavar="NAME_OR_PATH",
        help="the diffusion model of the refine (default: your default model, else the bundled)",
    )
    up.add_argument("--device", default="auto", help="auto (default), cuda, mps or cpu")
    up.add_argument("--dtype", default="auto", help="auto (default), fp16, bf16 or fp32")
    up.add_argument(
        "--out",
        default=None,
        metavar="DIR|FILE",
        help="output folder or .png file (default: the app's image library)",
    )
    up.add_argument("--overwrite", action="store_true", help="with --out FILE.png: replace it")
    up.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    up.set_defaults(handler=run_upscale)


def settings_from_args(args: argparse.Namespace, registry: ModelRegistry) -> UpscaleSettings:
    """The checked settings, the upscaler resolved to its file (or a resampler name)."""
    upscaler = args.upscaler
    if upscaler and upscaler not in RESAMPLERS:
        try:
            upscaler = str(resolve_upscaler(upscaler, "--upscaler"))
        except ValueError as exc:
            raise BadInput(f"{exc} (or one of: {', '.join(RESAMPLERS)})") from None
        from ldstudio.core.models.preflight import checked_upscaler

        try:
            checked_upscaler(Path(upscaler), "--upscaler")
        except ModelFileError as exc:
            raise BadInput(str(exc)) from None
    try:
        return UpscaleSettings(
            scale=args.scale,
            upscaler=upscaler,
            refine_strength=args.refine_strength,
            tile=args.tile,
            overlap=(
                args.overlap
                if args.overlap is not None
                else UpscaleSettings.default_overlap(args.tile if isinstance(args.tile, int) else 0)
            ),
        ).validate()
    except ValueError as exc:
        raise BadInput(f"--{_option(str(exc))}") from None


def _option(message: str) -> str:
    """ "refine strength: ..." → "refine-strength: ..." (the option the value came from)."""
    field, sep, rest = message.partition(":")
    names = {"upscale scale": "scale", "refine strength": "refine-strength"}
    return names.get(field, field).replace(" ", "-") + sep + rest


def _source_prompt(path: Path) -> tuple[str, str] | None:
    """(prompt, negative) from the image's own metadata, or None when it records none."""
    from ldstudio.core.metadata import read_request

    try:
        request, _notes = read_request(path)
    except Exception:  # unreadable metadata is no reason to refuse the pixels
        return None
    if request is None:
        return None
    return request.params.prompt, request.params.negative_prompt


def run_upscale(args: argparse.Namespace) -> int:
    from ldstudio.cli import inpaint

    registry = ModelRegistry()
    settings = settings_from_args(args, registry)
    path = Path(args.image).expanduser()
    image = inpaint.open_image("image", path)
    if image.mode not in ("RGB", "RGBA"):
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    problem = settings.size_problem(*image.size)
    if problem is not None:
        raise BadInput(f"image: {path}: {problem}")
    prompt, negative = args.prompt, args.negative
    recorded = _source_prompt(path) if prompt is None else None
    if prompt is None:
        prompt, negative = (recorded[0], negative or recorded[1]) if recorded else ("", negative)
    try:
        params = GenerationParams(
            prompt=prompt,
            negative_prompt=negative or "",
            model=generate.model_from_args(args.model, registry) if settings.refines else "",
            scheduler=args.scheduler,
            steps=args.steps,
            guidance_scale=args.cfg,
            seed=generate.parse_seed(args.seed),
            preview_method="none",
        ).validate()
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    try:
        options = EngineOptions(device=args.device, dtype=args.dtype).validate()
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    folder, exact = generate.output_target(args.out, args.overwrite)
    if settings.refines:
        generate.refuse_problems(params, registry, default=not args.model and bool(params.model))

    from ldstudio.core.library.blobs import BlobStore
    from ldstudio.core.request import Request
    from ldstudio.core.settings import load_settings
    from ldstudio.engine.backend import DiffusersBackend

    blobs = BlobStore(load_settings().library_dir().expanduser().resolve() / "blobs")
    try:
        backend = DiffusersBackend(options, blobs=blobs)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    created: list[Path] = []
    if folder is not None:
        created = make_folder(folder, "--out")
    try:
        digest = blobs.put(inpaint._png(image))
    except (OSError, ValueError) as exc:
        remove_folders(created)
        sys.stderr.write(f"error: cannot store the source image in {blobs.root}: {exc}\n")
        return EXIT_FAILED
    request = Request.upscaling(params, settings, digest)
    out_w, out_h = settings.output_size(*image.size)
    refine = (
        f", refined at {settings.refine_strength:g} on {settings.tile} px tiles"
        if settings.refines
        else ""
    )
    told = (
        ""
        if args.prompt is not None or not settings.refines
        else (f" (prompt from its metadata: {prompt!r})" if recorded else " (no prompt)")
    )
    sys.stderr.write(
        f"upscale ×{settings.scale} of {path} ({image.width}x{image.height} → {out_w}x{out_h}) "
        f"with {upscaler_label(settings)}{refine}{told}\n"
    )
    return generate.run_request(request, backend, folder, exact, args.overwrite, args.json)
