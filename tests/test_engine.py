"""The diffusers backend on the CPU with a tiny random-weight SD pipeline."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_support import run_job, service_for
from PIL import Image

from ldstudio.core.events import (
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    ModelLoading,
    ModelReady,
    StepProgress,
)
from ldstudio.core.imagefiles import FolderSink
from ldstudio.core.jobs import Job, JobState
from ldstudio.core.metadata import read_ldstudio_params
from ldstudio.core.params import SCHEDULERS, GenerationParams
from ldstudio.engine import previews
from ldstudio.engine.backend import DiffusersBackend
from ldstudio.engine.device import choose_device
from ldstudio.engine.models import ModelError, check_diffusers_folder
from ldstudio.engine.schedulers import build_scheduler


def run(backend: DiffusersBackend, params: GenerationParams, out: Path, on_event=None):
    listen = None if on_event is None else (lambda _job, event: on_event(event))
    return run_job(backend, params, FolderSink(out), listen)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def finished_images(events: list) -> list[np.ndarray]:
    assert isinstance(events[-1], JobFinished), events[-1]
    return [pixels(r.path) for r in events[-1].records]


@pytest.fixture
def params(tiny_model: Path) -> GenerationParams:
    return GenerationParams(prompt="a red circle", model=str(tiny_model), steps=5, seed=1234)


def test_events_in_order_and_image_saved_with_metadata(backend, params, tmp_path) -> None:
    _, state, events = run(backend, params.replace(preview_interval=2), tmp_path)
    assert state is JobState.FINISHED
    kinds = [type(e) for e in events]
    assert kinds[kinds.index(ModelReady) + 1] is JobStarted
    steps = [e for e in events if isinstance(e, StepProgress)]
    assert [s.step for s in steps] == [1, 2, 3, 4, 5]
    assert all(s.total == 5 and s.it_per_s > 0 for s in steps)
    assert [s.step for s in steps if s.preview is not None] == [2, 4]
    preview = steps[1].preview
    assert preview.dtype == np.uint8 and preview.ndim == 3 and preview.shape[2] == 3
    started = next(e for e in events if isinstance(e, JobStarted))
    assert (started.params.width, started.params.height) == (64, 64)  # native size resolved
    assert started.device == "cpu" and started.dtype == "fp32"
    (record,) = events[-1].records
    assert record.path.exists() and record.seed == 1234
    assert read_ldstudio_params(record.path) == record.params
    assert record.params.seed == 1234 and record.params.width == 64
    assert json.loads(json.dumps(record.to_dict()))["seed"] == 1234


def test_same_seed_same_pixels_and_different_seed_differs(backend, params, tmp_path) -> None:
    a = finished_images(run(backend, params, tmp_path)[2])[0]
    b = finished_images(run(backend, params, tmp_path)[2])[0]
    c = finished_images(run(backend, params.replace(seed=1235), tmp_path)[2])[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_one_seed_per_image_across_a_batch(backend, params, tmp_path) -> None:
    _, _, events = run(backend, params.replace(batch_count=2), tmp_path)
    records = events[-1].records
    assert [r.seed for r in records] == [1234, 1235]
    alone = finished_images(run(backend, params.replace(seed=1235), tmp_path)[2])[0]
    assert np.array_equal(pixels(records[1].path), alone)
    _, _, events = run(backend, params.replace(batch_size=3), tmp_path)
    assert [r.seed for r in events[-1].records] == [1234, 1235, 1236]
    assert len({pixels(r.path).tobytes() for r in events[-1].records}) == 3


def test_sde_batch_images_are_those_of_their_own_seeds(backend, params, tmp_path) -> None:
    # DPM++ SDE draws its noise from a Brownian tree outside the pipeline's generators: one
    # tree per image, or image 2 of a batch could not be made again from its saved seed.
    sde = params.replace(scheduler="DPM++ SDE Karras", steps=6)
    _, _, events = run(backend, sde.replace(batch_size=2), tmp_path)
    second = pixels(events[-1].records[1].path).astype(int)
    alone = finished_images(run(backend, sde.replace(seed=1235), tmp_path)[2])[0].astype(int)
    # Batched matrix products round differently from single ones: a level or two, no more.
    assert np.abs(second - alone).max() <= 2


@pytest.mark.parametrize("method", ["latent2rgb", "vae"])
def test_previews_never_change_the_final_image(backend, params, tmp_path, method) -> None:
    plain = finished_images(run(backend, params.replace(preview_method="none"), tmp_path)[2])
    _, _, events = run(backend, params.replace(preview_method=method), tmp_path)
    assert sum(isinstance(e, StepProgress) and e.preview is not None for e in events) == 5
    assert np.array_equal(finished_images(events)[0], plain[0])


def test_preview_is_the_predicted_clean_image(backend, params, tmp_path) -> None:
    # Euler's last step lands exactly on its x0 estimate: a full-VAE preview of x0 at the
    # last step must be the final image, where a preview of the noisy latent would not be.
    p = params.replace(scheduler="Euler", preview_method="vae")
    _, _, events = run(backend, p, tmp_path)
    last = [e for e in events if isinstance(e, StepProgress)][-1].preview
    final = finished_images(events)[0]
    assert np.abs(last.astype(int) - final.astype(int)).max() <= 1


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_runs_with_previews(backend, params, tmp_path, scheduler) -> None:
    _, state, events = run(backend, params.replace(scheduler=scheduler, steps=4), tmp_path)
    assert state is JobState.FINISHED, events[-1]
    steps = [e for e in events if isinstance(e, StepProgress)]
    assert steps and all(e.preview is not None for e in steps)
    assert steps[-1].step == steps[-1].total


def test_schedulers_are_built_from_the_model_config(tiny_model) -> None:
    config = json.loads((tiny_model / "scheduler" / "scheduler_config.json").read_text())
    karras = build_scheduler("DPM++ 2M Karras", config, seeds=0)
    assert karras.config.use_karras_sigmas and karras.config.beta_schedule == "scaled_linear"
    assert type(build_scheduler("Euler a", config, 0)).__name__ == "EulerAncestralDiscreteScheduler"
    with pytest.raises(ValueError, match="allowed: Euler"):
        build_scheduler("Heun", config, 0)


def test_cancel_at_step_k_saves_nothing_and_leaves_the_engine_ready(
    backend, params, tmp_path
) -> None:
    out = tmp_path / "cancelled"

    def cancel_at_3(job: Job, event) -> None:
        if isinstance(event, StepProgress) and event.step == 3:
            job.cancel()

    _, state, events = run_job(backend, params.replace(steps=8), FolderSink(out), cancel_at_3)
    assert state is JobState.CANCELLED
    assert isinstance(events[-1], JobCancelled) and events[-1].step == 4
    assert max(e.step for e in events if isinstance(e, StepProgress)) == 3
    assert not out.exists() or list(out.iterdir()) == []
    after = finished_images(run(backend, params.replace(steps=8), tmp_path)[2])[0]
    reference = DiffusersBackend(device="cpu")
    fresh = finished_images(run(reference, params.replace(steps=8), tmp_path / "ref")[2])[0]
    reference.close()
    assert np.array_equal(after, fresh)


def test_cancel_before_start_and_between_batches_keeps_finished_images(
    backend, params, tmp_path
) -> None:
    _, state, events = run_job(backend, params, FolderSink(tmp_path), cancelled=True)
    assert state is JobState.CANCELLED
    assert isinstance(events[-1], JobCancelled) and events[-1].saved == ()

    def cancel_in_batch_2(job: Job, event) -> None:
        if isinstance(event, StepProgress) and event.batch_index == 1 and event.step == 2:
            job.cancel()

    batches = params.replace(batch_count=3)
    _, state, events = run_job(backend, batches, FolderSink(tmp_path / "b"), cancel_in_batch_2)
    assert state is JobState.CANCELLED
    saved = events[-1].saved
    assert len(saved) == 1 and saved[0].path.exists()
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [saved[0].path.name]


def test_cancel_from_another_thread(backend, params, tmp_path) -> None:
    first_step = threading.Event()

    def on_event(event) -> None:
        if isinstance(event, StepProgress):
            first_step.set()

    with service_for(backend, FolderSink(tmp_path), on_event) as (service, events):
        job = service.submit(params.replace(steps=40))
        service.start()
        assert first_step.wait(60)
        job.cancel()
        service.wait(job, 60)
    assert isinstance(events[-1], JobCancelled)
    assert events[-1].step < 40


def test_pipeline_is_cached_across_jobs_and_reloaded_on_model_change(
    backend, params, tmp_path, tiny_model
) -> None:
    run(backend, params, tmp_path)
    _, _, events = run(backend, params, tmp_path)
    assert not any(isinstance(e, ModelLoading) for e in events)
    assert next(e for e in events if isinstance(e, ModelReady)).cached
    copy = tmp_path / "copy-of-tiny"
    import shutil

    shutil.copytree(tiny_model, copy)
    _, _, events = run(backend, params.replace(model=str(copy)), tmp_path)
    assert any(isinstance(e, ModelLoading) for e in events)
    assert not next(e for e in events if isinstance(e, ModelReady)).cached


def test_broken_model_fails_with_a_message_naming_the_path(backend, params, tmp_path) -> None:
    missing = tmp_path / "nope"
    _, state, events = run(backend, params.replace(model=str(missing)), tmp_path)
    assert state is JobState.FAILED
    assert isinstance(events[-1], JobFailed) and str(missing) in events[-1].message

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "X"]}))
    with pytest.raises(ModelError, match="missing folder\\(s\\) unet"):
        check_diffusers_folder(broken)
    (broken / "model_index.json").write_text("{nope")
    with pytest.raises(ModelError, match="not valid JSON"):
        check_diffusers_folder(broken)
    with pytest.raises(ModelError, match=r"model_index\.json is missing"):
        check_diffusers_folder(tmp_path)
    # The engine keeps serving after failures.
    assert run(backend, params, tmp_path)[1] is JobState.FINISHED


def test_corrupt_weights_fail_readably(tiny_model, params, tmp_path) -> None:
    import shutil

    copy = tmp_path / "corrupt"
    shutil.copytree(tiny_model, copy)
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    engine = DiffusersBackend(device="cpu")
    _, state, events = run(engine, params.replace(model=str(copy)), tmp_path)
    assert state is JobState.FAILED
    assert str(copy) in events[-1].message
    assert run(engine, params, tmp_path)[1] is JobState.FINISHED


def test_out_of_memory_becomes_a_failure_with_a_hint(backend, params, tmp_path, monkeypatch):
    loaded = backend.load(params.model, lambda e: None)

    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(type(loaded.pipe), "__call__", boom)
    _, state, events = run(backend, params, tmp_path)
    assert state is JobState.FAILED
    message = events[-1].message
    assert message.startswith("Out of memory on CPU while generating")
    assert "Try a smaller size, closing other programs" in message and "VAE tiling" in message
    assert "OutOfMemoryError" in events[-1].detail
    monkeypatch.undo()
    assert run(backend, params, tmp_path)[1] is JobState.FINISHED


def test_any_exception_in_a_job_becomes_a_failed_event(backend, params, tmp_path) -> None:
    _, state, events = run(backend, params.replace(preview_method="taesd"), tmp_path)
    assert state is JobState.FAILED
    assert "taesd" in events[-1].message and "latent2rgb" in events[-1].message
    assert run(backend, params, tmp_path)[1] is JobState.FINISHED


def test_latent2rgb_table_is_fitted_from_the_vae_and_cached(tiny_model, ldstudio_home) -> None:
    engine = DiffusersBackend(device="cpu")
    loaded = engine.load(str(tiny_model), lambda e: None)
    table = previews.table_for_model(tiny_model, "custom", loaded.pipe.vae, str(tiny_model))
    assert table.source == "fitted" and not table.scaled and len(table.weights) == 4
    cached = list((ldstudio_home / "cache" / "previews").glob("*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["psnr_db"] > 0
    again = previews.table_for_model(tiny_model, "custom", loaded.pipe.vae, str(tiny_model))
    assert again.source == "fitted (cached)"
    assert np.allclose(again.weights, table.weights)
    engine.close()


def test_fit_recovers_a_known_linear_decoder() -> None:
    class LinearVAE(torch.nn.Module):
        """A decoder that is exactly linear per pixel (inside [-1, 1]): the fit must recover it."""

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.tensor(
                [[0.5, 0.1, -0.2], [0.0, 0.3, 0.1], [0.2, -0.4, 0.0], [0, 0, 0.6]]
            )
            self.b = torch.tensor([0.1, -0.1, 0.05])
            self.device, self.dtype = torch.device("cpu"), torch.float32

        def decode(self, z):
            rgb = torch.einsum("nchw,ck->nkhw", z, self.w) + self.b.view(1, 3, 1, 1)
            up = torch.nn.functional.interpolate(rgb, scale_factor=8, mode="nearest")
            return type("Out", (), {"sample": up})()

    latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.25
    weights, bias, psnr = previews.fit_latent_rgb(LinearVAE(), latents)
    assert weights == pytest.approx(LinearVAE().w.numpy(), abs=1e-4)
    assert bias == pytest.approx(LinearVAE().b.numpy(), abs=1e-4)
    assert psnr > 25  # bilinear preview vs a blocky (nearest) decode: close, not exact


def test_family_tables_and_model_table_file(tmp_path) -> None:
    assert previews.FAMILY_TABLES["sd2"] is previews.FAMILY_TABLES["sd1"]
    folder = tmp_path / "m"
    folder.mkdir()
    table = previews.FAMILY_TABLES["sdxl"]
    (folder / previews.PREVIEW_FILE).write_text(json.dumps(table.to_json()))
    loaded = previews.table_for_model(folder, "custom", vae=None, model_key="m")
    assert loaded.weights == table.weights and loaded.scaled
    latents = torch.zeros(1, 4, 2, 3)
    image = previews.LatentRGBPreviewer(loaded, scaling_factor=0.13)(latents)
    assert image.shape == (2, 3, 3) and image.dtype == np.uint8


def test_device_choice() -> None:
    assert choose_device("cpu").label == "CPU · fp32"
    assert choose_device("cpu", "bf16").dtype == "bf16"
    if not torch.cuda.is_available():
        assert choose_device().device in ("cpu", "mps")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            choose_device("cuda")
    with pytest.raises(ValueError, match="allowed: auto, cuda, mps, cpu"):
        choose_device("tpu")
    with pytest.raises(ValueError, match="allowed: auto, fp16, bf16, fp32"):
        choose_device("cpu", "int8")


def test_taesd_previews_from_a_local_folder(tiny_model, params, tmp_path, ldstudio_home) -> None:
    from diffusers import AutoencoderTiny

    from ldstudio.engine.previews import taesd_dir

    # A random-weight AutoencoderTiny where ldstudio looks for SD 1.x TAESD weights.
    tiny_decoder = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    )
    tiny_decoder.save_pretrained(str(taesd_dir("sd1")))
    engine = DiffusersBackend(device="cpu")
    engine.load(params.model, lambda e: None).family = "sd1"  # pose as an SD 1.x model
    plain = finished_images(run(engine, params.replace(preview_method="none"), tmp_path)[2])[0]
    _, state, events = run(engine, params.replace(preview_method="taesd"), tmp_path)
    assert state is JobState.FINISHED
    shots = [e.preview for e in events if isinstance(e, StepProgress)]
    assert len(shots) == 5 and all(s.shape == (64, 64, 3) for s in shots)
    assert np.array_equal(finished_images(events)[0], plain)
    engine.close()
