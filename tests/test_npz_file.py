"""read_npz: each way a file can fail to be an .npz gets its own reason; a good archive reads whole, as does one
write_npz wrote."""

import zipfile

import numpy as np
import pytest

from physnetjax.data.split import load_split
from physnetjax.npz_file import NpzReadError, read_npz, write_npz


def test_reads_every_array(tmp_path):
    np.savez(tmp_path / "a.npz", R=np.arange(6.0).reshape(2, 3), Z=np.array([1, 8], np.int8))
    arrays = read_npz(tmp_path / "a.npz")
    assert sorted(arrays) == ["R", "Z"]
    np.testing.assert_array_equal(arrays["R"], np.arange(6.0).reshape(2, 3))
    assert arrays["Z"].dtype == np.int8


@pytest.mark.parametrize("compressed", [False, True])
def test_write_npz_writes_every_array_under_its_key_at_exactly_the_path(tmp_path, compressed):
    """write_npz's file reads back key by key (dtypes kept), stored by default or deflated when asked, at the path
    given (no ``.npz`` appended, as np.savez does to a name)."""
    arrays = {"R": np.linspace(0.0, 1.0, 3000).reshape(1000, 3), "Z": np.ones(1000, np.int8)}
    path = write_npz(tmp_path / "frames.data", arrays, **({"compressed": True} if compressed else {}))
    assert path == tmp_path / "frames.data" and sorted(p.name for p in tmp_path.iterdir()) == ["frames.data"]
    back = read_npz(path)
    assert sorted(back) == ["R", "Z"] and back["Z"].dtype == np.int8
    np.testing.assert_array_equal(back["R"], arrays["R"])
    with zipfile.ZipFile(path) as archive:
        methods = {info.compress_type for info in archive.infolist()}
    assert methods == {zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED}


def _truncated(path):
    np.savez(path, R=np.ones((50, 3)))
    path.write_bytes(path.read_bytes()[:300])


@pytest.mark.parametrize("make,reason", [
    (lambda p: p.write_bytes(b""), "the file is empty"),
    (lambda p: p.write_text("Z R\n1 0.0\n", encoding="utf-8"), "not an .npz file"),
    (lambda p: np.save(p.open("wb"), np.ones(3)), "not an .npz file"),  # a .npy under an .npz name
    (_truncated, "damaged or truncated"),
    (lambda p: np.savez(p, a=np.array([{"x": 1}], dtype=object)), "object arrays"),
])
def test_reason_names_the_problem(tmp_path, make, reason):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(NpzReadError, match=reason) as raised:
        read_npz(path)
    assert "allow_pickle" not in str(raised.value)  # numpy's misleading advice for a non-zip file


def test_a_missing_file_is_file_not_found(tmp_path):
    """Left to the caller's FileNotFoundError handling (the command line tools name the option)."""
    with pytest.raises(FileNotFoundError):
        read_npz(tmp_path / "missing.npz")


def test_split_file_that_is_not_an_npz(tmp_path):
    """A text file given as split: numpy said 'pickled (object) data ... allow_pickle'."""
    path = tmp_path / "split.npz"
    path.write_text("train: 0 1 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"split file .*split.npz cannot be read as .npz: not an .npz file"):
        load_split(path, 10)
