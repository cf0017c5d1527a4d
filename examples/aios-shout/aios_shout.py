"""aios-shout: a complete third-party aios plugin in one file (the README walks through it)."""

import numpy as np

import aios

AIOS_CONTRACT_VERSION = "1.0"
MASK = -1


class ShoutHead:
    """Writes the prompt back in capitals, unmasking characters as the sampler decides."""

    modality, family = "text", "discrete"

    def initial_state(self, request, rng):
        return np.full(len(request.prompt), MASK)

    def denoise(self, state, t, request):
        return np.array([ord(c) for c in request.prompt.upper()])

    def decode(self, state, request):
        return "".join(chr(c) for c in state)


class LeftToRight:
    """Unmasks an equal share of the masked positions per step, left to right."""

    family = "discrete"

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        for step in range(num_steps):
            masked = np.flatnonzero(state == MASK)
            chosen = masked[: -(-len(masked) // (num_steps - step))]
            state = state.copy()
            state[chosen] = denoise(state, step)[chosen]
            if callback:
                callback(step, num_steps, state)
        return state


@aios.hookimpl
def aios_register_heads(register):
    register("shout", ShoutHead, family="discrete")


@aios.hookimpl
def aios_register_samplers(register):
    register("left-to-right", LeftToRight, family="discrete")
