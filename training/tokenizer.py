"""A small CLIP byte-level BPE vocabulary for the shapes grammar, saved as a CLIPTokenizer.

Every byte is a token (so any text, emoji included, tokenises without an unknown token) and
every grammar word becomes exactly one token through a chain of merges.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from transformers import CLIPTokenizer

# GPT-2/CLIP's reversible map from bytes to printable characters.
from transformers.convert_slow_tokenizer import bytes_to_unicode

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77  # as in Stable Diffusion, so prompts are padded/truncated the familiar way


def _bpe(word: tuple[str, ...], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Plain BPE (lowest-rank pair first), the algorithm CLIP's tokenizer runs."""
    parts = list(word)
    while len(parts) > 1:
        pairs = [
            (ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(itertools.pairwise(parts))
        ]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        pair = (parts[i], parts[i + 1])
        merged: list[str] = []
        j = 0
        while j < len(parts):
            if j < len(parts) - 1 and (parts[j], parts[j + 1]) == pair:
                merged.append(parts[j] + parts[j + 1])
                j += 2
            else:
                merged.append(parts[j])
                j += 1
        parts = merged
    return parts


def build_vocab(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte tokens plus merges that make each word (ASCII, lower case) one token."""
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        symbols = (*word[:-1], word[-1] + "</w>")
        # Add the merge of the first two pieces BPE leaves until the word is one piece;
        # earlier merges keep their rank, so words already covered stay single tokens.
        while len(parts := _bpe(symbols, ranks)) > 1:
            pair = (parts[0], parts[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            tokens.append(pair[0] + pair[1])
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def build_tokenizer(words: list[str], folder: Path) -> CLIPTokenizer:
    """Write vocab.json + merges.txt for `words` and load them as a CLIPTokenizer."""
    vocab, merges = build_vocab(words)
    tok = CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        model_max_length=MAX_LENGTH,
    )
    tok.save_pretrained(folder)
    # vocab.json + merges.txt beside tokenizer.json keep the folder loadable by tokenizer
    # implementations that build the BPE from those two files (transformers 4.x' slow one).
    folder.joinpath("vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
    folder.joinpath("merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), "utf-8"
    )
    tok = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    for word in words:
        ids = tok(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise RuntimeError(f"grammar word {word!r} tokenises into {len(ids)} pieces")
    return tok
