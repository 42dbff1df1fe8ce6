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
back by N − 1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from ldstudio.core.params import GenerationParams
from ldstudio.core.prompts import chunk_prompt, parse_attention, prompt_schedules

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
    piece that swaps the conditioning when the prompt edits itself ([a:b:when], [a|b]);
    None without editing syntax (the prompt as `prompt_arguments` gives it)."""
    schedule = prompt_schedules(params.prompt, steps)
    if len(schedule) == 1:
        return prompt_arguments(pipe, params.replace(prompt=schedule[0][1]), device), None
    texts = [text for _end, text in schedule]
    embeds, pooled, _count = encode_texts(pipe, [*texts, params.negative_prompt], params, device)
    kwargs: dict[str, Any] = {"prompt_embeds": embeds[0], "negative_prompt_embeds": embeds[-1]}
    if pooled[0] is not None:  # SDXL: the pooled embedding stays the first prompt's
        kwargs["pooled_prompt_embeds"] = pooled[0]
        kwargs["negative_pooled_prompt_embeds"] = pooled[-1]
    ends = [end for end, _text in schedule]
    return kwargs, PromptSwap(ends, embeds[:-1], embeds[-1])


class PromptSwap:
    """A step piece: after step `ends[i]` the conditioning becomes prompt i + 1's (A1111's
    prompt editing and alternation), for every image of the batch, guided or not."""

    tensor_inputs = ("prompt_embeds",)

    def __init__(self, ends: list[int], embeds: list[torch.Tensor], negative: torch.Tensor) -> None:
        self.ends, self.embeds, self.negative = ends, embeds, negative

    def _index(self, step: int) -> int:
        """The prompt of (1-based) step `step`."""
        return next((i for i, end in enumerate(self.ends) if step <= end), len(self.ends) - 1)

    def __call__(
        self, pipe: Any, step_index: int, timestep: Any, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        done = step_index + 1
        index = self._index(done + 1)
        if index == self._index(done):
            return kwargs  # the next step keeps this step's prompt
        current = kwargs["prompt_embeds"]
        batch = current.shape[0]
        pos = self.embeds[index].to(current.device, current.dtype)
        guided = batch % 2 == 0 and getattr(pipe, "do_classifier_free_guidance", False)
        if guided:
            half = batch // 2
            neg = self.negative.to(current.device, current.dtype)
            kwargs["prompt_embeds"] = torch.cat(
                [neg.expand(half, -1, -1), pos.expand(half, -1, -1)]
            )
        else:
            kwargs["prompt_embeds"] = pos.expand(batch, -1, -1)
        return kwargs


def prompt_arguments(pipe: Any, params: GenerationParams, device: Any) -> dict[str, Any]:
    """The pipeline's prompt arguments: the texts (a plain prompt, as always) or embeddings."""
    if not needs_encoding(pipe, params):
        # The texts without syntax that means nothing here ("(red:1.0)" is "red"); a prompt
        # without brackets or escapes is passed exactly as written.
        negative = plain_text(params.negative_prompt)
        return {"prompt": plain_text(params.prompt), "negative_prompt": negative or None}
    return encode(pipe, params, device).kwargs


def plain_text(prompt: str) -> str:
    """A prompt whose weights are all 1, as the text encoder is to read it."""
    if not any(c in prompt for c in "()[]\\"):
        return prompt
    return "".join(text for text, _weight in parse_attention(prompt))


def needs_encoding(pipe: Any, params: GenerationParams) -> bool:
    """Whether the prompts must be encoded here: weights or BREAK, more than one chunk, a
    clip skip. A plain short prompt goes to the pipeline as text (today's pixels)."""
    if params.clip_skip != 1:
        return True
    for text in (params.prompt, params.negative_prompt):
        segments = parse_attention(text)
        if any(weight != 1.0 for _text, weight in segments):  # BREAK is weight -1
            return True
        if len(_tokenize(pipe.tokenizer, ["".join(t for t, _w in segments)])[0]) > CHUNK:
            return True
    return False


def encode(pipe: Any, params: GenerationParams, device: Any) -> Encoded:
    """Prompt and negative prompt embeddings (and SDXL's pooled ones) for `pipe`."""
    embeds, pooled, count = encode_texts(
        pipe, [params.prompt, params.negative_prompt], params, device
    )
    kwargs: dict[str, Any] = {"prompt_embeds": embeds[0], "negative_prompt_embeds": embeds[1]}
    if pooled[0] is not None:
        kwargs["pooled_prompt_embeds"] = pooled[0]
        kwargs["negative_pooled_prompt_embeds"] = pooled[1]
    return Encoded(kwargs, count)


def encode_texts(
    pipe: Any, texts: list[str], params: GenerationParams, device: Any
) -> tuple[list[torch.Tensor], list[torch.Tensor | None], int]:
    """Each text's embeddings, all padded to the same number of chunks (the UNet's context is
    one length per call), each one's pooled embedding (SDXL; else None), and that count."""
    encoders = [(pipe.tokenizer, pipe.text_encoder)]
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    if sdxl:
        encoders.append((pipe.tokenizer_2, pipe.text_encoder_2))
    per_prompt = []
    for text in texts:
        segments = parse_attention(text)
        per_prompt.append(
            [
                chunk_prompt(
                    segments,
                    functools.partial(_tokenize, tokenizer),
                    comma_token=_comma(tokenizer),
                    pad_token=_pad(tokenizer),
                    length=CHUNK,
                )
                for tokenizer, _encoder in encoders
            ]
        )
    count = max(len(chunks) for prompt in per_prompt for chunks in prompt)
    embeds, pooled = [], []
    for prompt in per_prompt:
        hidden_parts, first_pooled = [], None
        for (tokenizer, encoder), chunks in zip(encoders, prompt, strict=True):
            chunks = chunks + [_empty(tokenizer)] * (count - len(chunks))
            states, pooled_out = _encode_chunks(
                tokenizer, encoder, chunks, params, device, sdxl=sdxl
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
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(1, 77 × chunks, width) weighted hidden states, and the first chunk's pooled output
    (an encoder with a projection: SDXL's second)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    ids = torch.tensor(
        [[bos, *chunk.tokens, eos] for chunk in chunks], dtype=torch.long, device=device
    )
    weights = torch.tensor(
        [[1.0, *chunk.weights, 1.0] for chunk in chunks], dtype=torch.float32, device=device
    )
    skip = params.clip_skip - 1
    with torch.no_grad():
        out = encoder(ids, output_hidden_states=True)
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
