"""aios-shout: a complete third-party aios plugin in one file, a head and a sampler."""

from dataclasses import replace

import numpy as np

import aios
from aios.protocols import Guided, MaskedState

AIOS_CONTRACT_VERSION = "1.3"
MASK = 0  # token 0 is the mask; a character is its Latin-1 byte + 1
VOCAB = 257


class ShoutHead:
    """Writes the prompt back in capitals, unmasking characters as the sampler decides."""

    modality, family = "text", "discrete"

    def initial_state(self, request, rng):
        return MaskedState(np.full((1, len(request.prompt)), MASK), mask_id=MASK)

    def denoise(self, state, t, request):
        shout = request.prompt.upper().encode("latin-1", "replace")
        target = np.frombuffer(shout, np.uint8).astype(int) + 1
        logits = np.full((*state.tokens.shape, VOCAB), -30.0)  # (batch, length, vocab)
        logits[:, np.arange(len(target)), target] = 0.0  # certain of every capital
        return logits

    def decode(self, state, request):
        return bytes(int(c) - 1 for c in state.tokens[0]).decode("latin-1")


class LeftToRight:
    """Unmasks an equal share of the masked positions per step, left to right."""

    family = "discrete"

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        if num_steps < 1:
            raise ValueError(f"num_steps must be at least 1, got {num_steps}")
        tokens = state.tokens.copy()
        generated = tokens == state.mask_id
        for step in range(num_steps):
            masked = np.argwhere(tokens == state.mask_id)
            masked = masked[np.lexsort((masked[:, 0], masked[:, 1]))]  # by position, then row
            rows, cols = masked[: -(-len(masked) // (num_steps - step))].T
            logits = denoise(replace(state, tokens=tokens), 1 - step / num_steps)
            if isinstance(logits, Guided):
                logits = logits.unconditional + logits.scale * (
                    logits.conditional - logits.unconditional)
            logits[..., state.mask_id] = -np.inf  # never place the mask itself
            tokens[rows, cols] = logits[rows, cols].argmax(-1)
            if state.eos_id is not None:  # after an end of sequence, only ends
                ended = np.cumsum(tokens == state.eos_id, axis=1) > 0
                tokens[ended & generated] = state.eos_id
            if callback:
                callback(step, num_steps, replace(state, tokens=tokens.copy()))
        return replace(state, tokens=tokens)  # keeps fields a head's subclass adds


@aios.hookimpl
def aios_register_heads(register):
    register("shout", ShoutHead, family="discrete", priority=-1)  # below 0: never `auto`


@aios.hookimpl
def aios_register_samplers(register):
    register("left-to-right", LeftToRight, family="discrete", priority=-1)
