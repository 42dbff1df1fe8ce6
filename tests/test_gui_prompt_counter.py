"""The prompt pane's token counters (pytest-qt, offscreen): the engine's chunk layout for the
selected model, recounted once typing pauses, styles included, syntax errors still marked."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from ldstudio.core.draft import Draft
from ldstudio.core.paths import bundled_model_dir
from ldstudio.core.prompts import Style, counter_text
from ldstudio.core.prompts.counter import prompt_chunks
from ldstudio.core.prompts.tokenizer import ClipTokenizer, bundled_clip_folder, folder_tokenizer
from ldstudio.qt.prompt_pane import COUNT_DELAY_MS, PromptPane

pytestmark = pytest.mark.gui


@pytest.fixture
def pane(qtbot) -> PromptPane:
    pane = PromptPane(draft=Draft())
    qtbot.addWidget(pane)
    pane.show()
    return pane


def bundled() -> ClipTokenizer:
    return folder_tokenizer(bundled_model_dir() / "tokenizer")


def counted(pane: PromptPane, qtbot, box: str = "prompt") -> str:
    qtbot.waitUntil(lambda: not pane._count_timer.isActive(), timeout=2000)
    return pane.token_counter(box)


def test_the_counters_start_at_zero_and_follow_the_typing_once_it_pauses(
    pane: PromptPane, qtbot
) -> None:
    assert pane.token_counter() == "0/75" and pane.token_counter("negative") == "0/75"
    assert pane.counters["prompt"].isVisible()
    pane.prompt_edit.setPlainText("a red circle")
    assert pane.token_counter() == "0/75"  # not on every keystroke: a moment later
    assert pane._count_timer.isActive() and pane._count_timer.interval() == COUNT_DELAY_MS
    expected = counter_text(prompt_chunks("a red circle", bundled()))
    assert counted(pane, qtbot) == expected != "0/75"
    pane.negative_edit.setPlainText("blurry")
    assert counted(pane, qtbot, "negative") == counter_text(prompt_chunks("blurry", bundled()))


def test_a_burst_of_edits_is_counted_once(pane: PromptPane, qtbot, monkeypatch) -> None:
    calls: list[str] = []
    real = pane.count_tokens

    def spy() -> None:
        calls.append(pane.prompt())
        real()

    monkeypatch.setattr(pane, "count_tokens", spy)
    pane._count_timer.timeout.disconnect()
    pane._count_timer.timeout.connect(pane.count_tokens)
    for text in ("a", "a r", "a re", "a red", "a red circle"):
        pane.prompt_edit.setPlainText(text)
    counted(pane, qtbot)
    assert calls == ["a red circle"]


def test_long_prompts_break_and_weights_count_as_the_engine_chunks(pane: PromptPane, qtbot) -> None:
    tokenizer = bundled()
    long = ", ".join(f"a circle number {i}" for i in range(60))
    pane.prompt_edit.setPlainText(long)
    chunks = prompt_chunks(long, tokenizer)
    assert len(chunks) >= 2
    assert counted(pane, qtbot) == f"{chunks[-1].used}/75 · {len(chunks)} chunks"
    assert "Tokens per chunk of 75: " + ", ".join(str(c.used) for c in chunks) in (
        pane.counters["prompt"].toolTip()
    )
    # The negative prompt is padded to the prompt's chunks: its tooltip says so.
    assert "Padded with empty chunks to the other prompt's" in pane.counters["negative"].toolTip()
    pane.prompt_edit.setPlainText("a red BREAK circle")
    assert counted(pane, qtbot) == f"{len(tokenizer.encode('circle'))}/75 · 2 chunks"
    pane.prompt_edit.setPlainText("((a red:1.3)) [circle] <lora:detail:0.8>")
    assert counted(pane, qtbot) == f"{len(tokenizer.encode('a red circle'))}/75"


def test_a_syntax_error_is_underlined_and_still_counted(pane: PromptPane, qtbot) -> None:
    pane.prompt_edit.setPlainText("a (red:1.2 circle")
    assert pane.syntax_problems() == "⚠ '(' is never closed"
    assert counted(pane, qtbot) == counter_text(prompt_chunks("a (red:1.2 circle", bundled()))


def test_the_selected_models_tokenizer_is_used(pane: PromptPane, qtbot, tmp_path: Path) -> None:
    pane.prompt_edit.setPlainText("a photograph of a lighthouse")
    bundled_count = counted(pane, qtbot)
    # A single-file checkpoint is tokenized with the shipped CLIP files, as the engine does.
    pane.draft.update(model=str(tmp_path / "model.safetensors"))
    clip = ClipTokenizer.from_folder(bundled_clip_folder())
    assert counted(pane, qtbot) == f"{len(clip.encode('a photograph of a lighthouse'))}/75"
    assert pane.token_counter() != bundled_count  # the bundled model's vocabulary is tiny
    broken = tmp_path / "broken"
    (broken / "tokenizer").mkdir(parents=True)
    (broken / "tokenizer" / "vocab.json").write_text("{", encoding="utf-8")
    shutil.copy(bundled_clip_folder() / "merges.txt", broken / "tokenizer")
    pane.draft.update(model=str(broken))
    assert counted(pane, qtbot) == "? tokens"
    assert "Tokens not counted: cannot read the CLIP tokenizer" in (
        pane.counters["prompt"].toolTip()
    )


def test_prompt_editing_counts_its_longest_prompt_at_the_drafts_steps(
    pane: PromptPane, qtbot
) -> None:
    text = "a [circle:" + "big red square " * 30 + ":0.5]"
    pane.draft.update(steps=10)
    pane.prompt_edit.setPlainText(text)
    chunks = prompt_chunks(text, bundled(), steps=10)
    assert counted(pane, qtbot) == counter_text(chunks)
    assert len(chunks) == 2  # the prompt after step 5, not "a circle" before it


def test_picked_styles_are_counted(pane: PromptPane, qtbot) -> None:
    pane.prompt_edit.setPlainText("a circle")
    before = counted(pane, qtbot)
    style = Style("long", "{prompt}, " + "red square " * 40, "blurry")
    pane.draft.update(picked_styles=(style,))
    applied = "a circle, " + ("red square " * 40).strip()
    assert counted(pane, qtbot) == counter_text(prompt_chunks(applied, bundled())) != before
    assert counted(pane, qtbot, "negative") == counter_text(prompt_chunks("blurry", bundled()))


def test_a_2000_character_prompt_keeps_the_box_responsive(pane: PromptPane, qtbot) -> None:
    text = ", ".join(f"castle{i} on a hill with (towers:1.1)" for i in range(60))[:2000]
    start = time.perf_counter()
    pane.prompt_edit.setPlainText(text)  # the keystroke's own work: highlighting, the draft
    typed = time.perf_counter() - start
    start = time.perf_counter()
    pane.count_tokens()
    count = time.perf_counter() - start
    assert "chunks" in pane.token_counter()
    assert typed < 0.1 and count < 0.1, (typed, count)


def test_the_negative_prompts_editing_is_counted_too(pane: PromptPane, qtbot) -> None:
    text = "a [circle:" + "big red square " * 30 + ":0.5]"
    pane.draft.update(steps=10)
    pane.negative_edit.setPlainText(text)
    chunks = prompt_chunks(text, bundled(), steps=10)
    assert len(chunks) == 2
    assert counted(pane, qtbot, "negative") == counter_text(chunks)
    assert "Padded with empty chunks to the other prompt's 2" in pane.counters["prompt"].toolTip()
