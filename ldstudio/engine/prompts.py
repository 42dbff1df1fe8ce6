"""Prompts as A1111 means them: weights, BREAK, long prompts and clip skip; torch thread.

A prompt without any of these goes to the pipeline as text, exactly as before (the same
pixels for the same seed). Otherwise it is encoded here, as A1111 does (its documented
behaviour): the prompt is parsed (`core/prompts`: `(x:1.2)`, `[x]`, BREAK), tokenized and cut
into chunks of 75 tokens (comma backtracking, BREAK forces a chunk), each chunk wrapped in
BOS/EOS and encoded on its own, the chunks concatenated along the sequence; each token's
embedding is multiplied by its weight and (emphasis "original") the result rescaled to the
unweighted mean, or (emphasis "comfy") moved away from the empty prompt's embedding by the
weight, ComfyUI's way. The negative prompt is padded with empty chunks to the same length.
SDXL runs both text encoders per chunk (their outputs concatenated) and takes the pooled
embedding from the first chunk. Clip skip N uses the hidden state N − 1 layers before the last
(SD 1.x/2.x through the final layer norm, as diffusers does; SDXL's penultimate default moves
back by N − 1). Textual-inversion embeddings named in a prompt (`engine/embeddings.py`) take
one token per vector and are never split between chunks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from ldstudio.core.models.embeddings import EmbeddingIndex
from ldstudio.core.params import GenerationParams
from ldstudio.core.prompts import chunk_prompt, parse_attention, prompt_schedules
from ldstudio.engine.embeddings import (
    EmbeddingTable,
    embedding_index,
    names_embedding,
    substituted,
    token_width,
)

CHUNK = 75  # tokens per chunk, without BOS/EOS (CLIP's 77-token window)


@dataclass
class Encoded:
    """The pipeline's keyword arguments for one job's prompts (instead of the texts)."""

    kwargs: dict[str, Any]
    chunks: int  # chunks per prompt (both prompts padded to this)


def scheduled_arguments(
    pipe: Any, params: GenerationParams, device: Any, steps: int
) -> tuple[dict[str, Any], PromptSwap | None]:
    """The pipeline's prompt arguments for a call of `steps` denoiser steps, and the step
    piece that swaps the conditioning when the prompt or the negative prompt edits itself
    ([a:b:when], [a|b]); None without editing syntax (the prompts as `prompt_arguments`
    gives them)."""
    positives = prompt_schedules(params.prompt, steps)
    negatives = prompt_schedules(params.negative_prompt, steps)
    if len(positives) == 1 and len(negatives) == 1:
        single = params.replace(prompt=positives[0][1], negative_prompt=negatives[0][1])
        return prompt_arguments(pipe, single, device), None
    texts = [text for _end, text in positives] + [text for _end, text in negatives]
    embeds, pooled, _count = encode_texts(pipe, texts, params, device)
    split = len(positives)
    kwargs: dict[str, Any] = {
        "prompt_embeds": embeds[0],
        "negative_prompt_embeds": embeds[split],
    }
    if pooled[0] is not None:  # SDXL: the pooled embeddings stay the first prompts'
        kwargs["pooled_prompt_embeds"] = pooled[0]
        kwargs["negative_pooled_prompt_embeds"] = pooled[split]
    swap = PromptSwap(
        [end for end, _text in positives],
        embeds[:split],
        embeds[split],
        negative_ends=[end for end, _text in negatives],
        negative_embeds=embeds[split:],
    )
    return kwargs, swap


class PromptSwap:
    """A step piece: after step `ends[i]` the conditioning becomes prompt i + 1's (A1111's
    prompt editing and alternation), for every image of the batch, guided or not; the
    negative prompt likewise after `negative_ends[i]` (by default `negative` throughout)."""

    tensor_inputs = ("prompt_embeds",)

    def __init__(
        self,
        ends: list[int],
        embeds: list[torch.Tensor],
        negative: torch.Tensor,
        *,
        negative_ends: list[int] | None = None,
        negative_embeds: list[torch.Tensor] | None = None,
    ) -> None:
        self.ends, self.embeds = ends, embeds
        if (negative_ends is None) != (negative_embeds is None):
            raise ValueError("negative_ends and negative_embeds come together")
        self.negative_ends = negative_ends if negative_ends is not None else [0]
        self.negative_embeds = negative_embeds if negative_embeds is not None else [negative]

    @staticmethod
    def _index(ends: list[int], step: int) -> int:
        """The prompt of (1-based) step `step`."""
        return next((i for i, end in enumerate(ends) if step <= end), len(ends) - 1)

    def __call__(
        self, pipe: Any, step_index: int, timestep: Any, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        done = step_index + 1
        index = self._index(self.ends, done + 1)
        negative_index = self._index(self.negative_ends, done + 1)
        if index == self._index(self.ends, done) and negative_index == self._index(
            self.negative_ends, done
        ):
            return kwargs  # the next step keeps this step's prompts
        current = kwargs["prompt_embeds"]
        batch = current.shape[0]
        pos = self.embeds[index].to(current.device, current.dtype)
        guided = batch % 2 == 0 and getattr(pipe, "do_classifier_free_guidance", False)
        if guided:
            half = batch // 2
            neg = self.negative_embeds[negative_index].to(current.device, current.dtype)
            kwargs["prompt_embeds"] = torch.cat(
                [neg.expand(half, -1, -1), pos.expand(half, -1, -1)]
            )
        else:
            kwargs["prompt_embeds"] = pos.expand(batch, -1, -1)
        return kwargs


def prompt_arguments(pipe: Any, params: GenerationParams, device: Any) -> dict[str, Any]:
    """The pipeline's prompt arguments: the texts (a plain prompt, as always) or embeddings."""
    index = embedding_index(pipe)
    if not needs_encoding(pipe, params, index):
        # The texts without syntax that means nothing here ("(red:1.0)" is "red"); a prompt
        # without brackets or escapes is passed exactly as written.
        negative = plain_text(params.negative_prompt)
        return {"prompt": plain_text(params.prompt), "negative_prompt": negative or None}
    return encode(pipe, params, device, index).kwargs


def plain_text(prompt: str) -> str:
    """A prompt whose weights are all 1, as the text encoder is to read it."""
    if not any(c in prompt for c in "()[]\\"):
        return prompt
    return "".join(text for text, _weight in parse_attention(prompt))


def needs_encoding(
    pipe: Any, params: GenerationParams, index: EmbeddingIndex | None = None
) -> bool:
    """Whether the prompts must be encoded here: weights or BREAK, more than one chunk, a
    clip skip, an embedding (of `index`, default the user's). A plain short prompt goes to
    the pipeline as text (today's pixels)."""
    if params.clip_skip != 1:
        return True
    index = index if index is not None else embedding_index(pipe)
    for text in (params.prompt, params.negative_prompt):
        segments = parse_attention(text)
        if any(weight != 1.0 for _text, weight in segments):  # BREAK is weight -1
            return True
        if any(names_embedding(index, segment_text) for segment_text, _weight in segments):
            return True
        if len(_tokenize(pipe.tokenizer, ["".join(t for t, _w in segments)])[0]) > CHUNK:
            return True
    return False


def encode(
    pipe: Any, params: GenerationParams, device: Any, index: EmbeddingIndex | None = None
) -> Encoded:
    """Prompt and negative prompt embeddings (and SDXL's pooled ones) for `pipe`."""
    embeds, pooled, count = encode_texts(
        pipe, [params.prompt, params.negative_prompt], params, device, index
    )
    kwargs: dict[str, Any] = {"prompt_embeds": embeds[0], "negative_prompt_embeds": embeds[1]}
    if pooled[0] is not None:
        kwargs["pooled_prompt_embeds"] = pooled[0]
        kwargs["negative_pooled_prompt_embeds"] = pooled[1]
    return Encoded(kwargs, count)


def encode_texts(
    pipe: Any,
    texts: list[str],
    params: GenerationParams,
    device: Any,
    index: EmbeddingIndex | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor | None], int]:
    """Each text's embeddings, all padded to the same number of chunks (the UNet's context is
    one length per call), each one's pooled embedding (SDXL; else None), and that count.
    Embeddings are those of `index` (default: the user's that fit `pipe`)."""
    encoders = [(pipe.tokenizer, pipe.text_encoder)]
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    if sdxl:
        encoders.append((pipe.tokenizer_2, pipe.text_encoder_2))
    index = index if index is not None else embedding_index(pipe)
    table = EmbeddingTable(index, [token_width(encoder) for _tokenizer, encoder in encoders])
    parsed = [parse_attention(text) for text in texts]
    table.register([segment for segments in parsed for segment, _weight in segments])
    per_prompt = []
    for segments in parsed:
        per_prompt.append(
            [
                chunk_prompt(
                    segments,
                    table.tokenizer(functools.partial(_tokenize, tokenizer)),
                    comma_token=_comma(tokenizer),
                    pad_token=_pad(tokenizer),
                    length=CHUNK,
                    groups=table.groups,
                )
                for tokenizer, _encoder in encoders
            ]
        )
    count = max(len(chunks) for prompt in per_prompt for chunks in prompt)
    embeds, pooled = [], []
    for prompt in per_prompt:
        hidden_parts, first_pooled = [], None
        for number, ((tokenizer, encoder), chunks) in enumerate(zip(encoders, prompt, strict=True)):
            chunks = chunks + [_empty(tokenizer)] * (count - len(chunks))
            rows = table.rows(number) if table.used else None
            states, pooled_out = _encode_chunks(
                tokenizer, encoder, chunks, params, device, sdxl=sdxl, rows=rows
            )
            hidden_parts.append(states)
            if pooled_out is not None:
                first_pooled = pooled_out
        embeds.append(torch.cat(hidden_parts, dim=-1))
        pooled.append(first_pooled)
    return embeds, pooled, count


def _encode_chunks(
    tokenizer: Any,
    encoder: Any,
    chunks: list[Any],
    params: GenerationParams,
    device: Any,
    *,
    sdxl: bool,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(1, 77 × chunks, width) weighted hidden states, and the first chunk's pooled output
    (an encoder with a projection: SDXL's second); `rows`: the vectors of the chunks'
    embedding placeholders (negative ids), for this encoder."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    ids = torch.tensor(
        [[bos, *chunk.tokens, eos] for chunk in chunks], dtype=torch.long, device=device
    )
    weights = torch.tensor(
        [[1.0, *chunk.weights, 1.0] for chunk in chunks], dtype=torch.float32, device=device
    )
    skip = params.clip_skip - 1
    with torch.no_grad():
        # Only this call: comfy emphasis runs the encoder again on the empty prompt.
        with substituted(encoder, ids, rows, tokenizer.bos_token_id) as real_ids:
            out = encoder(real_ids, output_hidden_states=True)
        if sdxl:
            # SDXL conditions on the penultimate layer (diffusers' default); clip skip moves back.
            states = out.hidden_states[-(2 + skip)]
        elif skip:
            states = _final_norm(encoder)(out.hidden_states[-(1 + skip)])
        else:
            states = out[0]
        pooled = getattr(out, "text_embeds", None)
        first_pooled = pooled[:1] if pooled is not None else None
        states = states.float()
        if (weights != 1.0).any():
            states = _weighted(states, weights, params.emphasis, tokenizer, encoder, skip, sdxl)
    states = states.reshape(1, -1, states.shape[-1]).to(encoder.dtype)
    return states, first_pooled


def _weighted(
    states: torch.Tensor,
    weights: torch.Tensor,
    emphasis: str,
    tokenizer: Any,
    encoder: Any,
    skip: int,
    sdxl: bool,
) -> torch.Tensor:
    w = weights[..., None]
    if emphasis == "comfy":
        empty = _empty_states(tokenizer, encoder, skip, sdxl, states.device)
        return empty + (states - empty) * w
    weighted = states * w
    if emphasis == "original":  # A1111: multiply, then restore the unweighted mean
        weighted = weighted * (states.mean() / weighted.mean())
    return weighted


def _empty_states(tokenizer: Any, encoder: Any, skip: int, sdxl: bool, device: Any) -> torch.Tensor:
    """The empty prompt's hidden states (one chunk: BOS, EOS, padding), what ComfyUI weighs
    tokens against."""
    empty = _empty(tokenizer)
    ids = torch.tensor(
        [[tokenizer.bos_token_id, *empty.tokens, tokenizer.eos_token_id]], device=device
    )
    out = encoder(ids, output_hidden_states=True)
    if sdxl:
        return out.hidden_states[-(2 + skip)].float()
    if skip:
        return _final_norm(encoder)(out.hidden_states[-(1 + skip)]).float()
    return out[0].float()


def _final_norm(encoder: Any) -> Any:
    """The text encoder's final layer norm (transformers 5 dropped the `text_model` wrapper)."""
    return getattr(encoder, "text_model", encoder).final_layer_norm


def _tokenize(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return [
        list(ids)
        for ids in tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
    ]


def _comma(tokenizer: Any) -> int:
    token = tokenizer.convert_tokens_to_ids(",</w>")
    return int(token) if isinstance(token, int) and token != tokenizer.unk_token_id else -1


def _pad(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return int(pad if pad is not None else tokenizer.eos_token_id)


def _empty(tokenizer: Any) -> Any:
    from ldstudio.core.prompts import Chunk

    return Chunk([_pad(tokenizer)] * CHUNK, [1.0] * CHUNK, 0)
