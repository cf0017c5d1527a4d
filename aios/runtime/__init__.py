"""Runtimes: what runs the network (numpy or torch), on which device, in which dtype.

The config section ``runtime: {name: auto, device: auto, dtype: auto}`` is resolved here;
`aios config show` prints what each ``auto`` took and why, `aios doctor` lists the devices.
"""

from aios.runtime.devices import DTYPES, Device, check_dtype, find_device, list_devices
from aios.runtime.selection import RUNTIMES, RuntimeChoice, select_from_config, select_runtime

__all__ = ["DTYPES", "RUNTIMES", "Device", "RuntimeChoice", "check_dtype", "find_device",
           "list_devices", "select_from_config", "select_runtime"]
