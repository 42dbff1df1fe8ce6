"""The prompt box's token counter: the chunk layout the engine will encode; pure Python.

The same steps as the engine's (`engine/prompts.py`): the prompt's `<lora:…>` tags are not
text (the engine takes them out of the prompt only; in the negative prompt they are words), prompt
editing gives one plain prompt per stretch of steps, in the prompt and the negative prompt
alike (the counter shows the longest, as A1111's does), weights and BREAK are parsed, and the
tokens fill 75-token chunks with comma backtracking. A textual-inversion embedding's name is
counted as the words it is written with; the engine gives it one token per vector.
"""

from __future__ import annotations

from collections.abc import Sequence

from ldstudio.core.models import split_lora_tags
from ldstudio.core.prompts.attention import parse_attention
from ldstudio.core.prompts.chunks import Chunk, chunk_prompt, token_counts
from ldstudio.core.prompts.schedule import prompt_schedules
from ldstudio.core.prompts.tokenizer import ClipTokenizer

CHUNK = 75  # the engine's chunk: CLIP's 77 positions less BOS and EOS


def counted_prompts(
    prompt: str, negative: str, tokenizer: ClipTokenizer, *, steps: int = 1
) -> tuple[list[Chunk], list[Chunk]]:
    """The chunks of a job's prompt and negative prompt (styles already applied)."""
    prompt, _tags = split_lora_tags(prompt)
    return prompt_chunks(prompt, tokenizer, steps=steps), prompt_chunks(
        negative, tokenizer, steps=steps
    )


def prompt_chunks(text: str, tokenizer: ClipTokenizer, *, steps: int = 1) -> list[Chunk]:
    """The chunks `text` is encoded in; with prompt editing, those of its longest prompt."""
    # Steps typed out of range are refused elsewhere; here they only place [a:b:when].
    prompts = [p for _end, p in prompt_schedules(text, max(steps, 1))]
    layouts = [
        chunk_prompt(
            parse_attention(prompt),
            tokenizer,
            tokenizer.comma_token,
            pad_token=tokenizer.pad_token,
            length=CHUNK,
        )
        for prompt in prompts
    ]
    return max(layouts, key=lambda chunks: (len(chunks), chunks[-1].used))


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
