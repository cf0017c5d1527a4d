"""Choosing the runtime, device and dtype from the config's ``runtime`` section.

``auto`` is decided by what was measured (`benchmarks/runtime.py`, tables in docs/runtime.md):

- name: ``torch`` when a GPU is present (the whole loop stays on it); on a CPU, ``numpy`` for
  the shipped models (the tiny ones, and the default text model through `aios.models.
  ArrayLlama`: the smallest cold start, no torch import, and faster per step than torch) and
  ``torch`` for pretrained families, which only torch runs.
- device: the first GPU (``cuda:0``, else ``mps``), else ``cpu``.

What the model can run narrows ``auto`` (`runtimes`): a head whose model runs in torch only (a
pretrained family) gets torch on a CPU too, and one whose model runs in
NumPy only (the tiny text models, the image and audio heads) gets numpy on the CPU even when a
GPU is present. A setting the model cannot honour (``name: torch`` for a NumPy-only head) is
refused, never silently ignored. Head factories declare it (`aios.engine.head_runtimes`).
- dtype: ``bfloat16`` on a GPU that runs it (half the memory traffic), else ``float16`` on a GPU;
  on a CPU, for torch, ``bfloat16`` where the CPU has bfloat16 instructions (AVX-512 BF16 or
  AMX: measured 1.7x float32 per forward of the default text model on a Zen 4) and
  ``float32`` elsewhere (bfloat16 is emulated there, and slower); numpy is float32.

``compile: true`` (opt-in, `aios.runtime.compiling`) runs the torch network through
`torch.compile`; it needs torch, and makes ``name: auto`` pick torch, as a dtype other than
float32 does (numpy computes in float32).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aios.errors import ConfigError
from aios.runtime.compiling import compile_network, cpp_compiler, torch_available
from aios.runtime.devices import (
    Device,
    check_dtype,
    cpu_bfloat16_feature,
    cpu_device,
    find_device,
    gpu_may_be_present,
    list_devices,
)

#: Runtime names a config may give.
RUNTIMES = ("auto", "numpy", "torch")
#: The runtimes that run networks (what a model may declare it runs in).
RUNNABLE = ("numpy", "torch")


@dataclass(frozen=True)
class RuntimeChoice:
    """What runs the network, and for each setting left at ``auto``, why it was chosen."""

    name: str
    device: str
    dtype: str
    reasons: dict[str, str] = field(default_factory=dict)
    compile: bool = False

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)

    def prepare(self, network: Any) -> Any:
        """The torch network as this runtime runs it: compiled in place when `compile` is
        set (`aios.runtime.compiling`), else unchanged."""
        return compile_network(network) if self.compile else network


def select_runtime(name: str = "auto", device: str = "auto", dtype: str = "auto", *,
                   compile: bool = False, runtimes: Sequence[str] = RUNNABLE,
                   model: str = "the model", origins: Mapping[str, str] | None = None
                   ) -> RuntimeChoice:
    """Resolve the settings for a model that runs in `runtimes` (``("torch",)`` for a
    pretrained family, ``("numpy",)`` for a NumPy-only model; `model` names it in messages,
    e.g. "head 'image'"). Mistakes are `ConfigError`s naming where the setting came from
    (`origins`: key path -> file:line or --set), the key and the fix."""
    origins = origins or {}
    runtimes = tuple(runtimes)
    if not runtimes or any(r not in RUNNABLE for r in runtimes):
        raise ValueError(f"runtimes must name some of {RUNNABLE}, got {runtimes!r}")
    only = runtimes[0] if len(runtimes) == 1 else None

    def where(key: str) -> str:
        return origins.get(f"runtime.{key}", origins.get("runtime", "config"))

    if name not in RUNTIMES:
        raise ConfigError(where("name"), "runtime.name", f"unknown runtime {name!r}",
                          f"choose one of: {', '.join(RUNTIMES)}")
    if name != "auto" and name not in runtimes:
        raise ConfigError(where("name"), "runtime.name",
                          f"{model} runs in {only} only, not in {name}",
                          f"set runtime.name: {only} (or auto), or choose a head or model "
                          f"that runs in {name} (head.name, head.model)")
    if not isinstance(compile, bool):
        raise ConfigError(where("compile"), "runtime.compile",
                          f"expected true or false, got {compile!r}",
                          "write `compile: true` or `compile: false`")
    if compile and not torch_available():
        raise ConfigError(where("compile"), "runtime.compile",
                          "torch.compile needs torch, which is not installed",
                          "install torch (pip install torch), or set runtime.compile: false")
    if compile and (name == "numpy" or only == "numpy"):
        raise ConfigError(where("compile"), "runtime.compile",
                          "the numpy runtime has no torch network to compile"
                          + (f" ({model} runs in numpy only)" if only == "numpy" else ""),
                          "set runtime.compile: false" if only == "numpy" else
                          "set runtime.name: torch (or auto), or runtime.compile: false")
    reasons: dict[str, str] = {}
    # torch is imported (to list devices) only when a GPU could be chosen: a NumPy model's
    # generation never pays for it
    if device == "auto":
        numpy_only = name == "numpy" or only == "numpy"
        gpus = ([d for d in list_devices() if d.name != "cpu"]
                if not numpy_only and gpu_may_be_present() else [])
        chosen_device = gpus[0] if gpus else cpu_device()
        reasons["device"] = (f"auto -> {chosen_device.name}: "
                             + ("the first GPU" if gpus else
                                f"{model} runs in numpy only, on the CPU" if only == "numpy"
                                else "the numpy runtime runs on the CPU" if numpy_only
                                else "no GPU found"))
    elif device == "cpu":
        chosen_device = cpu_device()
    else:
        chosen_device = find_device(device, where=where("device"))
    if name == "auto":
        if only == "numpy":
            name, why = "numpy", f"{model} runs in numpy only"
        elif chosen_device.name != "cpu":
            name, why = "torch", f"a GPU ({chosen_device.name}) is in use"
        elif only == "torch":
            name, why = "torch", f"{model} runs in torch only"
        elif compile:
            name, why = "torch", "runtime.compile: true compiles a torch network"
        elif dtype not in ("auto", "float32"):
            name, why = "torch", f"runtime.dtype: {dtype} runs in torch (numpy is float32)"
        else:
            name, why = "numpy", ("CPU only: numpy has the fastest cold start for the shipped "
                                  "models (docs/runtime.md)")
        reasons["name"] = f"auto -> {name}: {why}"
    if name == "numpy" and chosen_device.name != "cpu":
        raise ConfigError(where("device"), "runtime.device",
                          f"the numpy runtime runs on the CPU only, not on "
                          f"{chosen_device.name}"
                          + (f" ({model} runs in numpy only)" if only == "numpy" else ""),
                          "set runtime.device: cpu (or auto)" if only == "numpy" else
                          "set runtime.name: torch, or runtime.device: cpu")
    if compile and chosen_device.name == "cpu" and cpp_compiler() is None:
        raise ConfigError(where("compile"), "runtime.compile",
                          "torch.compile on the CPU builds C++ code, and no C++ compiler (g++, "
                          "clang++, $CXX) was found",
                          "install one (apt-get install g++), or set runtime.compile: false")
    if dtype == "auto":
        dtype, why = _auto_dtype(chosen_device, name)
        reasons["dtype"] = f"auto -> {dtype}: {why}"
    else:
        check_dtype(chosen_device, dtype, where=where("dtype"))
        if name == "numpy" and dtype != "float32":
            raise ConfigError(where("dtype"), "runtime.dtype",
                              f"the numpy runtime computes in float32, not {dtype}"
                              + (f" ({model} runs in numpy only)" if only == "numpy" else ""),
                              "set runtime.dtype: float32 (or auto)" if only == "numpy" else
                              "set runtime.dtype: float32 (or auto), or runtime.name: torch")
    return RuntimeChoice(name, chosen_device.name, dtype, reasons, compile)


def _auto_dtype(device: Device, name: str) -> tuple[str, str]:
    if name == "numpy":
        return "float32", "the numpy runtime computes in float32"
    if device.name == "cpu":
        feature = cpu_bfloat16_feature()
        if feature is not None:
            return "bfloat16", (f"this CPU has {feature}: torch's bfloat16 matmuls ran 1.7x "
                                "float32's on the default text model (docs/runtime.md)")
        return "float32", "this CPU has no bfloat16 instructions: float32 matmuls are fastest"
    if "bfloat16" in device.dtypes:
        return "bfloat16", f"{device.name} runs bfloat16 (half the memory traffic)"
    return "float16", f"{device.name} has no bfloat16"


def select_from_config(config: Any, *, runtimes: Sequence[str] = RUNNABLE,
                       model: str = "the model") -> RuntimeChoice:
    """`select_runtime` for a loaded `aios.config.Config`."""
    section = config.runtime
    return select_runtime(section.name, section.device, section.dtype,
                          compile=section.compile, runtimes=runtimes, model=model,
                          origins=config.origins)


__all__ = ["RUNNABLE", "RUNTIMES", "RuntimeChoice", "select_from_config", "select_runtime"]
