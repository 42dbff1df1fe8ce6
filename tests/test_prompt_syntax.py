"""Prompt syntax: A1111's emphasis, BREAK, prompt editing and alternation, from its documentation.

The golden tables are the examples A1111's wiki and docs publish; the fuzz tests check that no
input raises and that only syntax characters ever disappear.
"""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ldstudio.core.prompts import (
    BREAK,
    Problem,
    is_break,
    parse_attention,
    prompt_schedules,
    syntax_problems,
)

# A1111's documented examples of its emphasis parser, output exact to the last float bit.
ATTENTION_GOLDEN = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.5730000000000004),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),
            (".", 1.1),
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), ATTENTION_GOLDEN)
def test_attention_golden_table(text: str, expected: list[tuple[str, float]]) -> None:
    assert parse_attention(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [("", 1.0)]),
        ("[x]", [("x", 1 / 1.1)]),
        ("[[x]]", [("x", 1 / 1.1 / 1.1)]),
        ("((x))", [("x", 1.1 * 1.1)]),
        ("(x:-0.5)", [("x", -0.5)]),
        ("(x:.5)", [("x", 0.5)]),
        ("(x: 1.5 )", [("x", 1.5)]),
        ("(x:+2)", [("x", 2.0)]),
        ("((x:2))", [("x", 2.2)]),
        ("a (b:2) c", [("a ", 1.0), ("b", 2.0), (" c", 1.0)]),
        # The last ':' is the weight's; earlier ones are text.
        ("(a:b:1.2)", [("a:b", 1.2)]),
        # Not a number: the colon is text and the group an ordinary (x).
        ("(x:abc)", [("x:abc", 1.1)]),
        ("(x:1.2.3)", [("x:1.2.3", 1.1)]),
        ("x:1.2)", [("x:1.2)", 1.0)]),  # no '(' to weigh: all text
        # Stray closers are text.
        ("a) b]", [("a) b]", 1.0)]),
        ("[unclosed", [("unclosed", 1 / 1.1)]),
        ("\\\\", [("\\", 1.0)]),
        ("\\n\\", [("\\n\\", 1.0)]),  # a backslash before anything else is itself
    ],
)
def test_attention_rules(text: str, expected: list[tuple[str, float]]) -> None:
    segments = parse_attention(text)
    assert [segment for segment, _ in segments] == [segment for segment, _ in expected]
    assert [weight for _, weight in segments] == pytest.approx([w for _, w in expected])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a BREAK b", [("a", 1.0), (BREAK, -1.0), ("b", 1.0)]),
        ("a,BREAK,b", [("a,", 1.0), (BREAK, -1.0), (",b", 1.0)]),
        ("BREAK", [(BREAK, -1.0)]),
        ("BREAK a", [(BREAK, -1.0), ("a", 1.0)]),
        # Only the uppercase whole word.
        ("break BREAKfast aBREAK", [("break BREAKfast aBREAK", 1.0)]),
        # Inside brackets it still breaks; the text around it keeps its weight.
        ("(a BREAK b)", [("a", 1.1), (BREAK, -1.0), ("b", 1.1)]),
        ("(a BREAK b:1.5) c", [("a", 1.5), (BREAK, -1.0), ("b", 1.5), (" c", 1.0)]),
        ("[a BREAK", [("a", 1 / 1.1), (BREAK, -1.0)]),
        ("a BREAK BREAK b", [("a", 1.0), (BREAK, -1.0), (BREAK, -1.0), ("b", 1.0)]),
    ],
)
def test_break(text: str, expected: list[tuple[str, float]]) -> None:
    assert parse_attention(text) == expected


def test_is_break_tells_the_marker_from_text() -> None:
    assert is_break((BREAK, -1.0))
    assert not is_break((BREAK, 1.0))
    assert not is_break(("BREAKS", -1.0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal (text) [with] (weights:1.2) \\(x\\)", []),
        ("[a:b:5] [a|b] ([x:y:0.5]:1.2)", []),  # editing syntax is no mistake
        ("a (((house:1.3)) b", [Problem(2, "'(' is never closed")]),
        ("[a", [Problem(0, "'[' is never closed")]),
        ("a) b]", [Problem(1, "')' closes nothing"), Problem(4, "']' closes nothing")]),
        ("(x:abc)", [Problem(2, "weight 'abc' is not a number")]),
        ("(x: 1.2.3 )", [Problem(2, "weight '1.2.3' is not a number")]),
        ("(x:)", [Problem(2, "no weight")]),
        ("(x:" + "9" * 400 + ")", [Problem(2, "weight is too large")]),
        ("([a)]", [Problem(3, "')' closes the bracket at 0 across the one at 1")]),
    ],
)
def test_syntax_problems(text: str, expected: list[Problem]) -> None:
    assert syntax_problems(text) == expected


def test_syntax_problems_are_in_offset_order() -> None:
    problems = syntax_problems("(a [b ) c]] (d:x)")
    assert [problem.offset for problem in problems] == sorted(p.offset for p in problems)
    assert len(problems) >= 3


WIKI_EDITING = (
    "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
    "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]"
)


@pytest.mark.parametrize(
    ("text", "steps", "expected"),
    [
        (
            "a [fantasy:cyberpunk:16] landscape",
            100,
            [(16, "a fantasy landscape"), (100, "a cyberpunk landscape")],
        ),
        (
            WIKI_EDITING,
            100,
            [
                (25, "fantasy landscape with a mountain and an oak in foreground shoddy"),
                (50, "fantasy landscape with a lake and an oak in foreground in background shoddy"),
                (
                    60,
                    "fantasy landscape with a lake and an oak in foreground in background "
                    "masterful",
                ),
                (75, "fantasy landscape with a lake and an oak in background masterful"),
                (100, "fantasy landscape with a lake and a christmas tree in background masterful"),
            ],
        ),
        (
            "[cow|horse] in a field",
            4,
            [
                (1, "cow in a field"),
                (2, "horse in a field"),
                (3, "cow in a field"),
                (4, "horse in a field"),
            ],
        ),
        (
            "national geographic photo [parrot|owl|eagle]",
            4,
            [
                (1, "national geographic photo parrot"),
                (2, "national geographic photo owl"),
                (3, "national geographic photo eagle"),
                (4, "national geographic photo parrot"),
            ],
        ),
    ],
)
def test_schedule_documented_examples(text: str, steps: int, expected: object) -> None:
    assert prompt_schedules(text, steps) == expected


@pytest.mark.parametrize(
    ("text", "steps", "expected"),
    [
        ("a [b:10] c", 20, [(10, "a  c"), (20, "a b c")]),  # [to:when] adds after
        ("a [b::10] c", 20, [(10, "a b c"), (20, "a  c")]),  # [from::when] removes after
        ("[a:b:0.5]", 10, [(5, "a"), (10, "b")]),  # below 1: a fraction of the steps
        ("[a:b:.5]", 10, [(5, "a"), (10, "b")]),
        ("[a:b:1]", 10, [(1, "a"), (10, "b")]),  # 1 and above: a step number
        ("[a:b:7.9]", 10, [(7, "a"), (10, "b")]),  # truncated
        ("[a:b: 3 ]", 10, [(3, "a"), (10, "b")]),
        ("[a:b:0]", 10, [(10, "b")]),
        ("[a:b:0.01]", 10, [(10, "b")]),  # 0.1 of a step: `to` from the start
        ("[a:b:50]", 10, [(10, "a")]),  # past the end: `from` throughout
        ("[a:b:-3]", 10, [(10, "b")]),
        # Nested edits; the boundaries of every edit count, equal neighbours merge.
        ("[[a:b:10]:c:5]", 20, [(5, "a"), (20, "c")]),
        ("[a:[b:c:15]:5]", 20, [(5, "a"), (15, "b"), (20, "c")]),
        # Editing inside emphasis, emphasis inside editing: emphasis passes through.
        ("([a:b:5]:1.2)", 10, [(5, "(a:1.2)"), (10, "(b:1.2)")]),
        ("[(a:1.2):[b]:5]", 10, [(5, "(a:1.2)"), (10, "[b]")]),
        # Alternation: empty options, inside editing, nested.
        ("[a|]x", 3, [(1, "ax"), (2, "x"), (3, "ax")]),
        ("[a|b|c]", 2, [(1, "a"), (2, "b")]),
        ("[[a|b]:c:2]", 4, [(1, "a"), (2, "b"), (4, "c")]),
        ("[a|a]", 3, [(3, "a")]),
        # Escapes are kept for the emphasis parser; escaped brackets are not syntax.
        ("\\[a:b:1\\] [c:d:1]", 3, [(1, "\\[a:b:1\\] c"), (3, "\\[a:b:1\\] d")]),
    ],
)
def test_schedule_rules(text: str, steps: int, expected: object) -> None:
    assert prompt_schedules(text, steps) == expected


@pytest.mark.parametrize(
    "text",
    [
        "plain prompt, (emphasis:1.2), [less]",
        "[a:b]",  # no number: not an edit
        "[a:b:c]",
        "[a:b:c:5]",  # too many parts
        "[a|b:5]",  # mixed separators
        "[a:b:5",  # unclosed
        "(a [b:c:x)",
        "a | b : c",  # outside square brackets these are text
        "",
        "[[[[",
        "]]]][",
        "\\[a:b:1]",
    ],
)
def test_schedule_leaves_everything_else_as_it_is(text: str) -> None:
    assert prompt_schedules(text, 20) == [(20, text)]


def test_schedule_rejects_no_steps() -> None:
    with pytest.raises(ValueError, match="steps"):
        prompt_schedules("a", 0)


def test_schedule_keeps_unclosed_outer_brackets_literal_but_parses_inside() -> None:
    assert prompt_schedules("[x [a:b:2]", 4) == [(2, "[x a"), (4, "[x b")]
    assert prompt_schedules("(x [a|b]", 2) == [(1, "(x a"), (2, "(x b")]


@pytest.mark.parametrize(
    "text",
    [
        "[" * 20_000 + "a",
        "[" * 20_000 + "a:b:2" + "]" * 20_000,
        "(" * 20_000 + "[a|b]",
        "[a:b:" + "1" * 20_000 + "x]",
        "(a:" + "1" * 20_000 + "x)",
        "a" + " " * 20_000 + "BREAK" + " " * 20_000,
        "(a" * 5_000 + ")" * 5_000,
        "[x:y:" + "9" * 400 + "] (z:" + "9" * 400 + ")",
    ],
)
def test_hostile_prompts_are_fast_and_never_raise(text: str) -> None:
    started = time.perf_counter()
    for _, prompt in prompt_schedules(text, 4):
        parse_attention(prompt)
        syntax_problems(prompt)
    assert time.perf_counter() - started < 5.0


_SYNTAX_TEXT = st.text(alphabet="ab c,()[]:|\\.0123456789-BREAK\n", max_size=60)
_FUZZ = settings(
    max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _letters(text: str) -> list[str]:
    return [char for char in text if char.isalpha()]


@_FUZZ
@given(_SYNTAX_TEXT)
def test_attention_loses_only_syntax(text: str) -> None:
    segments = parse_attention(text)
    problems = syntax_problems(text)
    # Letters are never syntax: every one survives, in order (BREAK segments spell BREAK).
    assert _letters("".join(segment for segment, _ in segments)) == _letters(text)
    assert all(segment or len(segments) == 1 for segment, _ in segments)
    assert all(0 <= problem.offset < max(len(text), 1) for problem in problems)
    # Neighbours are merged: no two adjacent text runs share a weight.
    for (a, wa), (b, wb) in itertools.pairwise(segments):
        assert is_break((a, wa)) or is_break((b, wb)) or wa != wb


def _is_subsequence(part: str, whole: str) -> bool:
    remaining = iter(whole)
    return all(char in remaining for char in part)


@_FUZZ
@given(_SYNTAX_TEXT, st.integers(1, 12))
def test_schedule_only_chooses_and_drops(text: str, steps: int) -> None:
    schedule = prompt_schedules(text, steps)
    assert schedule[-1][0] == steps
    assert [step for step, _ in schedule] == sorted({step for step, _ in schedule})
    assert all(1 <= step <= steps for step, _ in schedule)
    for _, prompt in schedule:
        assert _is_subsequence(prompt, text)  # a branch is chosen, nothing is made up
        parse_attention(prompt)
    if "[" not in text:
        assert schedule == [(steps, text)]
