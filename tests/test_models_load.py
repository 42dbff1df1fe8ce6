"""Single-file checkpoints, HF-cache folders and pickle conversion, loaded with no network."""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from engine_support import run_job
from models_support import (
    real_random_tensors,
    real_sd15_state_dict,
    save_single_file,
    tiny_checkpoint,
    to_original_layout,
)

from ldstudio.core.events import JobFailed, JobFinished, ModelReady
from ldstudio.core.imagefiles import FolderSink
from ldstudio.core.jobs import JobState
from ldstudio.core.params import GenerationParams
from ldstudio.engine import checkpoints
from ldstudio.engine.checkpoints import CheckpointError, convert_to_safetensors, load_single_file
from ldstudio.engine.device import DeviceChoice
from ldstudio.engine.models import ModelError, load_pipeline

CPU = DeviceChoice("cpu", "fp32")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Any attempt to open a connection fails the test (and is recorded)."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any, *args: Any) -> None:
        attempts.append(address)
        raise AssertionError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    return attempts


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Any]]:
    root = tmp_path_factory.mktemp("single-files")
    return {
        f: tiny_checkpoint(f, root / f, f"{f}-model.safetensors") for f in ("sd1", "sd2", "sdxl")
    }


@pytest.fixture
def bundled_tiny_configs(
    tiny_files: dict[str, tuple[Path, Path, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point the bundled configs at the tiny families' configs (same variant names)."""
    root = tmp_path / "configs"
    for family, (_file, config, _pipe) in tiny_files.items():
        variants = {"sd1": ["sd1"], "sd2": ["sd2", "sd2-v", "sd-turbo"], "sdxl": ["sdxl"]}
        for variant in variants[family]:
            shutil.copytree(config, root / variant, ignore=shutil.ignore_patterns("bpe"))
    shutil.copytree(tiny_files["sd1"][1] / "bpe", root / "clip-bpe")
    monkeypatch.setattr(checkpoints, "configs_root", lambda: root)
    return root


def assert_same_weights(expected: Any, loaded: Any, family: str) -> None:
    written = to_original_layout(expected, family)
    got = to_original_layout(loaded, family)
    assert written.keys() == got.keys()
    different = [k for k in written if not torch.equal(written[k], got[k])]
    assert different == []


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_tiny_single_file_loads_offline_with_exact_weights(
    family: str, tiny_files: dict[str, tuple[Path, Path, Any]], no_network: list[Any]
) -> None:
    path, config, pipe = tiny_files[family]
    loaded = load_single_file(
        path, torch.float32, family, config_dir=config, bpe_dir=config / "bpe"
    )
    assert_same_weights(pipe, loaded, family)
    image = loaded(
        prompt="a red cat", num_inference_steps=1, height=64, width=64, output_type="np"
    ).images
    assert image.shape == (1, 64, 64, 3)
    assert no_network == []


def test_bundled_clip_tokenizer_matches_openai_clip() -> None:
    """The committed BPE files tokenize as CLIP does (reference ids from openai/clip-vit-l-14)."""
    from ldstudio.engine.checkpoints import bundled_config, clip_tokenizer

    sd1 = clip_tokenizer(bundled_config("sd1"), "tokenizer")
    ids = sd1("a photograph of an astronaut riding a horse").input_ids
    assert ids == [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert (len(sd1), sd1.model_max_length, sd1.pad_token_id) == (49408, 77, 49407)
    # OpenCLIP tokenizers (SD 2.x, SDXL's second) pad with "!" (id 0).
    assert clip_tokenizer(bundled_config("sd2-v"), "tokenizer").pad_token_id == 0
    assert clip_tokenizer(bundled_config("sdxl"), "tokenizer_2").pad_token_id == 0
    assert clip_tokenizer(bundled_config("sdxl"), "tokenizer").pad_token_id == 49407


def test_backend_generates_from_a_single_file_and_reports_its_family(
    tiny_files: dict[str, tuple[Path, Path, Any]],
    bundled_tiny_configs: Path,
    tmp_path: Path,
    no_network: list[Any],
) -> None:
    from ldstudio.engine.backend import DiffusersBackend

    path = tiny_files["sd2"][0]
    engine = DiffusersBackend(device="cpu")
    params = GenerationParams(
        prompt="a red cat", model=str(path), steps=2, width=64, height=64, seed=1
    )
    _, state, events = run_job(engine, params, FolderSink(tmp_path / "out"))
    assert state is JobState.FINISHED, [e for e in events if isinstance(e, JobFailed)]
    ready = next(e for e in events if isinstance(e, ModelReady))
    assert (ready.model, ready.family) == ("sd2-model", "sd2")
    finished = next(e for e in events if isinstance(e, JobFinished))
    assert finished.records[0].path.is_file()
    assert engine._cache.loaded is not None and engine._cache.loaded.variant == "sd2"
    engine.close()


def test_user_variant_choice_reloads_with_that_config(
    tiny_files: dict[str, tuple[Path, Path, Any]], bundled_tiny_configs: Path
) -> None:
    from ldstudio.core.models import ModelFolderStore
    from ldstudio.engine.models import PipelineCache

    path = tiny_files["sd2"][0]
    cache = PipelineCache()
    first, _ = cache.get(path, CPU)
    assert first.variant == "sd2"
    store = ModelFolderStore.load()
    store.set_variant(path, "sd2-v", "sd2")
    store.save()
    second, cached = cache.get(path, CPU)
    assert (second.variant, cached) == ("sd2-v", False)


def test_truncated_checkpoint_fails_the_job_and_the_engine_stays_up(
    tiny_files: dict[str, tuple[Path, Path, Any]], bundled_tiny_configs: Path, tmp_path: Path
) -> None:
    from ldstudio.engine.backend import DiffusersBackend

    good = tiny_files["sd1"][0]
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    engine = DiffusersBackend(device="cpu")
    params = GenerationParams(prompt="x", model=str(broken), steps=1, width=64, height=64, seed=1)
    _, state, events = run_job(engine, params, FolderSink(tmp_path))
    assert state is JobState.FAILED
    failed = next(e for e in events if isinstance(e, JobFailed))
    assert str(broken) in failed.message and "truncated" in failed.message
    params = params.replace(model=str(good))
    assert run_job(engine, params, FolderSink(tmp_path))[1] is JobState.FINISHED
    engine.close()


def test_hf_cache_snapshot_loads_offline(
    tiny_model: Path, tmp_path: Path, no_network: list[Any]
) -> None:
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    shutil.copytree(tiny_model, snapshot)
    loaded = load_pipeline(snapshot, CPU)
    assert (loaded.name, loaded.family) == ("org/tiny", "custom")
    assert no_network == []


class _Boom:
    """Unpickling this creates a file: what a malicious checkpoint does."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.target,))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2), "payload": _Boom(marker)}}, str(evil))
    # Loading through the model path refuses by name, before any byte is unpickled.
    with pytest.raises(ModelError, match="pickle"):
        load_pipeline(evil, CPU)
    # The explicit conversion uses torch's weights-only unpickler, which refuses the payload.
    with pytest.raises(CheckpointError, match="refused"):
        convert_to_safetensors(evil)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Boom(marker)))
    with pytest.raises(CheckpointError, match="refused"):
        convert_to_safetensors(raw)
    assert not marker.exists()
    assert not (tmp_path / "evil.safetensors").exists()


def test_plain_tensor_pickle_converts_to_equal_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    weights = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    source = tmp_path / "old.ckpt"
    torch.save({"state_dict": weights}, str(source))
    target = convert_to_safetensors(source)
    assert target == tmp_path / "old.safetensors"
    back = load_file(str(target))
    assert back.keys() == weights.keys() and all(torch.equal(back[k], weights[k]) for k in back)
    with pytest.raises(CheckpointError, match="already exists"):
        convert_to_safetensors(source)


def test_real_size_sd15_single_file_loads_offline_with_exact_weights(
    tmp_path: Path, no_network: list[Any]
) -> None:
    """≈2.1 GB fp16 file at SD 1.5's real shapes, loaded with the bundled sd1 config.

    About 45 s and 4.9 GB peak memory on a 2-core machine; 2.1 GB of temporary disk.
    """
    started = time.perf_counter()
    state = real_sd15_state_dict()
    path = save_single_file(state, tmp_path / "sd15.safetensors")
    from ldstudio.engine.models import check_model

    assert check_model(path) == "sd1"
    loaded = load_pipeline(path, DeviceChoice("cpu", "fp16"))
    assert (loaded.family, loaded.variant, loaded.native_size) == ("sd1", "sd1", 512)
    # Map the loaded pipeline back to the original names; every tensor must match bit for bit.
    got = to_original_layout(loaded.pipe, "sd1")
    assert got.keys() == state.keys()
    different = [k for k in state if not torch.equal(state[k], got[k])]
    assert different == []
    assert no_network == []
    print(f"real-size SD 1.5 round trip: {time.perf_counter() - started:.1f} s")


# Keys the original checkpoints carry that diffusers does not load (OpenCLIP's projection
# is unused by SD 2.x's text conditioning).
_NOT_LOADED = {"sd2-v": {"cond_stage_model.model.text_projection"}}


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["sd2-v", "sdxl"])
def test_real_size_single_file_round_trip(
    variant: str, tmp_path: Path, no_network: list[Any]
) -> None:
    """SD 2.x (v-prediction chosen by the user) ≈2.6 GB and SDXL ≈6.9 GB, real shapes."""
    import gc

    from ldstudio.core.models import ModelFolderStore
    from ldstudio.engine.models import check_model

    started = time.perf_counter()
    path = save_single_file(dict(real_random_tensors(variant)), tmp_path / f"{variant}.safetensors")
    gc.collect()
    family = "sdxl" if variant == "sdxl" else "sd2"
    if variant == "sd2-v":
        # Random weights carry no v-prediction signal: this is the user's choice.
        assert check_model(path) == "sd2"
        store = ModelFolderStore.load()
        store.set_variant(path, "sd2-v", "sd2")
        store.save()
    assert check_model(path) == variant
    loaded = load_pipeline(path, DeviceChoice("cpu", "fp16"))
    assert (loaded.family, loaded.variant) == (family, variant)
    native = {"sd2-v": 768, "sdxl": 1024}[variant]
    assert loaded.native_size == native
    assert loaded.pipe.scheduler.config.prediction_type == (
        "v_prediction" if variant == "sd2-v" else "epsilon"
    )
    got = to_original_layout(loaded.pipe, family)
    skipped = _NOT_LOADED.get(variant, set())
    count = 0
    for key, expected in real_random_tensors(variant):
        if key in skipped:
            continue
        assert torch.equal(got[key], expected), key
        count += 1
    assert count == len(got) - len(skipped & got.keys())
    assert no_network == []
    print(f"real-size {variant} round trip: {time.perf_counter() - started:.1f} s")
