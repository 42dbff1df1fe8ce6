"""Weighted and long prompts on a tiny SDXL: both text encoders per chunk, their penultimate
states side by side, the pooled embedding from the first chunk of the second encoder, the
negative padded to the prompt's chunks, clip skip one layer further back, and A1111's mean
restoration per encoder."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ldstudio.core.models.embeddings import EmbeddingIndex
from ldstudio.core.params import GenerationParams

torch = pytest.importorskip("torch")

LONG = ", ".join(["a red circle"] * 60)  # 239 tokens: four chunks with comma backtracking


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from models_support import build_tiny_pipeline

    return build_tiny_pipeline("sdxl", tmp_path_factory.mktemp("sdxl") / "config")


def encoded(pipe: Any, prompt: str, negative: str = "", **changes: Any) -> dict[str, Any]:
    from ldstudio.engine.prompts import encode

    params = GenerationParams(prompt=prompt, negative_prompt=negative, seed=1, **changes)
    kwargs: dict[str, Any] = encode(pipe, params, "cpu", EmbeddingIndex.build([], "sdxl")).kwargs
    return kwargs


def chunk_ids(tokenizer: Any, prompt: str) -> list[list[int]]:
    """The engine's chunk layout for `prompt` (BOS, 75 tokens, EOS per chunk)."""
    from ldstudio.core.prompts import parse_attention
    from ldstudio.core.prompts.chunks import chunk_prompt
    from ldstudio.engine.prompts import _comma, _pad, _tokenize

    chunks = chunk_prompt(
        parse_attention(prompt),
        lambda texts: _tokenize(tokenizer, texts),
        comma_token=_comma(tokenizer),
        pad_token=_pad(tokenizer),
        length=75,
    )
    return [[tokenizer.bos_token_id, *c.tokens, tokenizer.eos_token_id] for c in chunks]


def hidden(encoder: Any, ids: list[list[int]], layer: int = -2) -> Any:
    with torch.no_grad():
        out = encoder(torch.tensor(ids), output_hidden_states=True)
    return out.hidden_states[layer].reshape(1, -1, out.hidden_states[layer].shape[-1]), out


def test_a_long_prompt_runs_both_encoders_per_chunk_and_pools_the_first(pipe: Any) -> None:
    got = encoded(pipe, LONG, "green")
    ids_1, ids_2 = chunk_ids(pipe.tokenizer, LONG), chunk_ids(pipe.tokenizer_2, LONG)
    count = len(ids_1)
    assert count == len(ids_2) >= 3
    first, _ = hidden(pipe.text_encoder, ids_1)
    second, out_2 = hidden(pipe.text_encoder_2, ids_2)
    width_1 = first.shape[-1]
    assert got["prompt_embeds"].shape == (1, count * 77, width_1 + second.shape[-1])
    assert torch.allclose(got["prompt_embeds"][..., :width_1], first, atol=1e-5)
    assert torch.allclose(got["prompt_embeds"][..., width_1:], second, atol=1e-5)
    # The pooled embedding is the second encoder's projection of the first chunk only.
    assert torch.allclose(got["pooled_prompt_embeds"], out_2.text_embeds[:1], atol=1e-5)
    assert not torch.allclose(out_2.text_embeds[:1], out_2.text_embeds[1:2], atol=1e-3)
    # The negative prompt is padded to the same number of chunks.
    assert got["negative_prompt_embeds"].shape == got["prompt_embeds"].shape
    assert got["negative_pooled_prompt_embeds"].shape == got["pooled_prompt_embeds"].shape


def test_clip_skip_moves_sdxl_one_layer_further_back(pipe: Any) -> None:
    got = encoded(pipe, "a red circle", clip_skip=2)
    ids_1 = chunk_ids(pipe.tokenizer, "a red circle")
    skipped, _ = hidden(pipe.text_encoder, ids_1, layer=-3)
    width_1 = skipped.shape[-1]
    assert torch.allclose(got["prompt_embeds"][..., :width_1], skipped, atol=1e-5)
    plain, _ = hidden(pipe.text_encoder, ids_1, layer=-2)
    assert not torch.allclose(plain, skipped, atol=1e-4)


def test_weights_restore_each_encoders_mean_as_a1111_does(pipe: Any) -> None:
    plain = encoded(pipe, "a red circle on a blue square")["prompt_embeds"]
    weighted = encoded(pipe, "a (red circle:1.4) on a [blue] square")["prompt_embeds"]
    width_1 = pipe.text_encoder.config.hidden_size
    for part in (np.s_[..., :width_1], np.s_[..., width_1:]):
        assert torch.isclose(weighted[part].mean(), plain[part].mean(), rtol=1e-4, atol=1e-6)
        assert not torch.allclose(weighted[part], plain[part], atol=1e-4)
    no_norm = encoded(pipe, "a (red circle:1.4) on a [blue] square", emphasis="no-norm")
    assert not torch.isclose(
        no_norm["prompt_embeds"][..., :width_1].mean(), plain[..., :width_1].mean(), rtol=1e-4
    )
