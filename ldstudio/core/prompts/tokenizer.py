"""CLIP's byte-level BPE tokenizer in pure Python, so the window can count tokens without
transformers; any thread (the word cache is an LRU behind a lock).

It reproduces `transformers.CLIPTokenizer` (transformers 5, the tokenizers backend) token for
token: the special tokens `<|startoftext|>`/`<|endoftext|>` written in the text are matched
first, as they are written; the rest is NFC-normalised, each whitespace run becomes one space
and every character is lower-cased on its own; CLIP's pre-tokenizer splits it into words (the
contractions 's 't 're 've 'm 'll 'd, runs of letters, single digits, runs of other symbols;
whitespace dropped), each word is split once more by GPT-2's byte-level pattern and turned into
byte characters, and BPE merges them by rank with `</w>` ending the word. Letter and digit
classes come from Python's `unicodedata`, so a character newer than its Unicode version may
be classed otherwise than by transformers' regex engine.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import threading
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ldstudio.core.paths import DEFAULT_MODEL_NAME, bundled_model_dir, resource_path

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
END_OF_WORD = "</w>"
_CONTRACTIONS = ("re", "ve", "ll", "s", "t", "m", "d")  # after "'": two letters tried first
# The Unicode White_Space property (what `\s` means to the tokenizers' regex); str.isspace also
# counts U+001C–U+001F, which CLIP's pattern keeps as symbols.
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
LETTER, NUMBER, SPACE, OTHER = range(4)
CACHE_WORDS = 10_000  # distinct words remembered; a long prompt has a few hundred


def _byte_chars() -> list[str]:
    """GPT-2's byte → printable character table (bytes that print stand for themselves)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


_BYTE_CHARS = _byte_chars()


@functools.lru_cache(maxsize=4096)
def _kind(char: str) -> int:
    if char in _WHITE_SPACE:
        return SPACE
    category = unicodedata.category(char)[0]
    return LETTER if category == "L" else NUMBER if category == "N" else OTHER


def _run(text: str, start: int, kind: int) -> int:
    end = start + 1
    while end < len(text) and _kind(text[end]) == kind:
        end += 1
    return end


def clip_words(text: str) -> Iterator[str]:
    """CLIP's pre-tokenizer on normalised text, then GPT-2's split of each piece."""
    at = 0
    while at < len(text):
        char = text[at]
        special = next((s for s in (BOS, EOS) if text.startswith(s, at)), None)
        if special is not None:
            # GPT-2's split (ByteLevel's own regex) cuts the special text into "<|", name, "|>".
            yield from ("<|", special[2:-2], "|>")
            at += len(special)
            continue
        if char == "'":
            tail = next((c for c in _CONTRACTIONS if text.startswith(c, at + 1)), None)
            if tail is not None:
                yield text[at : at + 1 + len(tail)]
                at += 1 + len(tail)
                continue
        kind = _kind(char)
        if kind == SPACE:
            at += 1
        elif kind == NUMBER:
            yield char
            at += 1
        else:
            end = _run(text, at, kind)
            yield text[at:end]
            at = end


def normalize(text: str) -> str:
    """NFC, each whitespace run one space, each character lower-cased on its own (so a final
    capital sigma is σ, as the tokenizers' Lowercase makes it, not Python's context-aware ς)."""
    text = unicodedata.normalize("NFC", text)
    out: list[str] = []
    spaced = False
    for char in text:
        if char in _WHITE_SPACE:
            if not spaced:
                out.append(" ")
            spaced = True
        else:
            out.append(char.lower())
            spaced = False
    return "".join(out)


class ClipTokenizer:
    """A CLIP BPE vocabulary and merge list, turned into the encoder's token ids."""

    def __init__(
        self,
        vocab: Mapping[str, int],
        merges: Sequence[tuple[str, str]],
        *,
        cache_words: int = CACHE_WORDS,
    ) -> None:
        for token in (BOS, EOS):
            if token not in vocab:
                raise ValueError(f"the vocabulary has no {token} token")
        self.vocab = dict(vocab)
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.bos_token, self.eos_token = self.vocab[BOS], self.vocab[EOS]
        self.unk_token = self.eos_token  # CLIP's unknown token is <|endoftext|>
        self.pad_token = self.eos_token
        comma = self.vocab.get("," + END_OF_WORD)
        self.comma_token = comma if comma is not None else -1  # as the engine finds it
        self._lock = threading.Lock()
        self._inverse: dict[int, str] | None = None
        self._word_ids = functools.lru_cache(maxsize=cache_words)(self._bpe_ids)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str]) -> ClipTokenizer:
        """The tokenizer of a folder holding `vocab.json` and `merges.txt`; ValueError naming
        the file when one is missing or unreadable."""
        folder = Path(folder)
        vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
        try:
            vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
            lines = merges_file.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read the CLIP tokenizer in {folder}: {exc}") from None
        if not isinstance(vocab, dict):
            raise ValueError(f"{vocab_file}: not a token → id mapping")
        merges: list[tuple[str, str]] = []
        for number, line in enumerate(lines, 1):
            if not line.strip() or (number == 1 and line.startswith("#version")):
                continue
            pair = line.split()
            if len(pair) != 2:
                raise ValueError(f"{merges_file}, line {number}: not a pair of tokens")
            merges.append((pair[0], pair[1]))
        return cls(vocab, merges)

    def tokens(self, text: str) -> list[str]:
        """The token strings of `text`, without BOS/EOS (`a cat` → `a</w>`, `cat</w>`)."""
        if self._inverse is None:
            self._inverse = {v: k for k, v in self.vocab.items()}
        return [self._inverse[i] for i in self.encode(text)]

    def encode(self, text: str) -> list[int]:
        """The token ids of `text`, without BOS/EOS, padding or truncation."""
        ids: list[int] = []
        for piece, special in _split_special(text):
            if special:
                ids.append(self.vocab[piece])
                continue
            for word in clip_words(normalize(piece)):
                with self._lock:  # lru_cache is thread-safe; the lock keeps one BPE per word
                    ids.extend(self._word_ids(word))
        return ids

    def __call__(self, texts: list[str]) -> list[list[int]]:
        """`chunks.Tokenize`: one id list per text."""
        return [self.encode(text) for text in texts]

    def _bpe_ids(self, word: str) -> tuple[int, ...]:
        symbols = [_BYTE_CHARS[b] for b in word.encode("utf-8")]
        symbols[-1] += END_OF_WORD
        ranks = self.ranks
        while len(symbols) > 1:
            best, at = min(
                (ranks.get((a, b), len(ranks)), i)
                for i, (a, b) in enumerate(itertools.pairwise(symbols))
            )
            if best == len(ranks):
                break
            merged: list[str] = []
            pair = symbols[at], symbols[at + 1]
            i = 0
            while i < len(symbols):  # every occurrence of the pair, left to right
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
                    merged.append(pair[0] + pair[1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return tuple(self.vocab.get(s, self.unk_token) for s in symbols)


def _split_special(text: str) -> Iterator[tuple[str, bool]]:
    """The text around BOS/EOS written exactly so (before normalising, as added tokens are)."""
    at = 0
    while at < len(text):
        found = [(i, s) for s in (BOS, EOS) if (i := text.find(s, at)) >= 0]
        if not found:
            yield text[at:], False
            return
        start, special = min(found)
        if start > at:
            yield text[at:start], False
        yield special, True
        at = start + len(special)


@functools.lru_cache(maxsize=8)
def folder_tokenizer(folder: Path) -> ClipTokenizer:
    """One tokenizer per folder, read once (the vocabulary is a 1 MB JSON)."""
    return ClipTokenizer.from_folder(folder)


def bundled_clip_folder() -> Path:
    """The CLIP BPE files shipped for single-file checkpoints (SD 1.x/2.x/SDXL share them)."""
    return resource_path("configs", "clip-bpe")


def model_location(model: str) -> Path:
    """Where the model a job names lives: the bundled one for "" (or its name), else as given."""
    return bundled_model_dir() if model in ("", DEFAULT_MODEL_NAME) else Path(model)


def tokenizer_folder(model: str) -> Path:
    """The BPE files the engine tokenizes `model`'s prompts with: a diffusers folder's own
    `tokenizer/` (the bundled model's is a small vocabulary of its own), else the shipped
    CLIP files a single-file checkpoint is given."""
    own = model_location(model) / "tokenizer"
    if (own / "vocab.json").is_file() and (own / "merges.txt").is_file():
        return own
    return bundled_clip_folder()
