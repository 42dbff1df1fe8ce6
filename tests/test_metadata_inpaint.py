"""Inpaint requests in image metadata and the library: A1111's img2img keys written and read,
the whole request round-tripping through a PNG, txt2img images unchanged, old images and old
library indexes still read, blobs linked and never deleted (no torch, no Qt)."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from ldstudio import __version__
from ldstudio.core.hires import HiresSettings
from ldstudio.core.imagefiles import FolderSink, write_png_atomic
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.library import DB_NAME, LibraryFilter, LibraryStore, migrate
from ldstudio.core.metadata import (
    LDSTUDIO_KEY,
    PARAMETERS_KEY,
    SOURCE_NOT_RECORDED,
    a1111_parameters,
    inpaint_pairs,
    model_hash_of,
    parse_a1111_parameters,
    png_text_chunks,
    read_request,
)
from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import parse_a1111_text, read_file, unapplied_values
from ldstudio.core.request import KIND_INPAINT, Request, to_portable

PARAMS = GenerationParams(
    prompt="a red star",
    negative_prompt="blurry",
    scheduler="Euler a",
    steps=12,
    guidance_scale=6.5,
    width=64,
    height=64,
    seed=4242,
)
IMAGE_SHA, MASK_SHA = "a" * 64, "b" * 64
ALL_ON = InpaintSettings(
    strength=0.6,
    mask_blur=8,
    inpaint_area="masked",
    mask_padding=40,
    masked_content="latent_noise",
    invert_mask=True,
    outpaint=(8, 0, 16, 0),
    soft=False,
)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def chunks_of(path: Path) -> dict[str, str]:
    with Image.open(path) as image:
        image.load()
        return dict(image.text)  # type: ignore[attr-defined]


def pairs_of(text: str) -> dict[str, str]:
    return {k: v for k, v in parse_a1111_parameters(text).items() if isinstance(v, str)}


# --- writing ----------------------------------------------------------------------------------


def test_txt2img_text_chunks_are_unchanged(tmp_path: Path) -> None:
    # What every image before inpainting had: the same two chunks, the same bytes.
    chunks = png_text_chunks(PARAMS, "tiny")
    assert chunks == png_text_chunks(PARAMS, "tiny", Request.txt2img(PARAMS))
    assert set(chunks) == {PARAMETERS_KEY, LDSTUDIO_KEY}
    assert chunks[PARAMETERS_KEY] == (
        "a red star\nNegative prompt: blurry\nSteps: 12, Sampler: Euler a, CFG scale: 6.5, "
        f"Seed: 4242, Size: 64x64, Model hash: {model_hash_of(PARAMS)}, Model: tiny, "
        f"Version: ldstudio {__version__}"
    )
    assert chunks[LDSTUDIO_KEY] == json.dumps(
        to_portable(Request.txt2img(PARAMS)), ensure_ascii=False, sort_keys=True
    )
    sink = FolderSink(tmp_path)
    image = Image.new("RGB", (64, 64), "red")
    info = {"index": 0, "model_name": "tiny", "device": "cpu", "dtype": "fp32", "seconds": 1.0}
    old = sink.save(image, PARAMS, **info)  # type: ignore[arg-type]
    new = sink.save(image, PARAMS, request=Request.txt2img(PARAMS), **info)  # type: ignore[arg-type]
    assert chunks_of(old.path) == chunks_of(new.path) == chunks
    for key in ("Denoising strength", "Mask blur", "Outpaint", "Soft inpainting"):
        assert key not in chunks[PARAMETERS_KEY]


def test_every_inpaint_key_is_written_as_a1111_words_it() -> None:
    request = Request.inpainting(PARAMS, ALL_ON, IMAGE_SHA, MASK_SHA)
    text = a1111_parameters(PARAMS, "tiny", request=request)
    pairs = pairs_of(text)
    assert {k: pairs[k] for k in inpaint_pairs(request)} == {
        "Denoising strength": "0.6",
        "Mask blur": "8",
        "Inpaint area": "Only masked",
        "Masked area padding": "40",
        "Masked content": "latent noise",
        "Mask mode": "Inpaint not masked",
        "Outpaint": "8,0,16,0",
        "Soft inpainting": "False",
    }
    assert 'Outpaint: "8,0,16,0"' in text  # a value with commas is quoted, as A1111 does
    assert text.endswith(f"Version: ldstudio {__version__}")


def test_img2img_writes_only_its_strength() -> None:
    request = Request.inpainting(PARAMS, InpaintSettings(strength=0.35), IMAGE_SHA)
    assert inpaint_pairs(request) == {"Denoising strength": "0.35"}
    # No mask but an outpaint: the new area is masked, so the mask keys are written.
    outpaint = Request.inpainting(
        PARAMS, InpaintSettings(strength=1.0, outpaint=(0, 64, 0, 0)), IMAGE_SHA
    )
    assert inpaint_pairs(outpaint) == {
        "Denoising strength": "1.0",
        "Mask blur": "4",
        "Masked content": "original",
        "Outpaint": "0,64,0,0",
    }
    # "auto" strength not resolved: left out rather than guessed.
    assert "Denoising strength" not in inpaint_pairs(
        Request.inpainting(PARAMS, InpaintSettings(), IMAGE_SHA, MASK_SHA)
    )


def test_the_whole_request_round_trips_through_a_png(tmp_path: Path) -> None:
    request = Request.inpainting(PARAMS, ALL_ON, IMAGE_SHA, MASK_SHA).validate()
    sink = FolderSink(tmp_path)
    record = sink.save(
        Image.new("RGB", (88, 64), "blue"),
        PARAMS,
        index=0,
        model_name="tiny",
        device="cpu",
        dtype="fp32",
        seconds=0.5,
        request=request,
    )
    read, notes = read_request(record.path)
    assert read == request and notes == []
    assert read is not None and read.face == "outpaint"
    result = read_file(record.path)
    assert result.source == "ldstudio" and result.face == "outpaint"
    assert result.inpaint == ALL_ON and result.request == request
    assert result.to_dict()["inputs"] == {"image": IMAGE_SHA, "mask": MASK_SHA}


def test_the_sink_writes_the_images_own_params_with_the_request(tmp_path: Path) -> None:
    # The request's params are the image's: the sink's params win (seed of that image).
    request = Request.inpainting(PARAMS.replace(seed=1), InpaintSettings(strength=0.5), IMAGE_SHA)
    chunks = png_text_chunks(PARAMS, "tiny", request)
    assert json.loads(chunks[LDSTUDIO_KEY])["params"]["seed"] == 4242
    assert "Seed: 4242" in chunks[PARAMETERS_KEY]


# --- reading A1111 text ------------------------------------------------------------------------

A1111_INPAINT = (
    "a castle\nNegative prompt: fog\n"
    "Steps: 30, Sampler: Euler a, CFG scale: 7, Seed: 11, Size: 512x512, Model: v1-5, "
    "Denoising strength: 0.55, Mask blur: 6, Inpaint area: Only masked, Masked area padding: 24, "
    "Masked content: fill, Mask mode: Inpaint not masked, Version: v1.9.0"
)


def test_a1111_inpaint_text_becomes_inpaint_settings_without_a_source(tmp_path: Path) -> None:
    result = parse_a1111_text(A1111_INPAINT)
    assert result.inpaint == InpaintSettings(
        strength=0.55,
        mask_blur=6,
        inpaint_area="masked",
        mask_padding=24,
        masked_content="fill",
        invert_mask=True,
        soft=False,  # A1111 writes "Soft inpainting enabled: True" when it was on
    )
    assert result.face == "inpaint" and result.request is not None
    assert result.request.kind == KIND_INPAINT and result.request.inputs == ()
    # Applied keys are not listed as dropped; the rest still are.
    names = [name for name, _value in unapplied_values(result)]
    assert "Mask blur" not in names and "Denoising strength" not in names
    path = tmp_path / "a1111.png"
    write_png_atomic(Image.new("RGB", (64, 64)), path, {PARAMETERS_KEY: A1111_INPAINT})
    request, notes = read_request(path)
    assert request == result.request and notes == [SOURCE_NOT_RECORDED]
    with pytest.raises(ValueError, match="inputs: inpaint takes image"):
        request.validate()  # settings known, source not: a source must be chosen


def test_a1111_mask_padding_and_soft_inpainting_spellings() -> None:
    base = "x\nSteps: 20, Sampler: Euler a, Seed: 1, Size: 64x64, "
    settings = parse_a1111_text(
        base + "Mask blur: 4, Mask padding: 48, Soft inpainting enabled: True"
    ).inpaint
    assert settings is not None and settings.mask_padding == 48 and settings.soft
    # ldstudio's own text: soft unless it says False.
    ours = parse_a1111_text(base + f"Denoising strength: 0.4, Version: ldstudio {__version__}")
    assert ours.inpaint == InpaintSettings(strength=0.4, soft=True) and ours.face == "img2img"
    off = parse_a1111_text(
        base + 'Denoising strength: 0.4, Soft inpainting: False, Outpaint: "0,8,0,8"'
    )
    assert off.inpaint == InpaintSettings(strength=0.4, soft=False, outpaint=(0, 8, 0, 8))
    assert off.face == "outpaint"


def test_ldstudio_inpaint_text_reads_back_into_the_same_settings() -> None:
    request = Request.inpainting(PARAMS, ALL_ON, IMAGE_SHA, MASK_SHA)
    result = parse_a1111_text(a1111_parameters(PARAMS, "tiny", request=request))
    assert result.inpaint == ALL_ON and result.params == PARAMS.replace(model="tiny")


def test_a_hires_fix_strength_is_txt2img_and_bad_values_are_named() -> None:
    hires = parse_a1111_text(
        "x\nSteps: 20, Sampler: Euler a, Seed: 1, Size: 64x64, Denoising strength: 0.7, "
        "Hires upscale: 2, Hires upscaler: Latent"
    )
    assert hires.inpaint is None and hires.face == "txt2img"
    # Since the hires fix (#16) the strength is the hires pass's, applied as such.
    assert hires.request == Request.txt2img(
        hires.params,  # type: ignore[arg-type]
        HiresSettings(scale=2.0, upscaler="latent", strength=0.7),
    )
    assert "Denoising strength" not in [name for name, _value in unapplied_values(hires)]
    bad = parse_a1111_text(
        "x\nSteps: 20, Sampler: Euler a, Seed: 1, Mask blur: lots, Denoising strength: 3, "
        "Masked content: sky"
    )
    assert bad.inpaint == InpaintSettings(soft=False)  # defaults kept for what is not allowed
    assert "Mask blur: 'lots' is not a number; the default is used" in bad.warnings
    assert any(w.startswith("strength: 3.0 is out of range") for w in bad.warnings)
    assert any(w.startswith("Masked content: 'sky' is not one of") for w in bad.warnings)


# --- old images -------------------------------------------------------------------------------


def test_images_written_before_read_as_txt2img(tmp_path: Path) -> None:
    version1 = tmp_path / "v1.png"  # the bare GenerationParams JSON of the first releases
    write_png_atomic(Image.new("RGB", (64, 64)), version1, {LDSTUDIO_KEY: PARAMS.to_json()})
    assert read_request(version1) == (Request.txt2img(PARAMS), [])
    version2 = tmp_path / "v2.png"  # references, before inpainting: no "inpaint" key
    portable = to_portable(Request.txt2img(PARAMS))
    del portable["inpaint"]
    write_png_atomic(Image.new("RGB", (64, 64)), version2, {LDSTUDIO_KEY: json.dumps(portable)})
    request, _notes = read_request(version2)
    assert request == Request.txt2img(PARAMS)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert read_request(plain) == (None, ["no generation metadata found"])


# --- the library ------------------------------------------------------------------------------


def save_inpaint(store: LibraryStore, source: bytes, mask: bytes | None, seed: int = 3) -> Path:
    image_sha = store.blobs.put(source)
    mask_sha = store.blobs.put(mask) if mask is not None else None
    params = PARAMS.replace(seed=seed)
    request = Request.inpainting(params, InpaintSettings(strength=0.5), image_sha, mask_sha)
    record = store.save(
        Image.new("RGB", (64, 64), "green"),
        params,
        index=0,
        model_name="tiny",
        device="cpu",
        dtype="fp32",
        seconds=0.1,
        request=request,
    )
    return record.path


def test_library_links_an_image_to_its_source_and_mask(tmp_path: Path) -> None:
    source = png_bytes(Image.new("RGBA", (64, 64), (10, 200, 30, 128)))
    mask = png_bytes(Image.new("L", (64, 64), 255))
    with LibraryStore(tmp_path / "lib") as store:
        path = save_inpaint(store, source, mask)
        entry = store.entry_for_path(path)
        assert entry is not None and entry.face == "inpaint"
        found = store.inputs_of(entry)
        assert found.face == "inpaint" and found.missing == ()
        assert found.image is not None and found.image.read_bytes() == source
        assert found.mask is not None and found.mask.read_bytes() == mask
        assert found.request == read_request(path)[0]
        thumb = store.blob_thumbnail(found.request.input("image"))  # type: ignore[union-attr, arg-type]
        with Image.open(thumb) as image:
            assert image.size == (64, 64) and image.mode == "RGBA"
        assert entry.to_dict()["face"] == "inpaint"
        assert entry.to_dict()["inputs"] == dict(found.request.inputs)  # type: ignore[union-attr]
        # The search finds img2img / inpaint images by face.
        save_txt2img = store.save(
            Image.new("RGB", (64, 64)), PARAMS, index=0, model_name="tiny", device="",
            dtype="", seconds=0.0,
        )  # fmt: skip
        assert store.count(LibraryFilter(face="inpaint")) == 1
        assert [e.path for e in store.page(LibraryFilter(face="txt2img"))] == [save_txt2img.path]
        txt2img = store.entry_for_path(save_txt2img.path)
        assert txt2img is not None and store.inputs_of(txt2img).image is None


def test_an_input_not_in_the_blob_store_is_named(tmp_path: Path) -> None:
    with LibraryStore(tmp_path / "lib") as store:
        path = save_inpaint(store, png_bytes(Image.new("RGB", (64, 64))), None)
        entry = store.entry_for_path(path)
        assert entry is not None and entry.face == "img2img"
        digest = entry.request.input("image")  # type: ignore[union-attr]
        store.blobs.path(digest).unlink()  # type: ignore[arg-type]
        found = store.inputs_of(entry)
        assert found.image is None and found.mask is None
        assert found.missing == (
            f"source image (blob {digest[:12]}…): not in this library's blob store "  # type: ignore[index]
            f"({store.blobs.root})",
        )


def test_deleting_images_never_deletes_shared_blobs(tmp_path: Path) -> None:
    source = png_bytes(Image.new("RGB", (64, 64), "white"))
    with LibraryStore(tmp_path / "lib") as store:
        first = save_inpaint(store, source, None, seed=1)
        second = save_inpaint(store, source, None, seed=2)  # the same source: one blob
        entries = [store.entry_for_path(p) for p in (first, second)]
        digest = entries[0].request.input("image")  # type: ignore[union-attr]
        assert digest == entries[1].request.input("image")  # type: ignore[union-attr]
        store.trash([entries[0].id])  # type: ignore[union-attr]
        assert store.empty_trash() == 1
        assert digest in store.blobs and store.blobs.get(digest) == source  # type: ignore[arg-type]
        kept = store.inputs_of(store.get(entries[1].id))  # type: ignore[union-attr]
        assert kept.image is not None and kept.missing == ()


def test_imported_a1111_inpaint_images_are_found_and_say_their_source_is_unknown(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "a1111"
    folder.mkdir()
    write_png_atomic(Image.new("RGB", (64, 64)), folder / "x.png", {PARAMETERS_KEY: A1111_INPAINT})
    with LibraryStore(tmp_path / "lib") as store:
        (image_id,) = store.import_folder(folder).added
        entry = store.get(image_id)
        assert entry.face == "inpaint" and store.count(LibraryFilter(face="inpaint")) == 1
        found = store.inputs_of(entry)
        assert found.request is not None and found.request.inpaint is not None
        assert found.request.inpaint.mask_padding == 24
        assert found.missing == (SOURCE_NOT_RECORDED,)


def test_an_index_of_schema_3_gains_faces(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    conn = sqlite3.connect(root / DB_NAME, isolation_level=None)
    assert migrate(conn, target=3) == 0
    rows = [
        ("images/a.png", "ldstudio", PARAMS.to_json(), None),
        ("/x/b.png", "a1111", PARAMS.to_json(), json.dumps({"Mask blur": "4"})),
        ("/x/c.png", "a1111", PARAMS.to_json(), json.dumps({"Denoising strength": "0.5"})),
        (
            "/x/d.png",
            "a1111",
            PARAMS.to_json(),
            json.dumps({"Denoising strength": "0.5", "Hires upscale": "2"}),
        ),
        ("/x/e.png", "none", None, None),
    ]
    for path, source, params, extra in rows:
        conn.execute(
            "INSERT INTO images (path, source, params_json, extra_json, created)"
            " VALUES (?, ?, ?, ?, 1)",
            (path, source, params, extra),
        )
    conn.close()
    with LibraryStore(root) as store:
        faces = {e.path.name: e.face for e in store.page(LibraryFilter(), 0, 10)}
        assert faces == {
            "a.png": "txt2img",
            "b.png": "inpaint",
            "c.png": "img2img",
            "d.png": "txt2img",
            "e.png": "",
        }
