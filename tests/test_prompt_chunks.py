"""Long-prompt chunking (A1111's semantics) with a fake tokenizer: one token per word, ',' its own.

Token ids are the words' numbers (`w17` → 17), so a test reads which word went where.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ldstudio.core.prompts import (
    BREAK,
    Chunk,
    chunk_prompt,
    counter_text,
    is_break,
    parse_attention,
    token_counts,
)

COMMA = 1
PAD = 0


def tokenize(texts: list[str]) -> list[list[int]]:
    return [
        [
            COMMA if word == "," else int(word.lstrip("w"))
            for word in text.replace(",", " , ").split()
        ]
        for text in texts
    ]


def words(first: int, last: int) -> str:
    return " ".join(f"w{i}" for i in range(first, last + 1))


def chunks_of(prompt: str, **options: int) -> list[Chunk]:
    return chunk_prompt(parse_attention(prompt), tokenize, COMMA, pad_token=PAD, **options)


def used(chunk: Chunk) -> list[int]:
    return chunk.tokens[: chunk.used]


def test_a_200_word_prompt_is_three_padded_chunks() -> None:
    chunks = chunks_of(words(100, 299))
    assert token_counts(chunks) == [75, 75, 50]
    assert [used(chunk) for chunk in chunks] == [
        list(range(100, 175)),
        list(range(175, 250)),
        list(range(250, 300)),
    ]
    assert all(len(c.tokens) == 75 and len(c.weights) == 75 for c in chunks)
    assert chunks[2].tokens[50:] == [PAD] * 25
    assert chunks[2].weights[50:] == [1.0] * 25
    assert counter_text(chunks) == "50/75 · 3 chunks"


def test_an_empty_prompt_is_one_chunk_of_padding() -> None:
    (chunk,) = chunks_of("")
    assert chunk == Chunk([PAD] * 75, [1.0] * 75, 0)
    assert counter_text([chunk]) == "0/75"


def test_exactly_full_is_one_chunk() -> None:
    chunks = chunks_of(words(100, 174))
    assert token_counts(chunks) == [75]
    assert counter_text(chunks) == "75/75"


def test_overflow_backtracks_to_the_last_comma() -> None:
    # 60 words, a comma (token 61), then 30 words: the chunk is full at the 15th of those.
    chunks = chunks_of(words(100, 159) + ", " + words(200, 229))
    assert token_counts(chunks) == [61, 30]
    assert used(chunks[0]) == [*range(100, 160), COMMA]
    assert used(chunks[1]) == list(range(200, 230))  # the phrase after the comma, whole
    assert chunks[0].tokens[61:] == [PAD] * 14


def test_a_comma_further_back_than_backtrack_is_ignored() -> None:
    # Comma at index 50: 25 tokens from the end, more than 20.
    chunks = chunks_of(words(100, 149) + ", " + words(200, 239))
    assert token_counts(chunks) == [75, 16]
    assert used(chunks[1]) == list(range(224, 240))


def test_backtrack_is_a_parameter_and_zero_turns_it_off() -> None:
    prompt = words(100, 149) + ", " + words(200, 239)
    assert token_counts(chunks_of(prompt, backtrack=25)) == [51, 40]
    assert token_counts(chunks_of(prompt, backtrack=24)) == [75, 16]
    assert token_counts(chunks_of(words(100, 159) + ", " + words(200, 229), backtrack=0)) == [
        75,
        16,
    ]


def test_a_comma_right_at_the_boundary_ends_the_chunk_there() -> None:
    # Full after w203 with a comma 5 tokens back; the next token is a comma, so the phrase
    # ends exactly at the boundary and nothing moves.
    chunks = chunks_of(words(100, 169) + ", " + words(200, 203) + ", w300")
    assert token_counts(chunks) == [75, 2]
    assert used(chunks[0])[-5:] == [COMMA, 200, 201, 202, 203]
    assert used(chunks[1]) == [COMMA, 300]


def test_break_ends_the_chunk() -> None:
    chunks = chunks_of("w10 w11 BREAK w12")
    assert [used(chunk) for chunk in chunks] == [[10, 11], [12]]
    assert chunks[0].tokens[2:] == [PAD] * 73
    assert counter_text(chunks) == "1/75 · 2 chunks"


def test_break_at_a_boundary_adds_no_empty_chunk() -> None:
    assert token_counts(chunks_of(words(100, 174) + " BREAK w10")) == [75, 1]
    assert token_counts(chunks_of("BREAK w10")) == [1]
    assert token_counts(chunks_of("w10 BREAK")) == [1]
    assert token_counts(chunks_of("w10 BREAK BREAK w11")) == [1, 1]
    assert token_counts(chunks_of("BREAK")) == [0]


def test_break_inside_parentheses_breaks_and_weights_carry_per_token() -> None:
    chunks = chunks_of("w10 (w11 BREAK w12:1.5) [w13]")
    assert [used(chunk) for chunk in chunks] == [[10, 11], [12, 13]]
    assert chunks[0].weights[:2] == [1.0, 1.5]
    assert chunks[1].weights[:2] == pytest.approx([1.5, 1 / 1.1])
    assert chunks[0].weights[2:] == [1.0] * 73


def test_weights_move_with_the_backtracked_tokens() -> None:
    chunks = chunks_of(words(100, 159) + ", (" + words(200, 229) + ":1.3)")
    assert token_counts(chunks) == [61, 30]
    assert chunks[1].weights[:30] == [1.3] * 30
    assert chunks[0].weights[:61] == [1.0] * 61


def test_other_lengths() -> None:
    chunks = chunks_of(words(10, 19), length=4)
    assert token_counts(chunks) == [4, 4, 2]
    assert chunks[-1].tokens == [18, 19, PAD, PAD]


def test_the_tokenizer_sees_only_text_and_must_answer_each() -> None:
    seen: list[list[str]] = []

    def recording(texts: list[str]) -> list[list[int]]:
        seen.append(texts)
        return tokenize(texts)

    chunk_prompt(parse_attention("w1 BREAK (w2)"), recording, COMMA, pad_token=PAD)
    assert seen == [["w1", "w2"]]
    with pytest.raises(ValueError, match="fewer"):
        chunk_prompt([("w1", 1.0)], lambda texts: [], COMMA, pad_token=PAD)
    with pytest.raises(ValueError, match="more"):
        chunk_prompt([("w1", 1.0)], lambda texts: [[1], [2]], COMMA, pad_token=PAD)


@pytest.mark.parametrize(("length", "backtrack"), [(0, 20), (75, -1)])
def test_bad_options_are_refused(length: int, backtrack: int) -> None:
    with pytest.raises(ValueError):
        chunk_prompt(
            [("w1", 1.0)], tokenize, COMMA, pad_token=PAD, length=length, backtrack=backtrack
        )


_segment = st.one_of(
    st.just((BREAK, -1.0)),
    st.tuples(
        st.lists(st.sampled_from(["w5", "w6", ","]), max_size=30).map(" ".join),
        st.sampled_from([0.5, 1.0, 1.1]),
    ),
)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(_segment, max_size=12), st.integers(1, 12), st.integers(0, 14))
def test_chunks_keep_every_token_in_order(
    parsed: list[tuple[str, float]], length: int, backtrack: int
) -> None:
    chunks = chunk_prompt(
        parsed, tokenize, COMMA, pad_token=PAD, length=length, backtrack=backtrack
    )
    texts = [text for text, weight in parsed if not is_break((text, weight))]
    expected = [
        (token, weight)
        for (text, weight), ids in zip(
            [s for s in parsed if not is_break(s)], tokenize(texts), strict=True
        )
        for token in ids
    ]
    got = [
        pair for c in chunks for pair in zip(c.tokens[: c.used], c.weights[: c.used], strict=True)
    ]
    assert got == expected
    assert chunks
    assert all(len(c.tokens) == len(c.weights) == length for c in chunks)
    assert all(c.used > 0 for c in chunks) or len(chunks) == 1
    assert all(c.tokens[c.used :] == [PAD] * (length - c.used) for c in chunks)
