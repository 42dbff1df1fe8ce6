"""Prompt syntax, pure Python (no torch, no Qt); what lives where:

- `schedule`: prompt editing `[from:to:when]` and alternation `[a|b]`, evaluated first: one
  prompt box's text becomes plain prompts, each with the last step it applies to.
- `attention`: emphasis `(x)` `[x]` `(x:w)` and `BREAK` in one plain prompt, as weighted runs;
  also the problems a prompt box underlines.
- `chunks`: weighted runs, tokenized by the caller's tokenizer, cut into padded 75-token chunks.
- `styles`: A1111's styles.csv, read and applied to a prompt and negative prompt.

The order for an encoder: `apply_styles` → `prompt_schedules` → per prompt `parse_attention`
→ `chunk_prompt`.
"""

from ldstudio.core.prompts.attention import (
    BREAK,
    BREAK_WEIGHT,
    Problem,
    Segment,
    is_break,
    parse_attention,
    syntax_problems,
)
from ldstudio.core.prompts.chunks import Chunk, Tokenize, chunk_prompt, counter_text, token_counts
from ldstudio.core.prompts.schedule import prompt_schedules
from ldstudio.core.prompts.styles import (
    MAX_STYLES_BYTES,
    PROMPT_PLACEHOLDER,
    Style,
    apply_styles,
    merge_style_text,
    parse_styles,
    read_styles,
)

__all__ = [
    "BREAK",
    "BREAK_WEIGHT",
    "MAX_STYLES_BYTES",
    "PROMPT_PLACEHOLDER",
    "Chunk",
    "Problem",
    "Segment",
    "Style",
    "Tokenize",
    "apply_styles",
    "chunk_prompt",
    "counter_text",
    "is_break",
    "merge_style_text",
    "parse_attention",
    "parse_styles",
    "prompt_schedules",
    "read_styles",
    "syntax_problems",
    "token_counts",
]
