"""How unsure the text model is about a text: its masked-token loss relative to what is typical.

For masked diffusion the denoising residual at noise level t is the cross-entropy of the clean
tokens at the masked positions, here per byte of text they stand for: a tokenizer cuts unfamiliar
text into short pieces that are each easy to guess, so the loss per token hides much of the
surprise (per byte separates in-domain from new text by 0.07-0.15 more ROC AUC on the shipped
model). The loss also depends on t (more masks, less context) and on the length of the text (a
short prompt gives little context), so the estimator divides it by the model's *calibrated* loss
at the same mask rate and length, measured once on windows of the training distribution: 1.0
means "as sure as on the text it was trained on", 2.0 "twice the typical loss". Requests above
a threshold (1.5 by default, `evolve.threshold`) are what `aios evolve --from-memory` adapts to.

It runs on the NumPy model (no torch), with a fixed seed per call, so a text always gets the same
score and `aios generate --explain` stays cheap. The calibration is a small JSON file,
`uncertainty.json`, kept in the model directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from aios.errors import AiosError
from aios.io import write_atomic
from aios_text.inference import ArrayTextModel
from aios_text.tokenizer import TextTokenizer

CALIBRATION_FILE = "uncertainty.json"
#: Mask rates the loss is measured at (the linear schedule's t is the mask rate).
TIMES = (0.15, 0.3, 0.5, 0.7, 0.85)
#: Text lengths (tokens) the calibration is measured at; others interpolate in log-length.
LENGTHS = (8, 16, 32, 64, 128)


@dataclass(frozen=True)
class Calibration:
    """Mean masked-token loss (nats per byte) of the model on its training distribution, per
    (length, mask rate): `expected[i][j]` for `lengths[i]`, `times[j]`."""

    times: tuple[float, ...]
    lengths: tuple[int, ...]
    expected: tuple[tuple[float, ...], ...]
    windows: int
    source: str

    def expected_at(self, length: int) -> np.ndarray:
        """Expected loss at each calibrated time for a text of `length` tokens."""
        table = np.asarray(self.expected, dtype=np.float64)
        x = np.log(np.clip(length, self.lengths[0], self.lengths[-1]))
        grid = np.log(np.asarray(self.lengths, dtype=np.float64))
        return np.array([np.interp(x, grid, table[:, j]) for j in range(len(self.times))])

    def save(self, directory: str | os.PathLike[str]) -> Path:
        path = Path(directory) / CALIBRATION_FILE
        text = json.dumps(asdict(self), indent=1)
        write_atomic(path, lambda f: f.write(text.encode()))
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Calibration:
        path = Path(directory) / CALIBRATION_FILE
        try:
            data = json.loads(path.read_text())
            calibration = cls(tuple(data["times"]), tuple(data["lengths"]),
                              tuple(tuple(row) for row in data["expected"]),
                              int(data["windows"]), str(data["source"]))
        except FileNotFoundError:
            raise AiosError(f"{directory} has no uncertainty calibration ({CALIBRATION_FILE}); "
                            "create it with `aios evolve --calibrate` (it reads the model's "
                            "training corpus)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise AiosError(f"{path} is malformed ({exc}); delete it and recalibrate with "
                            "`aios evolve --calibrate`") from exc
        shape = (len(calibration.lengths), len(calibration.times))
        rows = calibration.expected
        if len(rows) != shape[0] or any(len(row) != shape[1] for row in rows) or not (
                np.isfinite(rows).all() and (np.asarray(rows) > 0).all()):
            raise AiosError(f"{path} holds an invalid table; recalibrate with "
                            "`aios evolve --calibrate`")
        return calibration


class UncertaintyEstimator:
    """`score(text)`: the model's masked-token loss on `text` over its calibrated loss."""

    def __init__(self, model: ArrayTextModel, tokenizer: TextTokenizer,
                 calibration: Calibration, *, draws: int = 4, seed: int = 0) -> None:
        if draws < 1:
            raise ValueError(f"draws must be positive, got {draws}")
        self.model = model
        self.tokenizer = tokenizer
        self.calibration = calibration
        self.draws = draws
        self.seed = seed
        self.sizes = token_bytes(tokenizer)

    def score(self, text: str) -> float:
        """1.0 = as typical as the training text; larger = less sure. Texts longer than the
        longest calibrated length are scored window by window (at most 4) and averaged."""
        return self.score_ids(self.tokenizer.encode(text))

    def scores(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return np.array([self.score_ids(ids) for ids in tqdm(
            self.tokenizer.encode_batch(list(texts)), desc="uncertainty", disable=not progress)])

    def score_ids(self, ids: Sequence[int]) -> float:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size < 2:
            raise ValueError("the uncertainty of a text needs at least 2 tokens")
        longest = self.calibration.lengths[-1]
        windows = [ids[i:i + longest] for i in range(0, len(ids), longest)][:4]
        windows = [w for w in windows if len(w) >= 2] or [ids[:longest]]
        return float(np.mean([self._ratio(w) for w in windows]))

    def _ratio(self, ids: np.ndarray) -> float:
        losses = masked_losses(self.model, ids[None], self.calibration.times, self.draws,
                               self.tokenizer.mask_id, self.sizes,
                               np.random.default_rng(self.seed))
        return float(losses.mean(axis=0).sum() / self.calibration.expected_at(len(ids)).sum())


def token_bytes(tokenizer: TextTokenizer) -> np.ndarray:
    """Bytes of text each token id stands for (byte-level BPE: one symbol per byte; special
    tokens count as one)."""
    sizes = np.ones(tokenizer.vocab_size, dtype=np.float64)
    for token, index in tokenizer.tokenizer.get_vocab().items():
        sizes[index] = max(1, len(token))
    return sizes


def masked_losses(model: ArrayTextModel, windows: np.ndarray, times: Sequence[float],
                  draws: int, mask_id: int, sizes: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Cross-entropy at the masked positions per byte they stand for, (windows, times),
    averaged over `draws` random maskings per time (each masks at least one position);
    `sizes` are the bytes per token id (`token_bytes`)."""
    count, length = windows.shape
    rows = np.repeat(windows, len(times) * draws, axis=0)
    rates = np.tile(np.repeat(np.asarray(times, dtype=np.float32), draws), count)
    masked = rng.random(rows.shape) < rates[:, None]
    masked[np.arange(len(rows)), rng.integers(0, length, len(rows))] = True
    noisy = np.where(masked, mask_id, rows)
    logits = model(noisy, rates)
    logits = logits - logits.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(logits).sum(axis=-1))
    nll = log_z - np.take_along_axis(logits, rows[..., None], axis=-1)[..., 0]
    per_row = (nll * masked).sum(axis=1) / (sizes[rows] * masked).sum(axis=1)
    return per_row.reshape(count, len(times), draws).mean(axis=2)


def calibrate(model: ArrayTextModel, tokenizer: TextTokenizer, stream: np.ndarray, *,
              windows: int = 48, draws: int = 2, source: str = "", seed: int = 0,
              batch: int = 8, progress: bool = True) -> Calibration:
    """Measure the expected masked loss on `windows` random windows of `stream` (token ids of
    the training distribution) at every calibrated length and time."""
    stream = np.asarray(stream, dtype=np.int64)
    if len(stream) < LENGTHS[-1] * 2:
        raise AiosError(f"calibration needs at least {LENGTHS[-1] * 2} tokens of training text, "
                        f"got {len(stream)}")
    rng = np.random.default_rng(seed)
    sizes = token_bytes(tokenizer)
    table = []
    bar = tqdm(total=len(LENGTHS) * windows, desc="calibrating", disable=not progress)
    for length in LENGTHS:
        starts = rng.integers(0, len(stream) - length, windows)
        chosen = stream[starts[:, None] + np.arange(length)]
        parts = []
        for i in range(0, windows, batch):
            parts.append(masked_losses(model, chosen[i:i + batch], TIMES, draws,
                                       tokenizer.mask_id, sizes, rng))
            bar.update(len(chosen[i:i + batch]))
        table.append(tuple(float(v) for v in np.concatenate(parts).mean(axis=0)))
    bar.close()
    return Calibration(TIMES, LENGTHS, tuple(table), windows, source)


def roc_auc(negatives: Sequence[float], positives: Sequence[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    neg, pos = np.asarray(negatives, np.float64), np.asarray(positives, np.float64)
    if not len(neg) or not len(pos):
        raise ValueError("ROC AUC needs at least one score of each class")
    greater = (pos[:, None] > neg[None]).sum()
    ties = (pos[:, None] == neg[None]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
