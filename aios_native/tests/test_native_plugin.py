import subprocess
import sys

import aios_native
from aios.registry import Registry
from aios.testing import loaded_plugin


def test_the_native_plugin_loads_through_its_entry_point():
    info = loaded_plugin("native")
    assert (info.distribution, info.version) == ("aios-native", aios_native.__version__)


def test_simd_capabilities_name_every_family_with_a_flag():
    caps = aios_native.simd_capabilities()
    assert len(caps) == 15
    assert {"haswell", "skylake", "neon", "sve"} <= caps.keys()
    assert all(isinstance(v, bool) for v in caps.values())
    assert aios_native.enabled_simd() == [k for k, v in caps.items() if v]


def test_detected_simd_agrees_with_the_cpu_flags_linux_reports():
    flags = _cpu_flags()
    if flags is None:  # not Linux on x86: nothing independent to compare with
        return
    expected = {"avx2", "fma", "f16c"} <= flags
    assert aios_native.simd_capabilities()["haswell"] == expected


def test_the_thread_count_is_what_rayon_uses():
    assert aios_native.thread_count() >= 1


def test_doctor_shows_the_simd_families_reported_through_the_plugin_chain():
    facts = dict(Registry.discover().diagnostics()["native"])
    enabled = aios_native.enabled_simd()
    assert facts["SIMD"] == (", ".join(enabled) if enabled else "none (portable serial kernels)")
    out = subprocess.run([sys.executable, "-m", "aios.cli", "doctor"],
                         capture_output=True, text=True, check=False).stdout
    assert f"SIMD: {facts['SIMD']}" in out


def test_doctor_names_the_instruction_set_of_the_int8_products():
    from aios_native.quant import dot_isa

    facts = dict(Registry.discover().diagnostics()["native"])
    assert facts["int8 products"].split()[0] == dot_isa()
    assert dot_isa() in {"vnni", "avx2", "portable"}


def _cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def test_the_native_storage_backend_ranks_above_the_reference():
    registry = Registry.discover()
    native, reference = registry.get("storage", "native"), registry.get("storage", "reference")
    assert native.plugin == "native" and native.priority > reference.priority
    assert registry.best("storage").name == "native"
