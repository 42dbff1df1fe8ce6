"""LoRAs (kohya and diffusers layouts, prompt tags) and VAE override, applied per job."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from engine_support import run_job
from models_support import tiny_checkpoint, write_lora, write_text_encoder_lora, write_vae_file
from PIL import Image

from ldstudio.core.events import JobFailed, JobFinished
from ldstudio.core.imagefiles import FolderSink
from ldstudio.core.jobs import JobState
from ldstudio.core.metadata import parse_a1111_parameters, read_ldstudio_params
from ldstudio.core.models import ModelFolderStore, lora_hash, split_lora_tags
from ldstudio.core.params import GenerationParams
from ldstudio.engine import checkpoints


@pytest.fixture(scope="module")
def engine() -> Any:
    from ldstudio.engine.backend import DiffusersBackend

    backend = DiffusersBackend(device="cpu")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def loras(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(tiny_model / "unet"), local_files_only=True)
    folder = tmp_path_factory.mktemp("a1111") / "models" / "Lora"
    return {
        "kohya": write_lora(unet, folder / "ink style.safetensors", "kohya", seed=1),
        "diffusers": write_lora(unet, folder / "peft-detail.safetensors", "diffusers", seed=2),
    }


def generate(engine: Any, params: GenerationParams, out: Path) -> tuple[np.ndarray, Path]:
    _, state, events = run_job(engine, params, FolderSink(out))
    assert state is JobState.FINISHED, [e.message for e in events if isinstance(e, JobFailed)]
    record = next(e for e in events if isinstance(e, JobFinished)).records[0]
    with Image.open(record.path) as image:
        return np.asarray(image.convert("RGB")).astype(int), record.path


def test_split_lora_tags_as_a1111_writes_them() -> None:
    text, tags = split_lora_tags(
        "a cat, <lora:ink style:0.8>, <LORA:detail>, best <lyco:x:1.2:0.5>"
    )
    assert text == "a cat, best"
    assert tags == [("ink style", 0.8), ("detail", 1.0), ("x", 1.2)]
    with pytest.raises(ValueError, match=r"<lora:x:abc> has strength 'abc'"):
        split_lora_tags("<lora:x:abc>")


def test_split_lora_tags_separator_cleanup_is_the_old_rule_in_linear_time() -> None:
    import random
    import re
    import time

    old = re.compile(r"\s*,(\s*,)+")  # the rule as first written; quadratic on long space runs
    rng = random.Random(13)
    for _ in range(2000):
        text = "".join(rng.choice(" ,a\t\n") for _ in range(rng.randint(0, 24)))
        expected = re.sub(r"[ \t]{2,}", " ", old.sub(",", text)).strip().strip(",").strip()
        assert split_lora_tags(text)[0] == expected, repr(text)
    start = time.perf_counter()
    split_lora_tags("a" + " " * 200_000 + "b, <lora:x:1>")
    assert time.perf_counter() - start < 2.0  # the old rule took minutes here


def test_loras_change_the_output_combine_and_are_recorded(
    engine: Any, tiny_model: Path, loras: dict[str, Path], tmp_path: Path
) -> None:
    base = GenerationParams(
        prompt="a red circle", model=str(tiny_model), steps=2, width=64, height=64, seed=7
    )
    plain, _ = generate(engine, base, tmp_path / "plain")
    kohya = (str(loras["kohya"]), 1.0)
    with_kohya, path = generate(engine, base.replace(loras=(kohya,)), tmp_path / "k")
    assert np.abs(with_kohya - plain).max() > 0
    # Recorded: exact params in ldstudio's JSON, A1111's prompt tag and `Lora hashes`.
    assert read_ldstudio_params(path).loras == (kohya,)
    with Image.open(path) as image:
        a1111 = parse_a1111_parameters(image.text["parameters"])
    assert a1111["prompt"] == "a red circle <lora:ink style:1>"
    assert a1111["Lora hashes"] == f"ink style: {lora_hash(loras['kohya'])}"

    both = (kohya, (str(loras["diffusers"]), 0.5))
    with_both, _ = generate(engine, base.replace(loras=both), tmp_path / "both")
    assert np.abs(with_both - with_kohya).max() > 0
    half, _ = generate(engine, base.replace(loras=((kohya[0], 0.5),)), tmp_path / "half")
    assert np.abs(half - with_kohya).max() > 0
    # Dropping every LoRA gives back the model's own output exactly.
    again, _ = generate(engine, base, tmp_path / "again")
    assert np.array_equal(again, plain)


def test_text_encoder_lora_in_kohya_layout_applies_to_every_layer(
    engine: Any, tiny_model: Path, tmp_path: Path
) -> None:
    from transformers import CLIPTextModel

    text_encoder = CLIPTextModel.from_pretrained(
        str(tiny_model / "text_encoder"), local_files_only=True
    )
    path, pairs = write_text_encoder_lora(text_encoder, tmp_path / "te.safetensors", seed=3)
    base = GenerationParams(
        prompt="a red circle", model=str(tiny_model), steps=2, width=64, height=64, seed=7
    )
    plain, _ = generate(engine, base, tmp_path / "plain")
    styled, _ = generate(engine, base.replace(loras=((str(path), 0.5),)), tmp_path / "te")
    assert np.abs(styled - plain).max() > 0

    # Every projection the file names carries its delta, scaled by alpha/rank and strength:
    # none was dropped by a key-name mismatch.
    pipe = engine._cache.loaded.pipe
    for name, (down, up) in pairs.items():
        layer = pipe.text_encoder.get_submodule(name)
        x = torch.randn(2, down.shape[1], generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            delta = layer(x) - layer.base_layer(x)
        assert torch.allclose(delta, 0.5 * x @ (up @ down).T, atol=1e-4), name
    again, _ = generate(engine, base, tmp_path / "again")
    assert np.array_equal(again, plain)


def test_prompt_tag_applies_the_lora_from_the_model_folders(
    engine: Any, tiny_model: Path, loras: dict[str, Path], tmp_path: Path
) -> None:
    store = ModelFolderStore()
    store.add_folder(loras["kohya"].parent.parent)
    store.save()
    base = GenerationParams(
        prompt="a red circle", model=str(tiny_model), steps=2, width=64, height=64, seed=7
    )
    by_param, _ = generate(
        engine, base.replace(loras=((str(loras["kohya"]), 0.7),)), tmp_path / "p"
    )
    tagged = base.replace(prompt="a red circle, <lora:ink style:0.7>")
    by_tag, path = generate(engine, tagged, tmp_path / "t")
    assert np.array_equal(by_tag, by_param)
    saved = read_ldstudio_params(path)
    assert saved.prompt == "a red circle"
    assert saved.loras == ((str(loras["kohya"].resolve()), 0.7),)
    missing = base.replace(prompt="x <lora:nope:1>")
    _, state, events = run_job(engine, missing, FolderSink(tmp_path))
    assert state is JobState.FAILED
    message = next(e for e in events if isinstance(e, JobFailed)).message
    assert "<lora:nope>" in message and "ink style" in message


def test_vae_override_changes_the_decode_and_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ldstudio.engine.backend import DiffusersBackend

    path, config, pipe = tiny_checkpoint("sd1", tmp_path / "m", "tiny-sd1.safetensors")
    root = tmp_path / "configs"
    shutil.copytree(config, root / "sd1", ignore=shutil.ignore_patterns("bpe"))
    shutil.copytree(config / "bpe", root / "clip-bpe")
    monkeypatch.setattr(checkpoints, "configs_root", lambda: root)
    vae_file = write_vae_file(pipe.vae, tmp_path / "VAE" / "other-vae.safetensors", seed=5)
    backend = DiffusersBackend(device="cpu")
    base = GenerationParams(prompt="a cat", model=str(path), steps=2, width=64, height=64, seed=3)
    own, _ = generate(backend, base, tmp_path / "own")
    other, saved = generate(backend, base.replace(vae=str(vae_file)), tmp_path / "other")
    assert np.abs(other - own).max() > 0
    with Image.open(saved) as image:
        a1111 = parse_a1111_parameters(image.text["parameters"])
    assert a1111["VAE"] == "other-vae.safetensors" and len(a1111["VAE hash"]) == 10
    assert read_ldstudio_params(saved).vae == str(vae_file)
    back, _ = generate(backend, base, tmp_path / "back")
    assert np.array_equal(back, own)
    bad = base.replace(vae=str(path))  # a whole checkpoint is not a VAE
    _, state, events = run_job(backend, bad, FolderSink(tmp_path))
    assert state is JobState.FAILED
    assert "standalone VAE" in next(e for e in events if isinstance(e, JobFailed)).message
    backend.close()


def test_loras_and_vae_applied_through_a_from_pipe_sibling_are_one_state(
    tiny_model: Path, loras: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import copy

    from ldstudio.engine import lora
    from ldstudio.engine.device import DeviceChoice
    from ldstudio.engine.models import load_pipeline
    from ldstudio.engine.pipelines import TASK_IMG2IMG, task_pipeline

    loaded = load_pipeline(tiny_model, DeviceChoice("cpu", "fp32"))
    base = loaded.pipe
    sibling = task_pipeline(loaded, TASK_IMG2IMG)
    extras = lora.ExtrasState()
    loads: list[str] = []
    load_lora_weights = type(base).load_lora_weights

    def counted(pipe: Any, state: Any, adapter_name: str) -> None:
        loads.append(adapter_name)
        load_lora_weights(pipe, state, adapter_name=adapter_name)

    monkeypatch.setattr(type(base), "load_lora_weights", counted)
    monkeypatch.setattr(type(sibling), "load_lora_weights", counted)
    params = GenerationParams(
        prompt="x", model=str(tiny_model), loras=((str(loras["kohya"]), 0.7),)
    )

    extras.apply(loaded, params, pipe=sibling)
    assert loads == ["lora1"] and base.get_active_adapters() == ["lora1"]
    extras.apply(loaded, params)  # through the base: the same adapter, not loaded again
    assert loads == ["lora1"] and sibling.get_active_adapters() == ["lora1"]
    extras.apply(loaded, params.replace(loras=()), pipe=sibling)
    assert not base.get_list_adapters()  # unloaded from the shared modules

    # The VAE is a slot of each pipeline: each one gets the job's VAE when a job runs on it.
    loaded.family = "sd1"  # pose as an SD 1.x model, whose standalone VAEs load
    own, other = base.vae, copy.deepcopy(base.vae)
    monkeypatch.setattr(lora, "load_vae_file", lambda *_args: other)
    vae = params.replace(loras=(), vae="/models/VAE/other.safetensors")
    assert extras.apply(loaded, vae) and base.vae is other and sibling.vae is own
    assert extras.apply(loaded, vae, pipe=sibling) and sibling.vae is other
    assert not extras.apply(loaded, vae, pipe=sibling)
    assert extras.apply(loaded, params.replace(loras=())) and base.vae is own
    assert extras.apply(loaded, params.replace(loras=()), pipe=sibling) and sibling.vae is own
