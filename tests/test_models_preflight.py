"""One set of family rules for files, folders and loaded pipelines; the checks made before a
model loads, as readable problems (no torch, no Qt)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ldstudio.core.models import inspect_diffusers_folder
from ldstudio.core.models.detection import family_label, family_of_variant, unet_family


@pytest.mark.parametrize(
    ("context", "addition", "family"),
    [
        (768, None, "sd1"),
        (1024, None, "sd2"),
        ([1024], None, "sd2"),
        (2048, "text_time", "sdxl"),
        (1280, "text_time", "sdxl-refiner"),  # the SDXL refiner's real config
        (2048, None, "custom"),
        (32, None, "custom"),  # the bundled model and the tiny test models
        (None, None, "custom"),
        ({"a": []}, None, "custom"),
    ],
)
def test_unet_family_rules(context: object, addition: object, family: str, tmp_path: Path):
    assert unet_family(context, addition) == family
    # A diffusers folder's family comes from the same rule, read from unet/config.json.
    (tmp_path / "unet").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet"]}))
    config = {"cross_attention_dim": context, "addition_embed_type": addition}
    (tmp_path / "unet" / "config.json").write_text(json.dumps(config))
    assert inspect_diffusers_folder(tmp_path, tmp_path).family == family


def test_family_labels_and_variants() -> None:
    assert [family_label(f) for f in ("sd1", "sd2", "sdxl", "custom")] == [
        "SD 1.x",
        "SD 2.x",
        "SDXL",
        "'custom'",
    ]
    assert [family_of_variant(v) for v in ("sd1", "sd2-v", "sd-turbo", "sdxl-turbo")] == [
        "sd1",
        "sd2",
        "sd2",
        "sdxl",
    ]
    with pytest.raises(ValueError, match="'sd3' is not a bundled config"):
        family_of_variant("sd3")
