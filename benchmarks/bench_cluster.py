"""A 16-cell grid on one local engine vs a 2-actor Ray Data run on this machine: time per image,
Ray's overhead per image and where it goes, and a scaling model for N GPUs; then the same 16
jobs through Ray Serve (`ldstudio serve --ray`'s backend), one at a time and side by side.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_cluster.py [--steps 4] [--size 64]
"""

from __future__ import annotations

import argparse
import io
import json
import time

CELLS = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument(
        "--device", default="cpu", help="the local engine's (the actors use a GPU if Ray sees one)"
    )
    args = parser.parse_args()

    import ray
    import torch
    from PIL import Image

    from ldstudio.cluster import RenderedImage, render
    from ldstudio.cluster.rows import encode_row, png_bytes
    from ldstudio.core.backend import ImageResult
    from ldstudio.core.grid import expand, parse_axis
    from ldstudio.core.jobs import CancelToken
    from ldstudio.core.params import GenerationParams
    from ldstudio.core.request import Request
    from ldstudio.engine.backend import DiffusersBackend

    base = Request.txt2img(
        GenerationParams(
            prompt="a red circle", steps=args.steps, width=args.size, height=args.size, seed=1
        )
    )
    axes = [parse_axis("cfg=3,5,7,9", "--x"), parse_axis("seed=1-4", "--y")]
    requests = [cell.request for cell in expand(base, axes).cells]
    assert len(requests) == CELLS

    # One local engine, one torch thread per actor's worth of CPU (as Ray gives a CPU actor).
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    engine = DiffusersBackend(device=args.device)
    images = []
    load_start = time.perf_counter()
    for i, request in enumerate(requests):
        for event in engine.execute(request, CancelToken()):
            if isinstance(event, ImageResult):
                images.append(event.image)
        if i == 0:
            first_local = time.perf_counter() - load_start
    local_total = time.perf_counter() - t0
    engine.close()
    local_per_image = (local_total - first_local) / (CELLS - 1)
    local_load = first_local - local_per_image

    # Serialisation on the caller: portable rows out, PNG bytes back and decoded.
    s0 = time.perf_counter()
    for i, request in enumerate(requests):
        json.dumps(encode_row(i, request, None))
    for image in images:
        with Image.open(io.BytesIO(png_bytes(image))) as opened:
            opened.load()
    serialise = (time.perf_counter() - s0) / CELLS

    c0 = time.perf_counter()
    ray.init(num_cpus=args.actors, include_dashboard=False, log_to_driver=False)
    cluster_start = time.perf_counter() - c0
    r0 = time.perf_counter()
    arrivals: list[float] = []
    compute: list[float] = []
    for item in render(requests, actors=args.actors):
        assert isinstance(item, RenderedImage), item
        arrivals.append(time.perf_counter() - r0)
        compute.append(item.seconds)
    ray_total = time.perf_counter() - r0
    serve = _serve(requests, args.actors)
    ray.shutdown()

    per_actor_compute = sum(compute) / args.actors
    # The first image arrives after actor start + model load + one image.
    startup = max(0.0, arrivals[0] - compute[0])
    steady = ray_total - startup  # the wall time of the images themselves, all actors at once
    ray_per_image = steady * args.actors / CELLS  # one actor's time per image
    compute_per_image = sum(compute) / CELLS
    overhead = ray_per_image - compute_per_image
    scheduling = max(0.0, overhead - serialise)

    print(f"grid: {CELLS} cells, {args.size} px, {args.steps} steps, local engine on "
          f"{args.device}, {args.actors} actors")  # fmt: skip
    print(f"local engine: model load {local_load:.2f} s, {local_per_image:.3f} s/image, "
          f"{local_total:.2f} s in all")  # fmt: skip
    print(f"ray: cluster start {cluster_start:.2f} s (ray.init), run {ray_total:.2f} s")
    print(f"  actor start + model load: {startup:.2f} s (once per actor, in parallel)")
    print(f"  compute on the actors: {compute_per_image:.3f} s/image "
          f"({per_actor_compute:.2f} s per actor)")  # fmt: skip
    print(f"  per image on an actor, all in: {ray_per_image:.3f} s; overhead "
          f"{overhead * 1000:.1f} ms/image = serialisation {serialise * 1000:.1f} ms "
          f"+ scheduling/transfer {scheduling * 1000:.1f} ms")  # fmt: skip
    print(f"  wall per image with {args.actors} actors: {ray_total / CELLS:.3f} s "
          f"vs local {local_total / CELLS:.3f} s")  # fmt: skip
    print()
    print("scaling model (N actors, one GPU each; M images):")
    print("  T(M, N) = T_start + M * (t_image + t_overhead) / N, throughput = N / (t + o)")
    print(f"  with t = {compute_per_image:.3f} s, o = {overhead:.3f} s, "
          f"T_start = {startup:.2f} s (measured here):")  # fmt: skip
    for n in (1, 2, 4, 8, 16):
        t500 = startup + 500 * (compute_per_image + overhead) / n
        rate = n / (compute_per_image + overhead)
        print(f"  N={n:>2}: {rate:6.2f} images/s, 500 images in {t500:7.1f} s")
    print("  (this machine's CPUs are shared, so N here is capped by cores; on GPUs t shrinks")
    print("   and o stays, so the overhead share o / (t + o) grows as images get cheaper)")
    print()
    print(f"ray serve ({args.actors} replicas, one CPU each): deploy {serve['deploy']:.2f} s, "
          f"first job per replica {serve['first']:.2f} s (model load)")  # fmt: skip
    print(f"  one job at a time: {serve['latency']:.3f} s/job = compute "
          f"{serve['compute']:.3f} s + Serve {serve['overhead'] * 1000:.1f} ms/job "
          "(routing, streaming each step and preview, PNG back)")  # fmt: skip
    print(f"  {CELLS} jobs side by side on {args.actors} replicas: {serve['wall']:.2f} s, "
          f"{serve['wall'] / CELLS:.3f} s/image vs the local engine's {local_per_image:.3f} s "
          "(model loaded)")  # fmt: skip


def _serve(requests: list, replicas: int) -> dict[str, float]:
    """The jobs on Ray Serve under an EngineService, as `ldstudio serve --ray` runs them."""
    import tempfile
    from pathlib import Path

    from ldstudio.cluster.serving import ServeBackend, ServeOptions
    from ldstudio.core.events import JobFinished
    from ldstudio.core.imagefiles import FolderSink
    from ldstudio.core.service import EngineService

    d0 = time.perf_counter()
    backend = ServeBackend(None, ServeOptions(min_replicas=replicas, max_replicas=replicas))
    deploy = time.perf_counter() - d0
    with tempfile.TemporaryDirectory() as folder:
        service = EngineService(lambda: backend, FolderSink(Path(folder)))
        service.start()
        # Warm every replica (each loads the model once), all at once.
        f0 = time.perf_counter()
        warm = [service.submit(r) for r in requests[:replicas]]
        assert all(isinstance(service.wait(j, 600), JobFinished) for j in warm)
        first = time.perf_counter() - f0
        latencies, computes = [], []
        for request in requests[:8]:
            t = time.perf_counter()
            outcome = service.run(request, 600)
            assert isinstance(outcome, JobFinished), outcome
            latencies.append(time.perf_counter() - t)
            computes.append(outcome.records[0].seconds)
        w0 = time.perf_counter()
        jobs = [service.submit(r) for r in requests]
        assert all(isinstance(service.wait(j, 600), JobFinished) for j in jobs)
        wall = time.perf_counter() - w0
        service.close(60)  # closes the backend: the app is deleted
    latency = sum(latencies) / len(latencies)
    compute = sum(computes) / len(computes)
    return {
        "deploy": deploy,
        "first": first,
        "latency": latency,
        "compute": compute,
        "overhead": latency - compute,
        "wall": wall,
    }


if __name__ == "__main__":
    main()
