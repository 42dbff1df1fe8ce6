"""Textual-inversion embeddings in a job's prompts, put in at the text encoders; torch thread.

Nothing is added to the tokenizer or to the text encoder's vocabulary: an embedding in a
prompt takes placeholder ids in its chunk (negative, so no real token is one), one per vector
(each counts as a token of the 75, and `chunk_prompt` keeps them in one chunk, as A1111
does), and while those chunks are encoded a forward hook on the token-embedding layer writes
the vectors into their rows; the position embeddings are added after it as for any token.
The loaded pipeline stays as it was, so a job's embeddings cannot reach the next job, and a
prompt that names none is encoded exactly as before. Vectors are read from .safetensors only
(`core/models/embeddings.py` finds them in the prompt) and kept per file version.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ldstudio.core.models import ModelEntry, ModelFileError, ModelRegistry
from ldstudio.core.models.detection import SDXL_EMBEDDING_WIDTHS, embedding_layout, unet_family
from ldstudio.core.models.embeddings import EmbeddingIndex
from ldstudio.core.models.safetensors import checked_header, read_small_tensor
from ldstudio.core.prompts import Tokenize
from ldstudio.engine.models import ModelError

# Per file version (path, size, mtime_ns): its tensors by name. Embeddings are kilobytes; the
# bound only keeps a long session's edits from piling up.
_CACHE: dict[tuple[str, int, int], dict[str, np.ndarray]] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 256


def pipe_family(pipe: Any) -> str:
    """The family the embeddings of a pipeline must be made for ("sd1", "sd2", "sdxl", ...)."""
    config = getattr(getattr(pipe, "unet", None), "config", None)
    if config is None:
        return "custom"
    return unet_family(
        getattr(config, "cross_attention_dim", None), getattr(config, "addition_embed_type", None)
    )


def embedding_index(pipe: Any, entries: Sequence[ModelEntry] | None = None) -> EmbeddingIndex:
    """The embeddings a prompt can name on `pipe`: of `entries`, by default the user's models
    as the shared registry has them scanned."""
    try:
        found = ModelRegistry.shared().entries() if entries is None else entries
    except ValueError as exc:  # a damaged models.json: the prompt's words cannot be looked up
        raise ModelError(f"embeddings: {exc}") from None
    return EmbeddingIndex.build(found, pipe_family(pipe))


def read_vectors(entry: ModelEntry) -> dict[str, np.ndarray]:
    """An embedding file's tensors (float32, shaped (vectors, width)); ModelError when the
    file is gone, damaged or no longer an embedding."""
    path = entry.path
    try:
        info = path.stat()
        key = (str(path.resolve()), info.st_size, info.st_mtime_ns)
        with _CACHE_LOCK:
            kept = _CACHE.get(key)
        if kept is not None:
            return kept
        header = checked_header(path)
        if embedding_layout(header.tensors) is None:
            raise ModelError(f"{path}: no longer holds a textual-inversion embedding; rescan")
        tensors = {
            name: read_small_tensor(header, name).reshape(-1, header.tensors[name].shape[-1])
            for name in header.tensors
        }
    except (OSError, ModelFileError) as exc:
        raise ModelError(f"embedding {path.stem!r}: {exc}") from None
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[key] = tensors
    return tensors


def names_embedding(index: EmbeddingIndex, text: str) -> bool:
    """Whether `text` names an embedding of `index`; ModelError for a name that is wrong."""
    return any(isinstance(piece, ModelEntry) for piece in _split(index, text))


def _split(index: EmbeddingIndex, text: str) -> list[str | ModelEntry]:
    try:
        return index.split(text)
    except ValueError as exc:
        raise ModelError(f"prompt: {exc}") from None


class EmbeddingTable:
    """The embeddings one encoding uses: their placeholder ids and, per text encoder, their
    vectors in the order of those ids (id -1 is row 0, -2 row 1, ...)."""

    def __init__(self, index: EmbeddingIndex, widths: Sequence[int]) -> None:
        self.index = index
        self.widths = list(widths)  # each text encoder's token width
        self.used: list[ModelEntry] = []
        self.groups: dict[int, int] = {}  # first placeholder id → vectors (for chunk_prompt)
        self._ids: dict[Path, list[int]] = {}
        self._rows: list[list[np.ndarray]] = [[] for _ in self.widths]
        self._count = 0

    def register(self, texts: Sequence[str]) -> None:
        """Give every embedding in `texts` its ids now: `chunk_prompt` needs all the groups
        before it tokenizes."""
        for text in texts:
            for piece in _split(self.index, text):
                if isinstance(piece, ModelEntry):
                    self.ids(piece)

    def ids(self, entry: ModelEntry) -> list[int]:
        """The placeholder ids of `entry`'s vectors, its vectors read on first use."""
        known = self._ids.get(entry.path)
        if known is not None:
            return known
        parts = self._parts(entry)
        vectors = parts[0].shape[0]
        ids = [-(self._count + i + 1) for i in range(vectors)]
        for rows, part in zip(self._rows, parts, strict=True):
            rows.append(part)
        self._count += vectors
        self._ids[entry.path] = ids
        self.groups[ids[0]] = vectors
        self.used.append(entry)
        return ids

    def rows(self, encoder: int) -> torch.Tensor:
        """(placeholders, width) vectors of text encoder `encoder`."""
        return torch.from_numpy(np.concatenate(self._rows[encoder]))

    def _parts(self, entry: ModelEntry) -> list[np.ndarray]:
        tensors = read_vectors(entry)
        if len(self.widths) == 2:  # SDXL: each text encoder has its own vectors
            if set(tensors) != set(SDXL_EMBEDDING_WIDTHS):
                raise ModelError(f"embedding {entry.name!r}: {entry.path} is not an SDXL one")
            parts = [tensors["clip_l"], tensors["clip_g"]]
        else:
            if len(tensors) != 1:
                raise ModelError(
                    f"embedding {entry.name!r}: {entry.path} holds one vector set per SDXL "
                    "text encoder; this model has one text encoder"
                )
            parts = list(tensors.values())
        for part, width in zip(parts, self.widths, strict=True):
            if part.shape[-1] != width:
                raise ModelError(
                    f"embedding {entry.name!r}: {entry.path} has vectors {part.shape[-1]} wide; "
                    f"this model's text encoder takes {width}"
                )
        return parts

    def tokenizer(self, tokenize: Tokenize) -> Tokenize:
        """`tokenize` with each embedding in a text replaced by its placeholder ids."""

        def run(texts: list[str]) -> list[list[int]]:
            split = [_split(self.index, text) for text in texts]
            plain = [piece for pieces in split for piece in pieces if isinstance(piece, str)]
            token_lists = iter(tokenize(plain) if plain else [])
            out = []
            for pieces in split:
                ids: list[int] = []
                for piece in pieces:
                    ids += next(token_lists) if isinstance(piece, str) else self.ids(piece)
                out.append(ids)
            return out

        return run


def token_width(encoder: Any) -> int:
    return int(_token_embedding(encoder).embedding_dim)


@contextmanager
def substituted(
    encoder: Any, ids: torch.Tensor, rows: torch.Tensor | None, stand_in: int
) -> Iterator[torch.Tensor]:
    """`ids` with each placeholder (a negative id) made `stand_in` (a real token, never EOS:
    the pooled output is read at the first EOS), and the placeholders' rows of the token
    embedding replaced by `rows` while the block runs."""
    mask = ids < 0
    if rows is None or not bool(mask.any()):
        yield ids
        return
    which = -ids[mask] - 1

    def hook(_module: Any, _args: Any, output: torch.Tensor) -> torch.Tensor:
        replaced = output.clone()
        replaced[mask] = rows.to(output.device, output.dtype)[which]
        return replaced

    handle = _token_embedding(encoder).register_forward_hook(hook)
    try:
        yield torch.where(mask, torch.full_like(ids, stand_in), ids)
    finally:
        handle.remove()


def _token_embedding(encoder: Any) -> Any:
    """The token-embedding layer (transformers 5 dropped the `text_model` wrapper)."""
    return getattr(encoder, "text_model", encoder).embeddings.token_embedding
