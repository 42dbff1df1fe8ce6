"""The draft carries clip skip, emphasis, the variation seed, seed resize and styles; styles are
taken back out of a reused prompt (A1111's behaviour) and applied again on submit."""

from __future__ import annotations

import pytest

from ldstudio.core.draft import Draft
from ldstudio.core.params import GenerationParams
from ldstudio.core.prompts import Style, apply_styles
from ldstudio.core.prompts.style_split import split_styles, unmerge_style_text

WRAP = Style("cinematic", "cinematic still of {prompt}, film grain", "cartoon, {prompt}")
TAIL = Style("sharp", "highly detailed, sharp focus", "blurry")
NEGATIVE_ONLY = Style("clean", "", "watermark, text")
KNOWN = (WRAP, TAIL, NEGATIVE_ONLY)


def newer_fields() -> GenerationParams:
    return GenerationParams(
        prompt="a lighthouse",
        negative_prompt="fog",
        seed=11,
        clip_skip=2,
        emphasis="no-norm",
        variation_seed=4_000_000_000,
        variation_strength=0.25,
        seed_resize_from=(512, 448),
        styles=("unknown style",),
    )


def test_the_newer_fields_are_draft_values_and_round_trip() -> None:
    params = newer_fields()
    draft = Draft(params)
    values = draft.values
    assert (values.clip_skip, values.emphasis) == (2, "no-norm")
    assert (values.variation_seed, values.variation_strength) == (4_000_000_000, 0.25)
    assert values.seed_resize_from == (512, 448)
    assert values.styles == ("unknown style",) and values.picked_styles == ()
    assert draft.to_params() == params
    # Edited here, they reach the request, and a wrong one is refused in the CLI's words.
    draft.update(clip_skip=3, variation_seed=None, variation_strength=0.0)
    assert draft.to_params() == params.replace(
        clip_skip=3, variation_seed=None, variation_strength=0.0
    )
    draft.update(clip_skip=13)
    assert draft.problems() == {"clip_skip": "clip_skip: 13 is out of range; allowed: 1 to 12"}
    with pytest.raises(ValueError, match=r"^clip_skip: 13"):
        draft.to_params()


def test_a_change_of_the_newer_fields_is_heard() -> None:
    draft = Draft()
    heard: list[frozenset[str]] = []
    draft.subscribe(heard.append)
    draft.load(newer_fields())
    fields = {"clip_skip", "emphasis", "variation_seed", "variation_strength"}
    assert fields | {"seed_resize_from", "styles"} <= heard[0]


def test_picked_styles_are_applied_on_submit_and_named_after_the_kept_ones() -> None:
    draft = Draft(GenerationParams(prompt="a cat", negative_prompt="ugly", styles=("old",)))
    draft.update(picked_styles=(WRAP, TAIL))
    params = draft.to_params()
    expected = apply_styles("a cat", "ugly", (WRAP, TAIL))
    assert (params.prompt, params.negative_prompt) == expected
    assert params.prompt == "cinematic still of a cat, film grain, highly detailed, sharp focus"
    assert params.styles == ("old", "cinematic", "sharp")
    assert draft.values.prompt == "a cat"  # the box keeps the user's own words


def test_reuse_takes_known_styles_back_out_of_the_prompts() -> None:
    draft = Draft()
    draft.set_known_styles(KNOWN)
    prompt, negative = apply_styles("a cat", "ugly", (WRAP, TAIL, NEGATIVE_ONLY))
    image = GenerationParams(
        prompt=prompt, negative_prompt=negative, styles=("cinematic", "sharp", "clean")
    )
    draft.load(image)
    values = draft.values
    assert (values.prompt, values.negative_prompt) == ("a cat", "ugly")
    assert values.picked_styles == (WRAP, TAIL, NEGATIVE_ONLY) and values.styles == ()
    assert draft.to_params() == image  # generating again makes the same request


def test_a_style_missing_from_styles_csv_is_kept_not_dropped() -> None:
    draft = Draft()
    draft.set_known_styles(KNOWN)
    missing = Style("gone", "oil painting of {prompt}")
    prompt, negative = apply_styles("a cat", "", (missing, TAIL))
    draft.load(GenerationParams(prompt=prompt, negative_prompt=negative, styles=("gone", "sharp")))
    values = draft.values
    # The last applied comes out; the missing one and everything inside it stay as written.
    assert values.prompt == "oil painting of a cat"
    assert values.styles == ("gone",) and values.picked_styles == (TAIL,)
    assert draft.to_params().styles == ("gone", "sharp")
    assert draft.to_params().prompt == prompt


def test_a_style_whose_text_changed_stays_in_the_prompt() -> None:
    draft = Draft()
    draft.set_known_styles(KNOWN)
    before = Style("sharp", "sharp focus")  # styles.csv has another text for it now
    prompt, _negative = apply_styles("a cat", "", (before,))
    draft.load(GenerationParams(prompt=prompt, styles=("sharp",)))
    assert draft.values.prompt == "a cat, sharp focus"
    assert draft.values.styles == ("sharp",) and draft.values.picked_styles == ()
    assert draft.to_params().prompt == "a cat, sharp focus"  # not applied a second time


def test_unmerge_is_the_exact_inverse_or_nothing() -> None:
    assert unmerge_style_text("{prompt}, film", "a cat, film") == "a cat"
    assert unmerge_style_text("{prompt} and {prompt}", "x y and x y") == "x y"
    assert unmerge_style_text("{prompt} and {prompt}", "x and y") is None
    assert unmerge_style_text("film", "film") == ""
    assert unmerge_style_text("film", "a cat, film") == "a cat"
    assert unmerge_style_text("film", "a cat film") is None
    assert unmerge_style_text("", "a cat") == "a cat"
    assert unmerge_style_text("wrapped {prompt} here", "short") is None
    split = split_styles("a, b", "", ("SHARP",), (Style("sharp", "b"),))  # any case, as --style
    assert split.prompt == "a" and [s.name for s in split.picked] == ["sharp"]
