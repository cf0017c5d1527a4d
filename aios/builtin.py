"""The core's own plugin: it registers through the same contract as every pack.

It reports the core's environment to `aios doctor` and registers the reference storage backend
(NumPy/BLAS search over the shared on-disk format), the memory conditioner (retrieval) and the
reference (NumPy) quantizer.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any

from aios.hookspecs import CONTRACT_VERSION, Register, hookimpl

AIOS_CONTRACT_VERSION = CONTRACT_VERSION


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


@hookimpl
def aios_diagnostics(report: Callable[[str, Any], None]) -> None:
    report("python", f"{platform.python_version()} ({sys.executable})")
    report("platform", f"{platform.system()} {platform.machine()}")
    for distribution in ("numpy", "pyarrow", "pluggy", "pyyaml"):
        report(distribution, _version(distribution))
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - doctor shows the problem instead of failing
        report("torch", f"unusable: {type(exc).__name__}: {exc}")
    else:
        cuda = torch.cuda.is_available()
        report("torch", f"{torch.__version__} (CUDA {'available' if cuda else 'not available'}, "
                        f"{torch.get_num_threads()} CPU threads)")


@hookimpl
def aios_register_storage(register: Register) -> None:
    from aios.memory import reference_store

    register("reference", reference_store, priority=0)


@hookimpl
def aios_register_conditioners(register: Register) -> None:
    from aios.memory import MemoryConditioner

    register("memory", MemoryConditioner,
             summary="retrieve the prompt's top-k passages from the memory store")


@hookimpl
def aios_register_quantizers(register: Register) -> None:
    from aios.quant import ReferenceQuantizer

    register("reference", ReferenceQuantizer, priority=0,
             summary="group-wise INT8/INT4/INT2 weight quantization in NumPy (the reference)")
