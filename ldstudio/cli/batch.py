"""`ldstudio batch`: one job per line of a list (a prompt, or a JSON request), headless and
resumable: a state file records each finished line, so a rerun after a kill does only the rest.

The whole list is checked before anything runs; a bad line is named by its number.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ldstudio.cli import generate, hires, inpaint, runs
from ldstudio.cli.common import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, BadInput, make_folder
from ldstudio.core.events import JobCancelled, JobFailed, JobFinished
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request, from_portable, is_portable

if TYPE_CHECKING:
    from ldstudio.core.models import ModelRegistry
    from ldstudio.core.service import Outcome

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
STATE_SUFFIX = ".batch-state"
MAX_ERRORS_SHOWN = 20


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    batch = commands.add_parser(
        "batch",
        help="one job per line of a prompt list or a JSON-lines file, resumable",
        description="Run one job per line: a prompt (a .txt list; generate's options are the "
        "settings), or a JSON request (a .jsonl list: ldstudio's portable request, or an "
        'object of generation fields such as {"prompt": ..., "steps": 30} over generate\'s '
        "options). Blank lines and # comments are skipped. Every line is checked before "
        "anything runs. Finished lines are recorded in a state file next to the list, so "
        "running the same command again after a kill does only the rest.",
    )
    batch.add_argument("list", metavar="LIST", help="prompts.txt (one prompt a line) or jobs.jsonl")
    batch.add_argument(
        "--state",
        default=None,
        metavar="FILE",
        help=f"where finished lines are recorded (default: LIST{STATE_SUFFIX} next to the list)",
    )
    batch.add_argument(
        "--skip-invalid",
        action="store_true",
        help="run the valid lines and report the bad ones (default: refuse the whole list)",
    )
    added = runs.generation_options(batch)
    runs.cluster_options(batch)
    batch.set_defaults(handler=run_batch, generate_options=added, prompt="")


@dataclass(frozen=True)
class Line:
    """One job of the list: its 1-based line number, its text's hash and its request."""

    number: int
    digest: str
    request: Request


def line_digest(text: str) -> str:
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()


def read_list(
    path: Path, args: argparse.Namespace, registry: ModelRegistry, blobs: Any
) -> tuple[list[Line], list[str]]:
    """(the valid lines' jobs, "line N: why" for each bad one). BadInput when the file cannot
    be read at all."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"LIST: {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"LIST: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise BadInput(f"LIST: cannot read {path}: {exc.strerror or exc}") from None
    as_json = path.suffix.lower() in JSON_SUFFIXES
    # The source image (--image) is read once for every line; the model files are checked
    # once per distinct set, as generate checks them before loading.
    source = inpaint.source_from_args(args)
    checked: set[tuple[str, str, tuple[tuple[str, float], ...]]] = set()
    lines: list[Line] = []
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            if as_json:
                request = _json_request(stripped, args, registry, source, blobs)
            else:
                own = argparse.Namespace(**{**vars(args), "prompt": stripped})
                params = generate.params_from_args(own, registry)
                request = _with_options(params, own, source, blobs)
            p = request.params
            if (p.model, p.vae, p.loras) not in checked:
                generate.refuse_problems(p, registry, default=not args.model and bool(p.model))
                checked.add((p.model, p.vae, p.loras))
        except (BadInput, ValueError) as exc:
            errors.append(f"line {number}: {exc}")
            continue
        lines.append(Line(number, line_digest(stripped), request))
    return lines, errors


def _json_request(
    text: str, args: argparse.Namespace, registry: ModelRegistry, source: Any, blobs: Any
) -> Request:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object (a request), got {type(data).__name__}")
    if is_portable(data):
        request, missing = from_portable(data)
        if missing:
            raise ValueError("; ".join(missing))
    elif "kind" in data:
        request = Request.from_dict(data)
    else:
        if "prompt" not in data:
            raise ValueError('prompt: missing; each object needs a "prompt"')
        base = generate.params_from_args(
            argparse.Namespace(**{**vars(args), "prompt": ""}), registry
        )
        values = {**base.to_dict(), **data}
        if "model" in data:
            values["model"] = (
                generate.model_from_args(str(data["model"]), registry) if data["model"] else ""
            )
        if "loras" in data and isinstance(data["loras"], list):
            values["loras"] = [
                [generate.lora_from_arg(f"{pair[0]}:{pair[1]}", registry)[0], pair[1]]
                if isinstance(pair, list) and len(pair) == 2
                else pair
                for pair in data["loras"]
            ]
        request = _with_options(GenerationParams.from_dict(values), args, source, blobs)
    return request.validate()


def _with_options(
    params: GenerationParams, args: argparse.Namespace, source: Any, blobs: Any
) -> Request:
    """The job of `params` with generate's source image and hires fix options applied."""
    request = Request.txt2img(params, hires.settings_from_args(args, params))
    if source is not None:
        request = source.request(params, blobs)
    return request.validate()


class BatchState:
    """The state file: one JSON line per finished list line ({"line", "sha256", "images"}).

    Appended and flushed to disk as each line finishes; a line cut short by a kill (the last
    one, half written) is not a record and is ignored.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[tuple[int, str]] = set()
        if path.exists():
            for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(raw)
                    self.done.add((int(record["line"]), str(record["sha256"])))
                except (ValueError, KeyError, TypeError):
                    continue

    def finished(self, line: Line) -> bool:
        return (line.number, line.digest) in self.done

    def record(self, line: Line, images: list[Path]) -> None:
        entry = {"line": line.number, "sha256": line.digest, "images": [str(p) for p in images]}
        data = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)  # one write: a kill leaves a whole record or a torn last line
            os.fsync(fd)
        finally:
            os.close(fd)
        self.done.add((line.number, line.digest))


def run_batch(args: argparse.Namespace) -> int:
    from ldstudio.core.models import ModelRegistry

    setup = runs.setup(args, "batch")
    folder, blobs = setup.folder, setup.blobs
    path = Path(args.list).expanduser()
    state_path = (
        Path(args.state).expanduser() if args.state else path.with_name(path.name + STATE_SUFFIX)
    )
    if state_path.is_dir():
        raise BadInput(f"--state: {state_path} is a folder; give a file name")
    lines, errors = read_list(path, args, ModelRegistry(), blobs)
    if errors:
        shown = "\n  ".join(errors[:MAX_ERRORS_SHOWN])
        more = (
            f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more"
            if len(errors) > MAX_ERRORS_SHOWN
            else ""
        )
        if not args.skip_invalid:
            raise BadInput(
                f"{len(errors)} bad line(s) in {path}; nothing was run (fix them, or pass "
                f"--skip-invalid to run the rest):\n  {shown}{more}"
            )
        sys.stderr.write(f"skipping {len(errors)} bad line(s):\n  {shown}{more}\n")
    state = BatchState(state_path)
    try:  # before any job: a state file that cannot be written would lose the resume
        state_path.touch()
    except OSError as exc:
        raise BadInput(
            f"--state: cannot write {state_path}: {exc.strerror or exc}; give another file "
            "with --state FILE"
        ) from None
    todo = [line for line in lines if not state.finished(line)]
    if len(todo) < len(lines):
        sys.stderr.write(
            f"skipping {len(lines) - len(todo)} line(s) already done (recorded in {state_path})\n"
        )
    if not todo:
        sys.stderr.write("nothing to do: every line is done\n")
        if args.json:
            print(json.dumps({"status": "finished", "lines": [], "skipped": len(lines)}))
        return EXIT_OK
    backend = runs.make_cluster_backend(args, [line.request for line in todo], blobs, "line")
    if backend is None:
        backend = runs.make_backend(setup.options, blobs)
    if folder is not None:
        make_folder(folder, "--out")
    return run_lines(todo, backend, folder, state, args.json, skipped=len(lines) - len(todo))


def run_lines(
    todo: list[Line],
    backend: Any,
    folder: Path | None,
    state: BatchState,
    as_json: bool,
    skipped: int = 0,
) -> int:
    """Run the lines, recording each finished one in `state`; the exit code."""
    from ldstudio.core.library import IndexDamaged

    try:
        sink, library = runs.open_sink(folder)
    except IndexDamaged as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    progress = runs.RunProgress(sys.stderr, len(todo), noun="line")
    results: list[dict[str, Any]] = []

    def on_outcome(i: int, outcome: Outcome) -> None:
        line = todo[i]
        if isinstance(outcome, JobFinished):
            images = runs.finished_paths(outcome)
            state.record(line, images)
            results.append({"line": line.number, "images": [str(p) for p in images]})
            if not as_json:
                for image in images:
                    print(image, flush=True)
            progress.finished(i + 1, f"line {line.number}, {len(images)} image(s)")
        elif isinstance(outcome, JobFailed):
            sys.stderr.write(f"line {line.number} failed: {outcome.message}\n")
            results.append({"line": line.number, "error": outcome.message})

    try:
        result = runs.run_requests(
            [line.request for line in todo],
            backend,
            sink,
            progress,
            on_outcome,
            stop_on_failure=False,
        )
    finally:
        if library is not None:
            library.close()
    finished = sum(isinstance(o, JobFinished) for o in result.outcomes)
    failed = sum(isinstance(o, JobFailed) for o in result.outcomes)
    cancelled = result.interrupted or any(isinstance(o, JobCancelled) for o in result.outcomes)
    status = "cancelled" if cancelled else "failed" if failed else "finished"
    if as_json:
        print(
            json.dumps(
                {"status": status, "lines": results, "skipped": skipped},
                indent=2,
                ensure_ascii=False,
            )
        )
    left = len(todo) - finished
    sys.stderr.write(
        f"done: {finished} of {len(todo)} line(s)"
        + (f", {failed} failed" if failed else "")
        + (f"; {left} left for a rerun (state: {state.path})" if left else "")
        + "\n"
    )
    if cancelled:
        return EXIT_CANCELLED
    return EXIT_FAILED if failed else EXIT_OK
