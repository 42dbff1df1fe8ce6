"""The draft being edited: to and from GenerationParams, problems per field, one notice each."""

from __future__ import annotations

import math

import pytest

from ldstudio.core.draft import Draft
from ldstudio.core.params import SEED_MAX, GenerationParams, field_problem


def full_params() -> GenerationParams:
    return GenerationParams(
        prompt="a lighthouse",
        negative_prompt="blurry",
        model="/models/v1-5.safetensors",
        scheduler="DDIM",
        steps=33,
        guidance_scale=3.5,
        width=128,
        height=72,
        seed=SEED_MAX,
        batch_size=3,
        batch_count=2,
        preview_method="none",
        preview_interval=4,
        guidance_cutoff=0.6,
        vae="/vae/ft-mse.safetensors",
        loras=(("/loras/style.safetensors", 0.8),),
    )


def test_params_round_trip_through_the_draft() -> None:
    params = full_params()
    draft = Draft()
    draft.load(params)
    assert draft.to_params() == params
    assert Draft(params).to_params() == params
    assert Draft().to_params() == GenerationParams(prompt="")


def test_a_random_seed_keeps_the_fixed_one_and_reuse_last_takes_the_last_job() -> None:
    draft = Draft(full_params())
    draft.load(GenerationParams(prompt="x"))
    assert draft.to_params().seed == "random"
    assert draft.values.seed == SEED_MAX  # back when Fixed is chosen again
    draft.update(seed_mode="reuse last")
    assert draft.to_params().seed == "random"  # no job has run yet
    draft.update(last_seed=1234)
    assert draft.to_params().seed == 1234
    draft.update(seed_mode="fixed")
    assert draft.to_params().seed == SEED_MAX
    with pytest.raises(ValueError, match="seed_mode"):
        draft.update(seed_mode="sometimes")


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", 0), ("width", 100), ("height", 9000), ("batch_size", 65), ("batch_count", 0)],
)
def test_each_wrong_field_is_named_in_the_clis_words(field: str, value: int) -> None:
    draft = Draft(GenerationParams(prompt="x", width=64, height=64))
    assert draft.problems() == {}
    draft.update(**{field: value})  # kept as typed, not clamped
    assert getattr(draft.values, field) == value
    assert draft.problems() == {field: field_problem(field, value)}
    with pytest.raises(ValueError, match=f"^{field}: {value}"):
        draft.to_params()


def test_problems_come_in_field_order_and_native_size_has_none() -> None:
    draft = Draft()
    draft.update(steps=500, batch_count=0, width=None, height=None)
    assert list(draft.problems()) == ["steps", "batch_count"]
    draft.update(seed_mode="fixed", seed=SEED_MAX + 1)
    assert "seed" in draft.problems()


def test_listeners_hear_once_per_change_with_the_names_that_changed() -> None:
    draft = Draft()
    heard: list[frozenset[str]] = []
    unsubscribe = draft.subscribe(heard.append)
    draft.update(steps=30, guidance_scale=5.0)
    assert heard == [frozenset({"steps", "guidance_scale"})]
    draft.update(steps=30)  # no change, no notice
    draft.update(guidance_scale=5)  # 5 == 5.0
    assert len(heard) == 1
    draft.load(full_params())
    assert len(heard) == 2 and {"prompt", "loras", "seed_mode", "seed"} <= heard[1]
    draft.load(full_params())  # the same again: nothing changed
    assert len(heard) == 2
    unsubscribe()
    unsubscribe()  # twice is harmless
    draft.update(steps=31)
    assert len(heard) == 2


def test_an_editor_writing_back_what_it_was_told_ends_the_exchange() -> None:
    draft = Draft()
    heard: list[frozenset[str]] = []

    # Two views of one draft that each write back what they show (rounded, as a widget with
    # one decimal shows it): each change is heard a bounded number of times, no loop.
    def view(names: frozenset[str]) -> None:
        heard.append(names)
        values = draft.values
        draft.update(guidance_scale=round(values.guidance_scale, 1), steps=values.steps)

    draft.subscribe(view)
    draft.subscribe(view)
    draft.update(guidance_scale=7.25)
    assert draft.values.guidance_scale == 7.2
    assert len(heard) <= 4
    heard.clear()
    draft.update(guidance_scale=math.nan)  # never equal to itself: still no endless exchange
    assert len(heard) <= 4


def test_unknown_fields_pass_through_from_the_last_load() -> None:
    params = full_params()
    draft = Draft(params)
    draft.update(steps=12)
    assert draft.to_params() == params.replace(steps=12)
    with pytest.raises(TypeError):
        draft.update(no_such_field=1)
