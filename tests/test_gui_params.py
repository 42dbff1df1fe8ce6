"""The parameter pane: invalid values are kept and refused; doubtful combinations are explained."""

from __future__ import annotations

import pytest

from ldstudio.core.params import SEED_MAX, GenerationParams
from ldstudio.qt.model_info import ModelInfo
from ldstudio.qt.params_pane import ASPECTS, CUSTOM, NATIVE, REUSE_LAST, ParamsPane

pytestmark = pytest.mark.gui


@pytest.fixture
def pane(qtbot) -> ParamsPane:
    widget = ParamsPane()
    qtbot.addWidget(widget)
    from pathlib import Path

    widget.set_model_info(ModelInfo(Path("m"), "m", 64, 8, 4))
    return widget


def test_sizes_must_be_multiples_of_8(pane: ParamsPane) -> None:
    # Issue 12.4: a size that is no multiple of 8 used to be refused while typed and snapped
    # to the nearest one on leaving (67 -> 64, 69 -> 72). It is now kept and refused instead.
    pane.aspect_combo.setCurrentIndex(CUSTOM)
    spin = pane.width_spin
    spin.setValue(65)
    assert spin.value() == 65
    assert "width: 65 is not a multiple of 8" in pane.problem_label.text()
    spin.setValue(72)
    assert pane.problem_label.isHidden()
    # The arrows stay on multiples of 8 within the range.
    assert (spin.allowed, spin.singleStep()) == ((64, 4096), 8)
    spin.setValue(4096)
    spin.stepBy(1)
    assert spin.value() == 4096
    spin.setValue(67)
    spin.stepBy(1)
    assert spin.value() == 72


def test_presets_keep_the_native_area_in_multiples_of_8(pane: ParamsPane) -> None:
    for index, (_, ratio) in enumerate(ASPECTS):
        if ratio is None:
            continue
        pane.aspect_combo.setCurrentIndex(index)
        w, h = pane.chosen_size()
        assert w is not None and h is not None
        assert w % 8 == 0 and h % 8 == 0
        assert (w >= h) == (ratio[0] >= ratio[1])
        assert not pane.width_spin.isEnabled()
    pane.aspect_combo.setCurrentIndex(NATIVE)
    assert pane.chosen_size() == (None, None)
    assert pane.params("p", "").width is None


def test_params_round_trip_through_the_widgets(pane: ParamsPane) -> None:
    params = GenerationParams(
        prompt="p",
        scheduler="DDIM",
        steps=33,
        guidance_scale=3.5,
        width=128,
        height=72,
        seed=SEED_MAX,
        batch_size=3,
        batch_count=2,
        preview_method="none",
        preview_interval=4,
    )
    pane.set_params(params)
    assert pane.params("p", "") == params
    assert pane.aspect_combo.currentIndex() == CUSTOM
    assert not pane.preview_interval_spin.isEnabled()  # no previews: no interval


def test_preview_interval_cannot_exceed_steps(pane: ParamsPane) -> None:
    pane.steps_spin.setValue(5)
    assert pane.preview_interval_spin.maximum() == 5
    pane.preview_interval_spin.setValue(50)
    assert pane.preview_interval_spin.value() == 5


def test_doubtful_combinations_are_explained_inline(pane: ParamsPane) -> None:
    pane.scheduler_combo.setCurrentText("LCM")
    pane.steps_spin.setValue(30)
    assert "LCM is meant for" in pane.hint_label.text()
    pane.steps_spin.setValue(4)
    pane.guidance_spin.setValue(1.5)
    assert "LCM" not in pane.hint_label.text()
    pane.batch_size_spin.setValue(2)
    pane.batch_count_spin.setValue(3)
    assert "6 images" in pane.hint_label.text()
    pane.aspect_combo.setCurrentIndex(CUSTOM)
    pane.width_spin.setValue(512)
    pane.height_spin.setValue(512)
    assert "far above the model's native 64×64" in pane.hint_label.text()


def test_reuse_last_seed(pane: ParamsPane) -> None:
    pane.seed_mode.setCurrentIndex(REUSE_LAST)
    assert "first seed is random" in pane.hint_label.text()
    assert pane.params("p", "").seed == "random"
    pane.set_last_seed(1234)
    assert pane.params("p", "").seed == 1234
    assert not pane.seed_spin.isEnabled()


def test_latent_size_text() -> None:
    from pathlib import Path

    info = ModelInfo(Path("sd"), "sd", 512, 8, 4)
    assert info.latent_text(None, None) == "latent 64×64×4 for a 512×512 image"
    assert info.latent_text(64, 96) == "latent 8×12×4 for a 64×96 image"


def test_model_info_is_read_from_the_folder(tiny_model) -> None:
    from ldstudio.qt.model_info import read_model_info

    info = read_model_info(tiny_model)
    assert info.vae_factor == 8 and info.latent_channels == 4
    assert info.native_size == info.vae_factor * 8 or info.native_size > 0


def test_a_folder_without_model_index_is_refused(tmp_path) -> None:
    from ldstudio.qt.model_info import read_model_info

    with pytest.raises(ValueError, match=r"model_index\.json is missing"):
        read_model_info(tmp_path)


def test_a_restored_size_survives_the_model_info_arriving_later(qtbot) -> None:
    from pathlib import Path

    widget = ParamsPane()  # as at start-up: settings restored before the model is read
    qtbot.addWidget(widget)
    widget.set_params(GenerationParams(prompt="x", width=512, height=512))
    widget.set_model_info(ModelInfo(Path("m"), "m", 64, 8, 4))  # native 64, not 512
    assert widget.chosen_size() == (512, 512)
    assert widget.aspect_combo.currentIndex() == CUSTOM


def test_text_still_being_typed_is_taken_before_a_job(qtbot, pane: ParamsPane) -> None:
    pane.aspect_combo.setCurrentIndex(CUSTOM)
    pane.show()
    pane.width_spin.setFocus()
    pane.width_spin.lineEdit().selectAll()
    qtbot.keyClicks(pane.width_spin.lineEdit(), "104")
    pane.steps_spin.lineEdit().selectAll()
    qtbot.keyClicks(pane.steps_spin.lineEdit(), "33")
    pane.commit_typed()
    params = pane.params("x", "")
    assert (params.width, params.steps) == (104, 33)
    # Issue 12.4: a width of 100 used to be snapped to 96 here, silently. It is kept as typed
    # and the job is refused with the CLI's message.
    pane.width_spin.setFocus()
    pane.width_spin.lineEdit().selectAll()
    qtbot.keyClicks(pane.width_spin.lineEdit(), "100")
    pane.commit_typed()
    assert pane.width_spin.text() == "100 px"
    with pytest.raises(ValueError, match="width: 100 is not a multiple of 8"):
        pane.params("x", "")
