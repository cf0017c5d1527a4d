"""The audio head through the recipe, the engine and the command line (tiny model)."""

import audio_fixtures
import numpy as np
import pytest
from aios_audio.head import Audio, AudioHead, read_wav
from matplotlib import image as mpimg

from aios.cli import app as cli
from aios.engine import ArrowEngine


@pytest.fixture(scope="module")
def tiny_audio_run(tmp_path_factory):
    return audio_fixtures.trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def model_dir(tiny_audio_run):
    return str(tiny_audio_run[0] / "model")


def engine(model_dir):
    return ArrowEngine.from_config(overrides=[f"head.model={model_dir}", "sampler.name=ddim",
                                              "generate.modality=audio"])


def test_the_recipe_writes_the_model_and_its_sample_sheet(tiny_audio_run):
    run, metrics = tiny_audio_run
    for name in ("model.yaml", "backbone.arrow", "audio.arrow", "loss.png", "samples.wav",
                 "samples.png"):
        assert (run / "model" / name).is_file(), name
    assert (run / "clips.npz").is_file() and metrics["steps"] == 6


def test_auto_picks_the_audio_head_for_the_audio_modality(model_dir):
    assert isinstance(engine(model_dir).head, AudioHead)


def test_diffuse_returns_one_second_of_float32_mono_and_its_rate(model_dir):
    audio = engine(model_dir).diffuse("yes", modality="audio", num_steps=2, seed=0)
    assert isinstance(audio, Audio) and audio.sample_rate == 16000 and audio.label == "yes"
    assert audio.samples.shape == (16000,) and audio.samples.dtype == np.float32
    assert np.abs(audio.samples).max() <= 1.0


def test_generate_writes_a_wav_and_its_spectrogram(model_dir, tmp_path, capsys):
    out = tmp_path / "yes.wav"
    code = cli.main(["--set", f"head.model={model_dir}", "generate", "--modality", "audio",
                     "yes", "--steps", "2", "--seed", "0", "--out", str(out)])
    assert code == 0
    assert capsys.readouterr().out.split() == [str(out), str(out.with_suffix(".png"))]
    wav = read_wav(out)
    assert wav.sample_rate == 16000 and wav.samples.shape == (16000,)
    assert mpimg.imread(out.with_suffix(".png")).shape[:2] == (360, 640)  # the titled figure


def test_the_wav_holds_the_generated_samples(model_dir, tmp_path):
    built = engine(model_dir)
    audio = built.diffuse("no", num_steps=2, seed=3)
    built.head.write(audio, tmp_path / "no.wav")
    samples = read_wav(tmp_path / "no.wav").samples[:16000]
    np.testing.assert_allclose(samples, audio.samples, atol=0.5 / 32767 + 1e-7)


def test_the_torch_runtime_renders_the_numpy_runtimes_samples(model_dir):
    """`runtime.name: torch` runs the network in torch (CPU, float32): the same seed gives
    the same samples, to float rounding."""
    from aios.models.gaussian import RuntimeContinuousModel

    def on(*settings):
        return ArrowEngine.from_config(overrides=[f"head.model={model_dir}", "head.name=audio",
                                                  "sampler.name=ddim", *settings])

    numpy_engine, torch_engine = on(), on("runtime.name=torch", "runtime.dtype=float32")
    assert isinstance(torch_engine.head.model, RuntimeContinuousModel)
    want = numpy_engine.diffuse("yes", num_steps=3, seed=0).samples
    got = torch_engine.diffuse("yes", num_steps=3, seed=0).samples
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.abs(want).max() > 1e-3
