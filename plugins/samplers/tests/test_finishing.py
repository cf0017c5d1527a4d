"""Whatever the model proposes, the last step leaves no mask behind: the EOS guard may hold an
early end back during generation, but never on the step that reveals everything."""

import numpy as np
import pytest
from aios_samplers.block_threshold import BlockThreshold
from aios_samplers.discrete import MDLM, LowConfidence, SemiAutoregressive, Threshold

from aios.protocols import MaskedState

V, MASK, EOS = 10, 1, 3


@pytest.mark.parametrize("sampler", [MDLM(), LowConfidence(), Threshold(),
                                     SemiAutoregressive(block_length=4),
                                     BlockThreshold(block_length=4)],
                         ids=lambda s: type(s).__name__)
def test_no_mask_is_left_after_the_last_step_even_when_eos_is_likely(sampler):
    left = 0
    for seed in range(100):
        noise = np.random.default_rng(seed)

        def denoise(state, t, noise=noise):
            logits = 3 * noise.normal(size=(*state.tokens.shape, V))
            logits[..., EOS] += 2.0  # end of sequence is a frequent proposal
            logits[..., MASK] = -np.inf
            return logits

        state = MaskedState(np.array([[5] + [MASK] * 8]), MASK, EOS)
        out = sampler.sample(denoise, state, num_steps=4, rng=np.random.default_rng(seed))
        left += int((out.tokens == MASK).sum())
    assert left == 0
