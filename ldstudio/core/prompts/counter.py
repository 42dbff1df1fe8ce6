"""The prompt box's token counter: the chunk layout the engine will encode; pure Python.

The same steps as the engine's (`engine/prompts.py`): the prompt's `<lora:…>` tags are not
text (the engine takes them out of the prompt only; in the negative prompt they are words), prompt
editing gives one plain prompt per stretch of steps, in the prompt and the negative prompt
alike (the counter shows the longest, as A1111's does), weights and BREAK are parsed, and the
tokens fill 75-token chunks with comma backtracking. A textual-inversion embedding counts one
token per vector and never straddles a chunk, as the engine places it (`engine/embeddings.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ldstudio.core.models import ModelEntry, ModelRegistry, split_lora_tags
from ldstudio.core.models.embeddings import EmbeddingIndex
from ldstudio.core.prompts.attention import parse_attention
from ldstudio.core.prompts.chunks import Chunk, chunk_prompt, token_counts
from ldstudio.core.prompts.schedule import prompt_schedules
from ldstudio.core.prompts.tokenizer import ClipTokenizer, model_location

CHUNK = 75  # the engine's chunk: CLIP's 77 positions less BOS and EOS


def counted_prompts(
    prompt: str,
    negative: str,
    tokenizer: ClipTokenizer,
    *,
    steps: int = 1,
    embeddings: EmbeddingIndex | None = None,
) -> tuple[list[Chunk], list[Chunk]]:
    """The chunks of a job's prompt and negative prompt (styles already applied);
    `embeddings`: those the model's prompts can name (None: none are looked up)."""
    prompt, _tags = split_lora_tags(prompt)
    return (
        prompt_chunks(prompt, tokenizer, steps=steps, embeddings=embeddings),
        prompt_chunks(negative, tokenizer, steps=steps, embeddings=embeddings),
    )


def prompt_chunks(
    text: str,
    tokenizer: ClipTokenizer,
    *,
    steps: int = 1,
    embeddings: EmbeddingIndex | None = None,
) -> list[Chunk]:
    """The chunks `text` is encoded in; with prompt editing, those of its longest prompt."""
    # Steps typed out of range are refused elsewhere; here they only place [a:b:when].
    prompts = [p for _end, p in prompt_schedules(text, max(steps, 1))]
    layouts = []
    for prompt in prompts:
        segments = parse_attention(prompt)
        tokenize: Callable[[list[str]], list[list[int]]] = tokenizer
        groups: dict[int, int] | None = None
        if embeddings is not None:
            placed = _Placeholders(embeddings, tokenizer, [seg for seg, _w in segments])
            if placed.groups:
                tokenize, groups = placed, placed.groups
        layouts.append(
            chunk_prompt(
                segments,
                tokenize,
                tokenizer.comma_token,
                pad_token=tokenizer.pad_token,
                length=CHUNK,
                groups=groups,
            )
        )
    return max(layouts, key=lambda chunks: (len(chunks), chunks[-1].used))


class _Placeholders:
    """The tokenizer with each embedding in a text replaced by one placeholder id (negative)
    per vector, and `groups` (first id → vectors) so `chunk_prompt` keeps them together: the
    engine's layout. A prompt naming an embedding it cannot use is counted as plain text
    (the job is refused with the reason before it runs)."""

    def __init__(self, index: EmbeddingIndex, tokenize: ClipTokenizer, texts: list[str]) -> None:
        self.index, self.tokenize = index, tokenize
        self.groups: dict[int, int] = {}
        self._ids: dict[Path, list[int]] = {}
        for text in texts:  # every group is known before chunking starts
            for piece in self._split(text):
                if isinstance(piece, ModelEntry):
                    self._of(piece)

    def __call__(self, texts: list[str]) -> list[list[int]]:
        split = [self._split(text) for text in texts]
        plain = [piece for pieces in split for piece in pieces if isinstance(piece, str)]
        tokens = iter(self.tokenize(plain) if plain else [])
        out = []
        for pieces in split:
            ids: list[int] = []
            for piece in pieces:
                ids += next(tokens) if isinstance(piece, str) else self._of(piece)
            out.append(ids)
        return out

    def _split(self, text: str) -> list[str | ModelEntry]:
        try:
            return self.index.split(text)
        except ValueError:
            return [text]

    def _of(self, entry: ModelEntry) -> list[int]:
        known = self._ids.get(entry.path)
        if known is None:
            start = sum(len(ids) for ids in self._ids.values())
            known = [-(start + i + 1) for i in range(max(entry.vectors, 1))]
            self._ids[entry.path] = known
            self.groups[known[0]] = len(known)
        return known


def model_embeddings(model: str, registry: ModelRegistry | None = None) -> EmbeddingIndex | None:
    """The embeddings a prompt for `model` (as a job names it) can name, from the kept scan of
    the model folders; None while no current scan is kept (this runs on the GUI thread, which
    never scans: the counter counts words until the model list has been read). ValueError for
    a damaged models.json."""
    found = registry or ModelRegistry.shared()
    entries = found.kept()
    if entries is None:
        return None
    return EmbeddingIndex.build(entries, found.family(model_location(model)))


def counter_tooltip(chunks: Sequence[Chunk], padded_to: int | None = None) -> str:
    """What the counter means, with each chunk's tokens; `padded_to`: the other prompt's chunk
    count, which the shorter of the two is padded to with empty chunks."""
    counts = ", ".join(str(count) for count in token_counts(chunks))
    lines = [
        f"Tokens per chunk of {len(chunks[0].tokens)}: {counts}.",
        "A long prompt is encoded in several chunks, never cut; BREAK starts a new chunk, and "
        "a phrase that would be split moves whole to the next one (at its comma).",
    ]
    if padded_to is not None and padded_to > len(chunks):
        lines.append(f"Padded with empty chunks to the other prompt's {padded_to}.")
    return "\n".join(lines)
