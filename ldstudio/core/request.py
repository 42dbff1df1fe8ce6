"""Request: the versioned, kind-tagged job a front end submits; pure data, any thread.

One kind exists now (`txt2img`, whose face is GenerationParams, so every image already in a
library keeps reading back); `img2img`, `inpaint` and `upscale` join it. Input images and
masks travel as content hashes into the library's blob store (`inputs`), never as pixels or
paths, so a request round-trips through JSON, through a PNG and over a network unchanged.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from ldstudio.core.params import GenerationParams

REQUEST_VERSION = 2  # version 1 was the bare GenerationParams dict (images made before 0.x)
KIND_TXT2IMG = "txt2img"
KINDS: tuple[str, ...] = (KIND_TXT2IMG,)
# What each kind needs in `inputs` (blob hashes by role).
_INPUTS: dict[str, tuple[str, ...]] = {KIND_TXT2IMG: ()}
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Request:
    """One job: what kind of work, its parameters, and the blobs it reads (role → sha256)."""

    params: GenerationParams
    kind: str = KIND_TXT2IMG
    inputs: tuple[tuple[str, str], ...] = field(default=())

    def validate(self) -> Request:
        """Raise ValueError naming what is wrong and what is allowed; return self."""
        if self.kind not in KINDS:
            raise ValueError(f"kind: {self.kind!r} is not supported; allowed: {', '.join(KINDS)}")
        self.params.validate()
        wanted = _INPUTS[self.kind]
        roles = [role for role, _digest in self.inputs]
        if sorted(roles) != sorted(wanted):
            need = ", ".join(wanted) or "none"
            raise ValueError(f"inputs: {self.kind} takes {need}; got {', '.join(roles) or 'none'}")
        for role, digest in self.inputs:
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                raise ValueError(f"inputs[{role}]: {digest!r} is not a sha256 blob hash")
        return self

    def resolved(self) -> Request:
        """Validated, with a concrete seed (see GenerationParams.resolved)."""
        self.validate()
        return dataclasses.replace(self, params=self.params.resolved())

    def input(self, role: str) -> str:
        return dict(self.inputs)[role]

    def replace(self, **changes: Any) -> Request:
        return dataclasses.replace(self, **changes)

    @classmethod
    def txt2img(cls, params: GenerationParams) -> Request:
        return cls(params=params)


def as_request(value: Request | GenerationParams) -> Request:
    """Front ends may hand in bare parameters: that is a txt2img request."""
    return value if isinstance(value, Request) else Request.txt2img(value)
