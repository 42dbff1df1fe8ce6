"""`ldstudio generate`'s hires-fix options: --hires-scale/--hires-size and the second pass.

Checked before the model loads, like every other option: a value out of range, an upscaler
ldstudio does not have, hires options without a scale or size, or with --init-image (a hires
fix is a txt2img job's second pass), is refused with exit 2 naming the value.
"""

from __future__ import annotations

import argparse

from ldstudio.cli.common import BadInput
from ldstudio.core.hires import (
    DEFAULT_STRENGTH,
    HIRES_SCALE_RANGE,
    HIRES_STEPS_RANGE,
    HIRES_UPSCALERS,
    HiresSettings,
)
from ldstudio.core.params import GenerationParams

_OPTIONS = (
    ("hires_upscaler", "--hires-upscaler"),
    ("hires_strength", "--hires-strength"),
    ("hires_steps", "--hires-steps"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "hires fix (make the image, enlarge it, denoise it again: A1111's hires fix)"
    )
    low, high = HIRES_SCALE_RANGE
    group.add_argument(
        "--hires-scale",
        default=None,
        metavar="F",
        help=f"enlarge the first pass by F ({low:g}-{high:g}, e.g. 2: 64 px → 128 px)",
    )
    group.add_argument(
        "--hires-size",
        default=None,
        metavar="WxH",
        help="enlarge the first pass to this size instead (multiples of 8)",
    )
    group.add_argument(
        "--hires-upscaler",
        default=None,
        metavar="NAME",
        help=f"how to enlarge: {', '.join(HIRES_UPSCALERS)} or an upscaler model's name or "
        "path (ESRGAN family, see `ldstudio models list`; default lanczos; latent enlarges the "
        "latents and needs strength 0.55 or more)",
    )
    defaults = ", ".join(f"{name} {value:g}" for name, value in DEFAULT_STRENGTH.items())
    group.add_argument(
        "--hires-strength",
        default=None,
        metavar="F",
        help=f"how much the second pass repaints, above 0 up to 1 (default: {defaults}, "
        "an upscaler model 0.5)",
    )
    group.add_argument(
        "--hires-steps",
        default=None,
        metavar="N",
        help=f"steps the second pass runs, {HIRES_STEPS_RANGE[0]}-{HIRES_STEPS_RANGE[1]} "
        "(default 0: as many as --steps)",
    )


def settings_from_args(args: argparse.Namespace, params: GenerationParams) -> HiresSettings | None:
    """The checked hires fix, or None without --hires-scale/--hires-size."""
    given = [flag for name, flag in _OPTIONS if getattr(args, name) is not None]
    scale_text, size_text = args.hires_scale, args.hires_size
    if scale_text is None and size_text is None:
        if given:
            raise BadInput(
                f"{given[0]}: only with --hires-scale F or --hires-size WxH (the hires fix "
                "enlarges by one of them)"
            )
        return None
    if scale_text is not None and size_text is not None:
        raise BadInput("--hires-scale and --hires-size: give one of them, not both")
    if getattr(args, "init_image", None) is not None:
        flag = "--hires-scale" if scale_text is not None else "--hires-size"
        raise BadInput(
            f"{flag}: a hires fix is a second pass of a txt2img job, not of --init-image "
            "(img2img on an image at a bigger --size enlarges it)"
        )
    settings = HiresSettings()
    try:
        if scale_text is not None:
            settings = settings.replace(scale=_number("--hires-scale", scale_text))
        else:
            width, height = _size(size_text)
            settings = settings.replace(width=width, height=height)
        if args.hires_upscaler is not None:
            settings = settings.replace(upscaler=_upscaler(args.hires_upscaler))
        if args.hires_strength is not None:
            settings = settings.replace(strength=_number("--hires-strength", args.hires_strength))
        if args.hires_steps is not None:
            settings = settings.replace(steps=_whole("--hires-steps", args.hires_steps))
        settings.validate()
    except ValueError as exc:
        raise BadInput(_flagged(str(exc))) from None
    if params.width is not None and params.height is not None:
        problem = settings.size_problem(params.width, params.height)
        if problem is not None:
            raise BadInput(_flagged(problem))
    return settings


def _flagged(message: str) -> str:
    """The core's message with the CLI's names for its fields."""
    for field, flag in (
        ("hires scale", "--hires-scale"),
        ("hires size", "--hires-size"),
        ("hires width", "--hires-size width"),
        ("hires height", "--hires-size height"),
        ("hires upscaler", "--hires-upscaler"),
        ("hires strength", "--hires-strength"),
        ("hires steps", "--hires-steps"),
    ):
        if message.startswith(field + ":") or message.startswith(field + " "):
            return flag + message[len(field) :]
    return message


def _upscaler(text: str) -> str:
    """lanczos or latent, else an upscaler model's name or path, resolved and checked."""
    from ldstudio.core.models import ModelFileError
    from ldstudio.core.models.preflight import checked_upscaler
    from ldstudio.core.models.upscalers import resolve_upscaler

    typed = text.strip()
    if typed.lower() in HIRES_UPSCALERS:
        return typed.lower()
    try:
        path = resolve_upscaler(typed, "--hires-upscaler")
        checked_upscaler(path, "--hires-upscaler")
    except (ValueError, ModelFileError) as exc:
        raise BadInput(f"{exc} (or one of: {', '.join(HIRES_UPSCALERS)})") from None
    return str(path)


def _number(flag: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise BadInput(f"{flag}: {text!r} is not a number") from None


def _whole(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadInput(f"{flag}: {text!r} is not a whole number") from None


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        width, height = (int(part) for part in parts)
    except ValueError:
        raise BadInput(f"--hires-size: {text!r} is not WxH (e.g. 1024x768)") from None
    return width, height
