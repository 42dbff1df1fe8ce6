"""The ldstudio/v1 wire form of events: every event class round-trips through JSON."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import numpy as np
import pytest

from ldstudio.core import events
from ldstudio.core.events import (
    EngineFailed,
    EngineNotice,
    EngineReady,
    ImageRecord,
    JobCancelled,
    JobCancelling,
    JobFailed,
    JobFinished,
    JobStarted,
    ModelLoading,
    ModelReady,
    StageStarted,
    StepProgress,
)
from ldstudio.core.params import GenerationParams
from ldstudio.core.wire import EVENT_TYPES, decode_event, encode_event

PARAMS = GenerationParams(
    prompt="a red fox, <lora:fur:0.5>",
    negative_prompt="blurry",
    seed=1234,
    width=512,
    height=384,
    loras=(("fur.safetensors", 0.5),),
    seed_resize_from=(256, 256),
    styles=("cinematic",),
    variation_seed=7,
    variation_strength=0.25,
)


def _record(index: int) -> ImageRecord:
    return ImageRecord(
        path=Path("/server/library/2026-12-03") / f"00012-{1234 + index}.png",
        params=PARAMS.replace(seed=1234 + index),
        seed=1234 + index,
        index=index,
        width=512,
        height=384,
        model_name="tiny",
        device="cuda",
        dtype="float16",
        seconds=1.2345678,
    )


SAMPLES = [
    EngineReady(label="CUDA · fp16", device="cuda", dtype="float16"),
    EngineFailed(message="No GPU found."),
    ModelLoading(model="tiny", device="cpu", dtype="float32"),
    ModelReady(
        model="tiny", family="sd15", device="cpu", dtype="float32", seconds=0.5, cached=True
    ),
    JobStarted(
        job_id=3, params=PARAMS, device="cpu", dtype="float32", total_steps=20, image_count=2
    ),
    StepProgress(job_id=3, batch_index=1, step=4, total=20, elapsed=0.75, it_per_s=5.3, stage=2),
    StageStarted(job_id=3, index=1, count=3, name="upscale", total_steps=0),
    JobCancelling(job_id=3),
    JobFinished(job_id=3, records=(_record(0), _record(1)), seconds=2.5),
    JobFailed(job_id=3, message="Out of memory.", detail="RuntimeError: CUDA OOM"),
    JobCancelled(job_id=3, step=7, saved=(_record(0),)),
    JobCancelled(job_id=4, step=0),
    EngineNotice(message="Warming up", job_id=None),
    EngineNotice(message="Retrying", job_id=5),
]


def _through_json(event: events.Event) -> events.Event:
    return decode_event(json.loads(json.dumps(encode_event(event))))


def test_every_event_class_is_on_the_wire() -> None:
    union = set(typing.get_args(events.Event))
    assert set(EVENT_TYPES.values()) == union
    assert {type(sample) for sample in SAMPLES} == union


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip_through_json(event: events.Event) -> None:
    data = encode_event(event)
    assert data["type"] == type(event).__name__
    back = _through_json(event)
    if isinstance(event, JobFinished | JobCancelled):
        records = event.records if isinstance(event, JobFinished) else event.saved
        # The path travels as its file name only.
        expected = dataclasses.replace(
            event,
            **{
                "records" if isinstance(event, JobFinished) else "saved": tuple(
                    dataclasses.replace(r, path=Path(r.path.name)) for r in records
                )
            },
        )
        assert back == expected
    else:
        assert back == event


def test_record_path_is_the_file_name_only() -> None:
    data = encode_event(JobFinished(job_id=1, records=(_record(0),), seconds=1.0))
    assert data["records"][0]["path"] == "00012-1234.png"
    assert "/server" not in json.dumps(data)


def test_params_round_trip_keeps_tuples_and_types() -> None:
    back = _through_json(
        JobStarted(
            job_id=1, params=PARAMS, device="cpu", dtype="float32", total_steps=5, image_count=1
        )
    )
    assert isinstance(back, JobStarted)
    assert back.params == PARAMS
    assert back.params.loras == (("fur.safetensors", 0.5),)
    assert back.params.seed_resize_from == (256, 256)


def test_preview_travels_as_jpeg_and_comes_back_as_an_rgb_array() -> None:
    yy, xx = np.mgrid[0:48, 0:64]
    preview = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).astype(np.uint8)
    event = StepProgress(
        job_id=1, batch_index=0, step=1, total=2, elapsed=0.1, it_per_s=10.0, preview=preview
    )
    data = encode_event(event)
    assert "preview" not in data
    assert isinstance(data["preview_jpeg"], str)
    back = _through_json(event)
    assert isinstance(back, StepProgress)
    assert back.preview is not None
    assert back.preview.dtype == np.uint8
    assert back.preview.shape == (48, 64, 3)
    # JPEG at quality 85 is lossy but close on a smooth gradient.
    error = np.abs(back.preview.astype(int) - preview.astype(int)).mean()
    assert 0 < error < 3


def test_no_preview_is_null() -> None:
    event = StepProgress(job_id=1, batch_index=0, step=1, total=2, elapsed=0.1, it_per_s=10.0)
    assert encode_event(event)["preview_jpeg"] is None
    back = _through_json(event)
    assert isinstance(back, StepProgress)
    assert back.preview is None


def test_bad_preview_array_is_refused() -> None:
    event = StepProgress(
        job_id=1,
        batch_index=0,
        step=1,
        total=2,
        elapsed=0.1,
        it_per_s=10.0,
        preview=np.zeros((4, 4), dtype=np.float32),
    )
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        encode_event(event)


def test_unknown_fields_are_ignored_and_defaults_fill_in() -> None:
    back = decode_event({"type": "JobCancelled", "job_id": 2, "step": 3, "from_the_future": 1})
    assert back == JobCancelled(job_id=2, step=3)
    back = decode_event({"type": "EngineNotice", "message": "hi"})
    assert back == EngineNotice(message="hi")


def test_ints_are_accepted_for_floats() -> None:
    back = decode_event({"type": "JobFinished", "job_id": 1, "records": [], "seconds": 2})
    assert isinstance(back, JobFinished)
    assert back.seconds == 2.0
    assert isinstance(back.seconds, float)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a JSON object"),
        ({"type": "Nope"}, "'Nope' is not known; allowed: EngineReady"),
        ({"job_id": 1}, "None is not known"),
        ({"type": "JobCancelling"}, r"JobCancelling.job_id: missing"),
        ({"type": "JobCancelling", "job_id": "1"}, r"JobCancelling.job_id: '1' is not a int"),
        ({"type": "JobCancelling", "job_id": True}, "is not a int"),
        ({"type": "JobCancelling", "job_id": None}, "null is not allowed"),
        (
            {
                "type": "ModelReady",
                "model": "m",
                "family": "f",
                "device": "d",
                "dtype": "t",
                "seconds": 1.0,
                "cached": 1,
            },
            "ModelReady.cached: 1 is not a bool",
        ),
        (
            {
                "type": "JobStarted",
                "job_id": 1,
                "params": {"prompt": "x", "steps": 0},
                "device": "d",
                "dtype": "t",
                "total_steps": 1,
                "image_count": 1,
            },
            "JobStarted.params: steps: 0 is out of range",
        ),
        (
            {"type": "JobFinished", "job_id": 1, "records": {}, "seconds": 1.0},
            "JobFinished.records: expected a list",
        ),
        (
            {
                "type": "StepProgress",
                "job_id": 1,
                "batch_index": 0,
                "step": 1,
                "total": 1,
                "elapsed": 0.1,
                "it_per_s": 1.0,
                "preview_jpeg": "not base64!",
            },
            "StepProgress.preview_jpeg: not a base64 JPEG",
        ),
    ],
)
def test_bad_input_names_the_field(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_event(data)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["../evil.png", "a/b.png", "", ".."])
def test_a_record_path_that_is_not_a_bare_name_is_refused(path: str) -> None:
    data = encode_event(JobFinished(job_id=1, records=(_record(0),), seconds=1.0))
    data["records"][0]["path"] = path
    with pytest.raises(ValueError, match=r"records\[0\].path"):
        decode_event(data)


def test_a_png_is_not_a_jpeg_preview() -> None:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    data = encode_event(
        StepProgress(job_id=1, batch_index=0, step=1, total=1, elapsed=0.1, it_per_s=1.0)
    )
    data["preview_jpeg"] = base64.b64encode(buffer.getvalue()).decode()
    with pytest.raises(ValueError, match="expected a JPEG image, got PNG"):
        decode_event(data)


def test_a_non_event_is_refused() -> None:
    with pytest.raises(TypeError, match="is not an ldstudio event"):
        encode_event(PARAMS)  # type: ignore[arg-type]
