"""The aios plugin of the native layer.

Storage and quantization backends register here as they are built; today the plugin reports
what the native layer found on this machine, which is how `aios doctor` shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aios
import aios_native

AIOS_CONTRACT_VERSION = "1.1"


@aios.hookimpl
def aios_diagnostics(report: Callable[[str, Any], None]) -> None:
    enabled = aios_native.enabled_simd()
    report("extension", f"aios_native._native {aios_native.__version__} (abi3)")
    report("SIMD", ", ".join(enabled) if enabled else "none (portable serial kernels)")
    report("dynamic dispatch", aios_native.simd_dynamic_dispatch())
    report("threads", aios_native.thread_count())
