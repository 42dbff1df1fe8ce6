"""AUTOMATIC1111's `styles.csv`: named prompt fragments, read and applied; pure Python, any thread.

The file has a header row naming the columns `name`, `prompt` (`text` in old files) and
optionally `negative_prompt`; other columns are ignored. A style's text containing `{prompt}`
wraps the user's text (every `{prompt}` replaced by it); otherwise it is appended after ", ".
Styles apply in the order given, each to the result of the one before.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROMPT_PLACEHOLDER = "{prompt}"
# Far above any real styles file (A1111's own hold a few hundred rows); bounds hostile files.
MAX_STYLES_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def read_styles(path: str | os.PathLike[str]) -> list[Style]:
    """The styles in a styles.csv, in file order; ValueError naming the file and line if bad.

    A missing file raises FileNotFoundError: whether that means "no styles" is the caller's call.
    """
    path = Path(path)
    with path.open("rb") as file:
        data = file.read(MAX_STYLES_BYTES + 1)
    if len(data) > MAX_STYLES_BYTES:
        raise ValueError(f"{path}: larger than {MAX_STYLES_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8-sig")  # A1111 reads with a BOM allowed; Excel writes one
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text") from None
    return parse_styles(text, source=str(path))


def parse_styles(text: str, source: str = "styles.csv") -> list[Style]:
    """The styles in the text of a styles.csv; `source` names it in error messages."""
    reader = csv.reader(io.StringIO(text, newline=""))
    styles: list[Style] = []
    seen: dict[str, int] = {}
    columns: dict[str, int] | None = None
    line = 1
    try:
        for row in reader:
            row_line, line = line, reader.line_num + 1
            if not row:  # a blank line
                continue
            if columns is None:
                columns = _columns(row, f"{source}, line {row_line}")
                continue
            where = f"{source}, line {row_line}"
            if len(row) > len(columns):
                raise ValueError(
                    f"{where}: {len(row)} fields, the header names {len(columns)} "
                    "(a field holding a comma must be quoted)"
                )
            style = _style(row, columns, where)
            if style.name in seen:
                raise ValueError(
                    f"{where}: style {style.name!r} is already on line {seen[style.name]}"
                )
            seen[style.name] = row_line
            styles.append(style)
    except csv.Error as error:
        raise ValueError(f"{source}, line {reader.line_num}: {error}") from None
    return styles


def _columns(header: list[str], where: str) -> dict[str, int]:
    names = [name.strip() for name in header]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: the header names a column twice")
    if "prompt" not in names and "text" in names:
        names[names.index("text")] = "prompt"
    missing = [name for name in ("name", "prompt") if name not in names]
    if missing:
        raise ValueError(
            f"{where}: the header has no {' or '.join(missing)} column "
            "(expected name,prompt,negative_prompt)"
        )
    return {name: index for index, name in enumerate(names)}


def _style(row: list[str], columns: dict[str, int], where: str) -> Style:
    def field(column: str) -> str:
        index = columns.get(column)
        # A short row is common (no negative prompt): the missing fields are empty.
        return row[index] if index is not None and index < len(row) else ""

    name = field("name").strip()
    if not name:
        raise ValueError(f"{where}: a style without a name")
    return Style(name, field("prompt"), field("negative_prompt"))


def merge_style_text(style_text: str, text: str) -> str:
    """One style's prompt (or negative prompt) applied to the user's."""
    if PROMPT_PLACEHOLDER in style_text:
        return style_text.replace(PROMPT_PLACEHOLDER, text)
    return ", ".join(part for part in (text.strip(), style_text.strip()) if part)


def apply_styles(prompt: str, negative: str, styles: Iterable[Style]) -> tuple[str, str]:
    """The prompt and negative prompt with the styles applied, in order."""
    for style in styles:
        prompt = merge_style_text(style.prompt, prompt)
        negative = merge_style_text(style.negative_prompt, negative)
    return prompt, negative
