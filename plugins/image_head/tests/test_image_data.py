import gzip

import numpy as np
import pytest
from aios_image.data import load_dataset, load_fashion_mnist, read_idx

from aios.errors import AiosError


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def test_an_idx_file_reads_back_with_its_shape_and_values(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx3-ubyte").write_bytes(idx_bytes(images))
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), images)


def test_a_gzipped_big_endian_idx_file_reads_back(tmp_path):
    values = np.array([1, -2, 300], dtype=">i4")
    (tmp_path / "b.gz").write_bytes(gzip.compress(idx_bytes(values, 0x0C)))
    assert read_idx(tmp_path / "b.gz").tolist() == [1, -2, 300]


def test_a_truncated_idx_file_is_reported_with_the_fix(tmp_path):
    data = idx_bytes(np.zeros((2, 3), dtype=np.uint8))
    (tmp_path / "c").write_bytes(data[:-1])
    with pytest.raises(AiosError, match="truncated or corrupt, reinstall"):
        read_idx(tmp_path / "c")


def test_a_file_that_is_not_idx_is_refused(tmp_path):
    (tmp_path / "d").write_bytes(b"PNG\x00\x00")
    with pytest.raises(AiosError, match="not an IDX file"):
        read_idx(tmp_path / "d")


def test_missing_fashion_mnist_says_how_to_install_it(tmp_path):
    with pytest.raises(AiosError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path)


def test_the_digits_split_holds_out_a_fifth():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.images.shape[1:] == (8, 8) and train.images.dtype == np.uint8
    assert len(test.labels) == 1797 // 5 and len(train.labels) + len(test.labels) == 1797
    assert train.images.max() == 255 and len(train.classes) == 10


def test_an_unknown_data_set_lists_the_known_ones():
    with pytest.raises(ValueError, match="fashion-mnist, digits"):
        load_dataset("cifar")
