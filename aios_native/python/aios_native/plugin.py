"""The aios plugin of the native layer.

It registers the `native` storage backend (Rust search over the shared on-disk format, above the
core's `reference`) and the native quantizer (above the reference one, so `auto` picks both), and
reports what the native layer found on this machine to `aios doctor`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aios
import aios_native

AIOS_CONTRACT_VERSION = "1.1"


@aios.hookimpl
def aios_register_quantizers(register: Callable[..., None]) -> None:
    from aios_native.quant import NativeQuantizer

    register("native", NativeQuantizer, priority=10,
             summary="group-wise INT8/INT4/INT2 quantization and fused kernels in Rust (rayon)")


@aios.hookimpl
def aios_diagnostics(report: Callable[[str, Any], None]) -> None:
    enabled = aios_native.enabled_simd()
    report("extension", f"aios_native._native {aios_native.__version__} (abi3)")
    report("SIMD", ", ".join(enabled) if enabled else "none (portable serial kernels)")
    report("dynamic dispatch", aios_native.simd_dynamic_dispatch())
    from aios_native.quant import dot_isa

    report("int8 products", f"{dot_isa()} (quantized layers' integer dot products)")
    report("threads", aios_native.thread_count())


@aios.hookimpl
def aios_register_storage(register: Callable[..., None]) -> None:
    from aios_native.storage import native_store

    register("native", native_store, priority=10)
