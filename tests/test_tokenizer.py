"""The pure-Python CLIP tokenizer against transformers' CLIPTokenizer on the same files, and the
chunk layout it gives against the one the engine computes with transformers."""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import pytest

from ldstudio.core.paths import bundled_model_dir
from ldstudio.core.prompts import chunk_prompt, parse_attention
from ldstudio.core.prompts.counter import counted_prompts, counter_tooltip, prompt_chunks
from ldstudio.core.prompts.tokenizer import (
    ClipTokenizer,
    bundled_clip_folder,
    clip_words,
    folder_tokenizer,
    normalize,
    tokenizer_folder,
)

transformers = pytest.importorskip("transformers")

CORPUS = [
    "a photo of a cat",
    "",
    "   \t\n ",
    "A (fluffy cat:1.2), [dog] BREAK sunset!!",
    "(((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
    "\\(escaped\\) \\[brackets\\] \\\\ back",
    "masterpiece, best quality, 1girl, solo, <lora:detail:0.8>, embedding:easynegative",
    "don't it's we're I'M they'll you'd 'S",
    "'''s '' ' 's a'b 'll' rock'n'roll",
    "123456 3.14 1,000,000 2024-12-03 #7",
    "x²³ ½ Ⅻ ٣ ①",
    "ΟΔΟΣ Σίσυφος ΣΑΣ",  # a final capital sigma: lower-cased on its own
    "café naïve Ångström e\u0301 combining",  # NFC puts e + U+0301 together
    "İstanbul ß ǅ ﬁ ligature ＡＢＣ fullwidth",
    "日本語のテキスト 一二三 漢字、句読点。",
    "🐱🐶 emoji👍🏽 ❤️ 👨‍👩‍👧 flags 🇯🇵",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
    "tab\there\nnew  line\u3000ideographic\x1cfile-sep x\u00a0nbsp\u2028line-sep",
    "\u200b zero\u200dwidth\ufeffbom",
    "a__b--c..d,,e;;f!!?? ...!!! <<>> |pipes| ~tilde~ `ticks`",
    "<|endoftext|> a<|startoftext|>b <|ENDOFTEXT|>! <|endoftext|>!",
    "Zalgo ṫ̷̛̛e̴x̵t̴ h̸e̶r̵e̵",
    "[cat:dog:0.5] [red|blue|green] (a:b:c) (word:-1.5) (x:.5)",
]


@pytest.fixture(scope="module")
def ours() -> ClipTokenizer:
    return ClipTokenizer.from_folder(bundled_clip_folder())


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    return transformers.CLIPTokenizer.from_pretrained(
        str(bundled_clip_folder()), local_files_only=True
    )


def reference_ids(reference, text: str) -> list[int]:  # type: ignore[no-untyped-def]
    return list(reference(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("text", CORPUS)
def test_the_same_tokens_as_transformers(ours: ClipTokenizer, reference, text: str) -> None:
    assert ours.encode(text) == reference_ids(reference, text)


def test_random_text_from_many_scripts_matches(ours: ClipTokenizer, reference) -> None:
    # Characters assigned long ago: a newer one may be classed otherwise by Python's Unicode
    # tables than by the tokenizers' regex engine (noted in the module).
    def span(a: int, b: int) -> str:
        return "".join(chr(c) for c in range(a, b))

    pools = [
        "abcXYZ '\"(),.:;[]\\<>|!?0123456789 \t\n_-",
        span(0x20, 0x250) + span(0x300, 0x370),
        span(0x370, 0x530),
        span(0x3040, 0x3100) + span(0x4E00, 0x4F00) + "、。　",
        span(0x1F300, 0x1F650) + "\u200d\ufe0f🏽",
        span(0x2000, 0x2070) + span(0x2150, 0x2190) + span(0xFF00, 0xFF60),
        span(0x600, 0x700) + span(0x900, 0x980),
    ]
    rng = random.Random(17)
    for _ in range(1500):
        pool = "".join(rng.sample(pools, rng.randint(1, 3)))
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 40)))
        assert ours.encode(text) == reference_ids(reference, text), repr(text)


def test_the_bundled_models_own_vocabulary_matches_too(reference) -> None:
    folder = bundled_model_dir() / "tokenizer"
    ours = ClipTokenizer.from_folder(folder)
    theirs = transformers.CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert len(ours.vocab) < 1000  # a small vocabulary: other counts than CLIP's
    for text in CORPUS:
        assert ours.encode(text) == reference_ids(theirs, text), repr(text)
    assert ours.encode("a red circle") != reference_ids(reference, "a red circle")


def test_the_pieces_it_is_built_from(ours: ClipTokenizer) -> None:
    assert normalize("Ca\u0301FÉ \t\n  ΟΔΟΣ") == "cáfé οδοσ"
    assert list(clip_words("it's 2024!? ok")) == ["it", "'s", "2", "0", "2", "4", "!?", "ok"]
    assert ours.tokens("a photo") == ["a</w>", "photo</w>"]
    assert ours.comma_token == ours.vocab[",</w>"]
    assert ours.pad_token == ours.eos_token == ours.vocab["<|endoftext|>"]
    assert ours(["a", "", "photo of"]) == [ours.encode("a"), [], ours.encode("photo of")]


def test_words_are_cached_and_the_cache_is_bounded() -> None:
    tok = ClipTokenizer.from_folder(bundled_clip_folder())
    small = ClipTokenizer(tok.vocab, list(tok.ranks), cache_words=2)
    text = "alpha beta gamma alpha"
    assert small.encode(text) == tok.encode(text)
    info = small._word_ids.cache_info()
    assert info.maxsize == 2 and info.currsize == 2 and info.misses == 4


def test_chunks_match_the_engines_with_transformers(ours: ClipTokenizer, reference) -> None:
    def theirs(texts: list[str]) -> list[list[int]]:
        return [list(i) for i in reference(texts, add_special_tokens=False)["input_ids"]]

    prompts = [
        ", ".join(f"a detailed (word{i}:1.1) picture" for i in range(40)),  # commas backtrack
        "a cat BREAK (a dog:1.3) BREAK BREAK [a bird]",
        "word " * 200,  # no commas: cut at 75
        "",
    ]
    for text in prompts:
        segments = parse_attention(text)
        mine = chunk_prompt(segments, ours, ours.comma_token, pad_token=ours.pad_token)
        engine = chunk_prompt(
            segments,
            theirs,
            reference.convert_tokens_to_ids(",</w>"),
            pad_token=reference.pad_token_id,
        )
        assert mine == engine


def test_the_counter_layout_a_200_token_prompt_and_editing(ours: ClipTokenizer) -> None:
    text = " ".join(["castle"] * 200)
    assert len(ours.encode(text)) == 200
    chunks = prompt_chunks(text, ours)
    assert [c.used for c in chunks] == [75, 75, 50]
    # The prompt's LoRA tags are no text; prompt editing counts the longest of its prompts.
    tagged, negative = counted_prompts("a castle <lora:detail:0.8>", "<lora:x:1>", ours)
    assert [c.used for c in tagged] == [2]
    assert negative[0].used == len(ours.encode("<lora:x:1>")) > 0  # the engine's words there
    edited = prompt_chunks("a [castle:" + "very big castle " * 30 + ":5]", ours, steps=20)
    assert [c.used for c in edited] == [75, 16]
    assert prompt_chunks("a [b:c:5]", ours, steps=20)[0].used == len(ours.encode("a b"))
    tip = counter_tooltip(chunks[:1], padded_to=3)
    assert "75." in tip and "Padded with empty chunks to the other prompt's 3" in tip


def test_a_2000_character_prompt_counts_in_milliseconds() -> None:
    fresh = ClipTokenizer.from_folder(bundled_clip_folder())  # no word cached yet
    rng = random.Random(3)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8)) for _ in range(250)
    ]
    text = ", ".join(words)[:2000]
    start = time.perf_counter()
    chunks = prompt_chunks(text, fresh)
    elapsed = time.perf_counter() - start
    assert len(chunks) > 3
    assert elapsed < 0.25, f"{elapsed:.3f} s for 2,000 characters (2 busy CPU cores)"


def test_which_files_a_model_is_counted_with(tmp_path: Path) -> None:
    assert tokenizer_folder("") == bundled_model_dir() / "tokenizer"
    assert tokenizer_folder(str(tmp_path / "model.safetensors")) == bundled_clip_folder()
    folder = tmp_path / "sdxl"
    (folder / "tokenizer").mkdir(parents=True)
    assert tokenizer_folder(str(folder)) == bundled_clip_folder()  # no BPE files there
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(bundled_clip_folder() / name, folder / "tokenizer" / name)
    assert tokenizer_folder(str(folder)) == folder / "tokenizer"
    assert folder_tokenizer(folder / "tokenizer") is folder_tokenizer(folder / "tokenizer")


def test_damaged_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the CLIP tokenizer in"):
        ClipTokenizer.from_folder(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0}), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\nc\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"merges.txt, line 3: not a pair of tokens"):
        ClipTokenizer.from_folder(tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"the vocabulary has no <\|endoftext\|> token"):
        ClipTokenizer.from_folder(tmp_path)
    (tmp_path / "vocab.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="not a token → id mapping"):
        ClipTokenizer.from_folder(tmp_path)
