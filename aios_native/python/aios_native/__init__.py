"""aios_native: the Rust layer of aios (SIMD vector kernels over Arrow columns, rayon threads).

The compiled module is `aios_native._native`; this package re-exports it with type hints and
registers itself with aios through the entry point `native` (see `aios_native.plugin`).
"""

from aios_native._native import (
    __version__,
    simd_capabilities,
    simd_dynamic_dispatch,
    thread_count,
)


def enabled_simd() -> list[str]:
    """The SIMD families simsimd will use on this CPU, e.g. ``["haswell", "skylake"]``."""
    return [name for name, on in simd_capabilities().items() if on]


__all__ = [
    "__version__",
    "enabled_simd",
    "simd_capabilities",
    "simd_dynamic_dispatch",
    "thread_count",
]
