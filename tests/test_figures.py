import numpy as np
import pytest
from matplotlib import image as mpimg

from aios.training.figures import write_grid_png


def test_a_grid_is_written_as_a_png_wider_than_tall_for_one_row(tmp_path):
    path = write_grid_png(tmp_path / "g.png", np.zeros((6, 8, 8)), ["row"], cmap="gray")
    height, width = mpimg.imread(path).shape[:2]
    assert width > 2 * height


def test_more_rows_make_a_taller_picture(tmp_path):
    one = mpimg.imread(write_grid_png(tmp_path / "a.png", np.zeros((4, 8, 8)), ["a"]))
    two = mpimg.imread(write_grid_png(tmp_path / "b.png", np.zeros((4, 8, 8)), ["a", "b"]))
    assert two.shape[0] > one.shape[0]


def test_pictures_that_do_not_fill_the_rows_are_refused(tmp_path):
    with pytest.raises(ValueError, match="do not fill 2 rows"):
        write_grid_png(tmp_path / "c.png", np.zeros((3, 8, 8)), ["a", "b"])
    assert not (tmp_path / "c.png").exists()
