"""Engine speed/memory options: auto choices, guidance cut-off, tiled retry after decode OOM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from engine_support import run_job
from PIL import Image

from ldstudio.core.events import EngineNotice, JobFinished
from ldstudio.core.imagefiles import FolderSink
from ldstudio.core.jobs import JobState
from ldstudio.core.options import EngineOptions
from ldstudio.core.params import GenerationParams
from ldstudio.engine import performance
from ldstudio.engine.backend import DiffusersBackend
from ldstudio.engine.device import DeviceChoice

GIB = 1024**3


def run(engine: DiffusersBackend, params: GenerationParams, out: Path) -> list:
    return run_job(engine, params, FolderSink(out))[2]


def image_of(events: list) -> np.ndarray:
    assert isinstance(events[-1], JobFinished), events[-1]
    with Image.open(events[-1].records[0].path) as image:
        return np.asarray(image)


@pytest.fixture
def params(tiny_model: Path) -> GenerationParams:
    return GenerationParams(prompt="a red circle", model=str(tiny_model), steps=6, seed=99)


def test_auto_options_follow_device_and_memory() -> None:
    cpu = performance.resolve(EngineOptions(), DeviceChoice("cpu", "fp32"), None)
    assert not (cpu.cpu_offload or cpu.attention_slicing or cpu.channels_last)
    small = performance.resolve(EngineOptions(), DeviceChoice("cuda", "fp16"), 4 * GIB)
    assert small.cpu_offload and small.attention_slicing and small.channels_last
    assert any("CPU offload" in reason for reason in small.reasons)
    big = performance.resolve(EngineOptions(), DeviceChoice("cuda", "fp16"), 80 * GIB)
    assert not (big.cpu_offload or big.attention_slicing)
    forced = performance.resolve(
        EngineOptions(attention_slicing="on", channels_last="off"),
        DeviceChoice("cuda", "fp16"),
        80 * GIB,
    )
    assert forced.attention_slicing and not forced.channels_last
    assert not big.tiling_for(1024, 1024) and big.tiling_for(2048, 2048)
    with pytest.raises(ValueError, match="cpu_offload: 'on' needs a CUDA GPU"):
        performance.resolve(EngineOptions(cpu_offload="on"), DeviceChoice("cpu", "fp32"), None)


def test_engine_options_validate_and_round_trip() -> None:
    options = EngineOptions(vae_tiling="on", compile_unet=True)
    assert EngineOptions.from_dict(options.to_dict()) == options
    with pytest.raises(ValueError, match="vae_tiling: 'always' is not supported; allowed: auto"):
        EngineOptions(vae_tiling="always").validate()
    with pytest.raises(ValueError, match="sdpa"):
        EngineOptions(sdpa="yes").validate()  # type: ignore[arg-type]


def test_guidance_cutoff_halves_the_unet_batch_after_the_cutoff(params, tmp_path) -> None:
    engine = DiffusersBackend(device="cpu")
    loaded = engine.load(params.model, lambda e: None)
    batches: list[int] = []
    hook = loaded.pipe.unet.register_forward_pre_hook(
        lambda _m, args, kwargs: batches.append(
            int((args[0] if args else kwargs["sample"]).shape[0])
        ),
        with_kwargs=True,
    )
    try:
        full = image_of(run(engine, params, tmp_path))
        assert batches == [2] * 6
        batches.clear()
        cut = image_of(run(engine, params.replace(guidance_cutoff=0.5), tmp_path))
        assert batches == [2, 2, 2, 1, 1, 1]
        assert not np.array_equal(full, cut)
        batches.clear()
        # Without guidance there is nothing to cut: identical to the plain run.
        no_cfg = params.replace(guidance_scale=1.0)
        assert np.array_equal(
            image_of(run(engine, no_cfg, tmp_path)),
            image_of(run(engine, no_cfg.replace(guidance_cutoff=0.3), tmp_path)),
        )
    finally:
        hook.remove()
        engine.close()


def test_decode_out_of_memory_is_retried_tiled_once_and_reported(params, tmp_path) -> None:
    engine = DiffusersBackend(device="cpu")
    reference = image_of(run(engine, params, tmp_path))
    vae = engine.load(params.model, lambda e: None).pipe.vae
    original = vae.decode
    calls = {"untiled": 0}

    def decode(*args, **kwargs):
        if not vae.use_tiling:
            calls["untiled"] += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return original(*args, **kwargs)

    vae.decode = decode
    events = run(engine, params, tmp_path)
    assert calls["untiled"] == 1
    notices = [e for e in events if isinstance(e, EngineNotice)]
    assert len(notices) == 1 and "retried once with VAE tiling" in notices[0].message
    # A 64×64 image is a single tile: the tiled decode must give the same pixels.
    assert np.array_equal(image_of(events), reference)
    assert not vae.use_tiling  # tiling restored to the user's setting
    vae.decode = original
    engine.close()


CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
    "memory: you tried to allocate 8589934592 bytes. Error code 12"
)


def test_cpu_out_of_memory_is_recognised_and_a_second_one_says_what_was_tried(
    params, tmp_path
) -> None:
    engine = DiffusersBackend(device="cpu")
    run(engine, params, tmp_path)  # the latent2rgb previewer fits itself with a first decode
    vae = engine.load(params.model, lambda e: None).pipe.vae
    original = vae.decode
    failing = {"tiled too": False}

    def decode(*args, **kwargs):
        if not vae.use_tiling or failing["tiled too"]:
            raise RuntimeError(CPU_OOM)  # what torch's CPU allocator raises
        return original(*args, **kwargs)

    vae.decode = decode
    events = run(engine, params, tmp_path)
    assert isinstance(events[-1], JobFinished)  # retried tiled, as for CUDA
    assert any(isinstance(e, EngineNotice) and "retried once" in e.message for e in events)

    failing["tiled too"] = True
    message = run(engine, params, tmp_path)[-1].message
    assert message.startswith("Out of memory on CPU while decoding, even when retried with VAE")
    assert "closing other programs" in message
    assert "CPU offload" not in message and "Try a smaller size" in message
    assert "VAE tiling." not in message  # just tried: no advice to turn it on
    vae.decode = original
    engine.close()


def test_vae_tiles_are_never_smaller_than_512_px(params) -> None:
    engine = DiffusersBackend(device="cpu")
    pipe = engine.load(params.model, lambda e: None).pipe
    vae = pipe.vae
    factor = vae.tile_sample_min_size // vae.tile_latent_min_size
    assert vae.config.sample_size < 512  # the tiny model's VAE, like the bundled one's
    performance.set_vae_tiling(pipe, True)
    assert vae.use_tiling and vae.tile_sample_min_size == 512
    assert vae.tile_latent_min_size == 512 // factor
    performance.set_vae_tiling(pipe, False)
    engine.close()


def test_out_of_memory_during_denoising_is_not_retried(params, tmp_path) -> None:
    engine = DiffusersBackend(device="cpu")
    unet = engine.load(params.model, lambda e: None).pipe.unet
    hook = unet.register_forward_pre_hook(
        lambda *_: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    )
    events = run(engine, params, tmp_path)
    hook.remove()
    assert "Out of memory" in events[-1].message
    assert not any(isinstance(e, EngineNotice) for e in events)
    assert run_job(engine, params, FolderSink(tmp_path))[1] is JobState.FINISHED
    engine.close()


def test_classic_attention_and_channels_last_give_the_same_picture(params, tmp_path) -> None:
    plain = DiffusersBackend(device="cpu")
    reference = image_of(run(plain, params, tmp_path))
    plain.close()
    tuned = DiffusersBackend(EngineOptions(sdpa=False, channels_last="on"), device="cpu")
    pipe = tuned.load(params.model, lambda e: None).pipe
    assert type(next(iter(pipe.unet.attn_processors.values()))).__name__ == "AttnProcessor"
    weight = pipe.unet.conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    image = image_of(run(tuned, params, tmp_path))
    assert np.abs(image.astype(int) - reference.astype(int)).max() <= 2
    tuned.close()


def test_compiled_unet_warms_up_once_into_ldstudio_cache(
    params, tmp_path, ldstudio_home, monkeypatch
) -> None:
    # Real inductor compilation on the CPU (it needs a C++ compiler; .ci/run installs g++).
    # As in the app: importing diffusers has already set inductor's /tmp default, which the
    # engine must replace. monkeypatch puts the variable back afterwards.
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    plain = DiffusersBackend(device="cpu")
    reference = image_of(run(plain, params, tmp_path / "plain"))
    plain.close()
    compiled = DiffusersBackend(EngineOptions(compile_unet=True), device="cpu")
    first = run(compiled, params, tmp_path / "first")
    notices = [e.message for e in first if isinstance(e, EngineNotice)]
    assert any("Compiling the UNet" in m for m in notices), notices
    pipe = compiled.load(params.model, lambda e: None).pipe
    blocks = [m for m in pipe.unet.modules() if type(m).__name__ == "BasicTransformerBlock"]
    assert blocks and all(getattr(b, "_compiled_call_impl", None) for b in blocks)
    assert np.abs(image_of(first).astype(int) - reference.astype(int)).max() <= 2
    # Warm: no second notice, and the kernels live in ldstudio's cache, not inductor's /tmp.
    second = run(compiled, params, tmp_path / "second")
    assert not [e for e in second if isinstance(e, EngineNotice)]
    cache = ldstudio_home / "cache" / "torch-compile"
    assert any(f.is_file() for f in cache.rglob("*")), "nothing written to the compile cache"
    compiled.close()
