"""gk.datasets: the IDX reader and load_fashion_mnist on small files written here."""
import gzip
import hashlib
import os

import numpy as np
import pytest

import gradkit as gk
from gradkit import datasets

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
    code = codes[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def make_set(rng, n_train=12, n_test=5):
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }


def write_set(directory, arrays, compress=True):
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        payload = idx_bytes(array)
        if compress:
            (directory / (name + ".gz")).write_bytes(gzip.compress(payload))
        else:
            (directory / name).write_bytes(payload)


def check_loaded(result, arrays):
    (xtr, ytr), (xte, yte) = result
    assert xtr.dtype == np.uint8 and xte.dtype == np.uint8
    assert ytr.dtype == np.int64 and yte.dtype == np.int64
    np.testing.assert_array_equal(xtr, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ytr, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(xte, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(yte, arrays["t10k-labels-idx1-ubyte"])


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real data is visible: empty cache, no GRADKIT_DATA, a missing system directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GRADKIT_DATA", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DIR", str(tmp_path / "system"))
    return tmp_path


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_roundtrip(tmp_path, rng, dtype, compress):
    array = (rng.normal(size=(3, 4, 5)) * 50).astype(dtype)
    payload = idx_bytes(array)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    out = datasets.read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, array)


def test_read_idx_sizes_zero_and_one(tmp_path):
    for shape in [(0,), (1,), (0, 28, 28), (1, 1, 1)]:
        array = np.zeros(shape, np.uint8)
        path = tmp_path / "x.idx"
        path.write_bytes(idx_bytes(array))
        assert datasets.read_idx(path).shape == shape


@pytest.mark.parametrize("kind, message", [
    ("truncated", "expected 3936 bytes"),
    ("too_long", "expected 3936 bytes"),
    ("bad_magic", "not an IDX file"),
    ("empty", "not an IDX file"),
    ("short_header", "truncated header"),
    ("bad_gzip", "corrupt gzip"),
    ("truncated_gzip", "corrupt gzip"),
    ("huge_dims", "expected 18446744073709551632 bytes"),  # 2**64 + 16: must not wrap to 16
])
def test_read_idx_corrupt_files(tmp_path, kind, message):
    payload = idx_bytes(np.zeros((5, 28, 28), np.uint8))
    data = {
        "truncated": payload[:-7],
        "too_long": payload + b"\0",
        "bad_magic": b"\x01\x02" + payload[2:],
        "empty": b"",
        "short_header": payload[:9],
        "bad_gzip": b"\x1f\x8b" + b"garbage" * 10,
        "truncated_gzip": gzip.compress(payload)[:-20],
        "huge_dims": bytes.fromhex("00000803 80000000 80000000 00000004"),  # header only: 2**31*2**31*4 bytes
    }[kind]
    path = tmp_path / "corrupt.gz"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message) as err:
        datasets.read_idx(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("compress", [True, False])
def test_load_from_root(isolated, rng, compress):
    arrays = make_set(rng)
    write_set(isolated / "root", arrays, compress=compress)
    check_loaded(gk.datasets.load_fashion_mnist(root=isolated / "root", download=False), arrays)


def test_search_order_root_env_cache_system(isolated, rng, monkeypatch):
    sets = {name: make_set(rng) for name in ("root", "env", "cache", "system")}
    write_set(isolated / "system", sets["system"])
    write_set(isolated / "cache" / "gradkit" / "fashion-mnist", sets["cache"], compress=False)
    write_set(isolated / "env" / "fashion-mnist", sets["env"])
    write_set(isolated / "root", sets["root"])
    monkeypatch.setenv("GRADKIT_DATA", str(isolated / "env"))
    check_loaded(gk.datasets.load_fashion_mnist(root=isolated / "root", download=False), sets["root"])
    check_loaded(gk.datasets.load_fashion_mnist(download=False), sets["env"])
    monkeypatch.delenv("GRADKIT_DATA")
    check_loaded(gk.datasets.load_fashion_mnist(download=False), sets["cache"])
    for name in NAMES:
        os.unlink(isolated / "cache" / "gradkit" / "fashion-mnist" / name)
    check_loaded(gk.datasets.load_fashion_mnist(download=False), sets["system"])


def test_incomplete_directory_is_skipped(isolated, rng):
    arrays = make_set(rng)
    write_set(isolated / "system", arrays)
    partial = dict(arrays)
    del partial["t10k-labels-idx1-ubyte"]
    write_set(isolated / "root", partial)
    check_loaded(gk.datasets.load_fashion_mnist(root=isolated / "root", download=False), arrays)


def test_missing_everywhere_lists_places_and_how_to_get_data(isolated):
    with pytest.raises(FileNotFoundError) as err:
        gk.datasets.load_fashion_mnist(root=isolated / "nowhere", download=False)
    text = str(err.value)
    for place in (isolated / "nowhere", isolated / "cache" / "gradkit" / "fashion-mnist", isolated / "system"):
        assert str(place) in text, text
    assert "apt-get install dataset-fashion-mnist" in text and "GRADKIT_DATA" in text


@pytest.mark.parametrize("problem, message", [
    ("labels_range", r"labels must be in \[0, 9\]"),
    ("count_mismatch", "labels for"),
    ("image_shape", r"\(N, 28, 28\)"),
    ("label_dtype", "uint8 labels"),
])
def test_inconsistent_files_raise_naming_the_file(isolated, rng, problem, message):
    arrays = make_set(rng)
    if problem == "labels_range":
        arrays["train-labels-idx1-ubyte"][3] = 10
    elif problem == "count_mismatch":
        arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"][:-1]
    elif problem == "image_shape":
        arrays["train-images-idx3-ubyte"] = np.zeros((12, 27, 28), np.uint8)
    else:
        arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"].astype(np.int32)
    write_set(isolated / "root", arrays)
    with pytest.raises(ValueError, match=message) as err:
        gk.datasets.load_fashion_mnist(root=isolated / "root", download=False)
    assert "idx" in str(err.value)


# -- downloading (from a local file:// mirror; never the network) --------------------------------
@pytest.fixture
def mirror(isolated, rng, monkeypatch):
    """A file:// mirror holding a small data set, with the library's checksums pointed at it."""
    arrays = make_set(rng)
    write_set(isolated / "mirror", arrays)
    md5 = {name: hashlib.md5((isolated / "mirror" / (name + ".gz")).read_bytes()).hexdigest() for name in NAMES}
    monkeypatch.setattr(datasets, "FASHION_MNIST_FILES", md5)
    monkeypatch.setattr(datasets, "FASHION_MNIST_MIRRORS", [(isolated / "mirror").as_uri() + "/"])
    return arrays


def test_download_into_cache_then_reuse(isolated, mirror, capsys):
    result = gk.datasets.load_fashion_mnist()
    check_loaded(result, mirror)
    cache = isolated / "cache" / "gradkit" / "fashion-mnist"
    assert sorted(os.listdir(cache)) == sorted(n + ".gz" for n in NAMES)
    assert "downloading" in capsys.readouterr().out
    # Second call: found in the cache, nothing downloaded.
    for name in NAMES:
        os.unlink(isolated / "mirror" / (name + ".gz"))
    check_loaded(gk.datasets.load_fashion_mnist(), mirror)


def test_download_into_root(isolated, mirror):
    check_loaded(gk.datasets.load_fashion_mnist(root=isolated / "mine", verbose=False), mirror)
    assert sorted(os.listdir(isolated / "mine")) == sorted(n + ".gz" for n in NAMES)


def test_download_checksum_mismatch_leaves_nothing(isolated, mirror, monkeypatch):
    bad = dict(datasets.FASHION_MNIST_FILES, **{"t10k-images-idx3-ubyte": "0" * 32})
    monkeypatch.setattr(datasets, "FASHION_MNIST_FILES", bad)
    with pytest.raises(FileNotFoundError, match="checksum mismatch") as err:
        gk.datasets.load_fashion_mnist(verbose=False)
    assert "apt-get install dataset-fashion-mnist" in str(err.value)
    cache = isolated / "cache" / "gradkit" / "fashion-mnist"
    left = sorted(os.listdir(cache))
    assert "t10k-images-idx3-ubyte.gz" not in left and not [f for f in left if f.endswith(".part")], left


def test_download_interrupted_leaves_nothing(isolated, mirror, monkeypatch):
    import urllib.request

    class Broken:
        def __init__(self):
            self.calls = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n):
            self.calls += 1
            if self.calls > 1:
                raise ConnectionResetError("connection reset by peer")
            return b"\x1f\x8b partial"

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Broken())
    with pytest.raises(FileNotFoundError, match="connection reset"):
        gk.datasets.load_fashion_mnist(verbose=False)
    cache = isolated / "cache" / "gradkit" / "fashion-mnist"
    assert os.listdir(cache) == []


def test_offline_error_lists_places(isolated, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_MIRRORS", [(isolated / "no-such-mirror").as_uri() + "/"])
    with pytest.raises(FileNotFoundError) as err:
        gk.datasets.load_fashion_mnist(verbose=False)
    text = str(err.value)
    assert "download failed" in text and str(isolated / "system") in text and "apt-get" in text
