"""The step hook's pieces, each alone, and the relay that streams their events (no model)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch

from ldstudio.core.backend import Step
from ldstudio.core.events import EngineNotice
from ldstudio.core.jobs import Cancelled, CancelToken
from ldstudio.core.params import GenerationParams
from ldstudio.engine.callbacks import (
    CancelCheck,
    FinalLatents,
    GuidanceCutoff,
    Preview,
    Progress,
    StepCallbacks,
    X0Tap,
)
from ldstudio.engine.relay import Relay, TorchThread


class Pipe:
    _callback_tensor_inputs = ("latents", "prompt_embeds")  # an SD 1.x pipeline's
    _guidance_scale = 7.5


def run_steps(callbacks: Any, steps: int, pipe: Any = None, **tensors: Any) -> dict[str, Any]:
    kwargs = dict(tensors)
    for index in range(steps):
        kwargs = callbacks(pipe or Pipe(), index, 999 - index, kwargs)
    return kwargs


def test_callbacks_run_their_pieces_in_order_and_declare_each_tensor_once() -> None:
    calls: list[str] = []

    class Piece:
        def __init__(self, name: str, tensor_inputs: tuple[str, ...]) -> None:
            self.name, self.tensor_inputs = name, tensor_inputs

        def __call__(self, pipe: Any, index: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            calls.append(f"{self.name}{index}")
            return {**kwargs, self.name: index}

    callbacks = StepCallbacks(
        [Piece("a", ("latents",)), None, Piece("b", ("prompt_embeds", "latents"))]
    )
    assert callbacks.tensor_inputs == ["latents", "prompt_embeds"]
    assert run_steps(callbacks, 2) == {"a": 1, "b": 1}
    assert calls == ["a0", "b0", "a1", "b1"]


def test_cancel_check_stops_at_the_step_it_is_asked_to() -> None:
    token = CancelToken()
    check = CancelCheck(token.raise_if_cancelled)
    assert check.tensor_inputs == ()
    assert run_steps(check, 3) == {}
    token.cancel()
    with pytest.raises(Cancelled) as raised:
        check(Pipe(), 3, 0, {})
    assert raised.value.step == 4  # the 0-based index 3 is step 4, just completed


def test_guidance_cutoff_drops_the_unconditional_half_at_its_step() -> None:
    params = GenerationParams(prompt="x", guidance_scale=7.0, guidance_cutoff=0.5)
    pipe = Pipe()
    cutoff = GuidanceCutoff.for_pipe(pipe, params, total_steps=6)
    assert cutoff is not None and (cutoff.step, cutoff.tensor_inputs) == (3, ("prompt_embeds",))
    embeds = torch.arange(4.0).view(2, 2)  # [unconditional; conditional]
    kwargs = {"prompt_embeds": embeds}
    for index in range(2):
        kwargs = cutoff(pipe, index, 0, kwargs)
    assert kwargs["prompt_embeds"] is embeds and pipe._guidance_scale == 7.5
    kwargs = cutoff(pipe, 2, 0, kwargs)
    assert kwargs["prompt_embeds"].tolist() == [[2.0, 3.0]] and pipe._guidance_scale == 0.0
    assert GuidanceCutoff.for_pipe(pipe, params.replace(guidance_cutoff=1.0), 6) is None
    assert GuidanceCutoff.for_pipe(pipe, params.replace(guidance_scale=1.0), 6) is None


def test_final_latents_are_kept_from_the_last_step_only() -> None:
    final = FinalLatents(total_steps=3)
    assert final.tensor_inputs == ("latents",)
    seen = [torch.full((1,), float(i)) for i in range(3)]
    for index, latents in enumerate(seen):
        final(Pipe(), index, 0, {"latents": latents})
        assert (final.latents is latents) == (index == 2)
    assert final.take() is seen[2] and final.take() is None


def test_preview_every_interval_steps_and_progress_carries_it() -> None:
    class Tap:
        x0: torch.Tensor | None = None

    tap = Tap()
    frames: list[torch.Tensor] = []

    def previewer(x0: torch.Tensor) -> np.ndarray:
        frames.append(x0)
        return np.zeros((2, 2, 3), np.uint8)

    preview = Preview(tap, previewer, interval=2)  # type: ignore[arg-type]
    sent: list[Step] = []
    progress = Progress(sent.append, 4, batch_index=1, stage=2, preview=preview)
    callbacks = StepCallbacks([preview, progress])
    callbacks(Pipe(), 1, 0, {})  # step 2, but nothing tapped yet
    tap.x0 = torch.zeros(1, 4, 2, 2)
    for index in range(4):
        callbacks(Pipe(), index, 0, {})
    assert len(frames) == 2
    assert [(s.step, s.preview is not None) for s in sent] == [
        (2, False),
        (1, False),
        (2, True),
        (3, False),
        (4, True),
    ]
    assert {(s.batch_index, s.stage, s.total) for s in sent} == {(1, 2, 4)}
    assert all(s.elapsed >= 0 and s.it_per_s >= 0 for s in sent)


def test_x0_tap_reads_the_schedulers_clean_estimate_and_changes_nothing() -> None:
    from diffusers import EulerDiscreteScheduler

    tapped, plain = EulerDiscreteScheduler(), EulerDiscreteScheduler()
    tap = X0Tap(tapped)
    for scheduler in (tapped, plain):
        scheduler.set_timesteps(4)
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    output = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    t = tapped.timesteps[0]
    got = tapped.step(output, t, sample, return_dict=False)
    want = plain.step(output, t, sample)
    assert torch.equal(got[0], want.prev_sample)
    assert tap.x0 is not None and torch.equal(tap.x0, want.pred_original_sample)


# -- the relay ------------------------------------------------------------------------------


def test_relay_streams_in_order_and_re_raises_how_the_job_ended() -> None:
    relay = Relay(CancelToken())
    events = [EngineNotice("a"), EngineNotice("b")]
    for event in events:
        relay.send(event)
    relay.finish(None)
    assert list(relay.stream()) == events

    failing = Relay(CancelToken())
    failing.send(EngineNotice("a"))
    failing.finish(ValueError("boom"))
    stream = failing.stream()
    assert next(stream) == EngineNotice("a")
    with pytest.raises(ValueError, match="boom"):
        next(stream)


def test_a_cancel_made_on_seeing_a_step_is_honoured_at_the_next_check() -> None:
    token = CancelToken()
    relay = Relay(token)
    reached: list[int] = []

    def torch_side() -> None:
        try:
            for step in range(1, 100):
                relay.check(step - 1)
                reached.append(step)
                relay.send(Step(0, step, 99, 0.0, 0.0))
            relay.finish(None)
        except Cancelled as exc:
            relay.finish(exc)

    worker = threading.Thread(target=torch_side)
    worker.start()
    seen = []
    with pytest.raises(Cancelled) as raised:
        for event in relay.stream():
            seen.append(event.step)  # type: ignore[union-attr]
            if event.step == 3:  # type: ignore[union-attr]
                token.cancel()
    worker.join(10)
    # However fast the torch side: not one step beyond the one the cancel answered.
    assert seen == [1, 2, 3] and reached == [1, 2, 3] and raised.value.step == 3


def test_closing_the_stream_early_stops_the_torch_side_and_waits_for_it() -> None:
    relay = Relay(CancelToken())
    ended: list[str] = []

    def torch_side() -> None:
        try:
            for step in range(1, 10_000):
                relay.check(step - 1)
                relay.send(Step(0, step, 9999, 0.0, 0.0))
        except Cancelled:
            ended.append("cancelled")
        relay.finish(None)

    worker = threading.Thread(target=torch_side)
    worker.start()
    stream = relay.stream()
    assert next(stream).step == 1  # type: ignore[union-attr]
    stream.close()  # returns only once the torch side has ended
    assert ended == ["cancelled"]
    worker.join(10)
    assert not worker.is_alive()


def test_torch_thread_runs_calls_in_order_on_one_daemon_thread() -> None:
    thread = TorchThread()
    names = [thread.call(lambda: threading.current_thread().name) for _ in range(3)]
    assert names == ["ldstudio-torch"] * 3 and thread.thread is not None and thread.thread.daemon
    # A call made from the torch thread runs inline instead of waiting on itself.
    assert thread.call(lambda: thread.call(lambda: 7)) == 7
    with pytest.raises(ZeroDivisionError):
        thread.call(lambda: 1 / 0)
    first = thread.thread
    thread.close()
    assert not first.is_alive() and thread.thread is None
    assert thread.call(lambda: 1) == 1  # a later call starts it again
    thread.close()
