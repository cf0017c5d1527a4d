"""Runtimes: what runs the network (numpy or torch), on which device, in which dtype.

The config section ``runtime: {name: auto, device: auto, dtype: auto, compile: false}`` is
resolved here; `aios config show` prints what each ``auto`` took and why, `aios doctor` lists
the devices.
"""

from aios._lazy import lazy_face
from aios.runtime.arrays import like, to_host
from aios.runtime.compiling import compile_network
from aios.runtime.devices import DTYPES, Device, check_dtype, find_device, list_devices
from aios.runtime.selection import (
    RUNNABLE,
    RUNTIMES,
    RuntimeChoice,
    select_from_config,
    select_runtime,
)

# torch-backed parts load on first use, so the face stays importable without torch
_EXPORTS = {
    "kv_cache": ("BlockKVCache", "RowCaches"),
    "block_decoding": ("CACHES", "DecodeStats", "decode_blocks"),
}

__all__ = ["CACHES", "DTYPES", "RUNNABLE", "RUNTIMES", "BlockKVCache", "DecodeStats", "Device",
           "RowCaches", "RuntimeChoice", "check_dtype", "compile_network", "decode_blocks",
           "find_device", "like", "list_devices", "select_from_config", "select_runtime", "to_host"]

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
