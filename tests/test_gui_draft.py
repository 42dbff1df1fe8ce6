"""The prompt and parameter panes edit one Draft: edits go in once, changes come out, no loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from ldstudio.core.draft import Draft
from ldstudio.core.params import GenerationParams
from ldstudio.qt.model_info import ModelInfo
from ldstudio.qt.params_pane import CUSTOM, FIXED, NATIVE, ParamsPane
from ldstudio.qt.prompt_pane import PromptPane

pytestmark = pytest.mark.gui


@pytest.fixture
def draft() -> Draft:
    return Draft()


@pytest.fixture
def panes(qtbot, draft: Draft) -> tuple[PromptPane, ParamsPane]:
    prompt, params = PromptPane(draft=draft), ParamsPane(draft=draft)
    qtbot.addWidget(prompt)
    qtbot.addWidget(params)
    params.set_model_info(ModelInfo(Path("m"), "m", 64, 8, 4))
    return prompt, params


def heard(draft: Draft) -> list[frozenset[str]]:
    notices: list[frozenset[str]] = []
    draft.subscribe(notices.append)
    return notices


def test_an_edit_reaches_the_draft_once(panes, draft: Draft) -> None:
    prompt_pane, params_pane = panes
    notices = heard(draft)
    params_pane.steps_spin.setValue(37)
    assert notices == [frozenset({"steps"})]
    assert draft.values.steps == 37
    prompt_pane.prompt_edit.setPlainText("  a red circle \n")
    assert notices[1:] == [frozenset({"prompt"})]
    assert draft.values.prompt == "a red circle"  # stripped, the editor left as typed
    assert prompt_pane.prompt_edit.toPlainText() == "  a red circle \n"
    assert draft.to_params().prompt == "a red circle"


def test_a_change_in_the_draft_is_shown_and_not_written_back(panes, draft: Draft) -> None:
    prompt_pane, params_pane = panes
    notices = heard(draft)
    draft.update(steps=12, guidance_scale=4.5, seed_mode="fixed", seed=99)
    assert len(notices) == 1  # the panes agree: nothing more to say
    assert params_pane.steps_spin.value() == 12
    assert params_pane.guidance_spin.value() == 4.5
    assert params_pane.seed_mode.currentIndex() == FIXED
    assert params_pane.seed_spin.value() == 99
    draft.load(GenerationParams(prompt="a lighthouse", negative_prompt="fog", steps=8))
    assert len(notices) == 2
    assert prompt_pane.prompt() == "a lighthouse"
    assert prompt_pane.negative_prompt() == "fog"
    assert params_pane.params("a lighthouse", "fog") == draft.to_params()


def test_a_typed_size_stays_custom_and_wrong_values_are_kept(panes, draft: Draft) -> None:
    _prompt_pane, params_pane = panes
    params_pane.aspect_combo.setCurrentIndex(CUSTOM)
    params_pane.width_spin.setValue(64)
    params_pane.height_spin.setValue(64)  # a preset's size, typed: still Custom
    assert params_pane.aspect_combo.currentIndex() == CUSTOM
    assert (draft.values.width, draft.values.height) == (64, 64)
    params_pane.width_spin.setValue(100)
    assert draft.values.width == 100  # not snapped
    assert "width: 100 is not a multiple of 8" in params_pane.problem_label.text()
    params_pane.aspect_combo.setCurrentIndex(NATIVE)
    assert (draft.values.width, draft.values.height) == (None, None)
    assert params_pane.problem_label.isHidden()


def test_what_the_form_cannot_show_is_written_back_as_shown(panes, draft: Draft) -> None:
    _prompt_pane, params_pane = panes
    draft.update(model="/not/listed.safetensors", steps=10, preview_interval=40)
    # The picker shows the bundled model, the interval stops at the steps: so does the draft.
    assert draft.values.model == params_pane.model_value() == ""
    assert draft.values.preview_interval == params_pane.preview_interval_spin.value() == 10


def test_a_pane_gone_stops_listening(qtbot, draft: Draft) -> None:
    pane = ParamsPane(draft=draft)
    pane.deleteLater()
    qtbot.waitUntil(lambda: not draft._listeners, timeout=2000)
    draft.update(steps=5)  # no widget left to show it: no error either
