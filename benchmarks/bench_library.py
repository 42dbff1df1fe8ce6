"""Gallery speed on a synthetic library of 100,000 images: open, text search, grid paging.

Goals (issue 5): open <= 1 s, text search <= 50 ms, grid scrolling never waits on the index.

The library's rows are synthetic (varied prompts from a seeded vocabulary, 6 models, dates over
two years, 5 % favourites, 2 % tagged); every row has its own file name, and every file is a
hard link to a tiny 16x16 PNG (a fresh one every 20,000 links), so reconcile() really walks
100,000 directory entries without 100,000 encodes.
Run: `python benchmarks/bench_library.py [--images N] [--dir DIR]`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import machine_text
from PIL import Image

from ldstudio.core.library import LibraryFilter, LibraryStore, NewEntry

WORDS = [
    "portrait",
    "landscape",
    "castle",
    "forest",
    "river",
    "mountain",
    "city",
    "night",
    "sunset",
    "dawn",
    "fox",
    "cat",
    "dog",
    "dragon",
    "robot",
    "astronaut",
    "knight",
    "wizard",
    "ocean",
    "desert",
    "snow",
    "rain",
    "neon",
    "cyberpunk",
    "watercolor",
    "oil",
    "painting",
    "photograph",
    "cinematic",
    "lighting",
    "dramatic",
    "soft",
    "golden",
    "hour",
    "bokeh",
    "detailed",
    "intricate",
    "epic",
    "fantasy",
    "sci-fi",
    "vintage",
    "retro",
    "minimal",
    "abstract",
    "surreal",
    "garden",
    "flower",
    "rose",
    "tulip",
    "lighthouse",
    "ship",
    "harbor",
    "bridge",
    "train",
    "station",
    "market",
    "street",
    "cafe",
    "library",
    "cathedral",
    "temple",
    "ruins",
    "cave",
    "waterfall",
    "volcano",
    "glacier",
    "aurora",
    "galaxy",
    "nebula",
    "planet",
    "moon",
    "sun",
    "cloud",
    "storm",
    "lightning",
    "fog",
    "mist",
    "autumn",
    "winter",
    "spring",
    "summer",
    "red",
    "blue",
    "green",
    "purple",
    "orange",
    "black",
    "white",
    "silver",
    "gold",
]
MODELS = ("sd15", "dreamshaper_8", "sdxl_base", "juggernautXL", "ldstudio-shapes", "flux-dev")


def machine() -> str:
    return f"{machine_text()}, SQLite {sqlite3.sqlite_version}"


def stats(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"median {statistics.median(ms):7.2f} ms  p95 {p95:7.2f} ms  max {ms[-1]:7.2f} ms"


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def build(root: Path, count: int) -> float:
    rng = random.Random(100_000)
    seed_png = root / "seed.png"
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (40, 90, 160)).save(seed_png)
    now = time.time()
    start = time.perf_counter()
    with LibraryStore(root) as store:

        def rows():
            for i in range(count):
                folder = store.images_dir / f"bench-{i // 2000:03d}"
                if i % 2000 == 0:
                    folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{i:06d}.png"
                if i % 20_000 == 0:  # file systems cap hard links per inode (ext4: 65,000)
                    seed_png.unlink(missing_ok=True)
                    Image.new("RGB", (16, 16), (40, 90, 160)).save(seed_png)
                os.link(seed_png, path)
                prompt = " ".join(rng.choices(WORDS, k=rng.randint(6, 18)))
                yield NewEntry(
                    path=path,
                    created=now - rng.uniform(0, 2 * 365 * 86_400),
                    prompt=prompt,
                    negative_prompt="blurry, low quality",
                    model=rng.choice(MODELS),
                    seed=rng.randrange(2**32),
                    width=512,
                    height=512,
                    steps=20,
                    guidance_scale=7.0,
                    scheduler="Euler a",
                    mtime_ns=i,
                    file_size=100,
                )

        ids = store.add_entries(rows())
        conn = store._conn()
        conn.execute("BEGIN")
        conn.executemany(
            "UPDATE images SET favourite = 1 WHERE id = ?", [(i,) for i in ids if i % 20 == 0]
        )
        conn.execute("COMMIT")
        for image_id in ids[::50]:
            store.add_tags(image_id, ["keeper"])
    seed_png.unlink()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--dir", default=None, help="reuse/keep the library here")
    args = parser.parse_args()
    temp = None
    if args.dir:
        root = Path(args.dir)
    else:
        temp = tempfile.mkdtemp(prefix="ldstudio-bench-library-")
        root = Path(temp) / "library"
    print(f"machine: {machine()}")
    try:
        if not (root / "library.sqlite3").exists():
            seconds = build(root, args.images)
            print(f"built {args.images:,} rows + hard-linked files in {seconds:.1f} s")
        size_mb = (root / "library.sqlite3").stat().st_size / 1e6
        print(f"index size: {size_mb:.1f} MB")

        opens = []
        first_screen = []
        for _ in range(5):
            start = time.perf_counter()
            store = LibraryStore(root)
            opened = time.perf_counter()
            store.count()
            store.page(LibraryFilter(), 0, 120)
            first_screen.append(time.perf_counter() - start)
            opens.append(opened - start)
            store.close()
        print(f"open (clean shutdown before)      {stats(opens)}   goal <= 1000 ms")
        crashed_opens = []
        for _ in range(3):
            # A session file nobody holds locked is what a killed process leaves behind.
            (root / "sessions" / "killed-process.lock").write_text("0\n")
            start = time.perf_counter()
            store = LibraryStore(root)
            crashed_opens.append(time.perf_counter() - start)
            assert store.crashed_before and store.last_reconcile is not None
            store.close()
        print(f"open after a crash (+ reconcile)  {stats(crashed_opens)}   goal <= 1000 ms")
        print(f"open + count + first 120 entries  {stats(first_screen)}")

        with LibraryStore(root) as store:
            total = store.count()
            assert total == args.images, total
            print(f"count() of {total:,}                {stats(timed(store.count, 20))}")

            rng = random.Random(5)
            offsets = [rng.randrange(0, total - 120) for _ in range(60)]
            it = iter(offsets)
            page_times = timed(lambda: store.page(LibraryFilter(), next(it), 120), len(offsets))
            print(f"page(120) at random offsets       {stats(page_times)}")
            scroll = [
                timed(lambda o=o: store.page(LibraryFilter(), o, 120), 1)[0]
                for o in range(0, total - 120, total // 50)
            ]
            print(f"page(120) scrolling top->bottom   {stats(scroll)}")
            ids_time = timed(store.ids, 5)
            print(f"ids() all, in order               {stats(ids_time)}")
            all_ids = store.ids()
            it2 = iter(rng.randrange(0, total - 120) for _ in range(60))

            def by_ids() -> None:
                start = next(it2)
                store.entries(all_ids[start : start + 120])

            print(f"entries(120 ids)                  {stats(timed(by_ids, 60))}")

            queries = [
                "fox",
                "castle night",
                "cinematic lighting",
                "drag",
                "neon cyberpunk city",
                "watercolor rose garden",
                "aurora glacier",
                "zzzz-no-match",
                "portrait golden hour bokeh",
                "ca",
                "a",
            ]
            search_count: list[float] = []
            search_page: list[float] = []
            for _ in range(5):
                for q in queries:
                    f = LibraryFilter(text=q)
                    search_count += timed(lambda f=f: store.count(f), 1)
                    search_page += timed(lambda f=f: store.page(f, 0, 120), 1)
            print(f"text search count() ({len(queries)} queries)  {stats(search_count)}")
            print(f"text search first page            {stats(search_page)}   goal <= 50 ms")
            for q in queries:
                f = LibraryFilter(text=q)
                count = store.count(f)
                med = statistics.median(timed(lambda f=f: store.page(f, 0, 120), 3)) * 1000
                print(f"   {q!r:30} {count:7,} hits  first page {med:6.2f} ms")

            filters = {
                "model": LibraryFilter(model="sdxl_base"),
                "favourites": LibraryFilter(favourites=True),
                "tag": LibraryFilter(tags=("keeper",)),
                "date range (30 days)": LibraryFilter(
                    since=time.time() - 60 * 86_400, until=time.time() - 30 * 86_400
                ),
                "text + model": LibraryFilter(text="castle", model="sd15"),
            }
            for name, f in filters.items():
                samples = timed(lambda f=f: (store.count(f), store.page(f, 0, 120)), 5)
                print(f"filter {name:22} count+page {stats(samples)}")

            report = store.reconcile()
            print(
                f"full reconcile (walks {total:,} files) {report.seconds * 1000:8.0f} ms "
                f"(runs on open only after a crash; else on a worker thread)"
            )
        with tempfile.TemporaryDirectory() as tmp:
            big = Path(tmp) / "big.png"
            Image.effect_noise((1024, 1024), 60).convert("RGB").save(big)
            with LibraryStore(Path(tmp) / "lib") as store:
                (image_id,) = store.add_entries([NewEntry(path=big, created=time.time())])
                entry = store.get(image_id)
                start = time.perf_counter()
                store.thumbnail(entry)
                made = time.perf_counter() - start
                cached = timed(lambda: store.thumbnail(entry), 20)
            print(f"thumbnail 1024px PNG -> 256px WebP: build {made * 1000:.1f} ms")
            print(f"thumbnail already cached          {stats(cached)}")
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
