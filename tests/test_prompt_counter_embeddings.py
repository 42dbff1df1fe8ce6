"""The prompt box's counter lays out a prompt with textual-inversion embeddings exactly as the
engine encodes it: one token per vector, an embedding never split between chunks."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from ldstudio.core.models import ModelFolderStore, ModelRegistry, inspect_file
from ldstudio.core.models.embeddings import EmbeddingIndex
from ldstudio.core.prompts import parse_attention
from ldstudio.core.prompts.counter import counted_prompts, model_embeddings, prompt_chunks
from ldstudio.core.prompts.tokenizer import folder_tokenizer, tokenizer_folder

torch = pytest.importorskip("torch")

WIDTH = 32  # the tiny model's text encoder


def embedding(folder: Path, name: str, vectors: int) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    data = np.random.default_rng(vectors).standard_normal((vectors, WIDTH)).astype(np.float32)
    save_file({"emb_params": data}, str(path))
    return inspect_file(path)


def engine_layout(pipe: Any, index: EmbeddingIndex, prompt: str) -> list[Any]:
    from ldstudio.core.prompts.chunks import chunk_prompt
    from ldstudio.engine.embeddings import EmbeddingTable, token_width
    from ldstudio.engine.prompts import _comma, _pad, _tokenize

    table = EmbeddingTable(index, [token_width(pipe.text_encoder)])
    segments = parse_attention(prompt)
    table.register([text for text, _weight in segments])
    return chunk_prompt(
        segments,
        table.tokenizer(functools.partial(_tokenize, pipe.tokenizer)),
        comma_token=_comma(pipe.tokenizer),
        pad_token=_pad(pipe.tokenizer),
        length=75,
        groups=table.groups,
    )


@pytest.mark.parametrize("words", [60, 70, 72, 74])
def test_the_counter_places_embeddings_as_the_engine_does(
    tiny_model: Path, tmp_path: Path, words: int
) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_model), local_files_only=True)
    entry = embedding(tmp_path / "embeddings", "sixvec", 6)
    index = EmbeddingIndex.build([entry], "custom")
    prompt = " ".join(["red"] * words) + " sixvec, (blue sixvec:1.2) square"
    tokenizer = folder_tokenizer(tokenizer_folder(str(tiny_model)))
    counted = prompt_chunks(prompt, tokenizer, embeddings=index)
    engine = engine_layout(pipe, index, prompt)
    assert [(c.tokens, c.weights, c.used) for c in counted] == [
        (c.tokens, c.weights, c.used) for c in engine
    ]
    # Each vector is a token; an embedding never straddles a chunk.
    for chunk in counted:
        placeholders = [t for t in chunk.tokens if t < 0]
        assert len(placeholders) % 6 == 0
    assert counted != prompt_chunks(prompt, tokenizer)  # counted as words it is not


def test_the_counter_finds_the_models_embeddings_in_the_model_folders(
    tiny_model: Path, tmp_path: Path
) -> None:
    embedding(tmp_path / "embeddings", "sixvec", 6)
    ModelFolderStore(folders=[str(tmp_path)]).save()
    registry = ModelRegistry()
    # The GUI thread never scans: before the model list is read, embeddings are not looked up.
    assert model_embeddings(str(tiny_model), registry) is None
    registry.entries()
    index = model_embeddings(str(tiny_model), registry)
    assert index is not None
    tokenizer = folder_tokenizer(tokenizer_folder(str(tiny_model)))
    chunks, negative = counted_prompts("a sixvec", "embedding:sixvec", tokenizer, embeddings=index)
    assert chunks[0].used == 1 + 6 and negative[0].used == 6
    # An explicit name that fits nothing is counted as text (the job refuses it by name).
    [plain] = prompt_chunks("embedding:nothing", tokenizer, embeddings=index)
    assert plain.used > 0
