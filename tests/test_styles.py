"""A1111's styles.csv: reading it (hostile files included) and applying styles to prompts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ldstudio.core.prompts import (
    MAX_STYLES_BYTES,
    Style,
    apply_styles,
    merge_style_text,
    parse_styles,
    read_styles,
)

# What A1111 writes: a header, quoted fields where needed (commas, quotes, newlines).
A1111_FILE = (
    "name,prompt,negative_prompt\r\n"
    'Cinematic,"cinematic still of {prompt}, shallow depth of field","cartoon, ""3d"""\r\n'
    "Sharp,sharp focus,blurry\r\n"
    'Multi,"line one\r\nline two",\r\n'
)


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "styles.csv"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def test_reads_an_a1111_file(tmp_path: Path) -> None:
    assert read_styles(write(tmp_path, A1111_FILE)) == [
        Style("Cinematic", "cinematic still of {prompt}, shallow depth of field", 'cartoon, "3d"'),
        Style("Sharp", "sharp focus", "blurry"),
        Style("Multi", "line one\r\nline two", ""),
    ]


def test_bom_blank_lines_extra_columns_short_rows_and_old_text_column(tmp_path: Path) -> None:
    content = "\ufeffname,text,description\n\nA,a prompt,ignored\nB\n"
    assert read_styles(write(tmp_path, content)) == [Style("A", "a prompt", ""), Style("B")]


@pytest.mark.parametrize("content", ["", "name,prompt,negative_prompt\n"])
def test_no_styles(tmp_path: Path, content: str) -> None:
    assert read_styles(write(tmp_path, content)) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("title,prompt\nA,b\n", "line 1: the header has no name column"),
        ("name,negative_prompt\nA,b\n", "line 1: the header has no prompt column"),
        ("name,prompt,name\n", "line 1: the header names a column twice"),
        ("name,prompt\n,orphan\n", "line 2: a style without a name"),
        ("name,prompt\nA,a\n\nA,b\n", "line 4: style 'A' is already on line 2"),
        ('name,prompt\nA,"two\nlines"\nB,x,y,z\n', "line 4: 4 fields, the header names 2"),
    ],
)
def test_bad_files_name_the_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ValueError, match=r"styles\.csv") as raised:
        read_styles(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"line 2: not UTF-8"):
        read_styles(write(tmp_path, b"name,prompt\nA,\xff\n"))


def test_too_large_is_refused_before_parsing(tmp_path: Path) -> None:
    path = write(tmp_path, b"name,prompt\n" + b"a" * MAX_STYLES_BYTES)
    with pytest.raises(ValueError, match="larger than"):
        read_styles(path)


def test_csv_errors_become_value_errors(tmp_path: Path) -> None:
    huge_field = 'name,prompt\nA,"' + "x" * 200_000 + '"\n'  # over csv's field size limit
    with pytest.raises(ValueError, match=r"styles\.csv, line"):
        read_styles(write(tmp_path, huge_field))


def test_a_missing_file_is_the_callers_call(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_styles(tmp_path / "styles.csv")


@settings(
    max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(alphabet='name,prompt\r\n"x\x00\ufeff ', max_size=200).map(str.encode),
        st.text(max_size=100).map(lambda tail: ("name,prompt,negative_prompt\n" + tail).encode()),
    )
)
def test_hostile_files_give_styles_or_a_value_error(data: bytes) -> None:
    try:
        styles = parse_styles(data.decode("utf-8", "replace"))
    except ValueError as error:
        assert "styles.csv" in str(error)
    else:
        assert all(isinstance(style, Style) and style.name for style in styles)


@pytest.mark.parametrize(
    ("style", "prompt", "expected"),
    [
        (
            "cinematic still of {prompt}, film grain",
            "a cat",
            "cinematic still of a cat, film grain",
        ),
        ("sharp focus", "a cat", "a cat, sharp focus"),
        ("sharp focus", "  a cat  ", "a cat, sharp focus"),
        ("sharp focus", "", "sharp focus"),
        ("", "a cat", "a cat"),
        ("{prompt} and {prompt}", "x", "x and x"),
        ("{prompt}", "", ""),
    ],
)
def test_merge_style_text(style: str, prompt: str, expected: str) -> None:
    assert merge_style_text(style, prompt) == expected


def test_apply_styles_in_order_to_prompt_and_negative() -> None:
    styles = [
        Style("Cinematic", "cinematic still of {prompt}", "cartoon"),
        Style("Sharp", "sharp focus", "{prompt}, blurry"),
    ]
    assert apply_styles("a cat", "ugly", styles) == (
        "cinematic still of a cat, sharp focus",
        "ugly, cartoon, blurry",
    )
    assert apply_styles("a cat", "ugly", []) == ("a cat", "ugly")
