"""Textual-inversion embeddings without torch: detected from their headers in every layout
A1111 reads, pickles refused with the convert hint, found in prompts (the file stem as a word,
ComfyUI's `embedding:name`), kept in one chunk, written as A1111's `TI hashes` and checked
when an image is read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from ldstudio.core.a1111_keys import TI_HASHES
from ldstudio.core.metadata import a1111_parameters
from ldstudio.core.models import (
    KIND_EMBEDDING,
    ModelFolderStore,
    ModelRegistry,
    inspect_file,
    scan_folder,
)
from ldstudio.core.models.embeddings import (
    EmbeddingIndex,
    parse_ti_hashes,
    prompt_embeddings,
    ti_hashes_text,
)
from ldstudio.core.params import GenerationParams
from ldstudio.core.prompts import chunk_prompt, parse_attention
from ldstudio.core.readers import parse_a1111_text, unapplied_values


def write_embedding(path: Path, tensors: dict[str, tuple[int, ...]], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: rng.standard_normal(s).astype(np.float32) for k, s in tensors.items()}, path)
    return path


@pytest.mark.parametrize(
    ("tensors", "family", "vectors"),
    [
        ({"emb_params": (8, 768)}, "sd1", 8),  # A1111's own safetensors
        ({"string_to_param.*": (2, 1024)}, "sd2", 2),  # the original .pt's dict, flattened
        ({"clip_l": (4, 768), "clip_g": (4, 1280)}, "sdxl", 4),  # SDXL: one set per encoder
        ({"<cat-toy>": (768,)}, "sd1", 1),  # diffusers' learned_embeds: one 1-D vector
        ({"emb_params": (3, 128)}, "", 3),  # a custom text encoder's width
    ],
)
def test_every_layout_is_an_embedding_of_its_family(
    tmp_path: Path, tensors: dict[str, tuple[int, ...]], family: str, vectors: int
) -> None:
    entry = inspect_file(write_embedding(tmp_path / "e.safetensors", tensors))
    assert (entry.kind, entry.family, entry.vectors, entry.status) == (
        KIND_EMBEDDING,
        family,
        vectors,
        "ok",
    )
    assert entry.to_dict()["vectors"] == vectors


@pytest.mark.parametrize(
    "tensors",
    [
        {"emb_params": (76, 768)},  # more vectors than a chunk holds
        {"clip_l": (4, 768), "clip_g": (3, 1280)},  # the encoders' sets disagree
        {"clip_l": (4, 1024), "clip_g": (4, 1280)},  # clip_l of the wrong width
        {"emb_params": (2, 3, 768)},
    ],
)
def test_a_malformed_embedding_is_unsupported_and_says_why(
    tmp_path: Path, tensors: dict[str, tuple[int, ...]]
) -> None:
    entry = inspect_file(write_embedding(tmp_path / "bad.safetensors", tensors))
    assert entry.kind != KIND_EMBEDDING and entry.status == "unsupported"
    assert "textual-inversion embedding of a shape ldstudio cannot use" in entry.error
    assert "1 to 75 vectors" in entry.error


def test_a_lone_tensor_of_another_width_is_no_embedding(tmp_path: Path) -> None:
    entry = inspect_file(write_embedding(tmp_path / "x.safetensors", {"weight": (4, 300)}))
    assert entry.kind == "unknown"


def test_a1111_and_comfyui_embedding_folders_are_scanned(tmp_path: Path) -> None:
    a1111 = write_embedding(
        tmp_path / "webui" / "embeddings" / "easyneg.safetensors", {"emb_params": (2, 768)}
    )
    comfy = tmp_path / "ComfyUI" / "models" / "embeddings" / "sub" / "style.safetensors"
    write_embedding(comfy, {"clip_l": (1, 768), "clip_g": (1, 1280)})
    found = {e.path: e for e in scan_folder(tmp_path)}
    assert found[a1111].kind == found[comfy].kind == KIND_EMBEDDING
    assert (found[a1111].name, found[comfy].family) == ("easyneg", "sdxl")


def entry_of(tmp_path: Path, name: str, vectors: int = 2, width: int = 768) -> object:
    return inspect_file(
        write_embedding(
            tmp_path / "embeddings" / f"{name}.safetensors", {"emb_params": (vectors, width)}
        )
    )


def test_the_file_stem_is_a_word_of_the_prompt_and_embedding_name_is_comfyui_syntax(
    tmp_path: Path,
) -> None:
    neg = entry_of(tmp_path, "EasyNeg")
    hands = entry_of(tmp_path, "bad-hands-5")
    index = EmbeddingIndex.build([neg, hands], "sd1")
    assert index.split("a cat, (easyneg:1.2), bad-hands-5") == [
        "a cat, (",
        neg,
        ":1.2), ",
        hands,
    ]
    # A longer word that merely starts with the name is not it; where CLIP's tokenizer cuts
    # the name off as tokens of its own (digits, '_' are words of their own), it is.
    assert index.split("easynegative, xbad-hands-5") == ["easynegative, xbad-hands-5"]
    assert index.split("easyneg_2 2easyneg") == [neg, "_2 2", neg]
    for written in ("embedding:EasyNeg", "embedding:EasyNeg.safetensors", "embedding:sub/EasyNeg"):
        assert index.split(f"{written}, a cat") == [neg, ", a cat"], written
    assert prompt_embeddings(["easyneg and bad-hands-5", "EASYNEG"], index) == [neg, hands]


def test_an_embedding_of_another_family_is_a_word_but_named_explicitly_it_is_an_error(
    tmp_path: Path,
) -> None:
    xl = inspect_file(
        write_embedding(
            tmp_path / "embeddings" / "xlstyle.safetensors",
            {"clip_l": (1, 768), "clip_g": (1, 1280)},
        )
    )
    index = EmbeddingIndex.build([xl], "sd1")
    assert index.split("an xlstyle cat") == ["an xlstyle cat"]  # A1111 skips it the same way
    with pytest.raises(ValueError, match=r"an embedding for SDXL; this model is SD 1\.x"):
        index.split("embedding:xlstyle")
    with pytest.raises(ValueError, match="no embedding of that name fits this model; known: none"):
        index.split("embedding:missing, a cat")


def test_pickle_embeddings_are_refused_with_the_convert_hint(tmp_path: Path) -> None:
    pickle = tmp_path / "embeddings" / "oldneg.pt"
    pickle.parent.mkdir(parents=True)
    pickle.write_bytes(b"\x80\x04not opened")
    [entry] = list(scan_folder(tmp_path))
    assert entry.status == "unsafe" and "ldstudio models convert" in entry.error
    index = EmbeddingIndex.build([entry], "sd1")
    for prompt in ("a cat, oldneg", "embedding:oldneg.pt"):
        with pytest.raises(ValueError, match=r"pickles.*ldstudio models convert"):
            index.split(prompt)
    # Once converted, the .safetensors beside it is used and the pickle is no longer in the way.
    converted = entry_of(tmp_path, "oldneg")
    assert EmbeddingIndex.build([entry, converted], "sd1").split("oldneg") == [converted]


def test_two_files_of_one_name_are_ambiguous(tmp_path: Path) -> None:
    first = entry_of(tmp_path / "a", "neg")
    second = entry_of(tmp_path / "b", "neg")
    with pytest.raises(ValueError, match="names 2 files"):
        EmbeddingIndex.build([first, second], "sd1").split("neg")


def test_an_embedding_never_straddles_a_chunk_boundary() -> None:
    # 73 tokens, then an embedding of 3 vectors (ids -1..-3): it does not fit the 2 left.
    def tokenize(texts: list[str]) -> list[list[int]]:
        return [[-1, -2, -3] if text == "EMB" else [7] * len(text.split()) for text in texts]

    segments = [("w " * 73, 1.0), ("EMB", 1.2), ("w", 1.0)]
    chunks = chunk_prompt(segments, tokenize, comma_token=-99, pad_token=0, groups={-1: 3})
    assert [c.used for c in chunks] == [73, 4]
    assert chunks[0].tokens[73:] == [0, 0]  # the first chunk padded early
    assert chunks[1].tokens[:4] == [-1, -2, -3, 7]
    assert chunks[1].weights[:4] == [1.2, 1.2, 1.2, 1.0]
    # Where it fits it stays: 72 tokens + 3 vectors fill the chunk exactly.
    fits = chunk_prompt(
        [("w " * 72, 1.0), ("EMB", 1.0)], tokenize, comma_token=-99, pad_token=0, groups={-1: 3}
    )
    assert [c.used for c in fits] == [75]
    with pytest.raises(ValueError, match="a run of 76 tokens cannot fit a 75-token chunk"):
        chunk_prompt(parse_attention("x"), tokenize, comma_token=-99, pad_token=0, groups={-1: 76})


def test_ti_hashes_text_and_its_parser() -> None:
    digest = "0123456789abcdef" * 4
    text = ti_hashes_text([("neg", digest), ("a:b,c", digest)])
    assert text == "neg: 0123456789ab, abc: 0123456789ab"  # A1111's 12 hex, ':' ',' dropped
    assert parse_ti_hashes(text) == [("neg", "0123456789ab"), ("abc", "0123456789ab")]
    with pytest.raises(ValueError, match="not a list of `name: hash` pairs"):
        parse_ti_hashes("neg 0123")


def add_folder(folder: Path) -> None:
    store = ModelFolderStore.load()
    store.add_folder(folder)
    store.save()


def test_the_embeddings_a_prompt_uses_are_written_as_ti_hashes_and_read_back(
    tmp_path: Path,
) -> None:
    # The bundled model's text encoder is 128 wide (a custom width): embeddings of that width fit.
    folder = tmp_path / "embeddings"
    neg = write_embedding(folder / "shapesneg.safetensors", {"emb_params": (2, 128)})
    style = write_embedding(folder / "shapestyle.safetensors", {"emb_params": (1, 128)}, seed=1)
    write_embedding(folder / "unused.safetensors", {"emb_params": (1, 128)})
    add_folder(folder)
    params = GenerationParams(
        prompt="a circle, embedding:shapestyle", negative_prompt="(shapesneg:1.2)", seed=5
    ).replace(width=64, height=64)
    text = a1111_parameters(params, "ldstudio-shapes")
    sha = {p: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in (neg, style)}
    assert f'{TI_HASHES}: "shapestyle: {sha[style]}, shapesneg: {sha[neg]}"' in text

    result = parse_a1111_text(text)
    assert [(u.name, u.short_hash, u.path, u.problem) for u in result.embeddings] == [
        ("shapestyle", sha[style], str(style), ""),
        ("shapesneg", sha[neg], str(neg), ""),
    ]
    assert TI_HASHES not in result.extra and not result.warnings
    assert TI_HASHES not in dict(unapplied_values(result))
    assert result.to_dict()["embeddings"][0]["name"] == "shapestyle"


def test_a_prompt_without_embeddings_writes_no_ti_hashes(tmp_path: Path) -> None:
    add_folder(write_embedding(tmp_path / "e" / "neg.safetensors", {"emb_params": (2, 128)}).parent)
    text = a1111_parameters(
        GenerationParams(prompt="a negative circle", seed=1, width=64, height=64), "m"
    )
    assert TI_HASHES not in text
    # An SD 1.x embedding is not one of the bundled model's: its name is a word there.
    add_folder(
        write_embedding(tmp_path / "f" / "circle.safetensors", {"emb_params": (2, 768)}).parent
    )
    ModelRegistry.shared().invalidate()
    text = a1111_parameters(GenerationParams(prompt="a circle", seed=1, width=64, height=64), "m")
    assert TI_HASHES not in text


def test_an_image_whose_embedding_is_missing_or_different_says_so(tmp_path: Path) -> None:
    present = write_embedding(
        tmp_path / "embeddings" / "mine.safetensors", {"emb_params": (1, 768)}
    )
    add_folder(present.parent)
    text = (
        "mine, easynegative, a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, "
        'Size: 512x512, TI hashes: "easynegative: c74b4e810b03, mine: 000000000000"'
    )
    result = parse_a1111_text(text)
    missing, different = result.embeddings
    assert (missing.name, missing.path) == ("easynegative", "")
    assert "not found in the model folders" in missing.problem
    assert different.path == str(present) and "another version of the file" in different.problem
    assert len(result.warnings) == 2 and all(w.startswith("TI hashes: ") for w in result.warnings)
    assert result.params is not None  # the rest of the image still applies


def test_a_ti_hashes_value_that_is_no_list_is_kept_and_named() -> None:
    text = "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, TI hashes: garbage"
    result = parse_a1111_text(text)
    assert result.extra[TI_HASHES] == "garbage" and result.embeddings == ()
    assert any("not a list of `name: hash` pairs" in w for w in result.warnings)


def test_ldstudio_images_say_which_embedding_files_they_used(tmp_path: Path) -> None:
    from ldstudio.core.metadata import png_text_chunks
    from ldstudio.core.readers import read_text

    neg = write_embedding(
        tmp_path / "embeddings" / "shapesneg.safetensors", {"emb_params": (2, 128)}
    )
    add_folder(neg.parent)
    params = GenerationParams(prompt="a circle", negative_prompt="shapesneg", seed=2)
    chunks = png_text_chunks(params.replace(width=64, height=64), "ldstudio-shapes")
    result = read_text(chunks)
    assert result.source == "ldstudio" and result.params is not None
    assert result.params.negative_prompt == "shapesneg"
    [use] = result.embeddings
    assert (use.name, use.path, use.problem) == ("shapesneg", str(neg), "")
    # Gone from the folders since the image was made: said, not dropped.
    neg.unlink()
    ModelRegistry.shared().invalidate()
    result = read_text(chunks)
    [use] = result.embeddings
    assert use.path == "" and "not found in the model folders" in use.problem
    assert any("shapesneg" in warning for warning in result.warnings)


def test_preflight_refuses_unusable_embeddings_before_anything_loads(tmp_path: Path) -> None:
    from ldstudio.core.models.preflight import preflight_problems

    folder = tmp_path / "embeddings"
    write_embedding(folder / "shapesneg.safetensors", {"emb_params": (2, 128)})
    (folder / "oldneg.bin").write_bytes(b"never opened")
    add_folder(folder)
    registry = ModelRegistry.shared()

    def problems(prompt: str, negative: str = "") -> list[tuple[str, str]]:
        job = GenerationParams(prompt=prompt, negative_prompt=negative, seed=1)
        return [(p.field, p.message) for p in preflight_problems(job, registry)]

    assert problems("a circle, (shapesneg:1.1)", "embedding:shapesneg") == []
    [(field, message)] = problems("a circle", "embedding:nothere")
    assert field == "negative_prompt"
    assert (
        "embedding:nothere: no embedding of that name fits this model; known: shapesneg" in message
    )
    [(field, message)] = problems("a [circle:oldneg:3]")
    assert field == "prompt" and "ldstudio models convert" in message
    # A LoRA tag's name is no word of the prompt the text encoder reads: only the tag's own
    # problem (no such LoRA) is said, not a second one for the pickle embedding of that name.
    [(field, message)] = problems("a circle <lora:oldneg:1>")
    assert message.startswith("prompt: <lora:oldneg>")
