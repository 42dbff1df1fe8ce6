"""`ldstudio generate`: prompt (and a source image) to PNG files, headless; runs the engine on
a service worker while the main thread waits and answers Ctrl+C."""

from __future__ import annotations

import argparse
import dataclasses
import json
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from ldstudio.cli import hires, inpaint, remote
from ldstudio.cli.common import (
    ABORT_GRACE_SECONDS,
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    BadInput,
    abandon_engine,
    make_folder,
    remove_folders,
)
from ldstudio.core.events import (
    EngineNotice,
    Event,
    JobCancelled,
    JobFinished,
    JobStarted,
    ModelLoading,
    ModelReady,
    StepProgress,
)
from ldstudio.core.events import (
    StageStarted as JobStageStarted,
)
from ldstudio.core.models import (
    KIND_CHECKPOINT,
    KIND_DIFFUSERS,
    KIND_LORA,
    KIND_VAE,
    ModelFolderStore,
    ModelRegistry,
    parse_lora_argument,
)
from ldstudio.core.models.preflight import preflight_problems
from ldstudio.core.options import SWITCHES, EngineOptions
from ldstudio.core.params import (
    CLIP_SKIP_RANGE,
    EMPHASIS_MODES,
    PREVIEW_METHODS,
    RANDOM_SEED,
    SCHEDULERS,
    SEED_MAX,
    GenerationParams,
)
from ldstudio.core.request import Request

if TYPE_CHECKING:
    from ldstudio.core.service import Outcome

_DEFAULTS = GenerationParams(prompt="")
# How the checks made before loading name the request's fields: by the options that set them.
_OPTIONS = {"vae": "--vae", "loras": "--lora", "preview_method": "--preview"}
_OVERWRITE_ALONE = (
    "--overwrite: only with --out FILE.png; images saved into a folder or the library always "
    "get new names"
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gen = commands.add_parser(
        "generate",
        help="generate images from a prompt, headless",
        description="Generate images from a prompt and save them as PNG files with metadata.",
    )
    add_generation_arguments(gen)
    gen.set_defaults(handler=run_generate)


def add_generation_arguments(
    gen: argparse.ArgumentParser, *, prompt: bool = True, previews: bool = True
) -> None:
    """Every option of `ldstudio generate` on `gen` (grid and batch take them too): without
    `prompt`, no PROMPT argument; without `previews`, no preview files and no --overwrite
    (their "not given" values set, since the helpers read them)."""
    if prompt:
        gen.add_argument("prompt", help="what to draw")
    gen.add_argument("--negative", default="", help="what to avoid (negative prompt)")
    gen.add_argument("--steps", type=int, default=_DEFAULTS.steps, help="denoising steps (1-150)")
    gen.add_argument(
        "--cfg", type=float, default=_DEFAULTS.guidance_scale, help="guidance scale (0-30)"
    )
    gen.add_argument(
        "--size",
        default=None,
        metavar="WxH",
        help="image size, multiples of 8, e.g. 512x512 (default: the model's native size)",
    )
    gen.add_argument(
        "--seed", default=RANDOM_SEED, help="integer 0..4294967295 or 'random' (default)"
    )
    gen.add_argument(
        "--scheduler",
        default=_DEFAULTS.scheduler,
        metavar="NAME",
        help=f"sampler, one of: {', '.join(SCHEDULERS)} (default: {_DEFAULTS.scheduler})",
    )
    gen.add_argument("--batch", type=int, default=1, help="images per pipeline call (batch size)")
    gen.add_argument("--count", type=int, default=1, help="number of batches (batch count)")
    gen.add_argument(
        "--model",
        default="",
        metavar="NAME_OR_PATH",
        help="a .safetensors checkpoint, a diffusers folder, or the name of a model in your "
        "model folders or the Hugging Face cache (see `ldstudio models list`; default: the "
        "default model set there, else the bundled model)",
    )
    gen.add_argument(
        "--vae", default="", metavar="PATH", help="a standalone VAE .safetensors (or its name)"
    )
    gen.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="PATH:WEIGHT",
        help="a LoRA .safetensors (or its name) and its strength, e.g. style.safetensors:0.8; "
        "repeat for several. <lora:name:0.8> in the prompt works too",
    )
    gen.add_argument("--device", default="auto", help="auto (default), cuda, mps or cpu")
    gen.add_argument("--dtype", default="auto", help="auto (default), fp16, bf16 or fp32")
    gen.add_argument(
        "--guidance-cutoff",
        type=float,
        default=_DEFAULTS.guidance_cutoff,
        metavar="F",
        help="stop classifier-free guidance after this fraction of the steps (0-1, default 1)",
    )
    prompts = gen.add_argument_group("prompts and seeds as A1111 means them")
    prompts.add_argument(
        "--style",
        action="append",
        default=[],
        metavar="NAME",
        help="apply an A1111 style (from `ldstudio styles import styles.csv`); repeatable",
    )
    prompts.add_argument(
        "--clip-skip",
        type=int,
        default=_DEFAULTS.clip_skip,
        metavar="N",
        help=f"A1111's Clip skip, {CLIP_SKIP_RANGE[0]}-{CLIP_SKIP_RANGE[1]} (1: the text "
        "encoder's last layer, default; 2: the one before, as many anime models want)",
    )
    prompts.add_argument(
        "--emphasis",
        default=_DEFAULTS.emphasis,
        choices=EMPHASIS_MODES,
        help="how (word:1.2) weights apply: original (A1111's default: multiply, restore the "
        "mean), no-norm (multiply only) or comfy (ComfyUI's: relative to the empty prompt)",
    )
    prompts.add_argument(
        "--variation-seed",
        default=None,
        metavar="N",
        help="A1111's Variation seed: blend this seed's noise into --seed's (integer or 'random')",
    )
    prompts.add_argument(
        "--variation-strength",
        type=float,
        default=None,
        metavar="F",
        help="how much of the variation seed's noise, 0-1 (needs --variation-seed; default 0.5 "
        "with it)",
    )
    prompts.add_argument(
        "--seed-resize-from",
        default=None,
        metavar="WxH",
        help="A1111's Seed resize from: make the seed's noise at this size, centred, so the "
        "seed keeps its picture at another --size",
    )
    speed = gen.add_argument_group("speed and memory (auto: chosen from the device)")
    for flag, what in (
        ("--vae-tiling", "decode large images in tiles"),
        ("--attention-slicing", "compute attention in slices (less memory, a bit slower)"),
        ("--cpu-offload", "keep idle model parts in CPU memory (small GPUs; CUDA only)"),
        ("--channels-last", "channels_last memory layout for the UNet"),
    ):
        speed.add_argument(flag, default="auto", choices=SWITCHES, help=what)
    speed.add_argument(
        "--compile", action="store_true", help="torch.compile the UNet (one-time warm-up)"
    )
    speed.add_argument(
        "--no-sdpa", action="store_true", help="classic attention instead of fused SDPA kernels"
    )
    if previews:
        gen.add_argument(
            "--preview",
            default="latent2rgb",
            metavar="METHOD",
            help=f"preview method for --preview-dir: {', '.join(PREVIEW_METHODS)}",
        )
        gen.add_argument(
            "--preview-every", type=int, default=1, metavar="N", help="preview every N steps"
        )
    gen.add_argument(
        "--out",
        default=None,
        metavar="DIR|FILE",
        help="output folder, or a .png file name (default: the app's image library, so the "
        "images show in the app and in `ldstudio library list`)",
    )
    if previews:
        gen.add_argument(
            "--overwrite",
            action="store_true",
            help="with --out FILE.png: replace that file if it exists (default: refuse)",
        )
        gen.add_argument(
            "--preview-dir", default=None, metavar="DIR", help="save each preview here"
        )
    else:
        gen.set_defaults(preview="latent2rgb", preview_every=1, overwrite=False, preview_dir=None)
    gen.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    inpaint.add_arguments(gen)
    hires.add_arguments(gen)
    remote.add_arguments(gen)


def parse_size(text: str | None, option: str = "--size") -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise BadInput(f"{option}: {text!r} is not WIDTHxHEIGHT; allowed: e.g. 512x512 or 768x512")
    return int(parts[0]), int(parts[1])


def parse_seed(text: str, option: str = "--seed") -> int | str:
    if text == RANDOM_SEED:
        return RANDOM_SEED
    try:
        return int(text)
    except ValueError:
        raise BadInput(
            f"{option}: {text!r} is not a number; allowed: an integer 0..4294967295 or 'random'"
        ) from None


class ModelNames(Protocol):
    """What turns --model/--vae/--lora into the params' values: the model registry here, or
    the server's model list (cli/remote.py)."""

    def resolve_reference(self, text: str, kinds: tuple[str, ...], what: str) -> Path: ...


def params_from_args(args: argparse.Namespace, registry: ModelNames) -> GenerationParams:
    """The request, with every model name resolved to its path through `registry`."""
    try:
        params = _params_from_args(args, registry).validate()
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    # --preview is checked above even without --preview-dir; only then does it do anything.
    return params if args.preview_dir else dataclasses.replace(params, preview_method="none")


def _params_from_args(args: argparse.Namespace, registry: ModelNames) -> GenerationParams:
    width, height = parse_size(args.size)
    from ldstudio.cli.styles import styles_named
    from ldstudio.core.prompts import apply_styles

    chosen = styles_named(args.style)
    prompt, negative = apply_styles(args.prompt, args.negative, chosen)
    params = GenerationParams(
        prompt=prompt,
        negative_prompt=negative,
        styles=tuple(style.name for style in chosen),
        model=model_from_args(args.model, registry),
        vae=str(registry.resolve_reference(args.vae, (KIND_VAE,), "--vae")) if args.vae else "",
        loras=tuple(lora_from_arg(text, registry) for text in args.lora),
        scheduler=args.scheduler,
        steps=args.steps,
        guidance_scale=args.cfg,
        width=width,
        height=height,
        seed=parse_seed(args.seed),
        batch_size=args.batch,
        batch_count=args.count,
        preview_method=args.preview,
        preview_interval=args.preview_every,
        guidance_cutoff=args.guidance_cutoff,
        clip_skip=args.clip_skip,
        emphasis=args.emphasis,
        **_variation_from_args(args),
    )
    return params


def _variation_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """--variation-seed/--variation-strength and --seed-resize-from as params fields."""
    fields: dict[str, Any] = {}
    if args.variation_strength is not None and args.variation_seed is None:
        raise BadInput("--variation-strength: only with --variation-seed N (the seed to blend in)")
    if args.variation_seed is not None:
        seed = parse_seed(args.variation_seed, "--variation-seed")
        if not isinstance(seed, int):
            seed = secrets.randbelow(SEED_MAX + 1)  # 'random': drawn now, so it is recorded
        fields["variation_seed"] = seed
        strength = 0.5 if args.variation_strength is None else args.variation_strength
        fields["variation_strength"] = strength
    if args.seed_resize_from is not None:
        width, height = parse_size(args.seed_resize_from, "--seed-resize-from")
        fields["seed_resize_from"] = (width, height)
    return fields


def model_from_args(text: str, registry: ModelNames) -> str:
    """--model as a path: given path, else a known model's name, else the saved default."""
    if not text:
        return ModelFolderStore.load().default
    return str(registry.resolve_reference(text, (KIND_CHECKPOINT, KIND_DIFFUSERS), "--model"))


def lora_from_arg(text: str, registry: ModelNames) -> tuple[str, float]:
    name, weight = parse_lora_argument(text)
    if name == text and not Path(text).expanduser().exists():
        # No number after the last colon: a weight that is not one, unless that "weight"
        # holds a path separator (a colon inside a path).
        head, sep, tail = text.rpartition(":")
        if sep and head and not any(c in tail for c in "/\\"):
            raise BadInput(
                f"--lora: weight {tail!r} is not a number; allowed: PATH_OR_NAME:WEIGHT with "
                "a number, e.g. style.safetensors:0.8"
            )
    return str(registry.resolve_reference(name, (KIND_LORA,), "--lora")), weight


def refuse_problems(params: GenerationParams, registry: ModelRegistry, default: bool) -> None:
    """BadInput with the first problem `preflight` finds in the request's model files (the
    model, --vae, --lora, `<lora:name>` tags, TAESD weights): the checks the engine makes,
    made before loading. `default`: the model is the default set in models.json."""
    problems = preflight_problems(params, registry, _OPTIONS)
    if not problems:
        return
    first = problems[0]
    if first.field == "model" and default:
        raise BadInput(
            f"{first.message.rstrip('.')}. This is your default model: choose another with "
            "`ldstudio models set-default NAME_OR_PATH`, or `ldstudio models set-default ''` "
            "for the bundled one"
        )
    raise BadInput(first.message)


def engine_options_from_args(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(
        device=args.device,
        dtype=args.dtype,
        sdpa=not args.no_sdpa,
        channels_last=args.channels_last,
        compile_unet=args.compile,
        vae_tiling=args.vae_tiling,
        attention_slicing=args.attention_slicing,
        cpu_offload=args.cpu_offload,
    ).validate()


def output_target(out: str | None, overwrite: bool = False) -> tuple[Path | None, Path | None]:
    """(folder, exact file or None) from --out; (None, None) means the app's library.

    Checks only: nothing is created here (see `make_folder`).
    """
    if out is None:
        if overwrite:
            raise BadInput(_OVERWRITE_ALONE)
        return None, None
    path = Path(out).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".png" and not path.is_dir():
        if path.exists() and not overwrite:
            # Refused before any model loads: the user's file stays as it is.
            raise BadInput(
                f"--out: {path} already exists; choose another name, or pass --overwrite to "
                "replace it"
            )
        if path.parent.exists() and not path.parent.is_dir():
            raise BadInput(f"--out: {path.parent} is a file, so {path.name} cannot go in it")
        return path.parent, path
    if suffix in (".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"):
        raise BadInput(
            f"--out: {out!r} asks for {suffix}; generate writes PNG (it keeps the generation "
            "parameters in PNG text chunks). Give a .png file name or a folder."
        )
    if path.exists() and not path.is_dir():
        raise BadInput(f"--out: {out!r} is an existing file that is not a .png; give a folder")
    if overwrite:
        raise BadInput(_OVERWRITE_ALONE)
    return path, None


class ProgressReporter:
    """Turns engine events into terminal output: a progress bar on a TTY, lines otherwise."""

    def __init__(self, stream: TextIO, preview_dir: Path | None) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.preview_dir = preview_dir
        self.started: JobStarted | None = None
        self.previews_written = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, EngineNotice):
            self._line(("\n" if self.tty else "") + f"note: {event.message}")
        elif isinstance(event, ModelLoading):
            self._line(f"loading {event.model} on {event.device.upper()} · {event.dtype} ...")
        elif isinstance(event, ModelReady) and not event.cached:
            self._line(f"model {event.model} ({event.family}) ready in {event.seconds:.1f} s")
        elif isinstance(event, JobStarted):
            self.started = event
            p = event.params
            self._line(
                f"generating {event.image_count} image(s) {p.width}x{p.height}, {p.steps} steps, "
                f"{p.scheduler}, CFG {p.guidance_scale:g}, seed {p.seed}"
            )
        elif isinstance(event, JobStageStarted) and event.index > 0:
            self._line(
                ("\n" if self.tty else "")
                + f"pass {event.index + 1} of {event.count}: {event.name}, "
                f"{event.total_steps} steps"
            )
        elif isinstance(event, StepProgress):
            self._progress(event)

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _progress(self, event: StepProgress) -> None:
        if event.preview is not None and self.preview_dir is not None:
            from PIL import Image

            self.preview_dir.mkdir(parents=True, exist_ok=True)
            name = f"preview-{event.job_id}-{event.batch_index + 1:03d}-{event.step:03d}.png"
            Image.fromarray(event.preview).save(self.preview_dir / name)
            self.previews_written += 1
        if not self.tty:
            return
        width = 30
        filled = int(width * event.step / event.total)
        remaining = (event.total - event.step) / event.it_per_s if event.it_per_s else 0.0
        batches = self.started.params.batch_count if self.started else 1
        batch = f" batch {event.batch_index + 1}/{batches}" if batches > 1 else ""
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {event.step}/{event.total}{batch} "
            f"{event.it_per_s:.2f} it/s ETA {remaining:.0f}s "
        )
        self.stream.flush()


def run_generate(args: argparse.Namespace) -> int:
    # Every input is checked before the model loads: a mistake costs seconds, not minutes.
    # Model names are looked up in one scan of the model folders, made on first use.
    registry = ModelRegistry()
    client = remote.client_from_args(args)
    if client is not None:
        from ldstudio.remote.client import ServerError

        try:
            params = params_from_args(args, remote.ServerNames(client))
        except ServerError as exc:  # the server's model list could not be read
            sys.stderr.write(f"error: {exc}\n")
            return EXIT_FAILED
        if not args.model:  # the server's default model, not this machine's
            params = params.replace(model="")
    else:
        params = params_from_args(args, registry)
    try:
        options = engine_options_from_args(args)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if client is not None:
        remote.refuse_engine_options(options)
    folder, exact = output_target(args.out, args.overwrite)
    preview_dir = Path(args.preview_dir).expanduser() if args.preview_dir else None
    if preview_dir is not None and preview_dir.exists() and not preview_dir.is_dir():
        raise BadInput(f"--preview-dir: {preview_dir} is a file; give a folder")
    # The source image and mask are read and checked now; stored only once the run goes ahead.
    source = inpaint.source_from_args(args)
    hires_fix = hires.settings_from_args(args, params)
    if hires_fix is not None and (hint := hires_fix.hint()) is not None:
        sys.stderr.write(f"note: {hint}\n")

    # Heavy imports only now: `ldstudio --help` stays instant.
    from ldstudio.core.library.blobs import BlobStore
    from ldstudio.core.settings import load_settings

    # Sources and masks live in the app's library blob store, also when images go to --out:
    # the PNG names them by hash, so the app can show what an image was made from.
    blobs = BlobStore(load_settings().library_dir().expanduser().resolve() / "blobs")
    backend: Any
    if client is not None:
        # The server checks the model files it has (a refusal names the field) and loads
        # them; nothing here imports torch.
        backend = remote.backend(client, blobs)
    else:
        refuse_problems(params, registry, default=not args.model and bool(params.model))
        # torch only now: a model file refused above is refused in milliseconds.
        from ldstudio.engine.backend import DiffusersBackend

        try:
            backend = DiffusersBackend(options, blobs=blobs)
        except ValueError as exc:  # a device this machine does not have
            raise BadInput(str(exc)) from None
    # Created only now that everything else passed: a refused run leaves no new folders.
    created: list[Path] = []
    try:
        for target, option in ((folder, "--out"), (preview_dir, "--preview-dir")):
            if target is not None:
                created += make_folder(target, option)
    except BadInput:
        remove_folders(created)
        raise

    request = Request.txt2img(params, hires_fix)
    if source is not None:
        try:
            request = source.request(params, blobs)
        except (OSError, ValueError) as exc:  # the blob store cannot be written
            remove_folders(created)
            sys.stderr.write(f"error: cannot store the source image in {blobs.root}: {exc}\n")
            return EXIT_FAILED
        mask = f", mask {args.mask}" if args.mask else ""
        sys.stderr.write(
            f"{request.face} of {source.path} ({source.size[0]}x{source.size[1]}{mask})\n"
        )
    return run_request(request, backend, folder, exact, args.overwrite, args.json, preview_dir)


def run_request(
    request: Request,
    backend: Any,
    folder: Path | None,
    exact: Path | None,
    overwrite: bool,
    as_json: bool,
    preview_dir: Path | None = None,
) -> int:
    """Run one checked request through the engine service, saving into the library (or
    `folder`/`exact`), with progress on stderr and Ctrl+C handling; the exit code."""
    from ldstudio.cli.library import open_library
    from ldstudio.core.imagefiles import FolderSink, ImageSink
    from ldstudio.core.library import IndexDamaged, LibraryStore
    from ldstudio.core.service import EngineService
    from ldstudio.core.settings import load_settings

    reporter = ProgressReporter(sys.stderr, preview_dir)
    # Without --out, images go into the app's library: they show in the app and in
    # `ldstudio library list`, saved with the same crash-safe order as the app's.
    library: LibraryStore | None = None
    sink: ImageSink
    if folder is None:
        try:
            library = open_library(load_settings().library_dir())
        except IndexDamaged as exc:  # before generating: nothing is written, nothing lost
            sys.stderr.write(f"error: {exc}\n")
            return EXIT_FAILED
        sink = library
    else:
        sink = FolderSink(folder, exact, overwrite=overwrite)
    # The same service the window submits to: its worker thread runs the job, saves each
    # image, then reports it; this thread waits and answers Ctrl+C.
    service = EngineService(lambda: backend, sink)
    service.subscribe(reporter)
    service.start()
    job = service.submit(request)

    def on_sigint(_signum: int, _frame: Any) -> None:
        # First Ctrl+C cancels at the next step; a second one interrupts at once.
        service.cancel(job.id)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.stderr.write("\ncancelling at the next step (Ctrl+C again to abort now) ...\n")

    previous = signal.signal(signal.SIGINT, on_sigint)
    started = time.perf_counter()
    try:
        outcome = service.wait(job)
    except KeyboardInterrupt:
        # The second Ctrl+C: stop now. Images already saved are complete (atomic writes);
        # the one being made is not written.
        service.cancel(job.id)
        sys.stderr.write("aborted; images saved before this are kept, the unfinished one is not\n")
        if as_json:
            print(json.dumps({"status": "aborted"}))
        service.close(timeout=ABORT_GRACE_SECONDS)
        if service.running_thread:  # inside one long step: the process must not wait for it
            abandon_engine()
        return EXIT_CANCELLED
    finally:
        signal.signal(signal.SIGINT, previous)
    service.close()
    unindexed = library.unindexed if library is not None else []
    if library is not None:
        library.close()
    seconds = time.perf_counter() - started
    return report(reporter, outcome, as_json, backend.choice.device, seconds, unindexed, request)


def report(
    reporter: ProgressReporter,
    result: Outcome,
    as_json: bool,
    device: str,
    seconds: float,
    unindexed: Sequence[tuple[Path, str]] = (),
    request: Request | None = None,
) -> int:
    started = reporter.started
    if reporter.tty:
        sys.stderr.write("\n")  # past the progress bar
    # Saved (the files are complete) but the library index refused the rows: say both.
    index_note: dict[str, Any] = {}
    if unindexed:
        sys.stderr.write(
            f"warning: {len(unindexed)} image(s) saved but not added to the library index: "
            f"{unindexed[0][1]}\n"
        )
        index_note = {
            "not_indexed": [str(path) for path, _why in unindexed],
            "index_error": unindexed[0][1],
        }
    if isinstance(result, JobFinished):
        if as_json:
            payload = {
                "status": "finished",
                "images": [r.to_dict() for r in result.records],
                "device": device,
                "dtype": started.dtype if started else None,
                "seconds": round(seconds, 3),
                "generation_seconds": round(result.seconds, 3),
                "previews_written": reporter.previews_written,
                # What the job was made from: its face and the blob hashes of source and mask.
                "face": request.face if request else "txt2img",
                "inputs": dict(request.inputs) if request else {},
                # The hires fix as it ran: the strength the engine used for "default".
                "hires": (
                    request.hires.replace(strength=request.hires.resolved_strength()).to_dict()
                    if request and request.hires
                    else None
                ),
                "upscale": request.upscale.to_dict() if request and request.upscale else None,
                **index_note,
            }
            print(json.dumps(payload, indent=2, ensure_ascii=False))
        else:
            for record in result.records:
                print(record.path)
            sys.stderr.write(f"done: {len(result.records)} image(s) in {result.seconds:.2f} s\n")
        return EXIT_OK
    if isinstance(result, JobCancelled):
        sys.stderr.write(f"cancelled at step {result.step}; the unfinished image was not saved\n")
        if as_json:
            saved = [r.to_dict() for r in result.saved]
            print(
                json.dumps(
                    {"status": "cancelled", "step": result.step, "images": saved, **index_note}
                )
            )
        return EXIT_CANCELLED
    sys.stderr.write(f"error: {result.message}\n")
    if as_json:
        print(json.dumps({"status": "failed", "error": result.message, "detail": result.detail}))
    return EXIT_FAILED
