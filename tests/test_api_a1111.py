"""The /sdapi/v1 routes over HTTP on the fake backend: the body → request mapping, the reply's
shape, progress, interrupt, options, lists and png-info (the A1111 API's contract)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from api_support import b64_png, decode_png, running_server
from PIL import Image

from ldstudio.core.params import SCHEDULERS
from ldstudio.engine.fake import FakeBackend


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def server(fake: FakeBackend, tmp_path: Path):
    with running_server(fake, tmp_path / "library") as running:
        yield running


def txt2img(server, **body):
    return server.post("/sdapi/v1/txt2img", json={"prompt": "a red fox", **body})


def test_txt2img_reply_has_images_and_info_string(server) -> None:
    reply = txt2img(server, seed=1234, steps=3, batch_size=2, n_iter=2, width=64, height=64)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert isinstance(data["info"], str)
    info = json.loads(data["info"])
    assert info["seed"] == 1234
    assert info["all_seeds"] == [1234, 1235, 1236, 1237]
    assert info["all_prompts"] == ["a red fox"] * 4
    assert len(info["infotexts"]) == 4 and "Seed: 1234" in info["infotexts"][0]
    images = [decode_png(text) for text in data["images"]]
    assert [im.size for im in images] == [(64, 64)] * 4
    # The bytes are the library's files, metadata included; all four are in the library.
    assert images[0].text["parameters"] == info["infotexts"][0]
    assert server.saved() == 4
    assert data["parameters"]["seed"] == 1234


def test_random_seed_is_reported(server) -> None:
    info = json.loads(txt2img(server, seed=-1, steps=2).json()["info"])
    assert isinstance(info["seed"], int) and 0 <= info["seed"] < 2**32
    assert info["all_seeds"] == [info["seed"]]


def test_sampler_and_scheduler_names_map_to_ours(server) -> None:
    reply = txt2img(server, steps=2, sampler_name="DPM++ 2M", scheduler="Karras")
    assert json.loads(reply.json()["info"])["sampler_name"] == "DPM++ 2M Karras"
    reply = txt2img(server, steps=2, sampler_name="euler", scheduler="automatic")
    assert json.loads(reply.json()["info"])["sampler_name"] == "Euler"
    # webuiapi's deprecated field alone still chooses the sampler.
    reply = txt2img(server, steps=2, sampler_index="DDIM")
    assert json.loads(reply.json()["info"])["sampler_name"] == "DDIM"


def test_unknown_sampler_is_refused_naming_it_and_the_allowed(server) -> None:
    reply = txt2img(server, sampler_name="Heun")
    assert reply.status_code == 422
    detail = reply.json()["detail"]
    assert "'Heun'" in detail and all(name in detail for name in SCHEDULERS)
    reply = txt2img(server, sampler_name="Euler", scheduler="exponential")
    assert reply.status_code == 422
    assert "'exponential'" in reply.json()["detail"] and "karras" in reply.json()["detail"]
    assert server.saved() == 0


def test_what_ldstudio_cannot_do_is_refused_not_ignored(server) -> None:
    for body in ({"restore_faces": True}, {"tiling": True}, {"script_name": "x/y/z plot"}):
        reply = txt2img(server, **body)
        assert reply.status_code == 422, body
        assert next(iter(body)) in reply.json()["detail"]
    reply = txt2img(server, enable_hr=True, hr_prompt="something else", steps=2)
    assert reply.status_code == 422 and "hr_prompt" in reply.json()["detail"]
    reply = txt2img(server, sampler_name="DPM++ 2M", enable_hr=True, hr_scheduler="karras")
    assert reply.status_code == 422 and "hr_scheduler" in reply.json()["detail"]
    # The same sampler named again for the second pass is what ldstudio does anyway.
    reply = txt2img(server, steps=1, enable_hr=True, hr_sampler_name="Euler a", hr_scale=1)
    assert reply.status_code == 200, reply.text


def test_unknown_fields_are_accepted_and_named_unused(server) -> None:
    reply = txt2img(server, steps=2, eta=1.0, my_client_field=3, restore_faces=False)
    assert reply.status_code == 200
    unused = json.loads(reply.json()["info"])["ldstudio_unused"]
    assert unused == ["eta", "my_client_field"]


def test_bad_values_name_the_a1111_field(server) -> None:
    reply = txt2img(server, cfg_scale=99)
    assert reply.status_code == 422 and reply.json()["detail"].startswith("cfg_scale:")
    reply = txt2img(server, width=65)
    assert reply.status_code == 422 and reply.json()["detail"].startswith("width:")
    reply = server.post("/sdapi/v1/txt2img", data="[1]")
    assert reply.status_code == 422


def test_send_images_false_saves_but_returns_none(server) -> None:
    reply = txt2img(server, steps=2, send_images=False)
    assert reply.json()["images"] == [] and server.saved() == 1


def test_hires_fix_fields(server) -> None:
    body = {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "Lanczos", "denoising_strength": 0.4}
    reply = txt2img(server, steps=2, width=64, height=64, **body)
    assert reply.status_code == 200, reply.text
    image = decode_png(reply.json()["images"][0])
    assert image.size == (128, 128)
    assert json.loads(reply.json()["info"])["denoising_strength"] == 0.4
    reply = txt2img(server, steps=2, width=64, height=64, enable_hr=True, hr_resize_x=96)
    assert decode_png(reply.json()["images"][0]).size == (96, 96)
    reply = txt2img(server, steps=2, enable_hr=True, hr_upscaler="R-ESRGAN 4x+")
    assert reply.status_code == 422
    assert "R-ESRGAN 4x+" in reply.json()["detail"] and "Latent" in reply.json()["detail"]
    # Hires fields without enable_hr change nothing (webuiapi always sends them).
    reply = txt2img(server, steps=2, width=64, height=64, hr_scale=3, hr_upscaler="Nope")
    assert decode_png(reply.json()["images"][0]).size == (64, 64)


def test_img2img_with_init_image_and_mask(server) -> None:
    source = Image.new("RGB", (64, 64), (10, 200, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    body = {
        "prompt": "a blue square",
        "init_images": [b64_png(source, data_url=True)],
        "mask": b64_png(mask),
        "denoising_strength": 0.6,
        "mask_blur": 0,
        "inpainting_fill": 1,
        "inpaint_full_res": False,
        "steps": 2,
        "seed": 7,
    }
    reply = server.post("/sdapi/v1/img2img", json=body)
    assert reply.status_code == 200, reply.text
    out = np.asarray(decode_png(reply.json()["images"][0]).convert("RGB"))
    # Outside the mask the source is kept; inside, the fake's gradient was pasted.
    assert (out[0, 0] == (10, 200, 30)).all()
    assert not (out[32, 32] == (10, 200, 30)).all()
    # The source and the mask went into the library's blob store, as the window's do.
    assert len(list((server.library.root / "blobs").rglob("*"))) >= 2
    info = json.loads(reply.json()["info"])
    assert info["denoising_strength"] == 0.6


def test_img2img_refusals(server) -> None:
    source = b64_png(Image.new("RGB", (64, 64)))
    for body, field in (
        ({}, "init_images"),
        ({"init_images": [source, source]}, "init_images"),
        ({"init_images": ["not base64!"]}, "init_images[0]"),
        ({"init_images": [source], "mask": b64_png(Image.new("L", (32, 32), 255))}, "mask"),
        ({"init_images": [source], "mask": b64_png(Image.new("L", (64, 64), 0))}, "mask"),
    ):
        reply = server.post("/sdapi/v1/img2img", json={"prompt": "x", **body})
        assert reply.status_code == 422, body
        assert reply.json()["detail"].startswith(field), reply.json()["detail"]


def test_progress_reports_the_running_job_and_preview(server, fake: FakeBackend) -> None:
    idle = server.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
    assert idle["current_image"] is None
    fake.hold_at_step = 2
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(txt2img, server, steps=4, width=64, height=64)
        deadline = time.monotonic() + 30
        while server.get("/sdapi/v1/progress").json()["state"]["sampling_step"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        busy = server.get("/sdapi/v1/progress").json()
        assert busy["progress"] == pytest.approx(0.5)
        assert busy["state"]["job_count"] == 1 and busy["state"]["sampling_steps"] == 4
        preview = decode_png(busy["current_image"])
        assert preview.size == (8, 8)  # the fake's latent-sized frame
        skipped = server.get("/sdapi/v1/progress", params={"skip_current_image": True}).json()
        assert skipped["current_image"] is None
        fake.release()
        assert pending.result(timeout=30).status_code == 200
    done = server.get("/sdapi/v1/progress").json()
    assert done["progress"] == 0 and done["state"]["job_count"] == 0


def test_interrupt_returns_promptly_and_saves_nothing(server, fake: FakeBackend) -> None:
    fake.hold_at_step = 1
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(txt2img, server, steps=50, width=64, height=64)
        while server.get("/sdapi/v1/progress").json()["state"]["sampling_step"] < 1:
            time.sleep(0.01)
        assert server.post("/sdapi/v1/interrupt").status_code == 200
        reply = pending.result(timeout=10)
    assert reply.status_code == 200 and reply.json()["images"] == []
    assert json.loads(reply.json()["info"])["all_seeds"] == []
    assert server.saved() == 0


def test_concurrent_requests_are_queued_not_dropped(server, fake: FakeBackend) -> None:
    fake.step_delay = 0.01
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda s: txt2img(server, seed=s, steps=3), range(4)))
    seeds = sorted(json.loads(r.json()["info"])["seed"] for r in replies)
    assert [r.status_code for r in replies] == [200] * 4 and seeds == [0, 1, 2, 3]
    assert server.saved() == 4


def test_options_round_trip_and_model_switch(server, tiny_model: Path) -> None:
    from ldstudio.core.models import ModelFolderStore

    options = server.get("/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"] == "ldstudio-shapes"
    assert options["sd_vae"] == "Automatic" and options["CLIP_stop_at_last_layers"] == 1
    assert len(options["sd_checkpoint_hash"]) == 64
    # The whole dict back, with an unknown and a read-only key: accepted, they change nothing.
    reply = server.post("/sdapi/v1/options", json={**options, "unknown_key": 1})
    assert reply.status_code == 200
    ModelFolderStore(folders=[str(tiny_model.parent)]).save()
    models = [m["title"] for m in server.get("/sdapi/v1/sd-models").json()]
    assert models == ["ldstudio-shapes", "tiny-sd"]
    body = {**options, "sd_model_checkpoint": "tiny-sd", "CLIP_stop_at_last_layers": 2}
    assert server.post("/sdapi/v1/options", json=body).status_code == 200
    after = server.get("/sdapi/v1/options").json()
    assert after["sd_model_checkpoint"] == "tiny-sd" and after["CLIP_stop_at_last_layers"] == 2
    # Later jobs use it: the fake records the model it was given.
    txt2img(server, steps=1)
    [entry] = server.library.page(None, 0, 1)
    assert Path(entry.params.model) == tiny_model.resolve()
    assert entry.params.clip_skip == 2
    refused = server.post("/sdapi/v1/options", json={"sd_model_checkpoint": "/etc/passwd"})
    assert refused.status_code == 422 and "tiny-sd" in refused.json()["detail"]
    assert server.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "tiny-sd"


def test_a_path_is_never_a_model(server, tmp_path: Path) -> None:
    lora = tmp_path / "stray.safetensors"
    lora.write_bytes(b"x")
    reply = txt2img(server, prompt=f"a fox <lora:{lora}:1>", steps=1)
    assert reply.status_code == 422 and "names a path" in reply.json()["detail"]
    override = {"sd_model_checkpoint": str(tmp_path)}
    reply = txt2img(server, steps=1, override_settings=override)
    assert reply.status_code == 422


def test_lists(server) -> None:
    samplers = [s["name"] for s in server.get("/sdapi/v1/samplers").json()]
    assert samplers == list(SCHEDULERS)
    names = [s["name"] for s in server.get("/sdapi/v1/schedulers").json()]
    assert names == ["automatic", "karras"]
    upscalers = [u["name"] for u in server.get("/sdapi/v1/upscalers").json()]
    assert upscalers[0] == "Lanczos" and "ldstudio-compact-x2" in upscalers
    modes = server.get("/sdapi/v1/latent-upscale-modes").json()
    assert modes == [{"name": "Latent"}]
    assert server.get("/sdapi/v1/sd-vae").json() == []
    assert server.get("/sdapi/v1/loras").json() == []
    assert server.get("/sdapi/v1/embeddings").json() == {"loaded": {}, "skipped": {}}


def test_png_info_reads_our_metadata(server) -> None:
    image = txt2img(server, steps=2, seed=42).json()["images"][0]
    reply = server.post("/sdapi/v1/png-info", json={"image": f"data:image/png;base64,{image}"})
    assert reply.status_code == 200
    data = reply.json()
    assert "Seed: 42" in data["info"] and data["parameters"]["Seed"] == "42"
    assert "ldstudio" in data["items"]
    assert server.post("/sdapi/v1/png-info", json={"image": "???"}).status_code == 422


def test_listener_thread_is_not_the_loop(server, fake: FakeBackend) -> None:
    """A job holding the engine must not hold the server: other routes answer meanwhile."""
    fake.hold_at_step = 1
    done = threading.Event()

    def run() -> None:
        txt2img(server, steps=3)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    while server.get("/sdapi/v1/progress").json()["state"]["sampling_step"] < 1:
        time.sleep(0.01)
    assert server.get("/sdapi/v1/options").status_code == 200
    assert not done.is_set()
    fake.release()
    assert done.wait(10)


def test_prompt_fields_as_a1111_means_them(server, ldstudio_home: Path) -> None:
    ldstudio_home.mkdir(parents=True, exist_ok=True)
    (ldstudio_home / "styles.csv").write_text(
        'name,prompt,negative_prompt\nCinematic,"{prompt}, film grain",blurry\n'
    )
    body = {
        "prompt": "(a red fox:1.2) BREAK snow",
        "styles": ["cinematic"],
        "subseed": 5,
        "subseed_strength": 0.3,
        "seed_resize_from_w": 128,
        "seed_resize_from_h": 96,
        "override_settings": {"CLIP_stop_at_last_layers": 2, "samples_format": "jpg"},
        "steps": 1,
    }
    reply = server.post("/sdapi/v1/txt2img", json=body)
    assert reply.status_code == 200, reply.text
    info = json.loads(reply.json()["info"])
    assert info["prompt"] == "(a red fox:1.2) BREAK snow, film grain"
    assert info["negative_prompt"] == "blurry" and info["styles"] == ["Cinematic"]
    assert info["clip_skip"] == 2 and info["subseed"] == 5
    assert info["ldstudio_unused"] == ["override_settings.samples_format"]
    [entry] = server.library.page(None, 0, 1)
    params = entry.params
    assert (params.variation_seed, params.variation_strength) == (5, 0.3)
    assert params.seed_resize_from == (128, 96) and params.clip_skip == 2
    reply = txt2img(server, styles=["Noir"])
    assert reply.status_code == 422 and "Cinematic" in reply.json()["detail"]
