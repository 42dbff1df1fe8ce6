"""Draft: the request being edited, before it is a GenerationParams; plain Python, one thread.

The panes write what the user edits into one Draft and show what it holds; a front end asks it
for `to_params()` when it submits, and `load(params)` puts a request back for editing (reuse
parameters, the last session's settings). Values are kept as they were edited, right or wrong:
`problems()` says what is wrong with each field in the CLI's words (`field_problem`), and
`to_params()` refuses them. Nothing is clamped here.

Styles are held two ways: `picked_styles` are applied to the prompts on `to_params()` (the
prompt box holds the user's own words), `styles` names those already in the prompts' text as
written (a style not in styles.csv, or whose text there changed); the request names both,
kept first. `load` takes the known styles (`set_known_styles`) back out of a request's prompts
(`core.prompts.style_split`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ldstudio.core.params import RANDOM_SEED, GenerationParams, field_problem
from ldstudio.core.prompts.style_split import split_styles
from ldstudio.core.prompts.styles import Style, apply_styles

SeedMode = Literal["random", "fixed", "reuse last"]
SEED_MODES: tuple[SeedMode, ...] = ("random", "fixed", "reuse last")

# A listener gets the names of the fields that changed, once per change.
Listener = Callable[[frozenset[str]], None]

_DEFAULTS = GenerationParams(prompt="")


@dataclass(frozen=True)
class DraftValues:
    """What is being edited. The fields are GenerationParams' own, except the seed: `seed_mode`
    says which seed a job gets — none yet (random), `seed` (fixed), or `last_seed`, the seed of
    the most recent job (reuse last; random while no job has run); and `picked_styles`, the
    styles (with their text) applied to the prompts on submit."""

    prompt: str = _DEFAULTS.prompt
    negative_prompt: str = _DEFAULTS.negative_prompt
    model: str = _DEFAULTS.model
    scheduler: str = _DEFAULTS.scheduler
    steps: int = _DEFAULTS.steps
    guidance_scale: float = _DEFAULTS.guidance_scale
    guidance_cutoff: float = _DEFAULTS.guidance_cutoff
    width: int | None = _DEFAULTS.width  # None with height None: the model's native size
    height: int | None = _DEFAULTS.height
    seed_mode: SeedMode = "random"
    seed: int = 0
    last_seed: int | None = None
    batch_size: int = _DEFAULTS.batch_size
    batch_count: int = _DEFAULTS.batch_count
    preview_method: str = _DEFAULTS.preview_method
    preview_interval: int = _DEFAULTS.preview_interval
    vae: str = _DEFAULTS.vae
    loras: tuple[tuple[str, float], ...] = _DEFAULTS.loras
    clip_skip: int = _DEFAULTS.clip_skip
    emphasis: str = _DEFAULTS.emphasis
    variation_seed: int | None = _DEFAULTS.variation_seed
    variation_strength: float = _DEFAULTS.variation_strength
    seed_resize_from: tuple[int, int] | None = _DEFAULTS.seed_resize_from
    styles: tuple[str, ...] = _DEFAULTS.styles  # already in the prompts' text
    picked_styles: tuple[Style, ...] = ()  # applied to the prompts by to_params()


_PARAM_FIELDS = tuple(f.name for f in dataclasses.fields(GenerationParams))
# The fields a GenerationParams and a draft share as they are (the seed is the draft's own).
_LOADED = tuple(
    f.name for f in dataclasses.fields(DraftValues) if f.name in _PARAM_FIELDS and f.name != "seed"
)


class Draft:
    """The values being edited, their listeners, and the way to and from GenerationParams."""

    def __init__(self, params: GenerationParams | None = None) -> None:
        self._values = DraftValues()
        # Fields no editor knows (added by newer features) pass through from the last load.
        self._base = _DEFAULTS
        self._listeners: list[Listener] = []
        self._known_styles: tuple[Style, ...] = ()
        if params is not None:
            self.load(params)

    @property
    def values(self) -> DraftValues:
        return self._values

    @property
    def known_styles(self) -> tuple[Style, ...]:
        return self._known_styles

    def set_known_styles(self, styles: tuple[Style, ...]) -> None:
        """The styles of styles.csv, which `load` takes back out of a request's prompts."""
        self._known_styles = tuple(styles)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(changed field names)` after each change; returns the unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def update(self, **changes: Any) -> frozenset[str]:
        """Set fields (DraftValues' names) and notify once; returns the names that changed.

        Setting a field to the value it has is no change: an editor that writes back what it
        was just told ends the exchange there.
        """
        mode = changes.get("seed_mode", self._values.seed_mode)
        if mode not in SEED_MODES:
            raise ValueError(f"seed_mode: {mode!r} is not one of {', '.join(SEED_MODES)}")
        new = dataclasses.replace(self._values, **changes)
        changed = frozenset(
            name for name in changes if not _same(getattr(new, name), getattr(self._values, name))
        )
        if changed:
            self._values = new
            self._notify(changed)
        return changed

    def load(self, params: GenerationParams) -> frozenset[str]:
        """Edit `params` from here on; a concrete seed becomes the fixed seed, "random" keeps
        the fixed seed as it was; the known styles named are taken out of the prompts and
        picked. One notification (none when nothing changed)."""
        self._base = params
        changes: dict[str, Any] = {name: getattr(params, name) for name in _LOADED}
        split = split_styles(
            params.prompt, params.negative_prompt, params.styles, self._known_styles
        )
        changes.update(
            prompt=split.prompt,
            negative_prompt=split.negative_prompt,
            styles=split.kept,
            picked_styles=split.picked,
        )
        if isinstance(params.seed, int):
            changes.update(seed_mode="fixed", seed=params.seed)
        else:
            changes["seed_mode"] = "random"
        return self.update(**changes)

    def seed_value(self) -> int | str:
        """The seed a job submitted now gets: an integer, or "random"."""
        values = self._values
        if values.seed_mode == "fixed":
            return values.seed
        if values.seed_mode == "reuse last" and values.last_seed is not None:
            return values.last_seed
        return RANDOM_SEED

    def unchecked(self) -> GenerationParams:
        """The values as a GenerationParams, not validated (they may be wrong)."""
        values = self._values
        edited = {name: getattr(values, name) for name in _LOADED}
        picked = values.picked_styles
        prompt, negative = apply_styles(values.prompt, values.negative_prompt, picked)
        edited.update(
            prompt=prompt,
            negative_prompt=negative,
            styles=values.styles + tuple(style.name for style in picked),
        )
        return self._base.replace(**edited, seed=self.seed_value())

    def to_params(self) -> GenerationParams:
        """The values, validated: ValueError naming the first wrong field, as the CLI says it."""
        return self.unchecked().validate()

    def problems(self) -> dict[str, str]:
        """What is wrong with each wrong field (GenerationParams' names), in field order."""
        params = self.unchecked()
        found = {name: field_problem(name, getattr(params, name)) for name in _PARAM_FIELDS}
        return {name: problem for name, problem in found.items() if problem}

    def _notify(self, changed: frozenset[str]) -> None:
        for listener in list(self._listeners):
            listener(changed)


def _same(a: object, b: object) -> bool:
    # NaN is not equal to itself; as "no change" it cannot start an endless exchange.
    return a == b or (a != a and b != b)
