"""The audio head's training recipe: render the words, train the head, write the model.

`run_recipe` renders the clips with espeak-ng (cached in the run directory as `clips.npz`, so a
resumed run renders nothing), turns them into normalised log-magnitude spectra (the codec's
scaling is measured on the training clips and saved with the model), trains the head (alone on
the frozen text backbone by default) through `aios.training`, and writes the model
directory with spectrograms of samples of every word.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aios.io import write_atomic
from aios.training import (
    HeadTraining,
    bind_run,
    load_recipe_file,
    sample_sheet,
    train_continuous_head,
    write_metrics,
)
from aios_audio.codec import SpectralCodec
from aios_audio.data import SAMPLE_RATE, WORDS, ClipSet, render_words, split

DEFAULT_RECIPE = Path(__file__).with_name("recipes") / "default.yaml"


@dataclass(frozen=True)
class AudioRecipe:
    """Everything that determines a trained audio head."""

    words: tuple[str, ...] = WORDS
    renders: int = 50
    n_fft: int = 1000
    hop: int = 250
    training: HeadTraining = field(default_factory=HeadTraining)
    grid_columns: int = 4
    grid_steps: int = 20
    grid_guidance: float = 3.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["words"] = list(self.words)
        data["training"] = self.training.to_dict()
        return data


def load_recipe(path: str | os.PathLike[str]) -> AudioRecipe:
    return load_recipe_file(AudioRecipe, path)


def load_clips(recipe: AudioRecipe, out: Path, progress: bool) -> ClipSet:
    """The recipe's clips: rendered once, then read from `out/clips.npz`."""
    path = out / "clips.npz"
    if path.exists():
        with np.load(path) as data:
            return ClipSet(data["waveforms"], data["labels"], tuple(recipe.words))
    clips = render_words(recipe.words, recipe.renders, progress=progress)

    def save(f: Any) -> None:
        np.savez(f, waveforms=clips.waveforms, labels=clips.labels)

    write_atomic(path, save)
    return clips


def run_recipe(recipe: AudioRecipe, out_dir: str | os.PathLike[str], *,
               progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the head of `recipe` in `out_dir`; returns its metrics."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bind_run(out, recipe.to_dict())
    train_set, heldout = split(load_clips(recipe, out, progress))
    codec = SpectralCodec(SAMPLE_RATE, train_set.waveforms.shape[1], n_fft=recipe.n_fft,
                          hop=recipe.hop).fit(train_set.waveforms)
    settings = {**codec.settings(), "classes": list(recipe.words), "renders": recipe.renders}
    _, metrics = train_continuous_head(
        "audio", None, recipe.training,
        (codec.encode(train_set.waveforms), train_set.labels),
        (codec.encode(heldout.waveforms), heldout.labels),
        settings, out, progress=progress)
    sheet = write_sample_sheet(out / "model", recipe)
    if sheet is not None:
        metrics["sample_sheet"] = str(sheet)
    write_metrics(out, metrics)
    return metrics


def write_sample_sheet(model_dir: Path, recipe: AudioRecipe) -> Path | None:
    """`samples.wav` and `samples.png`: `grid_columns` samples of every word (no continuous
    sampler installed: nothing)."""
    from aios_audio.head import AudioHead

    head = AudioHead(str(model_dir))
    sheet = sample_sheet(head, recipe.grid_columns, recipe.grid_steps, recipe.grid_guidance)
    if sheet is None:
        return None
    return head.write(sheet[0], model_dir / "samples.wav", rows=sheet[1])[1]


# Copy shared with aios_image/recipe.py; tests/test_pack_copies.py checks that they agree.
def train_command(recipe: str | None, out: str, progress: bool = True) -> dict[str, Any]:
    """What `aios train audio` runs: the given recipe file, or the default one."""
    return run_recipe(load_recipe(recipe or DEFAULT_RECIPE), out, progress=progress)
