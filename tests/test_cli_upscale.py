"""`ldstudio upscale IMG`: every bad value refused before anything loads (exit 2, the option
and what is allowed), and real runs: the result is a library image whose request names its
source blob, with an upscaler from an A1111 `models/ESRGAN` folder found by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_OK
from ldstudio.core.library.blobs import BlobStore
from ldstudio.core.metadata import read_request
from ldstudio.core.request import KIND_UPSCALE, ROLE_IMAGE

torch = pytest.importorskip("torch")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, "upscale", *argv)
    assert code == EXIT_BAD_INPUT, err
    assert err.startswith("ldstudio upscale: error: ") and err.count("\n") == 1, err
    assert out == "" and "loading" not in err
    return err.removeprefix("ldstudio upscale: error: ").rstrip("\n")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "source.png"
    path.parent.mkdir()
    image = Image.new("RGB", (40, 24), (30, 65, 215))
    image.paste((215, 30, 30), (10, 6, 30, 18))
    image.save(path)
    return path


@pytest.fixture
def esrgan_folder(tmp_path: Path) -> Path:
    """An A1111 install's models/ESRGAN with a random-weight Compact ×4."""
    from safetensors.torch import save_file

    from ldstudio.engine.upscalers.compact import Compact

    folder = tmp_path / "webui" / "models" / "ESRGAN"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    save_file(Compact(3, 3, 8, 2, 4).state_dict(), str(folder / "4x-random.safetensors"))
    (folder / "4x-evil.pth").write_bytes(b"a pickle is never opened")
    return folder


def test_bad_values_are_refused_before_loading(
    capsys: pytest.CaptureFixture[str], source: Path, tmp_path: Path, esrgan_folder: Path
) -> None:
    assert refused(capsys, str(source), "--scale", "3") == (
        "--scale: 3 is not allowed; allowed: 2, 4"
    )
    assert refused(capsys, str(source), "--overlap", "200").startswith(
        "--overlap: 200 is not allowed; allowed: multiples of 8 from 0 to 128 pixels"
    )
    assert refused(capsys, str(source), "--tile", "100").startswith("--tile: 100 is not allowed")
    assert refused(capsys, str(source), "--refine-strength", "2").startswith(
        "--refine-strength: 2.0 is not allowed"
    )
    assert "--upscaler: 'nope' is neither an existing path nor a known model name" in refused(
        capsys, str(source), "--upscaler", "nope"
    )
    assert "ldstudio models convert" in refused(
        capsys, str(source), "--upscaler", str(esrgan_folder / "4x-evil.pth")
    )
    assert refused(capsys, str(tmp_path / "missing.png")).startswith("image: ")
    big = tmp_path / "big.png"
    Image.new("RGB", (2100, 8)).save(big)
    assert "allowed: at most 8192 pixels a side" in refused(capsys, str(big), "--scale", "4")


def test_upscale_makes_a_library_image_linked_to_its_source(
    capsys: pytest.CaptureFixture[str], source: Path, esrgan_folder: Path, ldstudio_home: Path
) -> None:
    code, out, err = run(capsys, "models", "add-folder", str(esrgan_folder.parents[1]))
    assert code == EXIT_OK, err
    code, out, err = run(capsys, "models", "list")
    assert "4x-random" in out and "Compact ×4" in out
    code, out, err = run(
        capsys, "upscale", str(source), "--scale", "4", "--upscaler", "4x-random",
        "--refine-strength", "0", "--json",
    )  # fmt: skip
    assert code == EXIT_OK, err
    assert "upscale ×4 of" in err and "(40x24 → 160x96) with 4x-random" in err
    payload = json.loads(out)
    [image] = payload["images"]
    assert (image["width"], image["height"]) == (160, 96) and payload["face"] == "upscale"
    path = Path(image["path"])
    assert path.is_relative_to(ldstudio_home) and Image.open(path).size == (160, 96)
    request, notes = read_request(path)
    assert request is not None and request.kind == KIND_UPSCALE and not notes
    assert request.upscale is not None and Path(request.upscale.upscaler).name == (
        "4x-random.safetensors"
    )
    # The source is in the library's blob store under the hash the request names.
    digest = request.input(ROLE_IMAGE)
    blobs = BlobStore(ldstudio_home / "library" / "blobs")
    assert digest is not None and digest in blobs
    assert Image.open(blobs.path(digest)).tobytes() == Image.open(source).tobytes()
    # The library's index keeps the whole request: its details show what it was made from.
    from ldstudio.cli.library import open_library

    store = open_library(ldstudio_home / "library")
    entry = store.entry_for_path(path)
    assert entry is not None and entry.request is not None and entry.face == "upscale"
    assert entry.request.upscale == request.upscale and entry.request.inputs == request.inputs
    assert store.inputs_of(entry).image == blobs.path(digest)
    store.close()
    code, out, err = run(capsys, "info", str(path))
    assert "upscale: ×4 with 4x-random, no refine" in out
    # A1111's own Extras keys in the `parameters` text other tools read.
    text = Image.open(path).text["parameters"]  # type: ignore[attr-defined]
    assert "Postprocess upscale by: 4, Postprocess upscaler: 4x-random" in text


def test_refine_uses_the_prompt_the_source_records(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path
) -> None:
    made = tmp_path / "made"
    code, _out, err = run(
        capsys, "generate", "a blue square", "--model", str(tiny_model), "--steps", "1",
        "--out", str(made / "first.png"), "--seed", "3",
    )  # fmt: skip
    assert code == EXIT_OK, err
    code, _out, err = run(
        capsys, "upscale", str(made / "first.png"), "--upscaler", "lanczos", "--model",
        str(tiny_model), "--steps", "4", "--refine-strength", "0.5", "--tile", "128",
        "--overlap", "32", "--out", str(made / "big.png"), "--seed", "5",
    )  # fmt: skip
    assert code == EXIT_OK, err
    assert "prompt from its metadata: 'a blue square'" in err and "pass 2 of 2: refine" in err
    request, _notes = read_request(made / "big.png")
    assert request is not None and request.params.prompt == "a blue square"
    assert request.upscale is not None and request.upscale.refine_strength == 0.5
    assert Image.open(made / "big.png").size == (2 * Image.open(made / "first.png").width,) * 2


def test_hires_fix_uses_an_upscaler_model_by_name(
    capsys: pytest.CaptureFixture[str], esrgan_folder: Path, tiny_model: Path, tmp_path: Path
) -> None:
    assert run(capsys, "models", "add-folder", str(esrgan_folder))[0] == EXIT_OK
    out_file = tmp_path / "hires.png"
    code, _out, err = run(
        capsys, "generate", "a red circle", "--model", str(tiny_model), "--steps", "1",
        "--hires-scale", "2", "--hires-upscaler", "4x-random", "--out", str(out_file),
    )  # fmt: skip
    assert code == EXIT_OK, err
    request, _notes = read_request(out_file)
    assert request is not None and request.hires is not None
    assert Path(request.hires.upscaler).name == "4x-random.safetensors"
    text = Image.open(out_file).text["parameters"]  # type: ignore[attr-defined]
    assert "Hires upscaler: 4x-random" in text
    assert "ldstudio models convert" in refused_generate(
        capsys, "--hires-scale", "2", "--hires-upscaler", str(esrgan_folder / "4x-evil.pth")
    )


def refused_generate(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, _out, err = run(capsys, "generate", "a cat", "--steps", "1", *argv)
    assert code == EXIT_BAD_INPUT and "loading" not in err, err
    return err


def test_the_bundled_upscalers_are_known_by_name_and_travel_by_reference(
    capsys: pytest.CaptureFixture[str], tiny_model: Path, tmp_path: Path
) -> None:
    from ldstudio.core.models.upscalers import bundled_upscaler_path, resolve_upscaler
    from ldstudio.core.request import from_portable, to_portable

    assert resolve_upscaler("ldstudio-compact-x4", "--upscaler") == bundled_upscaler_path(4)
    out_file = tmp_path / "hires.png"
    code, _out, err = run(
        capsys, "generate", "a red circle", "--model", str(tiny_model), "--steps", "1",
        "--hires-scale", "2", "--hires-upscaler", "ldstudio-compact-x2", "--out", str(out_file),
    )  # fmt: skip
    assert code == EXIT_OK, err
    request, notes = read_request(out_file)  # the PNG names it by name and hash, found again
    assert request is not None and request.hires is not None and not notes
    assert Path(request.hires.upscaler) == bundled_upscaler_path(2)
    portable = to_portable(request)
    assert portable["hires_upscaler"]["name"] == "ldstudio-compact-x2"
    assert from_portable(portable)[0].hires == request.hires


def test_the_default_overlap_follows_a_small_tile() -> None:
    """Without --overlap, a tile too small for the default takes a quarter of itself (an
    overlap given by the user is never changed: it is checked, and refused if too wide)."""
    import argparse

    from ldstudio.cli.upscale import settings_from_args
    from ldstudio.core.models import ModelRegistry
    from ldstudio.core.upscale import DEFAULT_OVERLAP, UpscaleSettings

    def settings(tile: int, overlap: int | None) -> UpscaleSettings:
        args = argparse.Namespace(
            scale=2, upscaler="lanczos", refine_strength=0.3, tile=tile, overlap=overlap
        )
        return settings_from_args(args, ModelRegistry())

    assert settings(512, None).overlap == DEFAULT_OVERLAP == 96
    assert settings(256, None).overlap == 64
    assert settings(128, None).overlap == 32
    assert settings(128, 16).overlap == 16
