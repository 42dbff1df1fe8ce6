"""GenerationParams: validation messages, seed resolution, JSON round trip (no torch, no Qt)."""

from __future__ import annotations

import json

import pytest

from ldstudio.core.params import SCHEDULERS, SEED_MAX, GenerationParams


def test_defaults_are_valid() -> None:
    params = GenerationParams(prompt="a red circle").validate()
    assert params.scheduler in SCHEDULERS
    assert params.seed == "random"


@pytest.mark.parametrize(
    ("changes", "field", "allowed"),
    [
        ({"steps": 0}, "steps", "1 to 150"),
        ({"steps": 151}, "steps", "1 to 150"),
        ({"steps": 2.5}, "steps", "integers from 1 to 150"),
        ({"guidance_scale": -1.0}, "guidance_scale", "0 to 30"),
        ({"guidance_scale": 30.5}, "guidance_scale", "0 to 30"),
        ({"guidance_scale": float("nan")}, "guidance_scale", "0 to 30"),
        ({"width": 500}, "width", "multiples of 8"),
        ({"height": 4104}, "height", "64 to 4096"),
        ({"width": 32}, "width", "64 to 4096"),
        ({"seed": -1}, "seed", f"0 to {SEED_MAX}"),
        ({"seed": SEED_MAX + 1}, "seed", f"0 to {SEED_MAX}"),
        ({"seed": "lucky"}, "seed", "'random'"),
        ({"batch_size": 0}, "batch_size", "1 to 64"),
        ({"batch_count": 0}, "batch_count", "1 to 10000"),
        ({"scheduler": "Heun"}, "scheduler", "Euler a"),
        ({"preview_method": "fast"}, "preview_method", "latent2rgb"),
        ({"preview_interval": 0}, "preview_interval", "1 to 150"),
        ({"guidance_cutoff": 0.0}, "guidance_cutoff", "0.05 to 1"),
        ({"prompt": None}, "prompt", "str"),
    ],
)
def test_validate_names_field_value_and_allowed(changes: dict, field: str, allowed: str) -> None:
    params = GenerationParams(prompt="x").replace(**changes)
    with pytest.raises(ValueError) as excinfo:
        params.validate()
    message = str(excinfo.value)
    assert message.startswith(f"{field}:")
    assert allowed in message
    bad_value = next(iter(changes.values()))
    if not isinstance(bad_value, float) or bad_value == bad_value:
        assert str(bad_value) in message or repr(bad_value) in message


def test_bool_is_not_a_step_count() -> None:
    with pytest.raises(ValueError, match="steps"):
        GenerationParams(prompt="x", steps=True).validate()


def test_random_seed_is_resolved_to_a_concrete_seed() -> None:
    seeds = {GenerationParams(prompt="x").resolved().seed for _ in range(20)}
    assert all(isinstance(s, int) and 0 <= s <= SEED_MAX for s in seeds)
    assert len(seeds) > 1
    fixed = GenerationParams(prompt="x", seed=42)
    assert fixed.resolved() is fixed


def test_one_seed_per_image_wraps_at_2_32() -> None:
    params = GenerationParams(prompt="x", seed=SEED_MAX - 1, batch_size=2, batch_count=2)
    assert [params.seed_for(i) for i in range(params.image_count)] == [SEED_MAX - 1, SEED_MAX, 0, 1]
    with pytest.raises(ValueError, match="resolved"):
        GenerationParams(prompt="x").seed_for(0)


def test_json_round_trip() -> None:
    params = GenerationParams(
        prompt='a star, "quoted"\nsecond line ✨',
        negative_prompt="blurry",
        model="/models/x",
        scheduler="DPM++ 2M Karras",
        steps=33,
        guidance_scale=4.5,
        width=768,
        height=512,
        seed=123,
        batch_size=2,
        batch_count=3,
        preview_method="vae",
        preview_interval=4,
    )
    assert GenerationParams.from_json(params.to_json()) == params


def test_from_dict_rejects_bad_input_clearly_and_ignores_unknown_keys() -> None:
    assert GenerationParams.from_dict({"prompt": "x", "future_field": 1}).prompt == "x"
    with pytest.raises(ValueError, match="prompt: missing"):
        GenerationParams.from_dict({"steps": 3})
    with pytest.raises(ValueError, match="steps: 0 is out of range"):
        GenerationParams.from_dict({"prompt": "x", "steps": 0})
    with pytest.raises(ValueError, match="not valid JSON"):
        GenerationParams.from_json("{")
    with pytest.raises(ValueError, match="expected a JSON object"):
        GenerationParams.from_dict(json.loads("[1]"))
