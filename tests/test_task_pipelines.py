"""Task pipelines built from the loaded one with from_pipe: the same modules, no new weights."""

from __future__ import annotations

import gc
import shutil
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch

from ldstudio.engine.backend import DiffusersBackend
from ldstudio.engine.device import DeviceChoice
from ldstudio.engine.models import load_pipeline
from ldstudio.engine.pipelines import TASK_IMG2IMG, TASK_INPAINT, TASKS, task_pipeline

SHARED = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
CLASSES = {
    TASK_IMG2IMG: "StableDiffusionImg2ImgPipeline",
    TASK_INPAINT: "StableDiffusionInpaintPipeline",
}


def tensors(pipe: Any) -> dict[str, tuple[int, torch.dtype]]:
    """Every weight of the pipeline's modules: where it lives and in which dtype."""
    found = {}
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            for key, tensor in component.state_dict(keep_vars=True).items():
                found[f"{name}.{key}"] = (tensor.data_ptr(), tensor.dtype)
    return found


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_task_pipelines_share_every_module_and_allocate_no_parameters(
    tiny_model: Path, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_pipeline(tiny_model, DeviceChoice("cpu", dtype))
    base = loaded.pipe
    before = tensors(base)
    made: list[Any] = []
    new = torch.nn.Parameter.__new__

    def counting(cls: Any, *args: Any, **kwargs: Any) -> Any:
        made.append(cls)
        return new(cls, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Parameter, "__new__", counting)
    siblings = {task: task_pipeline(loaded, task) for task in TASKS}
    monkeypatch.undo()
    assert made == []
    for task, sibling in siblings.items():
        assert type(sibling).__name__ == CLASSES[task]
        for name in SHARED:
            assert getattr(sibling, name) is getattr(base, name), name
        assert task_pipeline(loaded, task) is sibling  # built once per loaded model
        assert tensors(sibling) == before
    # Not one weight moved or changed dtype (DiffusionPipeline.from_pipe would cast to fp32).
    assert tensors(base) == before
    with pytest.raises(ValueError, match="allowed: img2img, inpaint"):
        task_pipeline(loaded, "upscale")


def test_task_pipelines_go_with_their_model_when_it_reloads(
    tiny_model: Path, tmp_path: Path
) -> None:
    engine = DiffusersBackend(device="cpu")
    loaded = engine.load(str(tiny_model), lambda e: None)
    sibling = weakref.ref(task_pipeline(loaded, TASK_IMG2IMG))
    again = engine.load(str(tiny_model), lambda e: None)
    assert again is loaded and task_pipeline(again, TASK_IMG2IMG) is sibling()
    del loaded, again
    copy = shutil.copytree(tiny_model, tmp_path / "other-model")
    other = engine.load(str(copy), lambda e: None)
    gc.collect()
    assert sibling() is None and other.tasks == {}
    assert task_pipeline(other, TASK_IMG2IMG).unet is other.pipe.unet
    engine.close()
