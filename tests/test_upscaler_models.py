"""ESRGAN-family upscaler files: told from their headers (architecture, scale), found in A1111
and ComfyUI folders, listed by `ldstudio models list`, referenced by name + hash, converted from
basicsr `.pth` files; pickles refused without ever being opened."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_FAILED, EXIT_OK
from ldstudio.core.models import (
    KIND_UPSCALER,
    ModelFolderStore,
    ModelRegistry,
    ResourceRef,
    inspect_file,
    reference,
    resolve,
    scan_folder,
)
from ldstudio.core.models.refs import REF_KINDS
from ldstudio.engine.checkpoints import convert_to_safetensors
from ldstudio.engine.upscalers.compact import Compact
from ldstudio.engine.upscalers.rrdb import RRDBNet


def write(module_or_tensors: Any, path: Path) -> Path:
    """A .safetensors file of a module's random weights (or of a name → tensor dict)."""
    tensors = (
        module_or_tensors.state_dict()
        if isinstance(module_or_tensors, torch.nn.Module)
        else module_or_tensors
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def header_only(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """A valid safetensors file holding zeros under just these key names and shapes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_numpy({k: np.zeros(s, dtype=np.float16) for k, s in shapes.items()}, str(path))
    return path


def basicsr_layout(old: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
    """RRDBNet's old-layout keys renamed to the new basicsr layout (Real-ESRGAN x4plus)."""
    renamed: dict[str, torch.Tensor] = {}
    fixed = {"model.0.": "conv_first.", f"model.1.sub.{blocks}.": "conv_body."}
    fixed.update({"model.3.": "conv_up1.", "model.6.": "conv_up2.", "model.8.": "conv_hr."})
    fixed["model.10."] = "conv_last."
    for key, value in old.items():
        new = key
        parts = key.split(".")
        if key.startswith("model.1.sub.") and parts[4].startswith("RDB"):
            # model.1.sub.N.RDBj.convk.0.weight → body.N.rdbj.convk.weight
            new = f"body.{parts[3]}.rdb{parts[4][3:]}.{parts[5]}.{parts[7]}"
        else:
            for prefix, target in fixed.items():
                if key.startswith(prefix):
                    new = target + key[len(prefix) :]
        renamed[new] = value
    assert len(renamed) == len(old)
    return renamed


SWINIR = {
    "conv_first.weight": (16, 3, 3, 3),
    "layers.0.residual_group.blocks.0.norm1.weight": (16,),
    "layers.0.residual_group.blocks.0.attn.qkv.weight": (48, 16),
    "conv_after_body.weight": (16, 16, 3, 3),
    "conv_before_upsample.0.weight": (16, 16, 3, 3),
    "upsample.0.weight": (64, 16, 3, 3),
    "upsample.2.weight": (64, 16, 3, 3),
    "conv_last.weight": (3, 16, 3, 3),
}
DAT = {
    "conv_first.weight": (16, 3, 3, 3),
    "before_RG.1.weight": (16,),
    "layers.0.blocks.0.ffn.fc1.weight": (32, 16),
    "upsample.0.weight": (64, 16, 3, 3),
    "conv_last.weight": (3, 16, 3, 3),
}


class _Boom:
    """Unpickling this touches `target`: the payload a malicious .pth would carry."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.target,))


# -- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 4])
def test_compact_is_detected_with_its_scale(tmp_path: Path, scale: int) -> None:
    path = write(Compact(3, 3, 16, 2, scale), tmp_path / f"{scale}x-compact.safetensors")
    entry = inspect_file(path)
    assert (entry.kind, entry.status, entry.error) == (KIND_UPSCALER, "ok", "")
    assert (entry.architecture, entry.scale) == ("Compact", scale)
    assert entry.usable_upscaler and not entry.loadable  # not a checkpoint to generate with
    assert entry.upscaler_text == f"Compact ×{scale}"
    assert entry.to_dict()["architecture"] == "Compact" and entry.to_dict()["scale"] == scale


def test_esrgan_old_new_and_unshuffle_layouts_are_detected(tmp_path: Path) -> None:
    old = RRDBNet(3, 3, 16, 2, ups=2).state_dict()
    entry = inspect_file(write(old, tmp_path / "old.safetensors"))
    assert (entry.kind, entry.status, entry.architecture, entry.scale) == (
        KIND_UPSCALER,
        "ok",
        "ESRGAN",
        4,
    )
    new = basicsr_layout(old, blocks=2)
    assert "body.1.rdb3.conv5.weight" in new and "conv_body.weight" in new
    entry = inspect_file(write(new, tmp_path / "x4plus.safetensors"))
    assert (entry.kind, entry.status, entry.architecture, entry.scale) == (
        KIND_UPSCALER,
        "ok",
        "ESRGAN",
        4,
    )
    two = RRDBNet(12, 3, 16, 1, ups=2, unshuffle=2)
    entry = inspect_file(write(two, tmp_path / "x2plus.safetensors"))
    assert (entry.architecture, entry.scale, entry.status) == ("ESRGAN", 2, "ok")
    assert entry.upscaler_text == "ESRGAN ×2"


def test_swinir_and_dat_are_recognised_but_need_spandrel(tmp_path: Path) -> None:
    from ldstudio.core.models.upscalers import spandrel_available

    if spandrel_available():
        pytest.skip("spandrel is installed here: these architectures are usable")
    for name, shapes, scale in (("swinir", SWINIR, 4), ("dat", DAT, 2)):
        entry = inspect_file(header_only(tmp_path / f"{name}.safetensors", shapes))
        assert entry.kind == KIND_UPSCALER, entry.error
        assert entry.architecture == {"swinir": "SwinIR", "dat": "DAT"}[name]
        assert entry.scale == scale
        assert entry.status == "unsupported" and not entry.usable_upscaler
        assert str(entry.path) in entry.error and "spandrel" in entry.error
        assert "not installed" in entry.error


# -- folders and `ldstudio models list` --------------------------------------------------------


@pytest.fixture
def webui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An A1111 install root with upscalers in each of its folders, and a ComfyUI one beside it.

    `models/ESRGAN/evil.pth` is a pickle whose payload would create `pwned` when unpickled.
    """
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    root = tmp_path / "webui"
    models = root / "models"
    write(Compact(3, 3, 16, 2, 4), models / "ESRGAN" / "4x-test.safetensors")
    write(RRDBNet(12, 3, 16, 1, ups=2, unshuffle=2), models / "RealESRGAN" / "x2plus.safetensors")
    header_only(models / "SwinIR" / "swinir-x4.safetensors", SWINIR)
    header_only(models / "DAT" / "dat-x2.safetensors", DAT)
    write(Compact(3, 3, 8, 1, 2), root / "ComfyUI" / "models" / "upscale_models" / "2x.safetensors")
    torch.save(
        {"params_ema": {"w": torch.zeros(1)}, "x": _Boom(tmp_path / "pwned")},
        str(models / "ESRGAN" / "evil.pth"),
    )
    return root


def test_the_payload_is_live(tmp_path: Path) -> None:
    """The fixture's pickle trick works: what the tests below check would catch it."""
    marker = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Boom(marker)))
    assert marker.exists()


def test_upscalers_in_a1111_and_comfyui_folders_are_found(webui: Path) -> None:
    rows = {e.path.relative_to(webui).as_posix(): e for e in scan_folder(webui)}
    found = {
        key: (e.kind, e.architecture, e.scale, e.status)
        for key, e in rows.items()
        if e.kind == KIND_UPSCALER
    }
    spandrel = "unsupported"
    assert found == {
        "models/ESRGAN/4x-test.safetensors": (KIND_UPSCALER, "Compact", 4, "ok"),
        "models/RealESRGAN/x2plus.safetensors": (KIND_UPSCALER, "ESRGAN", 2, "ok"),
        "models/SwinIR/swinir-x4.safetensors": (KIND_UPSCALER, "SwinIR", 4, spandrel),
        "models/DAT/dat-x2.safetensors": (KIND_UPSCALER, "DAT", 2, spandrel),
        "ComfyUI/models/upscale_models/2x.safetensors": (KIND_UPSCALER, "Compact", 2, "ok"),
    }
    evil = rows["models/ESRGAN/evil.pth"]
    assert evil.status == "unsafe" and "ldstudio models convert" in evil.error
    assert not (webui.parent / "pwned").exists()


def test_models_list_shows_architecture_and_scale_and_refuses_the_pickle(
    webui: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "add-folder", str(webui)]) == EXIT_OK
    assert "6 model file(s), 3 usable" in capsys.readouterr().out
    assert main(["models", "list", "--no-hf-cache"]) == EXIT_OK
    text = capsys.readouterr().out
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    compact = lines["4x-test"].split()
    assert compact[1:4] == ["upscaler", "Compact", "×4"]
    assert lines["x2plus"].split()[1:4] == ["upscaler", "ESRGAN", "×2"]
    assert "SwinIR ×4" in lines["swinir-x4"] and "unsupported" in lines["swinir-x4"]
    assert "unsafe" in lines["evil"]
    evil = webui / "models" / "ESRGAN" / "evil.pth"
    assert f"unsafe: {evil}: .pth files are Python pickles" in text
    assert f"`ldstudio models convert {evil}`" in text
    assert "spandrel" in text  # the SwinIR/DAT reason is shown, not hidden

    assert main(["models", "list", "--no-hf-cache", "--json"]) == EXIT_OK
    rows = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert {k: rows["4x-test"][k] for k in ("kind", "architecture", "scale", "status")} == {
        "kind": "upscaler",
        "architecture": "Compact",
        "scale": 4,
        "status": "ok",
    }
    assert (rows["dat-x2"]["architecture"], rows["dat-x2"]["scale"]) == ("DAT", 2)
    assert rows["evil"]["status"] == "unsafe" and rows["evil"]["architecture"] == ""
    assert not (webui.parent / "pwned").exists()  # nothing unpickled it


def test_a_live_payload_pth_is_refused_by_inspect_and_convert(webui: Path) -> None:
    evil = webui / "models" / "ESRGAN" / "evil.pth"
    entry = inspect_file(evil)
    assert (entry.kind, entry.status) == ("unknown", "unsafe")
    assert "ldstudio models convert" in entry.error and not entry.usable_upscaler
    assert main(["models", "convert", str(evil)]) == EXIT_FAILED
    assert not (webui.parent / "pwned").exists()
    assert not evil.with_suffix(".safetensors").exists()


# -- references by name --------------------------------------------------------------------------


def test_upscalers_resolve_by_name_and_by_reference(webui: Path) -> None:
    store = ModelFolderStore()
    store.add_folder(webui)
    store.save()
    registry = ModelRegistry(include_hf_cache=False)
    compact = (webui / "models" / "ESRGAN" / "4x-test.safetensors").resolve()
    assert registry.resolve_reference("4x-test", (KIND_UPSCALER,), "--upscaler") == compact
    assert registry.resolve_reference("4X-TEST", (KIND_UPSCALER,), "--upscaler") == compact
    with pytest.raises(ValueError, match=r"cannot be used here: it is an upscaler, not one of"):
        registry.resolve_reference("4x-test", ("checkpoint", "diffusers"), "--model")
    with pytest.raises(ValueError, match=r"^--upscaler: 'nope' is neither"):
        registry.resolve_reference("nope", (KIND_UPSCALER,), "--upscaler")

    assert KIND_UPSCALER in REF_KINDS
    ref = reference(compact, KIND_UPSCALER)
    assert (ref.kind, ref.name, len(ref.sha256)) == (KIND_UPSCALER, "4x-test", 64)
    assert ResourceRef.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
    assert resolve(ref, registry) == compact
    assert resolve(ResourceRef(KIND_UPSCALER, "4x-test", ""), registry) == compact
    assert resolve(ResourceRef("lora", "4x-test", ref.sha256), registry) is None  # another kind
    compact.rename(compact.with_name("renamed.safetensors"))
    registry.invalidate()
    assert resolve(ref, registry) == compact.with_name("renamed.safetensors")


# -- conversion of basicsr .pth files ----------------------------------------------------------


@pytest.mark.parametrize("wrapper", ["params_ema", "params", "both"])
def test_a_basicsr_pth_converts_to_a_detected_upscaler(tmp_path: Path, wrapper: str) -> None:
    weights = Compact(3, 3, 16, 2, 4).state_dict()
    if wrapper == "both":  # Real-ESRGAN's releases: the averaged weights are the ones to use
        noise = {k: torch.randn_like(v) for k, v in weights.items()}
        payload: dict[str, Any] = {"params": noise, "params_ema": weights}
    else:
        payload = {wrapper: weights}
    source = tmp_path / "realesr-general-x4v3.pth"
    torch.save(payload, str(source))
    written = convert_to_safetensors(source)
    assert written == source.with_suffix(".safetensors")
    entry = inspect_file(written)
    assert (entry.kind, entry.architecture, entry.scale, entry.status) == (
        KIND_UPSCALER,
        "Compact",
        4,
        "ok",
    )
    from safetensors.torch import load_file

    loaded = load_file(str(written))
    assert loaded.keys() == weights.keys()
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_models_convert_prints_the_upscaler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "RealESRGAN_x2plus.pth"
    torch.save({"params_ema": RRDBNet(12, 3, 16, 1, ups=2, unshuffle=2).state_dict()}, str(source))
    assert main(["models", "convert", str(source)]) == EXIT_OK
    assert "(upscaler, ESRGAN ×2, ok)" in capsys.readouterr().out
