"""Running many requests from the command line (`grid`, `batch`): one engine service, every job
queued in order, progress with an ETA on stderr, Ctrl+C handled as `generate` handles it.

The main thread waits on each job in turn and hands its outcome to the caller as it ends, so a
caller records what is finished (a batch's state file) before the next one is done.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ldstudio.cli import generate
from ldstudio.cli.common import ABORT_GRACE_SECONDS, BadInput, abandon_engine
from ldstudio.core.events import (
    EngineNotice,
    Event,
    JobFailed,
    JobFinished,
    JobStarted,
    ModelLoading,
    ModelReady,
    StepProgress,
)
from ldstudio.core.request import Request

if TYPE_CHECKING:
    from ldstudio.core.imagefiles import ImageSink
    from ldstudio.core.library import LibraryStore
    from ldstudio.core.library.blobs import BlobStore
    from ldstudio.core.options import EngineOptions
    from ldstudio.core.service import Outcome


def generation_options(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Add every option of `ldstudio generate` but PROMPT to `parser`, from generate's own
    definitions so both stay the same, without preview files and --overwrite (a run of many
    jobs writes no previews and never replaces a file); returns the dests added → defaults."""
    probe = argparse.ArgumentParser(add_help=False)
    generate.add_generation_arguments(probe, prompt=False, previews=False)
    left_out = ("preview", "preview_every", "overwrite", "preview_dir")
    added = {k: v for k, v in vars(probe.parse_args([])).items() if k not in left_out}
    generate.add_generation_arguments(parser, prompt=False, previews=False)
    return added


def refuse_unknown(args: argparse.Namespace, added: dict[str, Any], command: str) -> None:
    """BadInput for an option given that `generate` has gained since this command was written
    (`added`: generation_options' result): it must not be ignored silently."""
    for dest, default in added.items():
        if dest not in _KNOWN_GENERATE_DESTS and getattr(args, dest, default) != default:
            raise BadInput(f"--{dest.replace('_', '-')}: not supported by `ldstudio {command}`")


# What generate offered when grid and batch were written; they handle each of these.
_KNOWN_GENERATE_DESTS = {
    "attention_slicing", "batch", "cfg", "channels_last", "clip_skip", "compile", "count",
    "cpu_offload", "device", "dtype", "emphasis", "guidance_cutoff", "hires_scale", "hires_size",
    "hires_steps", "hires_strength", "hires_upscaler", "init_image", "inpaint_area",
    "invert_mask", "json", "lora", "mask", "mask_blur", "mask_padding", "masked_content", "model",
    "negative", "no_sdpa", "no_soft_inpaint", "out", "outpaint", "overwrite", "preview",
    "preview_dir", "preview_every", "prompt", "scheduler", "seed", "seed_resize_from", "size",
    "steps", "strength", "style", "vae", "vae_tiling", "variation_seed", "variation_strength",
}  # fmt: skip


@dataclass(frozen=True)
class Setup:
    """What every run of many jobs starts from: where images go, the engine options, and the
    app's blob store (sources live there also with --out, as for generate)."""

    folder: Path | None  # None: the app's library
    options: EngineOptions
    blobs: BlobStore


def setup(args: argparse.Namespace, command: str) -> Setup:
    """The options every run of many jobs checks first; BadInput naming the one at fault."""
    from ldstudio.core.library.blobs import BlobStore
    from ldstudio.core.settings import load_settings

    refuse_unknown(args, args.generate_options, command)
    folder, exact = generate.output_target(args.out)
    if exact is not None:
        raise BadInput(f"--out: {command} saves many images; give a folder, not a .png file name")
    try:
        options = generate.engine_options_from_args(args)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    blobs = BlobStore(load_settings().library_dir().expanduser().resolve() / "blobs")
    return Setup(folder, options, blobs)


def make_backend(options: Any, blobs: Any) -> Any:
    """The local diffusers engine (tests replace this with the fake backend)."""
    from ldstudio.engine.backend import DiffusersBackend

    try:
        return DiffusersBackend(options, blobs=blobs)
    except ValueError as exc:  # a device this machine does not have
        raise BadInput(str(exc)) from None


def cluster_options(parser: argparse.ArgumentParser) -> None:
    """`--ray ADDRESS` and `--ray-actors N`: render on a Ray cluster (the `cluster` extra)."""
    group = parser.add_argument_group('on a Ray cluster (pip install "ldstudio[cluster]")')
    group.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help='render on the Ray cluster at ADDRESS: "auto" (the cluster this machine is in), '
        "ray://HOST:10001 or HOST:6379, or local (start one on this machine); the images are "
        "saved here as usual",
    )
    group.add_argument(
        "--ray-actors",
        type=int,
        default=2,
        metavar="N",
        help="with --ray: how many engines (one GPU each, else one CPU each); default 2",
    )


def make_cluster_backend(args: Any, requests: Sequence[Request], blobs: Any, noun: str) -> Any:
    """The Ray Data backend for `requests` when `--ray` was given, else None."""
    if args.ray is None:
        if args.ray_actors != 2:
            raise BadInput("--ray-actors: only with --ray (it says how many cluster engines)")
        return None
    try:
        from ldstudio.cluster import ClusterBackend
    except ImportError as exc:
        raise BadInput(
            f'--ray: Ray is not installed ({exc}); install it with pip install "ldstudio[cluster]"'
        ) from None
    address = None if args.ray == "local" else args.ray
    try:
        return ClusterBackend(requests, address, actors=args.ray_actors, blobs=blobs, noun=noun)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    except (ConnectionError, RuntimeError) as exc:  # no cluster there, or a refused join
        raise BadInput(f"--ray: cannot join the Ray cluster at {args.ray}: {exc}") from None


def open_sink(folder: Path | None) -> tuple[ImageSink, LibraryStore | None]:
    """The app's library (folder None) or a plain folder; (sink, the library or None)."""
    from ldstudio.cli.library import open_library
    from ldstudio.core.imagefiles import FolderSink
    from ldstudio.core.settings import load_settings

    if folder is None:
        library = open_library(load_settings().library_dir())
        return library, library
    return FolderSink(folder), None


class RunProgress:
    """Progress of a run of `total` jobs on `stream`: a line per finished job with the ETA,
    and on a terminal a live bar of the running job's steps."""

    def __init__(self, stream: TextIO, total: int, noun: str = "cell") -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.total = total
        self.noun = noun
        self.done = 0
        self.started = time.perf_counter()
        self.position: dict[int, int] = {}  # job id -> 1-based place in the run

    def eta(self) -> str:
        if not self.done:
            return "ETA --"
        left = (time.perf_counter() - self.started) / self.done * (self.total - self.done)
        return f"ETA {_duration(left)}"

    def finished(self, place: int, what: str) -> None:
        """Job `place` (1-based) is done: `what` it made."""
        self.done += 1
        self._line(f"{self.noun} {place}/{self.total} done: {what} · {self.eta()}")

    def __call__(self, event: Event) -> None:
        if isinstance(event, EngineNotice):
            self._line(f"note: {event.message}")
        elif isinstance(event, ModelLoading):
            self._line(f"loading {event.model} on {event.device.upper()} · {event.dtype} ...")
        elif isinstance(event, ModelReady) and not event.cached:
            self._line(f"model {event.model} ({event.family}) ready in {event.seconds:.1f} s")
        elif isinstance(event, JobStarted) and not self.tty:
            place = self.position.get(event.job_id, self.done + 1)
            self._line(f"{self.noun} {place}/{self.total} started")
        elif isinstance(event, StepProgress) and self.tty:
            # One bar for the whole run: finished jobs plus the running one's share of steps.
            place = self.position.get(event.job_id, self.done + 1)
            width = 30
            share = (self.done + event.step / event.total) / self.total
            filled = min(width, int(width * share))
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} · "
                f"{self.noun} {place} step {event.step}/{event.total} · {self.eta()} "
            )
            self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(("\r\x1b[K" if self.tty else "") + text + "\n")
        self.stream.flush()


@dataclass
class RunResult:
    outcomes: list[Outcome]
    interrupted: bool  # Ctrl+C: the rest was cancelled
    aborted: bool  # a second Ctrl+C: the process must end now


def run_requests(
    requests: Sequence[Request],
    backend: Any,
    sink: ImageSink,
    progress: RunProgress,
    on_outcome: Callable[[int, Outcome], None],
    *,
    stop_on_failure: bool = True,
) -> RunResult:
    """Queue every request on one service and wait for each in order; `on_outcome(i, outcome)`
    on this thread as each ends. A failure cancels the rest (`stop_on_failure`)."""
    from ldstudio.core.service import EngineService

    service = EngineService(lambda: backend, sink)
    service.subscribe(progress)
    if stop_on_failure:

        def stop_after_failure(event: Event) -> None:
            # Said on the worker thread as the job ends, before it takes the next one: the
            # rest never start (a wait on this thread would come too late for the next job).
            if isinstance(event, JobFailed):
                service.cancel_all()

        service.subscribe(stop_after_failure)
    service.start()
    jobs = [service.submit(request) for request in requests]
    progress.position = {job.id: i + 1 for i, job in enumerate(jobs)}
    interrupted = False

    def on_sigint(_signum: int, _frame: Any) -> None:
        nonlocal interrupted
        interrupted = True
        service.cancel_all()  # the running job stops at its next step, the rest never start
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.stderr.write("\ncancelling (Ctrl+C again to abort now) ...\n")

    previous = signal.signal(signal.SIGINT, on_sigint)
    outcomes: list[Outcome] = []
    try:
        for i, job in enumerate(jobs):
            outcome = service.wait(job)
            outcomes.append(outcome)
            on_outcome(i, outcome)
    except KeyboardInterrupt:
        service.cancel_all()
        sys.stderr.write("aborted; images saved before this are kept, the unfinished one is not\n")
        service.close(timeout=ABORT_GRACE_SECONDS)
        if service.running_thread:
            abandon_engine()
        return RunResult(outcomes, True, True)
    finally:
        signal.signal(signal.SIGINT, previous)
    service.close()
    return RunResult(outcomes, interrupted, False)


def finished_paths(outcome: Outcome) -> list[Path]:
    return [record.path for record in outcome.records] if isinstance(outcome, JobFinished) else []


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
    )
