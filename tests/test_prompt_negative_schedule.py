"""Prompt editing and alternation in the negative prompt, as A1111 has them: `[a:b:when]` and
`[a|b]` swap the unconditional half of the guidance at their step; a negative prompt without
them is passed exactly as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ldstudio.core.backend import ImageResult
from ldstudio.core.jobs import CancelToken
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def pipe(tiny_model: Path) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(tiny_model), local_files_only=True)


def params(prompt: str, negative: str) -> GenerationParams:
    return GenerationParams(prompt=prompt, negative_prompt=negative, seed=1)


def test_a_negative_without_editing_syntax_is_passed_as_before(pipe: Any) -> None:
    from ldstudio.engine.prompts import prompt_arguments, scheduled_arguments

    job = params("a red circle", "dog \\[square\\]")
    assert scheduled_arguments(pipe, job, "cpu", 4) == (prompt_arguments(pipe, job, "cpu"), None)
    assert prompt_arguments(pipe, job, "cpu") == {
        "prompt": "a red circle",
        "negative_prompt": "dog [square]",
    }


def test_an_edited_negative_is_encoded_per_part_and_swapped_at_its_step(pipe: Any) -> None:
    from ldstudio.engine.prompts import encode, scheduled_arguments

    kwargs, swap = scheduled_arguments(pipe, params("a red circle", "a [dog:cat:2]"), "cpu", 4)
    assert swap is not None
    assert swap.ends == [4] and swap.negative_ends == [2, 4]
    dog = encode(pipe, params("a red circle", "a dog"), "cpu").kwargs
    cat = encode(pipe, params("a red circle", "a cat"), "cpu").kwargs
    assert torch.allclose(kwargs["negative_prompt_embeds"], dog["negative_prompt_embeds"])
    assert torch.allclose(kwargs["prompt_embeds"], dog["prompt_embeds"])
    assert torch.allclose(swap.negative_embeds[1], cat["negative_prompt_embeds"])

    class Pipe:
        do_classifier_free_guidance = True

    first = {"prompt_embeds": torch.cat([swap.negative_embeds[0], swap.embeds[0]])}
    assert swap(Pipe(), 0, None, dict(first))["prompt_embeds"] is first["prompt_embeds"]
    after = swap(Pipe(), 1, None, dict(first))["prompt_embeds"]  # step 2 done: "cat" next
    assert torch.equal(after, torch.cat([swap.negative_embeds[1], swap.embeds[0]]))


def test_alternation_in_the_negative_changes_every_step(pipe: Any) -> None:
    from ldstudio.engine.prompts import scheduled_arguments

    _kwargs, swap = scheduled_arguments(pipe, params("a [red|blue] circle", "[dog|cat]"), "cpu", 4)
    assert swap is not None
    assert swap.ends == [1, 2, 3, 4] and swap.negative_ends == [1, 2, 3, 4]
    assert torch.equal(swap.negative_embeds[0], swap.negative_embeds[2])
    assert not torch.equal(swap.negative_embeds[0], swap.negative_embeds[1])


def test_the_swap_takes_the_negative_schedule_as_a_pair() -> None:
    from ldstudio.engine.prompts import PromptSwap

    one = torch.zeros(1, 3, 2)
    with pytest.raises(ValueError, match="come together"):
        PromptSwap([4], [one], one, negative_ends=[2, 4])


def test_an_edited_negative_makes_the_images_of_its_parts(tiny_model: Path) -> None:
    from ldstudio.engine.backend import DiffusersBackend

    engine = DiffusersBackend(device="cpu")

    def made(negative: str) -> np.ndarray:
        job = GenerationParams(
            prompt="a red circle",
            negative_prompt=negative,
            model=str(tiny_model),
            steps=4,
            seed=3,
            scheduler="Euler",
            guidance_scale=9.0,
        )
        events = engine.execute(Request.txt2img(job).resolved(), CancelToken())
        [result] = [e for e in events if isinstance(e, ImageResult)]
        return np.asarray(result.image)

    green, blue = made("a green square"), made("a blue square")
    assert not np.array_equal(green, blue)
    assert np.array_equal(made("a [green:blue:4] square"), green)  # swapped after the end
    assert np.array_equal(made("a [green:blue:0.1] square"), blue)  # blue from step 1
    halfway = made("a [green:blue:2] square")
    assert not np.array_equal(halfway, green) and not np.array_equal(halfway, blue)
    engine.close()
