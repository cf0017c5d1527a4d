"""The `runtime` config section: `auto` resolved with its reason, impossible settings refused
with the key and the fix, and the CLI reporting both (`aios config show`, `aios doctor`)."""

import json

import pytest

from aios import cli
from aios.errors import ConfigError
from aios.runtime import list_devices, select_runtime
from aios.runtime import selection as selection_module
from aios.runtime.devices import Device
from conftest import FAKE_CPU as CPU
from conftest import FAKE_GPU as GPU

OLD_GPU = Device("cuda:0", "old GPU", ("float32", "float16"))


@pytest.fixture
def devices(fake_devices):
    return fake_devices


def test_auto_on_a_cpu_takes_numpy_float32_and_says_why(devices):
    devices(CPU)
    choice = select_runtime()
    assert (choice.name, choice.device, choice.dtype) == ("numpy", "cpu", "float32")
    assert choice.reasons["name"].startswith("auto -> numpy: CPU only")
    assert choice.reasons["device"] == "auto -> cpu: no GPU found"


def test_auto_for_a_torch_only_model_on_a_cpu_takes_torch_and_says_why(devices):
    devices(CPU)
    choice = select_runtime(runtimes=("torch",), model="head 'big'")
    assert (choice.name, choice.device, choice.dtype) == ("torch", "cpu", "float32")
    assert choice.reasons["name"] == "auto -> torch: head 'big' runs in torch only"


def test_torch_on_a_cpu_with_bfloat16_instructions_takes_bfloat16(devices):
    devices(CPU, bfloat16="avx512_bf16")
    choice = select_runtime(runtimes=("torch",))
    assert (choice.name, choice.device, choice.dtype) == ("torch", "cpu", "bfloat16")
    assert choice.reasons["dtype"].startswith("auto -> bfloat16: this CPU has avx512_bf16")
    assert select_runtime().dtype == "float32"  # numpy computes in float32 whatever the CPU
    assert select_runtime(runtimes=("torch",), dtype="float32").dtype == "float32"


def test_the_bfloat16_feature_is_read_from_the_cpu_flags(tmp_path):
    from aios.runtime.devices import cpu_bfloat16_feature

    def cpuinfo(flags):
        path = tmp_path / "cpuinfo"
        path.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
        return str(path)

    assert cpu_bfloat16_feature(cpuinfo("fpu sse avx2 avx512f avx512_bf16 avx512_vnni")) == \
        "avx512_bf16"
    assert cpu_bfloat16_feature(cpuinfo("fpu amx_tile amx_bf16")) == "amx_bf16"
    assert cpu_bfloat16_feature(cpuinfo("fpu sse avx2 avx512f")) is None
    assert cpu_bfloat16_feature(str(tmp_path / "absent")) is None


def test_auto_for_a_numpy_only_model_stays_on_the_cpu_beside_a_gpu(devices):
    devices(CPU, GPU)
    choice = select_runtime(runtimes=("numpy",), model="head 'small'")
    assert (choice.name, choice.device, choice.dtype) == ("numpy", "cpu", "float32")
    assert choice.reasons["name"] == "auto -> numpy: head 'small' runs in numpy only"
    assert choice.reasons["device"] == "auto -> cpu: head 'small' runs in numpy only, on the CPU"


@pytest.mark.parametrize(("settings", "message"), [
    ({"name": "torch"}, "runtime.name: head 'small' runs in numpy only, not in torch; set "
                        r"runtime.name: numpy \(or auto\)"),
    ({"device": "cuda"}, "runtime.device: the numpy runtime runs on the CPU only, not on cuda:0 "
                         r"\(head 'small' runs in numpy only\); set runtime.device: cpu"),
    ({"dtype": "bfloat16"}, r"not bfloat16 \(head 'small' runs in numpy only\); set "
                            "runtime.dtype: float32"),
    ({"compile": True}, "runtime.compile: the numpy runtime has no torch network to compile"),
])
def test_settings_a_numpy_only_model_cannot_honour_are_refused(devices, settings, message):
    devices(CPU, GPU)
    with pytest.raises(ConfigError, match=message):
        select_runtime(runtimes=("numpy",), model="head 'small'", **settings)


def test_numpy_for_a_torch_only_model_is_refused_with_the_fix(devices):
    devices(CPU)
    with pytest.raises(ConfigError, match="runtime.name: head 'big' runs in torch only, not in "
                                          r"numpy; set runtime.name: torch \(or auto\)"):
        select_runtime(name="numpy", runtimes=("torch",), model="head 'big'")


def test_a_half_precision_dtype_makes_auto_take_torch_where_the_model_runs_it(devices):
    devices(CPU)
    choice = select_runtime(dtype="bfloat16")
    assert (choice.name, choice.dtype) == ("torch", "bfloat16")
    assert choice.reasons["name"] == ("auto -> torch: runtime.dtype: bfloat16 runs in torch "
                                      "(numpy is float32)")
    assert select_runtime(dtype="float32").name == "numpy"
    with pytest.raises(ConfigError, match="the numpy runtime computes in float32, not float16"):
        select_runtime(dtype="float16", runtimes=("numpy",))


def test_a_model_declaring_no_runtime_is_a_programming_error():
    with pytest.raises(ValueError, match="runtimes must name some of"):
        select_runtime(runtimes=())


def test_auto_with_a_gpu_takes_torch_on_it_in_bfloat16_or_float16(devices):
    devices(CPU, GPU)
    choice = select_runtime()
    assert (choice.name, choice.device, choice.dtype) == ("torch", "cuda:0", "bfloat16")
    devices(CPU, OLD_GPU)
    assert select_runtime().dtype == "float16"
    assert select_runtime(name="numpy").device == "cpu"


@pytest.mark.parametrize(("settings", "message"), [
    ({"device": "cuda"}, "runtime.device: device 'cuda' is not available here; choose one of: "
                         "auto, cpu"),
    ({"dtype": "float64"}, "runtime.dtype: unknown dtype 'float64'"),
    ({"name": "jax"}, "runtime.name: unknown runtime 'jax'; choose one of: auto, numpy, torch"),
    ({"name": "numpy", "dtype": "bfloat16"}, "the numpy runtime computes in float32"),
])
def test_impossible_settings_name_the_key_and_the_fix(devices, settings, message):
    devices(CPU)
    with pytest.raises(ConfigError, match=message):
        select_runtime(**settings)


def test_a_dtype_the_device_cannot_run_is_refused(devices):
    devices(CPU, OLD_GPU)
    with pytest.raises(ConfigError, match="cuda:0 cannot run bfloat16; choose one of: auto, "
                                          "float32, float16"):
        select_runtime(device="cuda", dtype="bfloat16")


def test_a_numpy_model_is_placed_without_importing_torch(monkeypatch):
    listed = []
    monkeypatch.setattr(selection_module, "list_devices", lambda: listed.append(1) or [CPU, GPU])
    monkeypatch.setattr(selection_module, "gpu_may_be_present", lambda: True)
    assert select_runtime(runtimes=("numpy",)).device == "cpu"
    assert select_runtime(name="numpy").device == "cpu"
    assert select_runtime(device="cpu").name == "numpy"
    assert not listed  # list_devices imports torch: seconds a NumPy model never pays
    assert select_runtime().device == "cuda:0" and listed == [1]


def test_without_a_gpu_driver_torch_is_not_asked(monkeypatch):
    import os
    import sys

    import aios.runtime.devices as devices_module

    monkeypatch.delitem(sys.modules, "torch")  # as in a process that has not imported it
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    assert devices_module.gpu_may_be_present() is False
    monkeypatch.setattr(os.path, "exists", lambda path: path == "/dev/nvidiactl")
    assert devices_module.gpu_may_be_present() is True


def test_the_cpu_is_always_listed_first():
    assert list_devices()[0].name == "cpu"


def test_config_show_prints_what_auto_took_and_why(capsys):
    assert cli.main(["config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["runtime"]["device"] in {d.name for d in list_devices()}
    assert shown["origins"]["runtime.dtype"].startswith("auto -> ")


def test_a_missing_device_on_the_command_line_exits_2_naming_the_override(capsys):
    if any(d.name.startswith("cuda") for d in list_devices()):
        pytest.skip("this machine has a GPU")
    assert cli.main(["--set", "runtime.device=cuda", "config", "show"]) == 2
    assert "--set: runtime.device: device 'cuda' is not available" in capsys.readouterr().err


def test_doctor_lists_the_devices(capsys):
    cli.main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["devices"][0]["name"] == "cpu" and "float32" in report["devices"][0]["dtypes"]
