"""`ldstudio serve`: the API's overhead per image against the same job in-process, and the
preview frames per second an SSE client receives.

    python benchmarks/bench_api.py [--runs 10] [--steps 20] [--size 64] [--device cpu]
                                   [--preview-steps 100]

Overhead: one backend (the bundled model, loaded once), two front ends over it, alternated
run by run: `EngineService.run(request)` saving into a library, and a POST
/sdapi/v1/txt2img to the server on a loopback port (uvicorn on a thread) that maps to the same
request, answered with the saved PNG in base64 and decoded by the client. Median wall time of
each and their ratio (goal: the API at most 5 % slower).

Previews: one job of `--preview-steps` steps with a preview at every step, submitted over
/ldstudio/v1/jobs while a client reads its SSE stream; frames received per second (first to
last frame) against the steps per second the engine made.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, median, write_results

GOAL = 1.05
PROMPT = "a large red circle in the center on a blue background"


class Shared:
    """One backend behind several services: none of them may close it."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    @property
    def choice(self) -> Any:
        return self.backend.choice

    def execute(self, request: Any, cancel: Any) -> Any:
        return self.backend.execute(request, cancel)

    def close(self) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preview-steps", type=int, default=100)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ldstudio-bench-api-"))
    os.environ["LDSTUDIO_HOME"] = str(home)

    import requests

    from ldstudio.api.app import create_app
    from ldstudio.api.server import ServerThread, build_context
    from ldstudio.core.library import LibraryStore
    from ldstudio.core.params import GenerationParams
    from ldstudio.core.request import Request, to_portable
    from ldstudio.core.service import EngineService
    from ldstudio.engine.backend import DiffusersBackend

    backend = DiffusersBackend(device=args.device)
    library = LibraryStore(home / "library", reconcile=False)
    backend.blobs = library.blobs
    local = EngineService(lambda: Shared(backend), library)
    local.start()
    ctx = build_context(lambda: Shared(backend), library)
    server = ServerThread(create_app(ctx)).start()
    http = requests.Session()

    def params(seed: int) -> GenerationParams:
        return GenerationParams(
            prompt=PROMPT, seed=seed, steps=args.steps, width=args.size, height=args.size
        )

    def in_process(seed: int) -> float:
        started = time.perf_counter()
        local.run(Request.txt2img(params(seed)))
        return time.perf_counter() - started

    def over_api(seed: int) -> float:
        body = {
            "prompt": PROMPT,
            "seed": seed,
            "steps": args.steps,
            "width": args.size,
            "height": args.size,
        }
        started = time.perf_counter()
        reply = http.post(f"{server.url}/sdapi/v1/txt2img", json=body, timeout=600)
        reply.raise_for_status()
        # The client holds the PNG's bytes, as the in-process front end holds its file.
        base64.b64decode(reply.json()["images"][0])
        return time.perf_counter() - started

    in_process(0), over_api(0)  # warm-up: the model loads once, caches fill
    local_times, api_times = [], []
    for run in range(args.runs):
        first, second = (in_process, over_api) if run % 2 == 0 else (over_api, in_process)
        for fn in (first, second):
            (local_times if fn is in_process else api_times).append(fn(run + 1))
    ratio = median(api_times) / median(local_times)

    # Previews delivered to an SSE client while the job runs.
    preview = params(7).replace(steps=args.preview_steps, preview_method="latent2rgb")
    reply = http.post(
        f"{server.url}/ldstudio/v1/jobs",
        json={"request": to_portable(Request.txt2img(preview))},
        timeout=60,
    )
    reply.raise_for_status()
    job_id = reply.json()["job_id"]
    stream = http.get(f"{server.url}/ldstudio/v1/jobs/{job_id}/events", stream=True, timeout=600)
    frames: list[float] = []
    engine_rate = 0.0
    for line in stream.iter_lines(decode_unicode=True):
        if line.startswith("data: ") and '"preview_jpeg": "' in line:
            frames.append(time.perf_counter())
            engine_rate = json.loads(line.removeprefix("data: "))["it_per_s"]
    span = frames[-1] - frames[0] if len(frames) > 1 else 0.0
    fps = (len(frames) - 1) / span if span > 0 else 0.0

    server.stop()
    ctx.service.close(10)
    local.close(10)
    backend.close()
    library.close()
    info = machine()
    results = {
        "machine": info,
        "runs": [
            {
                "model": "ldstudio-shapes",
                "size": args.size,
                "steps": args.steps,
                "pairs": args.runs,
                "in_process_median_s": round(median(local_times), 4),
                "api_median_s": round(median(api_times), 4),
                "ratio": round(ratio, 4),
                "goal": GOAL,
                "preview_steps": args.preview_steps,
                "preview_frames": len(frames),
                "preview_fps": round(fps, 2),
                "engine_it_per_s": round(engine_rate, 2),
            }
        ],
    }
    write_results("api", results)
    print(f"ldstudio serve overhead on {machine_line(info)}")
    print(
        f"  {args.size}x{args.size}, {args.steps} steps, {args.runs} alternated pairs: in-process "
        f"{median(local_times):.3f} s, API {median(api_times):.3f} s, ratio {ratio:.3f} "
        f"(goal ≤ {GOAL}: {'✓' if ratio <= GOAL else '✗'})"
    )
    print(
        f"  previews over SSE: {len(frames)} frames of {args.preview_steps} steps, "
        f"{fps:.1f} frames/s delivered, engine {engine_rate:.1f} it/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
