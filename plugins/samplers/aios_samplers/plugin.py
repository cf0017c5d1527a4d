"""The aios registration of aios-samplers: every sampler under the name configs use.

Options are the keyword parameters of each factory, so ``sampler: {name: ddim, steps: 20,
eta: 0.0}`` builds ``DDIM(eta=0.0)`` and runs 20 steps.
"""

from __future__ import annotations

from collections.abc import Callable

import aios
from aios_samplers import block_threshold, continuous, discrete

AIOS_CONTRACT_VERSION = "1.4"

#: name -> (factory, family); the order is the order `aios plugins` shows.
SAMPLERS: dict[str, tuple[Callable[..., object], str]] = {
    "ddpm": (continuous.DDPM, "continuous"),
    "ddim": (continuous.DDIM, "continuous"),
    "euler": (continuous.Euler, "continuous"),
    "euler-ancestral": (continuous.EulerAncestral, "continuous"),
    "heun": (continuous.Heun, "continuous"),
    "dpm-solver++": (continuous.dpm_solver_pp, "continuous"),
    "dpm-solver++-sde": (continuous.dpm_solver_pp_sde, "continuous"),
    "dpm-solver++-3m": (continuous.dpm_solver_pp_3m, "continuous"),
    "unipc": (continuous.unipc, "continuous"),
    "mdlm": (discrete.MDLM, "discrete"),
    "mdlm-cache": (discrete.CachedMDLM, "discrete"),
    "low-confidence": (discrete.LowConfidence, "discrete"),
    "threshold": (discrete.Threshold, "discrete"),
    "semi-ar": (discrete.SemiAutoregressive, "discrete"),
    "remdm": (discrete.ReMDM, "discrete"),
    "block-threshold": (block_threshold.BlockThreshold, "discrete"),
}

#: One line for `aios plugins` where the factory's first docstring line is not enough.
_SUMMARY = {
    "block-threshold": "block diffusion: blocks left to right (prefix cached), inside a block "
                       "every position above `threshold` revealed at once (Fast-dLLM)",
}

#: What `auto` picks per family: the few-step workhorses.
_PRIORITY = {"dpm-solver++": 10, "low-confidence": 10}


@aios.hookimpl
def aios_register_samplers(register: Callable[..., None]) -> None:
    for name, (factory, family) in SAMPLERS.items():
        register(name, factory, family=family, priority=_PRIORITY.get(name, 0),
                 summary=_SUMMARY.get(name, ""))
