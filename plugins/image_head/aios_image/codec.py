"""Images <-> frames for the continuous head: non-overlapping square patches scaled to [-1, 1].

A (height, width) grey image becomes (height/patch * width/patch) frames of patch*patch values,
row-major, which is the order the head's learned positions follow.
"""

from __future__ import annotations

import numpy as np


def _check(height: int, width: int, patch: int) -> None:
    if patch < 1 or height % patch or width % patch:
        raise ValueError(f"a {height}x{width} image does not split into {patch}x{patch} "
                         "patches; choose a patch size that divides both sides")


def patchify(images: np.ndarray, patch: int) -> np.ndarray:
    """uint8 (count, height, width) -> float32 (count, patches, patch * patch) in [-1, 1]."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be (count, height, width), got {images.shape}")
    count, height, width = images.shape
    _check(height, width, patch)
    x = images.astype(np.float32) / 127.5 - 1.0
    x = x.reshape(count, height // patch, patch, width // patch, patch).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(x.reshape(count, -1, patch * patch))


def unpatchify(frames: np.ndarray, height: int, width: int, patch: int) -> np.ndarray:
    """float (count, patches, patch * patch) -> uint8 (count, height, width), clipped."""
    frames = np.asarray(frames, dtype=np.float32)
    _check(height, width, patch)
    rows, cols = height // patch, width // patch
    if frames.ndim != 3 or frames.shape[1:] != (rows * cols, patch * patch):
        raise ValueError(f"frames must be (count, {rows * cols}, {patch * patch}) for a "
                         f"{height}x{width} image in {patch}x{patch} patches, got {frames.shape}")
    x = frames.reshape(-1, rows, cols, patch, patch).transpose(0, 1, 3, 2, 4)
    x = x.reshape(-1, height, width)
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
