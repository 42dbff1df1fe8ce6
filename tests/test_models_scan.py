"""Model discovery from headers: detection per family, folder layouts, the HF cache, safety."""

from __future__ import annotations

import json
import pickle
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ldstudio.core.models import (
    ModelFolderStore,
    SafetensorsHeader,
    TensorInfo,
    detect,
    find_model,
    inspect_file,
    read_safetensors_header,
    scan_folder,
    scan_library,
)
from ldstudio.core.models import safetensors as headers


def write_safetensors(
    path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> Path:
    """A safetensors file written by hand (core is torch-free, so are its tests)."""
    header: dict[str, Any] = {}
    blobs = []
    offset = 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        dtype = {"float16": "F16", "float32": "F32"}[str(array.dtype)]
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
    return path


def zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float16)


U = "model.diffusion_model."
KOHYA_TO_K = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"


def checkpoint_tensors(family: str) -> dict[str, np.ndarray]:
    """The keys and decisive shapes of each family's original layout (small elsewhere)."""
    context = {"sd1": 768, "sd2": 1024, "sdxl": 2048}[family]
    block = "input_blocks.4.1" if family == "sdxl" else "input_blocks.1.1"
    tensors = {
        U + "input_blocks.0.0.weight": zeros(8, 4, 3, 3),
        U + f"{block}.transformer_blocks.0.attn2.to_k.weight": zeros(8, context),
        "first_stage_model.encoder.conv_in.weight": zeros(8, 3, 3, 3),
        "first_stage_model.decoder.conv_out.weight": zeros(3, 8, 3, 3),
    }
    if family == "sd1":
        tensors["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = zeros(768)
    elif family == "sd2":
        tensors["cond_stage_model.model.ln_final.weight"] = zeros(1024)
    else:
        tensors[U + "label_emb.0.0.weight"] = zeros(8, 2816)
        tensors["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"] = zeros(
            768
        )
        tensors["conditioner.embedders.1.model.ln_final.weight"] = zeros(1280)
    return tensors


@pytest.mark.parametrize(
    ("family", "metadata", "variant"),
    [
        ("sd1", None, "sd1"),
        ("sd2", None, "sd2"),
        ("sd2", {"modelspec.prediction_type": "v"}, "sd2-v"),
        ("sd2", {"modelspec.architecture": "stable-diffusion-v2-1-turbo"}, "sd-turbo"),
        ("sdxl", None, "sdxl"),
        ("sdxl", {"modelspec.title": "SDXL Turbo 1.0"}, "sdxl-turbo"),
    ],
)
def test_family_and_variant_from_weights_not_name(
    tmp_path: Path, family: str, metadata: dict[str, str] | None, variant: str
) -> None:
    # A misleading name: detection must not look at it.
    path = write_safetensors(
        tmp_path / "sdxl_turbo_v2_768.safetensors", checkpoint_tensors(family), metadata
    )
    entry = inspect_file(path)
    assert (entry.kind, entry.family, entry.variant, entry.status) == (
        "checkpoint",
        family,
        variant,
        "ok",
    )
    assert entry.precision == "fp16"
    assert entry.size_bytes == path.stat().st_size


def test_sd2_v_prediction_detected_from_weights(tmp_path: Path) -> None:
    tensors = checkpoint_tensors("sd2")
    probe = U + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
    tensors[probe] = np.random.default_rng(0).normal(0, 0.2, 320).astype(np.float16)
    assert inspect_file(write_safetensors(tmp_path / "a.safetensors", tensors)).variant == "sd2-v"
    tensors[probe] = np.random.default_rng(0).normal(0, 0.02, 320).astype(np.float16)
    assert inspect_file(write_safetensors(tmp_path / "b.safetensors", tensors)).variant == "sd2"


def test_real_architecture_shapes_detected_for_every_bundled_variant() -> None:
    """Headers with the exact key names and shapes the bundled configs give, at full size."""
    from models_support import real_layout_shapes

    for variant in ("sd1", "sd2", "sd2-v", "sd-turbo", "sdxl", "sdxl-turbo"):
        shapes = real_layout_shapes(variant)
        tensors = {k: TensorInfo("F16", s, 0, 0) for k, s in shapes.items()}
        found = detect(SafetensorsHeader(Path("x.safetensors"), tensors, {}, 8))
        family = {"sd1": "sd1", "sdxl": "sdxl", "sdxl-turbo": "sdxl"}.get(variant, "sd2")
        assert (found.kind, found.family, found.status) == ("checkpoint", family, "ok"), variant


@pytest.mark.parametrize(
    ("tensors", "found"),
    [
        ({U + "joint_blocks.0.x.weight": zeros(2)}, "Stable Diffusion 3"),
        ({U + "double_blocks.0.x.weight": zeros(2)}, "Flux"),
        ({"input_blocks.0.0.weight": zeros(2)}, "a UNet on its own"),
        ({"emb_params": zeros(2, 3, 768)}, "textual-inversion embedding of a shape"),
    ],
)
def test_unsupported_file_says_what_was_found_and_what_is_supported(
    tmp_path: Path, tensors: dict[str, np.ndarray], found: str
) -> None:
    entry = inspect_file(write_safetensors(tmp_path / "m.safetensors", tensors))
    assert entry.status == "unsupported"
    assert found in entry.error
    assert "SD 1.x" in entry.error and "SDXL-Turbo" in entry.error
    assert str(entry.path) in entry.error


def test_inpainting_checkpoints_load_and_unet_only_ones_are_explained(tmp_path: Path) -> None:
    tensors = checkpoint_tensors("sd1")
    tensors[U + "input_blocks.0.0.weight"] = zeros(8, 9, 3, 3)
    path = write_safetensors(tmp_path / "inpaint.safetensors", tensors)
    entry = inspect_file(path)
    assert entry.status == "ok" and (entry.family, entry.variant) == ("sd1", "sd1")
    assert detect(headers.checked_header(path)).inpainting
    tensors[U + "input_blocks.0.0.weight"] = zeros(8, 8, 3, 3)  # instruct-pix2pix
    entry = inspect_file(write_safetensors(tmp_path / "pix2pix.safetensors", tensors))
    assert entry.status == "unsupported" and "8 input channels" in entry.error
    tensors = {k: v for k, v in checkpoint_tensors("sd1").items() if "first_stage" not in k}
    entry = inspect_file(write_safetensors(tmp_path / "novae.safetensors", tensors))
    assert entry.status == "unsupported" and "without its VAE" in entry.error


def test_lora_and_vae_files_are_classified(tmp_path: Path) -> None:
    kohya = {
        f"{KOHYA_TO_K}.lora_down.weight": zeros(4, 768),
        f"{KOHYA_TO_K}.lora_up.weight": zeros(320, 4),
    }
    entry = inspect_file(write_safetensors(tmp_path / "style.safetensors", kohya))
    assert (entry.kind, entry.family) == ("lora", "sd1")
    xl = {"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": zeros(4, 1280)}
    assert inspect_file(write_safetensors(tmp_path / "xl.safetensors", xl)).family == "sdxl"
    peft = {"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": zeros(4, 320)}
    assert inspect_file(write_safetensors(tmp_path / "peft.safetensors", peft)).kind == "lora"
    vae = {
        "encoder.conv_in.weight": zeros(8, 3, 3, 3),
        "decoder.conv_out.weight": zeros(3, 8, 3, 3),
    }
    assert inspect_file(write_safetensors(tmp_path / "vae.safetensors", vae)).kind == "vae"


def test_truncated_and_corrupt_files_name_the_file(tmp_path: Path) -> None:
    good = write_safetensors(tmp_path / "good.safetensors", checkpoint_tensors("sd1"))
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:-100])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    for path, words in (
        (truncated, "truncated"),
        (garbage, "not a valid .safetensors"),
        (empty, "not a valid .safetensors"),
    ):
        entry = inspect_file(path)
        assert entry.status == "error"
        assert str(path) in entry.error and words in entry.error
        with pytest.raises(headers.ModelFileError, match=str(path.name)):
            read_safetensors_header(path)


class _Boom:
    """Unpickling this would create a file: the attack a malicious checkpoint carries."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.target,))


def test_pickles_are_listed_as_unsafe_and_never_opened(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "models" / "evil.ckpt"
    evil.parent.mkdir()
    evil.write_bytes(pickle.dumps({"state_dict": _Boom(marker)}))
    entries = list(scan_folder(tmp_path / "models"))
    assert [(e.name, e.status) for e in entries] == [("evil", "unsafe")]
    assert "pickle" in entries[0].error and "convert" in entries[0].error
    assert not marker.exists()


def _a1111(root: Path) -> Path:
    base = root / "stable-diffusion-webui" / "models"
    write_safetensors(base / "Stable-diffusion" / "dreamy.safetensors", checkpoint_tensors("sd1"))
    write_safetensors(
        base / "Stable-diffusion" / "xl" / "bigxl.safetensors", checkpoint_tensors("sdxl")
    )
    write_safetensors(
        base / "VAE" / "vae-ft-mse.safetensors",
        {"encoder.conv_in.weight": zeros(8, 3, 3, 3), "decoder.conv_out.weight": zeros(3, 8, 3, 3)},
    )
    write_safetensors(
        base / "Lora" / "ink.safetensors",
        {"lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": zeros(4, 1280)},
    )
    (base / "Stable-diffusion" / "Put Stable Diffusion checkpoints here.txt").write_text("")
    return base


def test_a1111_and_comfyui_layouts_scanned_in_place(tmp_path: Path) -> None:
    a1111 = _a1111(tmp_path)
    comfy = tmp_path / "ComfyUI" / "models"
    write_safetensors(comfy / "checkpoints" / "sd2base.safetensors", checkpoint_tensors("sd2"))
    write_safetensors(
        comfy / "loras" / "detail.safetensors",
        {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": zeros(4, 768)},
    )
    (comfy / "vae").mkdir(parents=True)
    before = sorted(p for p in tmp_path.rglob("*"))
    got = {e.name: (e.kind, e.family) for root in (a1111, comfy) for e in scan_folder(root)}
    assert got == {
        "dreamy": ("checkpoint", "sd1"),
        "bigxl": ("checkpoint", "sdxl"),
        "vae-ft-mse": ("vae", ""),
        "ink": ("lora", ""),
        "sd2base": ("checkpoint", "sd2"),
        "detail": ("lora", ""),
    }
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing copied or written


def test_scan_reads_only_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of files: each read is the 8-byte length plus the header, never the data."""
    tensors = checkpoint_tensors("sd1")
    tensors["big"] = np.zeros((1024, 1024), dtype=np.float16)  # 2 MiB of data per file
    for i in range(200):
        write_safetensors(tmp_path / f"m{i:03d}.safetensors", tensors)
    read_sizes: list[int] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, *args, **kwargs)
        real_read = handle.read

        def read(n: int = -1) -> bytes:
            data = real_read(n)
            read_sizes.append(len(data))
            return data

        handle.read = read
        return handle

    monkeypatch.setattr(Path, "open", counting_open)
    entries = list(scan_folder(tmp_path))
    assert len(entries) == 200 and all(e.status == "ok" for e in entries)
    assert max(read_sizes) < 4096 and sum(read_sizes) < 200 * 4096


def _hf_cache(root: Path, tiny_model: Path) -> Path:
    import shutil

    snapshot = root / "hub" / "models--someorg--tiny-sd" / "snapshots" / "0123abcd"
    shutil.copytree(tiny_model, snapshot)
    (root / "hub" / "models--someorg--tiny-sd" / "blobs").mkdir()
    return snapshot


def test_hf_cache_found_through_hf_home(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = _hf_cache(tmp_path / "hf", tiny_model)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    entries = scan_library(ModelFolderStore())
    assert [(e.name, e.kind, e.family, e.status) for e in entries] == [
        ("someorg/tiny-sd", "diffusers", "custom", "ok")
    ]
    assert entries[0].path == snapshot
    assert find_model("someorg/tiny-sd", entries, ("diffusers",)).path == snapshot
    assert find_model("tiny-sd", entries, ("diffusers",)).path == snapshot
    # A name that exists but is not of the kinds asked for says what it is, not "not found".
    with pytest.raises(
        ValueError,
        match=r"'tiny-sd' is .*, which cannot be used here: it is a "
        r"diffusers, not one of: lora",
    ):
        find_model("tiny-sd", entries, ("lora",))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert scan_library(ModelFolderStore()) == []


def test_single_file_beside_a_diffusers_layout_is_listed(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-xl-base-1.0 ship:
    # the diffusers folders and the single-file checkpoint in the same snapshot.
    snapshot = _hf_cache(tmp_path / "hf", tiny_model)
    write_safetensors(snapshot / "sd_xl_base_1.0.safetensors", checkpoint_tensors("sdxl"))
    (snapshot / "v1-5-pruned.ckpt").write_bytes(b"not read")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    entries = scan_library(ModelFolderStore())
    assert [(e.name, e.kind, e.family, e.status) for e in entries] == [
        ("someorg/tiny-sd", "diffusers", "custom", "ok"),
        ("someorg/tiny-sd/sd_xl_base_1.0", "checkpoint", "sdxl", "ok"),
        ("someorg/tiny-sd/v1-5-pruned", "unknown", "", "unsafe"),
    ]
    # The component weights inside unet/, vae/ ... are not listed as models of their own.
    assert all(e.path.parent == snapshot for e in entries[1:])
    found = find_model("sd_xl_base_1.0", entries, ("checkpoint",))
    assert found.path == snapshot / "sd_xl_base_1.0.safetensors"


def test_store_round_trip_and_name_lookup(tmp_path: Path) -> None:
    a1111 = _a1111(tmp_path)
    store = ModelFolderStore.load()
    assert store.folders == []
    store.add_folder(a1111)
    store.set_variant(a1111 / "Stable-diffusion" / "xl" / "bigxl.safetensors", "sdxl-turbo", "sdxl")
    with pytest.raises(ValueError, match="allowed: sdxl, sdxl-turbo"):
        store.set_variant(a1111 / "x.safetensors", "sd2-v", "sdxl")
    with pytest.raises(ValueError, match="does not exist"):
        store.add_folder(tmp_path / "missing")
    store.save()
    again = ModelFolderStore.load()
    assert again.folders == [str(a1111.resolve())]
    entries = scan_library(again, include_hf_cache=False)
    assert find_model("BIGXL", entries, ("checkpoint",)).variant == "sdxl-turbo"
    with pytest.raises(ValueError, match="known: bigxl, dreamy"):
        find_model("nothing", entries, ("checkpoint",))


# -- damaged and hostile headers (issue 13) ----------------------------------------------------


def write_header(path: Path, raw: bytes, data: bytes = b"") -> Path:
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def entry(dtype: str, shape: list[Any], start: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}


def tiny_entries(count: int) -> bytes:
    """`count` minimal tensor entries: ~40 bytes each, the cheapest way to bloat a header."""
    body = ",".join(
        f'"{i:x}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}' for i in range(count)
    )
    return ("{" + body + "}").encode()


def refused(path: Path, words: str) -> str:
    """The ModelFileError for `path`, which must name the file and say `words`, quickly."""
    started = time.perf_counter()
    with pytest.raises(headers.ModelFileError) as caught:
        read_safetensors_header(path)
    assert time.perf_counter() - started < 2.0
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and words in message, message
    scanned = inspect_file(path)  # what `models list` and the model manager show
    assert (scanned.status, scanned.error) == ("error", message)
    return message


@pytest.mark.parametrize(
    ("raw", "data", "words"),
    [
        (b"[" * 100_000 + b"]" * 100_000, b"", "nested too deeply"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, b"", "nested too deeply"),
        (b'{"a": ' + b"9" * 5000 + b"}", b"", "not JSON"),  # past int()'s digit limit
        (b'{"a": {"dtype": "F16"', b"", "not JSON"),
        (b'{"\xff\xfe": 1}', b"", "not UTF-8"),
        (b"[1, 2]", b"", "a JSON list, not a map of tensors"),
        (b'{"a": 5}', b"", "tensor 'a' is a JSON number"),
        (b'{"__metadata__": [], "a": 1}', b"", "__metadata__ is a JSON list"),
        (b'{"__metadata__": {"steps": 20}}', b"", "metadata values must be text"),
        (json.dumps({"a": entry("F99", [2], 0, 4)}).encode(), b"\0" * 4, 'dtype "F99"; allowed'),
        (json.dumps({"a": entry("f16", [2], 0, 4)}).encode(), b"\0" * 4, "allowed: BOOL, F4"),
        (json.dumps({"a": {"shape": [2], "data_offsets": [0, 4]}}).encode(), b"", "dtype missing"),
        (json.dumps({"a": entry("F16", [-2], 0, 4)}).encode(), b"\0" * 4, "shape [-2]"),
        (json.dumps({"a": entry("F16", [True], 0, 2)}).encode(), b"\0" * 2, "shape [true]"),
        (json.dumps({"a": entry("F16", [2.0], 0, 4)}).encode(), b"\0" * 4, "shape [2.0]"),
        (json.dumps({"a": entry("F16", [2**64], 0, 4)}).encode(), b"\0" * 4, "whole numbers"),
        (json.dumps({"a": entry("F16", "2", 0, 4)}).encode(), b"\0" * 4, 'shape "2"'),
        (
            json.dumps({"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4, 4]}}).encode(),
            b"\0" * 4,
            "data_offsets [0, 4, 4]",
        ),
        (json.dumps({"a": entry("F16", [0], 4, 0)}).encode(), b"\0" * 4, "start <= end"),
        (json.dumps({"a": entry("F16", [3], 0, 4)}).encode(), b"\0" * 4, "does not take the 4"),
        (json.dumps({"a": entry("F4", [3], 0, 2)}).encode(), b"\0" * 2, "does not take the 2"),
        (
            json.dumps({"a": entry("F16", [2**40] * 2000, 0, 4)}).encode(),
            b"\0" * 4,
            "does not take",
        ),
        (
            json.dumps({"a": entry("F16", [1], 0, 2), "b": entry("F16", [1], 4, 6)}).encode(),
            b"\0" * 6,
            "'b' starts at byte 4 of the data, but the tensors before it end at 2",
        ),
        (
            json.dumps({"a": entry("F16", [2], 0, 4), "b": entry("F16", [1], 2, 4)}).encode(),
            b"\0" * 4,
            "without gaps or overlaps",
        ),
        (json.dumps({"a": entry("F16", [2], 0, 4)}).encode(), b"\0" * 6, "2 bytes after"),
        (b"{}", b"\0" * 3, "3 bytes after"),
        (b'{"__metadata__": {"x": "\\ud800"}}', b"", "lone UTF-16 surrogate"),
    ],
)
def test_damaged_headers_are_refused_naming_file_and_fault(
    tmp_path: Path, raw: bytes, data: bytes, words: str
) -> None:
    refused(write_header(tmp_path / "damaged.safetensors", raw, data), words)


def test_headers_safetensors_accepts_are_accepted(tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], int]] = [
        ({}, 0),
        ({"a": entry("F16", [], 0, 2)}, 2),  # a scalar
        ({"a": entry("F16", [0, 2**40], 0, 0), "b": entry("F16", [1], 0, 2)}, 2),  # empty
        ({"b": entry("F16", [1], 2, 4), "a": entry("F16", [1], 0, 2)}, 4),  # keys not in order
        ({"a": entry("F4", [4], 0, 2), "b": entry("F6_E2M3", [4], 2, 5)}, 5),  # packed
        ({"__metadata__": None, "a": {**entry("C64", [1], 0, 8), "extra": 1}}, 8),
        ({"__metadata__": {"tags": "\U0001f600"}}, 0),  # json.dumps writes a surrogate pair
    ]
    for i, (header, size) in enumerate(cases):
        path = write_header(tmp_path / f"ok{i}.safetensors", json.dumps(header).encode())
        path.write_bytes(path.read_bytes() + b"\0" * size)
        parsed = read_safetensors_header(path)
        assert set(parsed.tensors) == set(header) - {"__metadata__"}
    padded = json.dumps({"a": entry("F16", [2], 0, 4)}).encode() + b"   "  # safetensors pads
    assert read_safetensors_header(write_header(tmp_path / "pad.safetensors", padded, b"\0" * 4))


def test_oversized_headers_are_refused_before_parsing(tmp_path: Path) -> None:
    """Issue 13: a 99 MB header of 1.7 M tensors took 15 s and 1.4 GB to scan."""
    big = tmp_path / "big.safetensors"
    with big.open("wb") as handle:  # sparse: the header is never read
        length = headers.MAX_HEADER_BYTES + 1
        handle.write(struct.pack("<Q", length))
        handle.truncate(8 + length)
    refused(big, "its header is 33554433 bytes; ldstudio reads headers of up to 32 MB")
    many = write_header(tmp_path / "many.safetensors", tiny_entries(headers.MAX_TENSORS + 1))
    refused(many, f"describes {headers.MAX_TENSORS + 1} tensors; ldstudio reads files of up to")
    values = write_header(tmp_path / "values.safetensors", b"[" + b"0," * 2_000_000 + b"0]")
    refused(values, "holds about 2000001 JSON values")
    # Keys spelled with escapes hide from the byte count; the parsed count still holds.
    body = ",".join(
        f'"{i:x}":{{"dtype":"U8","shape":[0],"\\u0064ata_offsets":[0,0]}}'
        for i in range(headers.MAX_TENSORS + 1)
    )
    escaped = write_header(tmp_path / "escaped.safetensors", ("{" + body + "}").encode())
    refused(escaped, f"describes {headers.MAX_TENSORS + 1} tensors")


def test_largest_allowed_header_parses_quickly(tmp_path: Path) -> None:
    """MAX_TENSORS real-looking entries (20 times an SDXL checkpoint) stay well within 2 s of
    CPU time (about 0.2 s on an idle machine; the wall clock of a shared one says little)."""
    header: dict[str, Any] = {"__metadata__": {"ss_tag_frequency": "{}" * 1000}}
    size = 2 * 320 * 4 * 3 * 3
    for i in range(headers.MAX_TENSORS):
        name = f"model.diffusion_model.output_blocks.{i}.1.transformer_blocks.0.attn2.to_k.weight"
        header[name] = entry("F16", [320, 4, 3, 3], i * size, (i + 1) * size)
    path = tmp_path / "large.safetensors"
    write_header(path, json.dumps(header).encode())
    with path.open("ab") as handle:
        handle.truncate(path.stat().st_size + headers.MAX_TENSORS * size)
    started = time.process_time()
    parsed = read_safetensors_header(path)
    assert time.process_time() - started < 2.0
    assert len(parsed.tensors) == headers.MAX_TENSORS


def test_symlink_loops_are_walked_once(tmp_path: Path) -> None:
    """Issue 13: eight links to the folder itself made `models list` take 60 s."""
    models = tmp_path / "models"
    write_safetensors(models / "ink.safetensors", {"x.lora_down.weight": zeros(2)})
    write_safetensors(models / "sub" / "deep.safetensors", {"y.lora_down.weight": zeros(2)})
    for i in range(8):
        (models / f"self{i}").symlink_to(".")
    (models / "sub" / "up").symlink_to("..")
    elsewhere = write_safetensors(tmp_path / "disk2" / "far.safetensors", checkpoint_tensors("sd1"))
    (models / "linked").symlink_to(elsewhere.parent)  # a folder linked in from elsewhere
    started = time.perf_counter()
    entries = list(scan_folder(models))
    assert time.perf_counter() - started < 2.0
    assert sorted((e.name, e.path.relative_to(models).parts[0]) for e in entries) == [
        ("deep", "sub"),
        ("far", "linked"),
        ("ink", "ink.safetensors"),
    ]
