import numpy as np
import pytest
from aios_image.codec import patchify, unpatchify


def test_patches_round_trip_to_the_same_pixels():
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    frames = patchify(images, 7)
    assert frames.shape == (3, 16, 49) and frames.min() >= -1 and frames.max() <= 1
    np.testing.assert_array_equal(unpatchify(frames, 28, 28, 7), images)


def test_patches_are_row_major_squares():
    image = np.zeros((1, 4, 4), dtype=np.uint8)
    image[0, :2, 2:] = 255  # the top-right 2x2 square
    frames = patchify(image, 2)
    assert (frames[0, 1] == 1).all() and (frames[0, [0, 2, 3]] == -1).all()


def test_values_outside_the_range_are_clipped_when_decoding():
    frames = np.full((1, 4, 4), 3.0, dtype=np.float32)
    assert (unpatchify(frames, 4, 4, 2) == 255).all()


def test_a_patch_that_does_not_divide_the_image_is_refused():
    with pytest.raises(ValueError, match="does not split into 5x5"):
        patchify(np.zeros((1, 28, 28), dtype=np.uint8), 5)
