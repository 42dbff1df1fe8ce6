"""Textual-inversion embeddings on tiny CLIPs: the vectors reach the text encoder exactly as a
vocabulary extended by hand would put them, each one a token of the 75 (never split between
chunks), weighted like any word; a prompt without one is encoded as before, and one job's
embedding leaves nothing behind for the next."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from ldstudio.core.backend import ImageResult
from ldstudio.core.jobs import CancelToken
from ldstudio.core.models import ModelFolderStore, inspect_file
from ldstudio.core.models.embeddings import EmbeddingIndex
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request

torch = pytest.importorskip("torch")

WIDTH = 32  # the tiny model's text encoder


@pytest.fixture(scope="module")
def pipe(tiny_model: Path) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(tiny_model), local_files_only=True)


def embedding(folder: Path, name: str, vectors: int, seed: int = 0, **tensors: Any) -> Any:
    """An embedding file of `vectors` random vectors (or `tensors` as given) and its entry."""
    rng = np.random.default_rng(seed)
    data = tensors or {"emb_params": rng.standard_normal((vectors, WIDTH)).astype(np.float32)}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    save_file(data, str(path))
    return inspect_file(path)


def expected_states(pipe: Any, words_before: str, vectors: np.ndarray, words_after: str) -> Any:
    """What a text encoder whose vocabulary was extended by hand with `vectors` gives for
    `words_before <embedding> words_after`: the textbook textual inversion, built apart."""
    tokenizer, encoder = pipe.tokenizer, copy.deepcopy(pipe.text_encoder)
    size = len(tokenizer)
    encoder.resize_token_embeddings(size + len(vectors))
    with torch.no_grad():
        encoder.get_input_embeddings().weight[size:] = torch.from_numpy(vectors)

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    prompt = ids(words_before) + list(range(size, size + len(vectors))) + ids(words_after)
    pad = tokenizer.pad_token_id
    row = [tokenizer.bos_token_id, *prompt, tokenizer.eos_token_id]
    row += [pad] * (77 - len(row))
    with torch.no_grad():
        return encoder(torch.tensor([row]))[0]


def params(prompt: str, **changes: Any) -> GenerationParams:
    return GenerationParams(prompt=prompt, seed=1, **changes)


def test_the_vectors_condition_exactly_as_an_extended_vocabulary_would(
    pipe: Any, tmp_path: Path
) -> None:
    from ldstudio.engine.prompts import encode

    entry = embedding(tmp_path, "myemb", 3)
    index = EmbeddingIndex.build([entry], "custom")
    vectors = np.asarray(np.random.default_rng(0).standard_normal((3, WIDTH)).astype(np.float32))
    expected = expected_states(pipe, "a red", vectors, "circle")
    for prompt in ("a red myemb circle", "a red embedding:myemb circle"):
        ours = encode(pipe, params(prompt), "cpu", index).kwargs["prompt_embeds"]
        assert ours.shape == (1, 77, WIDTH)
        assert torch.allclose(ours, expected, atol=1e-5), prompt
    # Other vectors, another conditioning: the file's numbers are what is used.
    other = EmbeddingIndex.build([embedding(tmp_path / "b", "myemb", 3, seed=9)], "custom")
    changed = encode(pipe, params("a red myemb circle"), "cpu", other).kwargs["prompt_embeds"]
    assert not torch.allclose(changed, expected, atol=1e-3)


def test_an_embedding_inside_weights_is_weighted_like_a_word(pipe: Any, tmp_path: Path) -> None:
    from ldstudio.engine.prompts import encode

    index = EmbeddingIndex.build([embedding(tmp_path, "myemb", 2)], "custom")
    plain = encode(pipe, params("a myemb", emphasis="no-norm"), "cpu", index).kwargs
    heavy = encode(pipe, params("a (myemb:1.5)", emphasis="no-norm"), "cpu", index).kwargs
    # BOS, "a", then the two vectors: each exactly 1.5 × its unweighted state.
    for row in (2, 3):
        assert torch.allclose(
            heavy["prompt_embeds"][0, row], plain["prompt_embeds"][0, row] * 1.5, atol=1e-6
        )
    assert torch.allclose(heavy["prompt_embeds"][0, 1], plain["prompt_embeds"][0, 1])


def test_comfy_emphasis_weighs_an_embedding_against_the_empty_prompt(
    pipe: Any, tmp_path: Path
) -> None:
    from ldstudio.engine.prompts import encode

    index = EmbeddingIndex.build([embedding(tmp_path, "myemb", 2)], "custom")
    plain = encode(pipe, params("a myemb", clip_skip=2), "cpu", index).kwargs["prompt_embeds"]
    comfy = encode(pipe, params("a (myemb:2)", clip_skip=2, emphasis="comfy"), "cpu", index)
    empty = encode(pipe, params("", clip_skip=2), "cpu").kwargs["prompt_embeds"]
    for row in (2, 3):
        expected = empty[0, row] + (plain[0, row] - empty[0, row]) * 2
        assert torch.allclose(comfy.kwargs["prompt_embeds"][0, row], expected, atol=1e-5)


def test_a_multi_vector_embedding_counts_its_vectors_and_starts_a_new_chunk(
    pipe: Any, tmp_path: Path
) -> None:
    from ldstudio.engine.prompts import encode

    entry = embedding(tmp_path, "myemb", 8)
    index = EmbeddingIndex.build([entry], "custom")
    vectors = np.random.default_rng(0).standard_normal((8, WIDTH)).astype(np.float32)
    # 70 one-token words: the 8 vectors do not fit the 5 places left, so chunk 1 ends at 70
    # and chunk 2 is the embedding and "red".
    encoded = encode(pipe, params(" ".join(["cat"] * 70) + " myemb red"), "cpu", index)
    assert encoded.chunks == 2
    second = encoded.kwargs["prompt_embeds"][:, 77:]
    assert torch.allclose(second, expected_states(pipe, "", vectors, "red"), atol=1e-5)
    first = encoded.kwargs["prompt_embeds"][:, :77]
    theirs, _negative = pipe.encode_prompt(" ".join(["cat"] * 70), "cpu", 1, False)
    assert torch.allclose(first, theirs, atol=1e-6)  # padded early, nothing of it in chunk 1
    # The negative prompt is padded to the same two chunks.
    assert encoded.kwargs["negative_prompt_embeds"].shape == (1, 154, WIDTH)


def test_a_prompt_without_embeddings_is_unchanged_and_nothing_leaks(
    pipe: Any, tmp_path: Path
) -> None:
    from ldstudio.engine.prompts import encode, prompt_arguments

    index = EmbeddingIndex.build([embedding(tmp_path, "myemb", 3)], "custom")
    job = params("a red circle", negative_prompt="dog")
    # Plain text still goes to the pipeline as text, embeddings on disk or not.
    assert prompt_arguments(pipe, job, "cpu") == {
        "prompt": "a red circle",
        "negative_prompt": "dog",
    }
    before = encode(pipe, params("a (red:1.2) circle"), "cpu", index).kwargs["prompt_embeds"]
    vocabulary = len(pipe.tokenizer)
    rows = pipe.text_encoder.get_input_embeddings().weight.clone()
    encode(pipe, params("a (myemb:1.2) circle"), "cpu", index)
    after = encode(pipe, params("a (red:1.2) circle"), "cpu", index).kwargs["prompt_embeds"]
    assert torch.equal(before, after)
    layer = pipe.text_encoder.get_input_embeddings()
    assert len(pipe.tokenizer) == vocabulary and torch.equal(layer.weight, rows)
    assert not layer._forward_hooks  # the substitution is gone with its encoding


def test_a_wrong_embedding_name_fails_the_job_with_a_clear_message(
    pipe: Any, tmp_path: Path
) -> None:
    from ldstudio.engine.models import ModelError
    from ldstudio.engine.prompts import prompt_arguments

    wide = embedding(tmp_path, "wide", 1, emb_params=np.zeros((1, 64), np.float32))
    with pytest.raises(ModelError, match="prompt: embedding:nothere: no embedding of that name"):
        prompt_arguments(pipe, params("a embedding:nothere"), "cpu")
    index = EmbeddingIndex.build([wide], "custom")
    from ldstudio.engine.prompts import encode

    with pytest.raises(ModelError, match="vectors 64 wide; this model's text encoder takes 32"):
        encode(pipe, params("a wide cat"), "cpu", index)


def test_sdxl_embeddings_give_each_text_encoder_its_own_vectors(tmp_path: Path) -> None:
    from models_support import build_tiny_pipeline

    from ldstudio.engine.prompts import encode

    pipe = build_tiny_pipeline("sdxl", tmp_path / "config")
    rng = np.random.default_rng(3)
    clip_l = rng.standard_normal((2, 768)).astype(np.float32)
    clip_g = rng.standard_normal((2, 1280)).astype(np.float32)
    entry = embedding(tmp_path / "emb", "xlemb", 2, clip_l=clip_l, clip_g=clip_g)
    assert entry.family == "sdxl"
    index = EmbeddingIndex.build([entry], "sdxl")
    got = encode(pipe, params("a xlemb"), "cpu", index).kwargs
    assert got["prompt_embeds"].shape == (1, 77, 768 + 1280)
    first = expected_hidden(pipe.tokenizer, pipe.text_encoder, clip_l)
    second = expected_hidden(pipe.tokenizer_2, pipe.text_encoder_2, clip_g)
    assert torch.allclose(got["prompt_embeds"][..., :768], first, atol=1e-4)
    assert torch.allclose(got["prompt_embeds"][..., 768:], second, atol=1e-4)


def expected_hidden(tokenizer: Any, encoder: Any, vectors: np.ndarray) -> Any:
    """SDXL's penultimate hidden state for "a <embedding>" with a vocabulary extended by hand."""
    encoder = copy.deepcopy(encoder)
    size = len(tokenizer)
    encoder.resize_token_embeddings(size + len(vectors))
    with torch.no_grad():
        encoder.get_input_embeddings().weight[size:] = torch.from_numpy(vectors)
    prompt = tokenizer("a", add_special_tokens=False)["input_ids"]
    row = [tokenizer.bos_token_id, *prompt, *range(size, size + len(vectors))]
    row.append(tokenizer.eos_token_id)
    row += [tokenizer.pad_token_id] * (77 - len(row))
    with torch.no_grad():
        return encoder(torch.tensor([row]), output_hidden_states=True).hidden_states[-2]


def test_a_job_uses_the_embeddings_in_its_model_folders(tiny_model: Path, tmp_path: Path) -> None:
    from ldstudio.core.metadata import a1111_parameters
    from ldstudio.engine.backend import DiffusersBackend

    folder = tmp_path / "models" / "embeddings"
    entry = embedding(folder, "myemb", 4)
    store = ModelFolderStore.load()
    store.add_folder(folder)
    store.save()
    engine = DiffusersBackend(device="cpu")

    def made(prompt: str) -> tuple[np.ndarray, GenerationParams]:
        job = GenerationParams(prompt=prompt, model=str(tiny_model), steps=2, seed=3)
        events = engine.execute(Request.txt2img(job).resolved(), CancelToken())
        [result] = [e for e in events if isinstance(e, ImageResult)]
        return np.asarray(result.image), result.params

    plain, _ = made("a red circle")
    with_embedding, used = made("a red myemb circle")
    assert not np.array_equal(with_embedding, plain)
    assert np.array_equal(made("a red circle")[0], plain)  # the next job: as if never used
    assert np.array_equal(made("a red embedding:myemb circle")[0], with_embedding)
    short = hashlib.sha256(entry.path.read_bytes()).hexdigest()[:12]
    assert f'TI hashes: "myemb: {short}"' in a1111_parameters(used, "tiny")
    assert "TI hashes" not in a1111_parameters(made("a red circle")[1], "tiny")
    engine.close()
