"""The devices torch can run on here, and checks that a requested device and dtype exist.

Why a module of its own: `aios doctor` lists the devices, the runtime selection picks one, and
a config naming a device that is not there (``cuda`` on a laptop) or a dtype the device cannot
run (``bfloat16`` on an old GPU) must fail at load time with the setting named, not later
inside a kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from aios.errors import ConfigError

#: The dtypes a runtime can run in, by config name.
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Device:
    """One device: its torch name (``cpu``, ``cuda:0``, ``mps``), what it is, its dtypes."""

    name: str
    description: str
    dtypes: tuple[str, ...]
    memory_bytes: int | None = None


#: Device files a GPU driver creates (NVIDIA; AMD ROCm; WSL's GPU paravirtualization).
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def gpu_may_be_present() -> bool:
    """Whether torch could find a GPU here, told without importing torch (seconds: more than a
    tiny NumPy model's whole generation). False means `list_devices` lists the CPU alone; True
    (a GPU driver's device file, an Apple-silicon Mac, or torch already imported) means ask
    torch."""
    import os
    import platform
    import sys

    if "torch" in sys.modules or any(os.path.exists(f) for f in GPU_DEVICE_FILES):
        return True
    return sys.platform == "darwin" and platform.machine() == "arm64"


#: CPU features whose bfloat16 matrix products beat float32 in torch (oneDNN uses them):
#: AVX-512 BF16 (`vdpbf16ps`) and AMX's bfloat16 tiles, as /proc/cpuinfo names them.
FAST_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bfloat16_feature(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The feature that makes bfloat16 fast on this CPU (see `FAST_BFLOAT16_FLAGS`), or None
    (also where /proc/cpuinfo does not exist: macOS, Windows)."""
    try:
        with open(cpuinfo) as file:
            for line in file:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return next((f for f in FAST_BFLOAT16_FLAGS if f in flags), None)
    except OSError:
        return None
    return None


def cpu_device() -> Device:
    """The CPU, described without importing torch (the torch runtime runs every dtype on it;
    the numpy runtime float32)."""
    import os

    return Device("cpu", f"{os.cpu_count()} CPU cores", DTYPES)


def list_devices() -> list[Device]:
    """Every device torch can use here, the CPU first."""
    import os

    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency today
        return [Device("cpu", f"{os.cpu_count()} CPU cores (numpy only)", ("float32",))]
    devices = [Device("cpu", f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch "
                             "threads", DTYPES)]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            dtypes = DTYPES if torch.cuda.is_bf16_supported() else ("float32", "float16")
            devices.append(Device(f"cuda:{index}", f"{props.name} (compute capability "
                                  f"{props.major}.{props.minor})", dtypes,
                                  int(props.total_memory)))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(Device("mps", "Apple GPU (Metal)", ("float32", "float16", "bfloat16")))
    return devices


def find_device(name: str, *, where: str = "config", key: str = "runtime.device") -> Device:
    """The device called `name` (``cuda`` means ``cuda:0``); a `ConfigError` if it is absent."""
    wanted = "cuda:0" if name == "cuda" else name
    devices = list_devices()
    for device in devices:
        if device.name == wanted:
            return device
    available = ", ".join(d.name for d in devices)
    raise ConfigError(where, key, f"device {name!r} is not available here",
                      f"choose one of: auto, {available}")


def check_dtype(device: Device, dtype: str, *, where: str = "config",
                key: str = "runtime.dtype") -> str:
    """`dtype` if `device` runs it, else a `ConfigError` naming what it does run."""
    if dtype not in DTYPES:
        raise ConfigError(where, key, f"unknown dtype {dtype!r}",
                          f"choose one of: auto, {', '.join(DTYPES)}")
    if dtype not in device.dtypes:
        raise ConfigError(where, key, f"{device.name} cannot run {dtype}",
                          f"choose one of: auto, {', '.join(device.dtypes)}")
    return dtype


__all__ = ["DTYPES", "GPU_DEVICE_FILES", "Device", "check_dtype", "cpu_device", "find_device",
           "gpu_may_be_present", "list_devices"]
