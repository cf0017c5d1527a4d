"""The text head factory on the config's runtime: the adapted models run in NumPy (what `auto`
takes on a CPU: no torch imported) or in torch on the runtime's device and dtype (head options
win) and compiled with `compile: true`; the tiny NumPy models take numpy and refuse what they
cannot honour. A tiny random adapted model stands in for the
shipped one (the real one: test_adapt_default.py)."""

import json

import pytest
import torch
from adapt_fixtures import tiny_materialized
from aios_text.adapt.array_model import ArrayBlockLM
from aios_text.adapt.head import BlockDiffusionTextHead
from aios_text.head import TextDiffusionHead
from aios_text.heads import text_head, text_runtimes

from aios import cli
from aios.engine import ArrowEngine
from aios.errors import ConfigError, UsageError
from aios.runtime import RuntimeChoice, list_devices

HAS_GPU = any(d.name != "cpu" for d in list_devices())


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(tiny_materialized(tmp_path_factory.mktemp("tiny-adapted")))


def adapted(tiny_dir, *overrides):
    return ArrowEngine.from_config(overrides=["head.name=text", f"head.model={tiny_dir}",
                                              *overrides])


def dtypes(head):
    return {p.dtype for p in head.model.network.parameters()}


def test_the_runtimes_follow_the_model_option(tiny_dir, monkeypatch):
    assert text_runtimes({"model": "tiny"}) == ("numpy",)
    assert text_runtimes({"model": "memory"}) == ("numpy",)
    assert text_runtimes({"model": tiny_dir}) == ("numpy", "torch")
    monkeypatch.delenv("AIOS_TEXT_MODEL", raising=False)
    assert text_runtimes({}) == ("numpy", "torch")  # the default: the adapted SmolLM2
    monkeypatch.setenv("AIOS_TEXT_MODEL", "tiny")
    assert text_runtimes({}) == ("numpy",)


def test_auto_runs_the_adapted_model_in_numpy_on_the_cpu(tiny_dir):
    engine = adapted(tiny_dir, "runtime.device=cpu")
    assert isinstance(engine.head, BlockDiffusionTextHead)
    runtime = engine.runtimes["text"]
    assert (runtime.name, runtime.device, runtime.dtype) == ("numpy", "cpu", "float32")
    assert "fastest cold start" in runtime.reasons["name"]
    assert isinstance(engine.head.model, ArrayBlockLM)
    engine = adapted(tiny_dir, "runtime.name=torch", "runtime.dtype=float32")
    assert dtypes(engine.head) == {torch.float32}
    assert {p.device.type for p in engine.head.model.parameters()} == {"cpu"}


def test_the_numpy_and_the_torch_runtime_give_the_same_logits(tiny_dir):
    """The same int8 directory: torch multiplies the dequantized weights, NumPy the int8 codes
    with int8 activations; the block's logits agree up to that rounding."""
    import numpy as np

    from aios.protocols import GenerationRequest

    heads = [adapted(tiny_dir, f"runtime.name={name}").head for name in ("numpy", "torch")]
    request = GenerationRequest("w9 w10 w11 w12", "text", 8, options={"length": 8})
    logits = []
    for head in heads:
        state = head.initial_state(request, np.random.default_rng(0))
        logits.append(np.asarray(head.denoise(state, 1.0, request))[0, 4:12])
    numpy_logits, torch_logits = logits
    assert isinstance(heads[0].model, ArrayBlockLM)
    relative = np.linalg.norm(numpy_logits - torch_logits) / np.linalg.norm(torch_logits)
    assert 0 < relative < 0.05, relative


def test_runtime_dtype_bfloat16_runs_the_network_in_bfloat16(tiny_dir):
    engine = adapted(tiny_dir, "runtime.dtype=bfloat16")
    assert dtypes(engine.head) == {torch.bfloat16}
    text = engine.diffuse("w9 w10 w11", length=8, seed=0)
    assert text.startswith("w9 w10 w11 ") and len(text.split()) > 3


def test_head_options_win_over_the_runtime(tiny_dir):
    engine = adapted(tiny_dir, "runtime.dtype=bfloat16", "head.dtype=float32")
    assert engine.runtimes["text"].dtype == "bfloat16"
    assert dtypes(engine.head) == {torch.float32}
    engine = adapted(tiny_dir, "runtime.name=torch", "runtime.dtype=float32", "head.dtype=auto")
    assert dtypes(engine.head) == {torch.float32}
    with pytest.raises(UsageError, match="head.dtype bfloat16 need the torch runtime.*"
                                         "set runtime.name: torch"):
        text_head(tiny_dir, dtype="bfloat16", runtime=RuntimeChoice("numpy", "cpu", "float32"))


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")
def test_a_head_device_that_is_not_here_names_the_option_and_the_fix(tiny_dir):
    with pytest.raises(ConfigError, match="head.device: device 'cuda' is not available here; "
                                          "choose one of: auto, cpu"):
        adapted(tiny_dir, "head.device=cuda")


def test_the_tiny_model_takes_numpy_and_refuses_torch():
    engine = ArrowEngine.from_config(overrides=["head.name=text", "head.model=tiny"])
    assert isinstance(engine.head, TextDiffusionHead)
    assert engine.runtimes["text"].name == "numpy"
    for setting, message in [("runtime.name=torch", "runs in numpy only, not in torch"),
                             ("runtime.dtype=bfloat16", "computes in float32, not bfloat16"),
                             ("runtime.compile=true", "no torch network to compile")]:
        with pytest.raises(ConfigError, match=message):
            ArrowEngine.from_config(overrides=["head.name=text", "head.model=tiny", setting])
    with pytest.raises(UsageError, match="'tiny' runs in numpy on the CPU only, not in torch"):
        text_head("tiny", runtime=RuntimeChoice("torch", "cpu", "float32"))


def test_compile_runs_the_compiled_network_with_the_eager_output(tiny_dir):
    eager = adapted(tiny_dir, "runtime.name=torch")
    compiled = adapted(tiny_dir, "runtime.compile=true")
    body = compiled.head.model.network.model
    assert body._compiled_call_impl is not None  # what `hidden` calls runs compiled
    assert eager.head.model.network.model._compiled_call_impl is None
    assert compiled.diffuse("w9 w10 w11", length=8, seed=0) == \
        eager.diffuse("w9 w10 w11", length=8, seed=0)


def test_config_show_tells_the_runtime_the_configured_model_takes(tiny_dir, capsys):
    assert cli.main(["--set", f"head.model={tiny_dir}", "config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["runtime"]["name"] == "numpy"
    assert "fastest cold start" in shown["origins"]["runtime.name"]
    assert cli.main(["--set", "head.model=tiny", "config", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["runtime"]["name"] == "numpy"


def test_aios_generate_runs_on_the_configured_runtime(tiny_dir, capsys):
    assert cli.main(["--set", f"head.model={tiny_dir}", "--set", "runtime.dtype=bfloat16",
                     "--set", "runtime.device=cpu", "generate", "w9 w10 w11", "--length", "8",
                     "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("w9 w10 w11 ")
    if not HAS_GPU:
        assert cli.main(["--set", f"head.model={tiny_dir}", "--set", "runtime.device=cuda",
                         "generate", "w9"]) == 2
        assert "--set: runtime.device: device 'cuda' is not available here" in \
            capsys.readouterr().err


def test_generating_with_a_tiny_model_never_imports_torch():
    """Resolving the runtime for a NumPy model lists no devices (listing them imports torch:
    seconds, more than the whole generation)."""
    import os

    printed = _printed_by(
        "engine = ArrowEngine.from_config(overrides=['head.name=text', 'head.model=tiny'])\n"
        "engine.diffuse('Once upon', length=8, num_steps=4, seed=0)\n"
        "engine.head_for('image')\n"
        "print(engine.runtimes['text'].name, engine.runtimes['image'].name, "
        "'torch' in sys.modules)\n")
    if any(os.path.exists(f) for f in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")):
        pytest.skip("a GPU driver is here: the image head may take torch on the GPU")
    assert printed == ["numpy", "numpy", "False"]


def test_generating_with_the_adapted_model_in_numpy_never_imports_torch(tiny_dir):
    """`auto` on a CPU runs the adapted model in NumPy: neither torch nor `transformers` is
    imported (together some 5 s on two cores, more than a short generation)."""
    printed = _printed_by(
        "engine = ArrowEngine.from_config(overrides=['head.name=text', "
        f"'head.model={tiny_dir}', 'runtime.device=cpu'])\n"
        "text = engine.diffuse('w9 w10 w11', length=8, seed=0)\n"
        "print(engine.runtimes['text'].name, 'torch' in sys.modules, "
        "'transformers' in sys.modules, text.startswith('w9 w10 w11 w'))\n")
    assert printed == ["numpy", "False", "False", "True"]


def _printed_by(code: str) -> list[str]:
    """The words `code` prints, run in a fresh interpreter (with `sys` and `ArrowEngine`
    imported), so what it imports is its own."""
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom aios.engine import ArrowEngine\n" + code],
        capture_output=True, text=True, env=os.environ, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()
