"""What Open WebUI and SillyTavern send (tests/data/a1111_clients.json, rebuilt from their
source, cited there) is accepted and answered as they read it; on the fake backend, since the
point is the HTTP conversation."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from api_support import running_server
from PIL import Image

from ldstudio.engine.fake import FakeBackend

BODIES = json.loads((Path(__file__).parent / "data" / "a1111_clients.json").read_text())


@pytest.fixture
def server(tmp_path: Path):
    with running_server(FakeBackend(), tmp_path / "library") as running:
        yield running


def open_webui_image(data: str) -> Image.Image:
    """Open WebUI's get_image_data: split a data URL at ',', else plain base64."""
    encoded = data.split(",", 1)[1] if "," in data else data
    return Image.open(io.BytesIO(base64.b64decode(encoded)))


def test_open_webui_conversation(server) -> None:
    spec = BODIES["open_webui"]
    headers = spec["headers_without_credentials"]
    # set_image_model: read the options, change the checkpoint, post the whole dict back.
    options = server.get("/sdapi/v1/options", headers=headers).json()
    models = server.get("/sdapi/v1/sd-models", headers=headers).json()
    listed = [{"id": m["title"], "name": m["model_name"]} for m in models]
    assert listed[0] == {"id": "ldstudio-shapes", "name": "ldstudio-shapes"}
    options["sd_model_checkpoint"] = listed[0]["id"]
    reply = server.post("/sdapi/v1/options", json=options, headers=headers)
    reply.raise_for_status()
    assert server.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == listed[0]["id"]
    reply = server.post("/sdapi/v1/txt2img", json=spec["txt2img"], headers=headers)
    assert reply.status_code == 200, reply.text
    res = reply.json()
    images = [open_webui_image(image) for image in res["images"]]
    assert len(images) == 1 and images[0].size == (512, 512) and images[0].format == "PNG"
    info = json.loads(res["info"])
    assert info["prompt"] == spec["txt2img"]["prompt"]
    assert info["negative_prompt"] == "blurry" and info["steps"] == 20
    assert server.saved() == 1


def test_sillytavern_conversation(server) -> None:
    spec = BODIES["sillytavern"]
    assert server.get("/sdapi/v1/options").ok  # /ping
    titles = [x["title"] for x in server.get("/sdapi/v1/sd-models").json()]
    samplers = [x["name"] for x in server.get("/sdapi/v1/samplers").json()]
    assert spec["txt2img"]["sampler_name"] in samplers
    upscalers = [x["name"] for x in server.get("/sdapi/v1/upscalers").json()]
    latent = [x["name"] for x in server.get("/sdapi/v1/latent-upscale-modes").json()]
    assert spec["txt2img"]["hr_upscaler"] in upscalers + latent
    # /set-model: post the checkpoint, then wait until the server is idle.
    assert spec["set_model"]["sd_model_checkpoint"] in titles
    server.post("/sdapi/v1/options", json=spec["set_model"]).raise_for_status()
    progress = server.get("/sdapi/v1/progress").json()
    assert progress["progress"] == 0.0 and progress["state"]["job_count"] == 0
    assert server.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == titles[0]
    # /generate forwards the whole body, its own url and auth keys included.
    reply = server.post("/sdapi/v1/txt2img", json=spec["txt2img"])
    assert reply.status_code == 200, reply.text
    data = reply.json()
    image = Image.open(io.BytesIO(base64.b64decode(data["images"][0])))
    assert image.format == "PNG" and image.size == (512, 512)
    info = json.loads(data["info"])
    assert info["sampler_name"] == "DDIM" and info["cfg_scale"] == 7
    assert {"url", "auth"} <= set(info["ldstudio_unused"])


def test_sillytavern_with_hires_fix_on(server) -> None:
    body = {**BODIES["sillytavern"]["txt2img"], "enable_hr": True, "width": 64, "height": 64}
    reply = server.post("/sdapi/v1/txt2img", json=body)
    assert reply.status_code == 200, reply.text
    image = Image.open(io.BytesIO(base64.b64decode(reply.json()["images"][0])))
    assert image.size == (128, 128)  # hr_scale 2 with the Latent upscaler
    assert json.loads(reply.json()["info"])["denoising_strength"] == 0.7
