"""The image head: sample quality per sampler and step count, and speed on this CPU.

    python benchmarks/image.py [--model DIR] [--per-class N] [--guidance S] [--samplers A,B]
                               [--quick]

1. Quality of class-conditional samples (N per class, the same seeds for every cell), scored by
   the Fashion-MNIST classifier this pack trains and ships (`aios_image/models/classifier`):
   its accuracy on the samples (does a "sneaker" look like a sneaker?) and the Fréchet distance
   between the samples' and real test images' features in *its* penultimate layer (the FID
   formula, not Inception FID: compare the rows with each other, not with published FIDs). The
   baselines are measured in the same run: real held-out test images (the floor: the distance
   of N real images, biased upwards by the small N like every row) and uniform noise images.
2. Speed: milliseconds to one 28x28 image through `ArrowEngine.diffuse` (model loaded), per
   sampler at 20 steps, with and without classifier-free guidance (guidance doubles the batch).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from aios_image.data import load_fashion_mnist
from aios_image.evaluate import CLASSIFIER_DIR, prepare
from continuous import SAMPLERS, STEPS, print_report, quality_rows, score_row

from aios.training.scoring import Classifier


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an image model directory (default: the shipped one)")
    parser.add_argument("--per-class", type=int, default=3, help="samples per class per cell")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--samplers", default=",".join(SAMPLERS),
                        help="comma-separated continuous samplers to compare")
    parser.add_argument("--quick", action="store_true", help="10 and 20 steps, DDIM only")
    args = parser.parse_args()
    samplers = ["ddim"] if args.quick else args.samplers.split(",")
    steps = [10, 20] if args.quick else STEPS

    classifier = Classifier.load(CLASSIFIER_DIR)
    test = load_fashion_mnist("test")
    real = classifier.features(prepare(test.images[:2000]))
    classes = list(test.classes)
    prompts = [name for name in classes for _ in range(args.per_class)]
    labels = np.repeat(np.arange(len(classes)), args.per_class)
    count = len(prompts)

    def score(images: np.ndarray) -> dict[str, float]:
        return classifier.score(real, prepare(images), labels)

    rng = np.random.default_rng(0)
    held = np.concatenate([rng.choice(np.flatnonzero(test.labels[2000:] == c), args.per_class,
                                      replace=False) + 2000 for c in range(len(classes))])
    noise = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    rows = [score_row("real test images", score(test.images[held])),
            score_row("uniform noise", score(noise))]
    rows += quality_rows("image", prompts, score, guidance=args.guidance, samplers=samplers,
                         steps=steps, model=args.model)
    print_report("image", f"Quality: {count} samples per cell ({args.per_class} per class), "
                 f"guidance {args.guidance}; classifier test accuracy on real images "
                 f"{classifier.accuracy(prepare(test.images), test.labels):.3f}", rows,
                 "Speed: one 28x28 image, batch 1, best of 3", "sneaker", samplers,
                 args.guidance, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
