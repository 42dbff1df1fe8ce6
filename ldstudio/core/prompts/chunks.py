"""Long prompts as fixed-size token chunks with per-token weights; pure Python, any thread.

AUTOMATIC1111's semantics, independent of the tokenizer: tokens fill chunks of `length` (75
for CLIP, whose 77 positions keep two for BOS and EOS, which the caller adds). When a chunk is
full and a comma lies within its last `backtrack` tokens, the chunk ends after that comma and
the words after it move on, so a phrase is not split between two encodings. `BREAK` ends the
current chunk early. A run of tokens that must stay together (a textual-inversion embedding's
vectors, `groups`) that does not fit in what is left of a chunk starts the next one. Every
chunk is padded to `length`; an empty prompt still gives one chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ldstudio.core.prompts.attention import Segment, is_break

# Texts in, one token-id list per text out; no BOS/EOS, no padding.
Tokenize = Callable[[list[str]], list[list[int]]]


@dataclass(frozen=True)
class Chunk:
    """One encoder input: exactly `length` ids and weights; the first `used` are the prompt's."""

    tokens: list[int]
    weights: list[float]
    used: int


def chunk_prompt(
    parsed: Sequence[Segment],
    tokenize: Tokenize,
    comma_token: int,
    *,
    pad_token: int,
    length: int = 75,
    backtrack: int = 20,
    groups: Mapping[int, int] | None = None,
) -> list[Chunk]:
    """Tokenize parsed (text, weight) segments and cut them into padded chunks.

    `groups`: token id → the length of the run it starts, never split between chunks.
    """
    if length < 1:
        raise ValueError(f"chunk length must be at least 1, not {length}")
    groups = groups or {}
    too_long = {token: size for token, size in groups.items() if size > length}
    if too_long:
        raise ValueError(
            f"a run of {max(too_long.values())} tokens cannot fit a {length}-token chunk"
        )
    if backtrack < 0:
        raise ValueError(f"comma backtrack must not be negative, not {backtrack}")
    texts = [text for text, weight in parsed if not is_break((text, weight))]
    token_lists = iter(tokenize(texts) if texts else [])

    chunks: list[Chunk] = []
    tokens: list[int] = []
    weights: list[float] = []

    def close() -> None:
        padding = length - len(tokens)
        chunks.append(Chunk(tokens + [pad_token] * padding, weights + [1.0] * padding, len(tokens)))

    last_comma = -1  # index in `tokens` of the chunk's last comma
    for segment in parsed:
        if is_break(segment):
            if tokens:  # at a chunk boundary the chunk has already ended
                close()
                tokens, weights, last_comma = [], [], -1
            continue
        ids = next(token_lists, None)
        if ids is None:
            raise ValueError(f"the tokenizer returned fewer lists than the {len(texts)} texts")
        for token in ids:
            if len(tokens) == length:
                # A comma arriving now ends the phrase right at the boundary: nothing to move.
                keep = last_comma + 1
                if token == comma_token or last_comma < 0 or length - last_comma > backtrack:
                    keep = length
                carried = tokens[keep:], weights[keep:]
                tokens, weights = tokens[:keep], weights[:keep]
                close()
                tokens, weights = list(carried[0]), list(carried[1])
                last_comma = -1  # the carried words hold no comma: it was the last one
            if token in groups and len(tokens) + groups[token] > length:
                # A1111: the chunk ends early (padded), the run starts the next one whole.
                close()
                tokens, weights, last_comma = [], [], -1
            if token == comma_token:
                last_comma = len(tokens)
            tokens.append(token)
            weights.append(segment[1])
    if next(token_lists, None) is not None:
        raise ValueError(f"the tokenizer returned more lists than the {len(texts)} texts")
    if tokens or not chunks:
        close()
    return chunks


def token_counts(chunks: Sequence[Chunk]) -> list[int]:
    """The prompt tokens in each chunk, padding not counted."""
    return [chunk.used for chunk in chunks]


def counter_text(chunks: Sequence[Chunk]) -> str:
    """The prompt box's counter, the last chunk's fill and the chunk count: `63/75 · 2 chunks`."""
    last = chunks[-1]
    text = f"{last.used}/{len(last.tokens)}"
    return text if len(chunks) == 1 else f"{text} · {len(chunks)} chunks"
