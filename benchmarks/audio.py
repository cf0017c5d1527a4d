"""The audio head: intelligibility and realism per sampler and step count, and speed.

    python benchmarks/audio.py [--model DIR] [--per-word N] [--guidance S] [--clips FILE]
                               [--samplers A,B] [--quick]

1. Quality of word-conditional clips (N per word, the same seeds for every cell), scored by the
   word classifier this pack trains and ships (`aios_audio/models/classifier`, log-mel input):
   its accuracy on the clips (an intelligibility proxy: is "seven" heard as seven?) and the
   Fréchet distance between the clips' and real held-out renders' features in *its* penultimate
   layer. Baselines in the same run: real held-out renders (the floor at this N), the same
   renders through the model's codec (log-magnitude spectra, phase rebuilt by Griffin-Lim: the
   best a perfect model could score) and white noise.
   The real renders come from `--clips` (the `clips.npz` an `aios train audio` run wrote) or are
   rendered afresh with espeak-ng (a different seed from training).
2. Speed: milliseconds to one second of 16 kHz audio through `ArrowEngine.diffuse` (model
   loaded), per sampler at 20 steps, with and without classifier-free guidance.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from aios_audio.data import ClipSet, render_words, split
from aios_audio.evaluate import CLASSIFIER_DIR, prepare
from aios_audio.head import AudioHead
from continuous import SAMPLERS, STEPS, print_report, quality_rows, score_row

from aios.training.scoring import Classifier


def real_clips(path: str | None, words: list[str]) -> ClipSet:
    if path:
        with np.load(path) as data:
            return split(ClipSet(data["waveforms"], data["labels"], tuple(words)))[1]
    return render_words(words, 5, seed=99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an audio model directory (default: the shipped one)")
    parser.add_argument("--per-word", type=int, default=2, help="clips per word per cell")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--clips", help="clips.npz of a training run (its held-out renders)")
    parser.add_argument("--samplers", default=",".join(SAMPLERS),
                        help="comma-separated continuous samplers to compare")
    parser.add_argument("--quick", action="store_true", help="10 and 20 steps, DDIM only")
    args = parser.parse_args()
    samplers = ["ddim"] if args.quick else args.samplers.split(",")
    steps = [10, 20] if args.quick else STEPS

    classifier = Classifier.load(CLASSIFIER_DIR)
    words = list(classifier.classes)
    heldout = real_clips(args.clips, words)
    real = classifier.features(prepare(heldout.waveforms))
    prompts = [w for w in words for _ in range(args.per_word)]
    labels = np.repeat(np.arange(len(words)), args.per_word)

    def score_waves(waveforms: np.ndarray) -> dict[str, float]:
        return classifier.score(real, prepare(waveforms), labels)

    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.choice(np.flatnonzero(heldout.labels == w), args.per_word,
                                      replace=False) for w in range(len(words))])
    noise = np.clip(rng.normal(0, 0.3, (len(prompts), 16000)), -1, 1).astype(np.float32)
    codec = AudioHead(args.model or "").codec
    rows = [score_row("real held-out renders", score_waves(heldout.waveforms[pick])),
            score_row("the same through the codec",
                      score_waves(codec.decode(codec.encode(heldout.waveforms[pick])))),
            score_row("white noise", score_waves(noise))]
    rows += quality_rows("audio", prompts, lambda audio: score_waves(audio.samples),
                         guidance=args.guidance, samplers=samplers, steps=steps,
                         model=args.model)
    print_report("audio", f"Quality: {len(prompts)} clips per cell ({args.per_word} per word), "
                 f"guidance {args.guidance}; classifier accuracy on all {len(heldout.labels)} "
                 f"held-out renders "
                 f"{classifier.accuracy(prepare(heldout.waveforms), heldout.labels):.3f}", rows,
                 "Speed: one second of 16 kHz audio, batch 1, best of 3", "seven", samplers,
                 args.guidance, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
