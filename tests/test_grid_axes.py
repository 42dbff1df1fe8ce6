"""X/Y/Z plot axes: A1111's documented value syntax (golden), and refusals that name the axis."""

from __future__ import annotations

import pytest

from ldstudio.core.grid import MAX_VALUES, AxisError, parse_axis
from ldstudio.core.params import SEED_MAX


@pytest.mark.parametrize(
    ("spec", "values"),
    [
        # A1111's wiki examples (Features › X/Y/Z plot), value for value.
        ("steps=1-5", (1, 2, 3, 4, 5)),
        ("steps=1-5 (+2)", (1, 3, 5)),
        ("steps=10-5 (-3)", (10, 7)),
        ("cfg=1-3 (+0.5)", (1.0, 1.5, 2.0, 2.5, 3.0)),
        ("steps=1-10 [5]", (1, 3, 5, 7, 10)),
        ("cfg=0.0-1.0 [6]", (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)),
        # An integer axis truncates an even spread, as A1111 does.
        ("steps=1-3 [5]", (1, 1, 2, 2, 3)),
        ("steps=1-10 (+2)", (1, 3, 5, 7, 9)),
        # Lists and ranges mix; spaces around items do not matter.
        ("cfg=3, 5,7", (3.0, 5.0, 7.0)),
        ("steps=10, 20-30 (+5), 50", (10, 20, 25, 30, 50)),
        ("lora=-1-1 (+0.5)", (-1.0, -0.5, 0.0, 0.5, 1.0)),
        ("clip skip=1-3", (1, 2, 3)),
        ("seed=1, 4294967295", (1, SEED_MAX)),
        ("steps=5-1", (5, 4, 3, 2, 1)),
    ],
)
def test_numeric_values_read_as_a1111_documents(spec, values) -> None:
    axis = parse_axis(spec)
    assert axis.values == values
    assert all(type(v) is type(values[0]) for v in axis.values)


def test_text_values_keep_commas_in_quotes_and_samplers_match_case_insensitively() -> None:
    sr = parse_axis('prompt=cat, "dog, big", fox')
    assert sr.values == ("cat", "dog, big", "fox") and sr.type.label == "Prompt S/R"
    assert sr.text == 'cat, "dog, big", fox'  # A1111's `X Values`: the text as given
    sampler = parse_axis("sampler=euler a,DPM++ 2m karras")
    assert sampler.values == ("Euler a", "DPM++ 2M Karras")
    assert parse_axis("size=512x512, 768×512").values == ((512, 512), (768, 512))
    assert parse_axis("Checkpoint name=a,b").type.key == "model"
    assert parse_axis("CFG Scale=7").label == "CFG Scale"
    lora = parse_axis("lora:style=0.5,1")
    assert lora.target == "style" and lora.label == "LoRA weight (style)"


def test_labels_say_the_type_for_numbers_and_the_value_alone_for_names() -> None:
    assert parse_axis("cfg=3,7.5").labels() == ["CFG Scale: 3", "CFG Scale: 7.5"]
    assert parse_axis("size=512x768").labels() == ["Size: 512x768"]
    assert parse_axis("sampler=Euler,DDIM").labels() == ["Euler", "DDIM"]
    assert parse_axis("prompt=cat,dog").labels() == ["cat", "dog"]


def test_a_random_seed_value_is_drawn_once_and_recorded() -> None:
    values = parse_axis("seed=-1,random,7").values
    assert values[2] == 7
    assert all(isinstance(v, int) and 0 <= v <= SEED_MAX for v in values)


@pytest.mark.parametrize(
    ("spec", "option", "words"),
    [
        ("cfg", "--x", ["--x", "'cfg'", "TYPE=VALUES", "allowed types", "sampler"]),
        ("colour=red", "--y", ["--y", "'colour'", "not known", "cfg, sampler"]),
        ("steps=", "--x", ["--x steps", "no values"]),
        ("steps=5,,6", "--x", ["--x steps", "value 2", "empty"]),
        ("steps=5.5", "--z", ["--z steps", "'5.5'", "not an integer", "1-10 (+2)"]),
        ("cfg=high", "--x", ["--x cfg", "'high'", "not a number"]),
        ("steps=1-5 (-1)", "--x", ["--x steps", "never reaches 5"]),
        ("steps=1-5 (+0)", "--x", ["--x steps", "never reaches"]),
        ("steps=1-5 [0]", "--x", ["--x steps", "count of 0", "allowed: 1 to"]),
        ("steps=1-100000", "--x", ["--x steps", "100000 values", f"at most {MAX_VALUES}"]),
        ("sampler=Euler b", "--y", ["--y sampler", "'Euler b'", "allowed:", "DPM++ 2M"]),
        ("size=512", "--x", ["--x size", "'512'", "WIDTHxHEIGHT"]),
        ("prompt=cat", "--x", ["--x prompt", "at least one replacement"]),
        ("cfg:x=1", "--x", ["--x", "only a LoRA weight axis names a target"]),
    ],
)
def test_bad_axes_are_refused_naming_the_axis_the_value_and_what_is_allowed(
    spec, option, words
) -> None:
    with pytest.raises(AxisError) as caught:
        parse_axis(spec, option)
    message = str(caught.value)
    for word in words:
        assert word in message, message
