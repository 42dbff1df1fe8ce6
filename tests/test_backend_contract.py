"""One contract, every backend: the same event-sequence assertions over the diffusers backend
(the tiny model, CPU) and FakeBackend, by iterating `execute(request, cancel)` directly.

The contract (ldstudio/core/backend.py): model events, then one StageStarted with resolved
params, then per pipeline call its Steps 1..total in order followed by its ImageResults, each
with its own seed and batch size 1; a cancel ends the stream with Cancelled and nothing after
it; a backend writes no file; it is the service that saves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ldstudio.core.backend import BackendEvent, ImageResult, JobError, StageStarted, Step
from ldstudio.core.events import ModelLoading, ModelReady
from ldstudio.core.jobs import Cancelled, CancelToken, Job
from ldstudio.core.params import GenerationParams

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


@dataclass
class Subject:
    name: str
    backend: Any
    params: GenerationParams


@pytest.fixture(params=["diffusers", "fake"])
def subject(request: pytest.FixtureRequest, tiny_model: Path) -> Subject:
    if request.param == "diffusers":
        backend = request.getfixturevalue("backend")  # the session's, on the tiny model
        model = str(tiny_model)
    else:
        from ldstudio.engine.fake import FakeBackend

        backend = FakeBackend()
        model = ""
    if not hasattr(backend, "execute"):
        pytest.skip(f"{type(backend).__name__} does not implement execute() yet")
    params = GenerationParams(prompt="a red circle", model=model, steps=3, seed=77)
    return Subject(request.param, backend, params)


def drive(
    backend: Any,
    params: GenerationParams,
    cancel: CancelToken | None = None,
    on_event: Callable[[BackendEvent, CancelToken], None] | None = None,
) -> tuple[list[BackendEvent], Exception | None]:
    """Iterate one job as the service does (its request resolved by Job.create)."""
    token = cancel or CancelToken()
    events: list[BackendEvent] = []
    try:
        for event in backend.execute(Job.create(params).request, token):
            events.append(event)
            if on_event is not None:
                on_event(event, token)
    except Exception as exc:
        return events, exc
    return events, None


def of(kind: type, events: list[BackendEvent]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def test_model_then_stage_then_steps_and_images_in_order(subject: Subject) -> None:
    params = subject.params.replace(batch_size=2, batch_count=2)
    events, error = drive(subject.backend, params)
    assert error is None, error
    kinds = [type(e) for e in events]
    (stage,) = of(StageStarted, events)
    at = kinds.index(StageStarted)
    assert ModelReady in kinds[:at]
    assert all(k not in (ModelLoading, ModelReady) for k in kinds[at:])
    # Resolved: a concrete seed and size; the job's shape as asked.
    assert isinstance(stage.params.seed, int) and stage.params.seed == 77
    assert isinstance(stage.params.width, int) and stage.params.width > 0
    assert isinstance(stage.params.height, int) and stage.params.height > 0
    assert (stage.params.batch_size, stage.params.batch_count) == (2, 2)
    assert stage.total_steps == params.steps and stage.image_count == 4
    assert (stage.index, stage.count) == (0, 1)

    steps = of(Step, events)
    total = steps[0].total
    assert total >= params.steps and all(s.total == total for s in steps)
    assert [(s.batch_index, s.step) for s in steps] == [
        (b, k) for b in range(2) for k in range(1, total + 1)
    ]
    assert all(s.stage == 0 and s.elapsed >= 0 and s.it_per_s >= 0 for s in steps)
    frames = [s.preview for s in steps if s.preview is not None]
    assert frames and all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)

    images = of(ImageResult, events)
    assert [r.params.seed for r in images] == [77, 78, 79, 80]
    assert [r.index for r in images] == [0, 1, 2, 3]
    assert all((r.params.batch_size, r.params.batch_count) == (1, 1) for r in images)
    assert all(
        r.params.replace(seed=77, batch_size=2, batch_count=2) == stage.params for r in images
    )
    assert all(r.image.size == (stage.params.width, stage.params.height) for r in images)
    assert all(isinstance(r.model_name, str) and r.model_name and r.seconds >= 0 for r in images)
    # Each pipeline call's images come after its last step and before the next call's first.
    calls = [
        (e.batch_index, 0) if isinstance(e, Step) else (e.index // 2, 1)
        for e in events
        if isinstance(e, Step | ImageResult)
    ]
    assert calls == sorted(calls)


def test_previews_off_yields_steps_without_frames(subject: Subject) -> None:
    events, error = drive(subject.backend, subject.params.replace(preview_method="none"))
    assert error is None, error
    steps = of(Step, events)
    assert steps and all(s.preview is None for s in steps)


def test_a_cancel_on_a_step_ends_the_stream_there(subject: Subject) -> None:
    seen: list[BackendEvent] = []
    seen_at_cancel: list[int] = []

    def cancel_at_2(event: BackendEvent, token: CancelToken) -> None:
        seen.append(event)
        if isinstance(event, Step) and event.step == 2:
            token.cancel()
            seen_at_cancel.append(len(seen))

    events, error = drive(subject.backend, subject.params.replace(steps=6), on_event=cancel_at_2)
    assert isinstance(error, Cancelled)
    # The last completed step: the one the cancel answered, or the one running then.
    assert error.step in (2, 3)
    assert seen_at_cancel == [len(events)]  # nothing at all after the cancel
    assert not of(ImageResult, events)
    # The backend serves the next job.
    events, error = drive(subject.backend, subject.params)
    assert error is None and len(of(ImageResult, events)) == 1


def test_a_cancel_between_pipeline_calls_keeps_the_images_before_it(subject: Subject) -> None:
    def cancel_on_first_image(event: BackendEvent, token: CancelToken) -> None:
        if isinstance(event, ImageResult):
            token.cancel()

    events, error = drive(
        subject.backend, subject.params.replace(batch_count=3), on_event=cancel_on_first_image
    )
    assert isinstance(error, Cancelled)
    assert isinstance(events[-1], ImageResult) and len(of(ImageResult, events)) == 1


def test_cancelled_before_start_yields_nothing(subject: Subject) -> None:
    token = CancelToken()
    token.cancel()
    events, error = drive(subject.backend, subject.params, token)
    assert events == []
    assert error is None or (isinstance(error, Cancelled) and error.step == 0), error


def test_closing_the_stream_early_stops_the_job_and_the_next_one_runs(subject: Subject) -> None:
    request = Job.create(subject.params.replace(steps=20)).request
    stream = subject.backend.execute(request, CancelToken())
    for event in stream:
        assert not isinstance(event, ImageResult)
        if isinstance(event, Step):
            break
    stream.close()  # what the service does when its sink fails
    events, error = drive(subject.backend, subject.params)
    assert error is None, error
    assert [r.params.seed for r in of(ImageResult, events)] == [77]


def test_execute_writes_no_file(
    subject: Subject, ldstudio_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    events, error = drive(subject.backend, subject.params.replace(batch_size=2))
    assert error is None, error
    assert len(of(ImageResult, events)) == 2
    written = [p for p in tmp_path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    assert written == [], written
    assert not (ldstudio_home / "images").exists()


def test_a_missing_model_is_a_job_error_naming_it(subject: Subject, tmp_path: Path) -> None:
    if subject.name == "fake":
        pytest.skip("FakeBackend fakes models by name: it has no model path to check")
    missing = tmp_path / "no-such-model"
    events, error = drive(subject.backend, subject.params.replace(model=str(missing)))
    assert isinstance(error, JobError) and str(missing) in str(error)
    assert not of(StageStarted, events) and not of(ImageResult, events)
