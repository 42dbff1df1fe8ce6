"""What the Ray tests share: the reference pixels of a fresh local engine process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ldstudio.core.request import Request

_LOCAL_RUN = """
import json, sys, torch
from ldstudio.core.backend import ImageResult
from ldstudio.core.jobs import CancelToken
from ldstudio.core.request import Request
from ldstudio.engine.backend import DiffusersBackend

torch.set_num_threads(1)
engine = DiffusersBackend(device="cpu")
for number, data in enumerate(json.loads(sys.argv[1])):
    request = Request.from_dict(data)
    events = engine.execute(request, CancelToken())
    images = [e.image for e in events if isinstance(e, ImageResult)]
    for index, image in enumerate(images):
        image.save(f"{sys.argv[2]}/{number}-{index}.png")
"""


def local_pixels(requests: list[Request], folder: Path) -> list[np.ndarray]:
    """The requests made by a fresh local engine process with one torch thread, as a 1-CPU
    node has: the test process carries global torch state earlier tests set, and float sums
    depend on the thread count."""
    import json
    import subprocess
    import sys

    folder.mkdir(parents=True, exist_ok=True)
    data = json.dumps([request.to_dict() for request in requests])
    subprocess.run([sys.executable, "-c", _LOCAL_RUN, data, str(folder)], check=True)
    paths = sorted(folder.glob("*.png"), key=lambda p: tuple(map(int, p.stem.split("-"))))
    return [np.asarray(Image.open(path).convert("RGB")) for path in paths]
