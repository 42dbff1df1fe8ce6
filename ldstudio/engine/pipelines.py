"""Task pipelines (img2img, inpaint) made from the loaded pipeline with `from_pipe`; torch thread.

diffusers' `AutoPipelineFor*.from_pipe` wraps the very same module objects — UNet, VAE, text
encoders, tokenizers, scheduler — in another pipeline class, so a task pipeline costs no
weights (and no dtype conversion: unlike `DiffusionPipeline.from_pipe`, the auto classes do not
call `.to(dtype)`, which would convert the shared modules in place). Each is built on first use
and kept on its LoadedModel, so a reload drops it with the model it shares.

LoRA adapters live in the shared modules, so they apply to every sibling at once; the VAE is a
per-pipeline slot (see ExtrasState). Memory hooks set on the modules (attention slicing, SDPA
off, a compiled UNet) carry over. CPU offload's hooks are the base pipeline's, chained in its
model order (text encoder → UNet → VAE); a sibling that runs them in another order (img2img
encodes with the VAE first) may keep one more model on the GPU: to check when img2img is wired.
"""

from __future__ import annotations

from typing import Any

from ldstudio.engine.models import LoadedModel

TASK_IMG2IMG = "img2img"
TASK_INPAINT = "inpaint"
_AUTO_CLASSES = {
    TASK_IMG2IMG: "AutoPipelineForImage2Image",
    TASK_INPAINT: "AutoPipelineForInpainting",
}
TASKS: tuple[str, ...] = tuple(_AUTO_CLASSES)


def task_pipeline(loaded: LoadedModel, task: str) -> Any:
    """The loaded model's pipeline for `task`, sharing every module with `loaded.pipe`."""
    if task not in _AUTO_CLASSES:
        raise ValueError(f"task: {task!r} is not supported; allowed: {', '.join(TASKS)}")
    pipe = loaded.tasks.get(task)
    if pipe is None:
        import diffusers

        auto = getattr(diffusers, _AUTO_CLASSES[task])
        pipe = auto.from_pipe(loaded.pipe)
        pipe.set_progress_bar_config(disable=True)
        loaded.tasks[task] = pipe
    return pipe
