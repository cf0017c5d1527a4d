#!/usr/bin/env python3
"""Regenerate the README's first screen: real outputs of each shipped model, with fixed seeds.

    python scripts/examples.py           write docs/examples/* and the README block
    python scripts/examples.py --check   exit 1 if the README block or the files are stale

Each example is the `aios generate` command the README shows, run in-process with a fixed seed;
its output goes to docs/examples/, and the Markdown between the lines EXAMPLES_START and
EXAMPLES_END of README.md is rewritten to show it, with what each model is and is not good at.
`tests/test_examples.py` regenerates them the same way and compares, so the first screen stays
true when a model, a sampler or a default changes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLES_DIR = "docs/examples"
EXAMPLES_START = "<!-- examples:start -->"
EXAMPLES_END = "<!-- examples:end -->"


@dataclass(frozen=True)
class Example:
    """One `aios generate` run: its arguments (without --out), the file it writes, and what
    the README says about the model's output."""

    modality: str
    argv: tuple[str, ...]
    out: str  # under EXAMPLES_DIR
    good: str
    bad: str

    def command(self) -> str:
        shown = [f'"{a}"' if " " in a else a for a in self.argv]
        return "aios generate " + " ".join(shown)


EXAMPLES = (
    Example("text", ("Once upon a time", "--seed", "0", "--length", "64"), "text-once.txt",
            good="fluent English prose that follows the prompt, written a block of 8 tokens "
                 "at a time (SmolLM2-135M, Apache-2.0, adapted here to block diffusion with "
                 "348k tokens of LoRA training); it can also fill a gap (`--infill`)",
            bad="facts and long-range sense: a 135M-parameter model invents names and "
                "wanders. On 2 CPU cores it runs in NumPy with int8 kernels (no torch): 30 ms "
                "per token, 2x the base model's autoregressive decoding in float32 but only "
                "1.1x its bfloat16 decoding, and it starts in 1.6 s (docs/benchmarks.md)"),
    Example("image", ("sneaker", "--modality", "image", "--seed", "0", "--guidance-scale", "3"),
            "image-sneaker.png",
            good="the outline of the Fashion-MNIST class asked for: the project's classifier "
                 "recognises about three samples in four (76% with ddim at 20 steps; 88% of "
                 "real test images); saved 8x upscaled by nearest neighbour for viewing "
                 "(`--set head.view_scale=1` keeps the raw 28x28)",
            bad="detail: 28x28 grey pixels, blotchy, with stray marks (see the streak above); "
                "ten clothing classes only, no free-text prompts"),
    Example("audio", ("seven", "--modality", "audio", "--seed", "0", "--guidance-scale", "3"),
            "audio-seven.wav",
            good="one of 14 words (zero to nine, yes, no, up, down) as one second of 16 kHz "
                 "audio: the project's word classifier recognises 79% of samples (ddim, 20 "
                 "steps); the WAV comes with this spectrogram",
            bad="natural speech: the voice is espeak-ng's synthetic one, rebuilt from spectra "
                "by Griffin-Lim, so it sounds buzzy and smeared; no sentences, no other words"),
)


def generate(example: Example, directory: Path) -> list[Path]:
    """Run the example's command (its files go to `directory`); the files it wrote."""
    from aios.cli import app as cli

    printed = io.StringIO()
    pinned = os.environ.pop("AIOS_TEXT_MODEL", None)  # the default text model, as users get it
    try:
        with contextlib.redirect_stdout(printed):
            code = cli.main(["generate", *example.argv, "--out", str(directory / example.out)])
    finally:
        if pinned is not None:
            os.environ["AIOS_TEXT_MODEL"] = pinned
    if code != 0:
        raise SystemExit(f"examples: `{example.command()}` failed with exit code {code}")
    return [Path(line) for line in printed.getvalue().split()]


def block(directory: Path) -> str:
    """The README's Markdown between the markers, from the outputs in `directory`."""
    lines = [
        EXAMPLES_START,
        "<!-- Written by scripts/examples.py from fixed seeds; tests/test_examples.py checks "
        "it. Do not edit by hand. -->",
        "### What the shipped models really make",
        "",
        "Real outputs of the default models of the packs, each from the command shown (seed "
        "fixed, default settings, CPU):",
        "",
    ]
    for example in EXAMPLES:
        lines.append(f"**{example.modality.capitalize()}**: `{example.command()}`")
        lines.append("")
        if example.modality == "text":
            text = (directory / example.out).read_text().strip()
            lines += [f"> {line}".rstrip() for line in text.splitlines()] + [""]
        elif example.modality == "image":
            lines += [f"![a generated sneaker, 224x224]({EXAMPLES_DIR}/{example.out})", ""]
        else:
            picture = Path(example.out).with_suffix(".png").name
            lines += [f"[{example.out}]({EXAMPLES_DIR}/{example.out}) and its spectrogram:", "",
                      f"![the spectrogram of a generated 'seven']({EXAMPLES_DIR}/{picture})",
                      ""]
        lines += [f"- good at: {example.good}", f"- not good at: {example.bad}", ""]
    lines.append(EXAMPLES_END)
    return "\n".join(lines)


def readme_block(readme: str) -> str:
    """The block currently in the README (markers included)."""
    start, end = readme.find(EXAMPLES_START), readme.find(EXAMPLES_END)
    if start < 0 or end < start:
        raise SystemExit(f"examples: README.md lacks the lines {EXAMPLES_START} ... "
                         f"{EXAMPLES_END}")
    return readme[start:end + len(EXAMPLES_END)]


def read_grey_png(path: Path) -> np.ndarray:
    from matplotlib import image as mpimg

    return np.round(mpimg.imread(path)[..., 0] * 255).astype(np.int64)


def read_wav_samples(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.int64)


def differences(fresh: Path, kept: Path) -> list[str]:
    """What differs between outputs regenerated in `fresh` and those kept in `kept`: text
    exactly, pixels and samples within rounding (other CPUs may round a last bit otherwise)."""
    problems = []
    for example in EXAMPLES:
        new, old = fresh / example.out, kept / example.out
        if not old.is_file():
            problems.append(f"{old} is missing")
        elif example.modality == "text" and new.read_text() != old.read_text():
            problems.append(f"{old}: the text differs")
        elif example.modality == "image" and (
                read_grey_png(new).shape != read_grey_png(old).shape
                or np.abs(read_grey_png(new) - read_grey_png(old)).max() > 2):
            problems.append(f"{old}: the image differs")
        elif example.modality == "audio" and (
                len(read_wav_samples(new)) != len(read_wav_samples(old))
                or np.abs(read_wav_samples(new) - read_wav_samples(old)).max() > 64):
            problems.append(f"{old}: the audio differs")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a temporary folder and compare; write nothing")
    args = parser.parse_args(argv)
    kept = ROOT / EXAMPLES_DIR
    readme = README.read_text()
    if args.check:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp)
            for example in EXAMPLES:
                generate(example, fresh)
            problems = differences(fresh, kept)
            if readme_block(readme) != block(fresh):
                problems.append("README.md: the examples block is not what the models make now")
        for problem in problems:
            print(f"examples: {problem}", file=sys.stderr)
        if problems:
            print("examples: run `python scripts/examples.py` and commit the result",
                  file=sys.stderr)
        return 1 if problems else 0
    kept.mkdir(parents=True, exist_ok=True)
    for example in EXAMPLES:
        for path in generate(example, kept):
            print(path.relative_to(ROOT))
    README.write_text(readme.replace(readme_block(readme), block(kept)))
    print("README.md: examples block updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
