"""The core halves of issue 12.4: one message per bad field, values not applied, the kept queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ldstudio.core.inpaint import InpaintSettings, canvas_size_problem
from ldstudio.core.jobs import load_queue, save_queue
from ldstudio.core.params import GenerationParams, field_problem
from ldstudio.core.readers import ReadResult, parse_a1111_text, unapplied_values
from ldstudio.core.request import Request


def test_field_problem_is_validates_message_and_empty_when_allowed() -> None:
    for name, value in (("steps", 0), ("width", 8192), ("height", 100), ("batch_count", 99999)):
        with pytest.raises(ValueError) as raised:
            GenerationParams(prompt="x").replace(**{name: value}).validate()
        assert field_problem(name, value) == str(raised.value)
    assert field_problem("steps", 150) == "" and field_problem("width", 4096) == ""


def test_every_value_a_tool_wrote_beyond_the_fields_is_listed() -> None:
    result = parse_a1111_text(
        "a cat\nSteps: 5, Sampler: Euler a, Seed: 1, Size: 64x64, Clip skip: 2, "
        "Model: m, ENSD: 31337"
    )
    # Clip skip is applied since #17; ENSD (an A1111 noise setting) is not.
    assert unapplied_values(result) == [("ENSD", "31337")]
    assert result.params is not None and result.params.clip_skip == 2
    # A sampler ldstudio has no equivalent for is not applied either: it is listed.
    odd = parse_a1111_text("a cat\nSteps: 5, Sampler: Heun++ Turbo, Seed: 1")
    assert ("Sampler", "Heun++ Turbo") in unapplied_values(odd)
    # The raw graph and the name ldstudio writes beside its own parameters are no settings.
    graph = ReadResult(source="comfyui", fields={"prompt": "x"}, extra={"prompt_graph": {}})
    assert unapplied_values(graph) == []
    invoke = ReadResult(
        source="invokeai",
        fields={"prompt": "x", "steps": 3},
        extra={"positive_prompt": "x", "steps": 3, "hrf_enabled": True},
    )
    assert unapplied_values(invoke) == [("hrf_enabled", "true")]


def test_the_queue_is_kept_and_read_back_exactly(tmp_path: Path) -> None:
    target = tmp_path / "queue.json"
    params = GenerationParams(prompt="a", seed=5, loras=(("/l.safetensors", 0.5),))
    inpaint = Request.inpainting(params, InpaintSettings(outpaint=(8, 0, 0, 0)), "ab" * 32)
    save_queue([params, inpaint], target)
    # Kept whole: an inpaint job comes back as one, not as a txt2img of its params.
    assert load_queue(target) == [Request.txt2img(params), inpaint]
    # A txt2img job is kept in the form older versions read.
    assert json.loads(target.read_text())["jobs"][0] == json.loads(params.to_json())
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temp file, renamed
    save_queue([], target)
    assert not target.exists() and load_queue(target) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"format": 2, "jobs": []}', "format 2 is not supported; allowed: 1"),
        ('{"format": 1}', 'expected an object with a "jobs" list'),
        (json.dumps({"format": 1, "jobs": [{"prompt": "x", "width": 13}]}), "job 1: width: 13"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_a_broken_queue_file_is_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    target = tmp_path / "queue.json"
    target.write_text(text)
    with pytest.raises(ValueError, match=str(target)) as raised:
        load_queue(target)
    assert message in str(raised.value)


def test_canvas_size_problem_names_the_size_and_the_rule() -> None:
    whole = InpaintSettings()
    masked = InpaintSettings(inpaint_area="masked")
    assert canvas_size_problem((512, 512), whole, masked=True, sized=False) is None
    assert canvas_size_problem((5000, 300), whole, masked=True, sized=True) is None  # --size
    assert canvas_size_problem((5000, 300), masked, masked=True, sized=False) is None
    # "Only masked" with nothing masked is img2img: the whole picture runs at its size.
    assert canvas_size_problem((5000, 300), masked, masked=False, sized=False) == (
        "is 5000x300, and the whole picture runs at that size; allowed: 64 to 4096 pixels a side"
    )
    wide = InpaintSettings(inpaint_area="masked", outpaint=(0, 0, 2048, 0))
    assert canvas_size_problem((8000, 300), wide, masked=True, sized=True) == (
        "is 8000x300 (10048x300 with outpaint 0,0,2048,0); allowed: at most 8192 pixels a side"
    )
