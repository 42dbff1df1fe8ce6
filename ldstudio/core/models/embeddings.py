"""Textual-inversion embeddings named in prompts, and A1111's `TI hashes`; any thread.

Torch-free: the engine (which loads the vectors) and the metadata writer (which records what a
job used) find embeddings in a prompt the same way, so `TI hashes` names exactly the ones the
text encoder saw. Two ways to name one, as the tools that made the files do:

- A1111: the file's stem as a word of the prompt (`easynegative`, `(easynegative:1.2)`),
  case-insensitive as CLIP's lower-casing tokenizer makes it, and wherever that tokenizer
  makes it tokens of its own (see `_word_pattern`). Only embeddings that fit the
  model count: a word naming one of another family stays a word, as in A1111.
- ComfyUI: `embedding:name` (also `embedding:name.safetensors`, `embedding:sub/name`); an
  explicit name that names no usable embedding is an error, never dropped.

An embedding's name is its file stem; pickles (`.pt`, `.bin`) in a folder named `embeddings`
(A1111's `embeddings/`, ComfyUI's `models/embeddings`) are refused by name with the convert
hint, since nothing reads a pickle's header to tell what it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ldstudio.core.models.detection import FAMILY_LABELS, KIND_EMBEDDING, STATUS_OK, family_label
from ldstudio.core.models.entries import ModelEntry, resolve_model_path
from ldstudio.core.models.registry import ModelRegistry
from ldstudio.core.models.safetensors import (
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    pickle_refusal,
)

EMBEDDING_PREFIX = "embedding:"
EMBEDDINGS_FOLDER = "embeddings"
TI_HASH_LENGTH = 12  # A1111's `shorthash`: the first 12 hex of the file's sha256
# What ComfyUI's `embedding:` takes: up to a space, a comma or prompt syntax.
_EXPLICIT_NAME = r"[^\s,()\[\]{}<>|:\\]+"
_TI_PAIR = re.compile(r"\s*([^:,]+?)\s*:\s*([0-9a-fA-F]+)\s*(?:,|$)")


def embedding_name(entry: ModelEntry) -> str:
    """The word that names an embedding in a prompt: its file stem (the scan's name without
    a Hugging Face cache prefix)."""
    return entry.name.split("/")[-1]


def fits_family(entry: ModelEntry, family: str) -> bool:
    """Whether an embedding's vectors fit a model of `family` ("sd1", "sd2", "sdxl", or
    another: "custom"); one of unknown width fits only a model of no known family."""
    if entry.kind != KIND_EMBEDDING or entry.status != STATUS_OK:
        return False
    if entry.family:
        return entry.family == family
    return family not in FAMILY_LABELS


@dataclass(frozen=True)
class EmbeddingIndex:
    """The embeddings a prompt can name for one model, and the pickles it cannot use."""

    usable: dict[str, list[ModelEntry]]  # lower-case name → the embeddings of that name
    other_family: dict[str, ModelEntry]  # lower-case name → an embedding of another family
    pickles: dict[str, ModelEntry]  # lower-case stem → a pickle in an `embeddings` folder
    family: str
    pattern: re.Pattern[str]  # explicit names, and the usable names and pickles as words

    @classmethod
    def build(cls, entries: Iterable[ModelEntry], family: str) -> EmbeddingIndex:
        usable: dict[str, list[ModelEntry]] = {}
        other: dict[str, ModelEntry] = {}
        pickles: dict[str, ModelEntry] = {}
        for entry in entries:
            name = embedding_name(entry).lower()
            if fits_family(entry, family):
                usable.setdefault(name, []).append(entry)
            elif entry.kind == KIND_EMBEDDING:
                other.setdefault(name, entry)
            elif _is_embedding_pickle(entry):
                pickles.setdefault(name, entry)
        for name in usable:  # a converted file beside its pickle: the .safetensors is used
            pickles.pop(name, None)
        words = sorted({*usable, *pickles}, key=lambda n: (-len(n), n))  # longest first
        parts = [f"{re.escape(EMBEDDING_PREFIX)}(?P<explicit>{_EXPLICIT_NAME})"]
        if words:
            alternatives = "|".join(_word_pattern(word) for word in words)
            parts.append(f"(?i:(?P<word>{alternatives}))")
        return cls(usable, other, pickles, family, re.compile("|".join(parts)))

    def split(self, text: str) -> list[str | ModelEntry]:
        """`text` as its plain pieces and the embeddings in it, in order; ValueError for an
        explicit name that names no usable embedding, a pickle, or an ambiguous name."""
        if EMBEDDING_PREFIX not in text and not (self.usable or self.pickles):
            return [text]
        pieces: list[str | ModelEntry] = []
        last = 0
        for match in self.pattern.finditer(text):
            explicit = match.group("explicit")
            entry = self._explicit(explicit) if explicit is not None else self._word(match[0])
            if match.start() > last:
                pieces.append(text[last : match.start()])
            pieces.append(entry)
            last = match.end()
        if last < len(text):
            pieces.append(text[last:])
        return pieces or [text]

    def _word(self, word: str) -> ModelEntry:
        key = word.lower()
        if key in self.pickles:
            raise ValueError(f"embedding {word!r}: {pickle_refusal(self.pickles[key].path)}")
        return self._one(word, self.usable[key])

    def _explicit(self, raw: str) -> ModelEntry:
        name = raw.rstrip(".").split("/")[-1]
        lowered = name.lower()
        for suffix in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES:
            if lowered.endswith(suffix):
                name, lowered = name[: -len(suffix)], lowered[: -len(suffix)]
                break
        found = self.usable.get(lowered)
        if found:
            exact = [e for e in found if embedding_name(e) == name]
            return self._one(EMBEDDING_PREFIX + raw, exact or found)
        if lowered in self.pickles:
            raise ValueError(
                f"{EMBEDDING_PREFIX}{raw}: {pickle_refusal(self.pickles[lowered].path)}"
            )
        if lowered in self.other_family:
            entry = self.other_family[lowered]
            theirs = family_label(entry.family) if entry.family else "a custom text encoder"
            raise ValueError(
                f"{EMBEDDING_PREFIX}{raw}: {entry.path} is an embedding for {theirs}; this "
                f"model is {family_label(self.family)}; use an embedding made for it"
            )
        known = ", ".join(sorted(embedding_name(e[0]) for e in self.usable.values()))
        raise ValueError(
            f"{EMBEDDING_PREFIX}{raw}: no embedding of that name fits this model; known: "
            f"{known or 'none found'}. Add the folder that holds it (A1111's embeddings/, "
            "ComfyUI's models/embeddings) with `ldstudio models add-folder PATH`."
        )

    @staticmethod
    def _one(written: str, found: list[ModelEntry]) -> ModelEntry:
        if len(found) > 1:
            places = "; ".join(str(e.path) for e in found)
            raise ValueError(
                f"embedding {written!r} names {len(found)} files ({places}); keep one, or "
                "rename the others"
            )
        return found[0]


def _word_pattern(name: str) -> str:
    """`name` where CLIP's tokenizer makes it tokens of its own, which is where A1111 finds
    an embedding: a name's letters must not run on into letters beside it (a letter run is one
    BPE word); digits and punctuation are words of their own ("neg" is in "neg_2", not in
    "negative")."""
    before = r"(?<![^\W\d_])" if name[:1].isalpha() else ""
    after = r"(?![^\W\d_])" if name[-1:].isalpha() else ""
    return f"{before}{re.escape(name)}{after}"


def _is_embedding_pickle(entry: ModelEntry) -> bool:
    return (
        entry.path.suffix.lower() in PICKLE_SUFFIXES
        and entry.path.parent.name.lower() == EMBEDDINGS_FOLDER
    )


def prompt_embeddings(texts: Sequence[str], index: EmbeddingIndex) -> list[ModelEntry]:
    """The embeddings `texts` name, each once, in order of first use; ValueError as `split`."""
    found: dict[Path, ModelEntry] = {}
    for text in texts:
        for piece in index.split(text):
            if isinstance(piece, ModelEntry):
                found.setdefault(piece.path, piece)
    return list(found.values())


def used_embeddings(
    texts: Sequence[str], model: str, registry: ModelRegistry | None = None
) -> list[ModelEntry]:
    """The embeddings a job's prompts use on `model` (a path, "" for the bundled one), found
    among the user's models (`registry`, default the shared one); ValueError as `split`."""
    registry = registry if registry is not None else ModelRegistry.shared()
    entries = registry.entries()
    if not any(EMBEDDING_PREFIX in text for text in texts) and not any(
        entry.kind == KIND_EMBEDDING or _is_embedding_pickle(entry) for entry in entries
    ):
        return []  # nothing to look for: the model's family is not needed
    family = registry.family(resolve_model_path(model))
    return prompt_embeddings(texts, EmbeddingIndex.build(entries, family))


def ti_hashes_text(named: Sequence[tuple[str, str]]) -> str:
    """A1111's `TI hashes` value from (name, full sha256) pairs: "name: 0123456789ab, ...";
    A1111 drops ':' and ',' from a name, which would break the list."""
    return ", ".join(
        f"{name.replace(':', '').replace(',', '')}: {digest[:TI_HASH_LENGTH]}"
        for name, digest in named
    )


def parse_ti_hashes(value: str) -> list[tuple[str, str]]:
    """(name, short hash) pairs of a `TI hashes` value; ValueError when it is not that list."""
    pairs: list[tuple[str, str]] = []
    position = 0
    text = value.strip()
    while position < len(text):
        match = _TI_PAIR.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"TI hashes: {value[:80]!r} is not a list of `name: hash` pairs")
        pairs.append((match[1], match[2].lower()))
        position = match.end()
    if not pairs:
        raise ValueError("TI hashes: empty; expected `name: hash` pairs")
    return pairs


@dataclass(frozen=True)
class EmbeddingUse:
    """One embedding an image's `TI hashes` names, as found here: its file ("" when none of
    that name is in the model folders) and what is wrong ("" when the hash matches)."""

    name: str
    short_hash: str
    path: str = ""
    problem: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "hash": self.short_hash,
            "path": self.path,
            "problem": self.problem,
        }


def check_ti_hashes(
    named: Sequence[tuple[str, str]], entries: Sequence[ModelEntry], sha256: Callable[[Path], str]
) -> list[EmbeddingUse]:
    """Each (name, short hash) of a `TI hashes` value looked up among `entries` by name and
    checked against `sha256` of the file; a missing or different file says so in `problem`."""
    found = []
    for name, short in named:
        key = name.lower()
        candidates = [
            e for e in entries if e.kind == KIND_EMBEDDING and _ti_name(embedding_name(e)) == key
        ]
        if not candidates:
            found.append(
                EmbeddingUse(
                    name,
                    short,
                    problem=(
                        f"embedding {name!r} ({short}) not found in the model folders: the prompt "
                        f"reads {name!r} as plain words until its file is added (`ldstudio models "
                        "add-folder PATH`, e.g. A1111's embeddings/)"
                    ),
                )
            )
            continue
        digests = {}
        for entry in candidates:
            try:
                digests[entry.path] = sha256(entry.path)
            except OSError:
                continue
        same = [path for path, digest in digests.items() if digest.startswith(short)]
        if same:
            found.append(EmbeddingUse(name, short, str(same[0])))
            continue
        path = candidates[0].path
        theirs = digests.get(path, "")[:TI_HASH_LENGTH] or "unreadable"
        found.append(
            EmbeddingUse(
                name,
                short,
                str(path),
                problem=(
                    f"embedding {name!r}: {path} has hash {theirs}, the image was made with "
                    f"{short}: another version of the file, so the result may differ"
                ),
            )
        )
    return found


def _ti_name(name: str) -> str:
    """A name as `TI hashes` writes it (':' and ',' dropped), lower-case for matching."""
    return name.replace(":", "").replace(",", "").lower()
