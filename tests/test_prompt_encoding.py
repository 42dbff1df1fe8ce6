"""A1111 prompts on a tiny CLIP: a plain prompt stays text (today's pixels), weights and BREAK
and long prompts are encoded in 75-token chunks (never truncated), the negative prompt padded
to match, the mean restored, clip skip taken from the right layer."""

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


def params(prompt: str, **changes: Any) -> GenerationParams:
    return GenerationParams(prompt=prompt, seed=1, **changes)


def test_a_plain_prompt_goes_to_the_pipeline_as_text(pipe: Any) -> None:
    from ldstudio.engine.prompts import prompt_arguments

    assert prompt_arguments(pipe, params("a red circle", negative_prompt="dog"), "cpu") == {
        "prompt": "a red circle",
        "negative_prompt": "dog",
    }
    # An explicit weight of 1 is no syntax either.
    assert "prompt" in prompt_arguments(pipe, params("a (red:1.0) circle"), "cpu")


def test_a_200_token_prompt_makes_3_chunks_and_the_negative_is_padded(pipe: Any) -> None:
    from ldstudio.engine.prompts import encode

    long = " ".join(["cat"] * 200)  # one token each in the tiny vocabulary
    encoded = encode(pipe, params(long, negative_prompt="dog"), "cpu")
    assert encoded.chunks == 3
    assert encoded.kwargs["prompt_embeds"].shape == (1, 231, 32)
    assert encoded.kwargs["negative_prompt_embeds"].shape == (1, 231, 32)


def test_the_first_chunk_of_a_plain_prompt_is_what_the_pipeline_encodes(pipe: Any) -> None:
    from ldstudio.engine.prompts import encode

    ours = encode(pipe, params("a red circle BREAK blue"), "cpu").kwargs["prompt_embeds"]
    theirs, _negative = pipe.encode_prompt("a red circle", "cpu", 1, False)
    # Chunk 1 is "a red circle" padded: exactly diffusers' encoding of that text.
    assert ours.shape == (1, 154, 32)
    assert torch.allclose(ours[:, :77], theirs, atol=1e-6)


def test_original_emphasis_restores_the_mean_and_no_norm_does_not(pipe: Any) -> None:
    from ldstudio.engine.prompts import encode

    plain = encode(pipe, params("a red circle", clip_skip=2), "cpu").kwargs["prompt_embeds"]
    weighted = encode(pipe, params("a (red:1.5) circle", clip_skip=2), "cpu").kwargs
    no_norm = encode(pipe, params("a (red:1.5) circle", clip_skip=2, emphasis="no-norm"), "cpu")
    heavy, raw = weighted["prompt_embeds"], no_norm.kwargs["prompt_embeds"]
    assert float(heavy.mean()) == pytest.approx(float(plain.mean()), rel=1e-5)
    assert not torch.allclose(heavy, plain) and not torch.allclose(raw, heavy)
    # No norm: the weighted token is exactly 1.5 × its plain embedding.
    red = 1 + 1  # BOS, "a", then "red"
    assert torch.allclose(raw[0, red], plain[0, red] * 1.5, atol=1e-6)


def test_clip_skip_uses_the_layer_before_through_the_final_norm(pipe: Any) -> None:
    from ldstudio.engine.prompts import encode

    skipped = encode(pipe, params("a red circle", clip_skip=2), "cpu").kwargs["prompt_embeds"]
    ids = pipe.tokenizer("a red circle", padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        states = pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        expected = pipe.text_encoder.final_layer_norm(states)
    assert torch.allclose(skipped[:, :77], expected, atol=1e-6)


def test_comfy_emphasis_weighs_against_the_empty_prompt(pipe: Any) -> None:
    from ldstudio.engine.prompts import encode

    plain = encode(pipe, params("a red", clip_skip=2), "cpu").kwargs["prompt_embeds"]
    comfy = encode(pipe, params("a (red:2)", clip_skip=2, emphasis="comfy"), "cpu")
    empty = encode(pipe, params("", clip_skip=2), "cpu").kwargs["prompt_embeds"]
    red = 2
    expected = empty[0, red] + (plain[0, red] - empty[0, red]) * 2
    assert torch.allclose(comfy.kwargs["prompt_embeds"][0, red], expected, atol=1e-5)


def test_weighted_and_long_prompts_make_images_and_plain_ones_are_unchanged(
    tiny_model: Path,
) -> None:
    from ldstudio.engine.backend import DiffusersBackend

    engine = DiffusersBackend(device="cpu")

    def made(prompt: str, **changes: Any) -> np.ndarray:
        job = GenerationParams(prompt=prompt, model=str(tiny_model), steps=2, seed=3, **changes)
        events = engine.execute(Request.txt2img(job).resolved(), CancelToken())
        results = [e for e in events if isinstance(e, ImageResult)]
        assert len(results) == job.image_count
        return np.asarray(results[0].image)

    plain = made("a red circle")
    assert np.array_equal(made("a (red:1.0) circle"), plain)  # no syntax: the same pixels
    assert not np.array_equal(made("a (red:1.4) circle"), plain)
    assert made(" ".join(["cat"] * 120), batch_size=2).shape == plain.shape
    assert not np.array_equal(made("a red circle", clip_skip=2), plain)
    engine.close()


def test_prompt_editing_swaps_the_conditioning_at_its_step(tiny_model: Path) -> None:
    from ldstudio.engine.backend import DiffusersBackend

    engine = DiffusersBackend(device="cpu")

    def made(prompt: str) -> np.ndarray:
        job = GenerationParams(
            prompt=prompt, model=str(tiny_model), steps=4, seed=3, scheduler="Euler"
        )
        events = engine.execute(Request.txt2img(job).resolved(), CancelToken())
        [result] = [e for e in events if isinstance(e, ImageResult)]
        return np.asarray(result.image)

    red, blue = made("a red circle"), made("a blue circle")
    assert np.array_equal(made("a [red:blue:4] circle"), red)  # the swap would be after the end
    assert np.array_equal(made("a [red:blue:0.1] circle"), blue)  # from step 1: blue throughout
    halfway = made("a [red:blue:2] circle")
    assert not np.array_equal(halfway, red) and not np.array_equal(halfway, blue)
    engine.close()


def test_the_swap_keeps_the_guidance_layout() -> None:
    from ldstudio.engine.prompts import PromptSwap

    first, second, negative = (torch.full((1, 3, 2), v) for v in (1.0, 2.0, -1.0))
    swap = PromptSwap([2, 4], [first, second], negative)

    class Pipe:
        do_classifier_free_guidance = True

    guided = {"prompt_embeds": torch.cat([negative, first, negative, first])}  # batch 2
    assert swap(Pipe(), 0, None, dict(guided))["prompt_embeds"] is guided["prompt_embeds"]
    after = swap(Pipe(), 1, None, dict(guided))["prompt_embeds"]  # step 2 done: prompt 2 next
    assert torch.equal(after, torch.cat([negative, negative, second, second]))
    Pipe.do_classifier_free_guidance = False  # guidance cut off: the conditional half only
    alone = swap(Pipe(), 1, None, {"prompt_embeds": torch.cat([first, first])})
    assert torch.equal(alone["prompt_embeds"], torch.cat([second, second]))
