"""gk.datasets: the IDX reader, load_fashion_mnist, the CIFAR-10 batch reader and load_cifar10 on small
files written here (downloads from file:// mirrors; never the network)."""
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile

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


def check_root_env_cache(isolated, monkeypatch, load, check, sets):
    """load finds root= first, then $GRADKIT_DATA, then the user cache (sets written there)."""
    monkeypatch.setenv("GRADKIT_DATA", str(isolated / "env"))
    check(load(root=isolated / "root", download=False), sets["root"])
    check(load(download=False), sets["env"])
    monkeypatch.delenv("GRADKIT_DATA")
    check(load(download=False), sets["cache"])


def test_search_order_root_env_cache_system(isolated, rng, monkeypatch):
    sets = {name: make_set(rng) for name in ("root", "env", "cache", "system")}
    write_set(isolated / "system", sets["system"])
    write_set(isolated / "cache" / "gradkit" / "fashion-mnist", sets["cache"], compress=False)
    write_set(isolated / "env" / "fashion-mnist", sets["env"])
    write_set(isolated / "root", sets["root"])
    check_root_env_cache(isolated, monkeypatch, gk.datasets.load_fashion_mnist, check_loaded, sets)
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


# -- CIFAR-10: python-pickle batches as Python 2 wrote them ---------------------------------------
CIFAR_NAMES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


class Py2Pickler(pickle._Pickler):
    """Protocol 2 with bytes written as Python 2 ``str`` (BINSTRING), as the published batches are
    (Python 3's own pickler would write bytes through ``_codecs.encode``)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):  # the module path NumPy 1.x (and the published files) name
        if obj is np.zeros(0).__reduce__()[0]:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)

    dispatch[type(np.zeros(0).__reduce__()[0])] = save_global


def cifar_batch_bytes(images, labels, label=b"training batch 1 of 5"):
    batch = {b"batch_label": label, b"labels": [int(v) for v in labels],
             b"data": images.reshape(len(images), 3072),
             b"filenames": [b"img_%d.png" % i for i in range(len(images))]}
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(batch)
    return buf.getvalue()


def make_cifar(rng, sizes=(3, 2, 4, 1, 2, 3)):
    return {name: (rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, size=n))
            for name, n in zip(CIFAR_NAMES, sizes)}


def write_cifar(directory, batches):
    directory.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in batches.items():
        (directory / name).write_bytes(cifar_batch_bytes(x, y))


def check_cifar(result, batches):
    (xtr, ytr), (xte, yte) = result
    assert xtr.dtype == np.uint8 and xtr.shape[1:] == (3, 32, 32) and xtr.flags.c_contiguous
    assert ytr.dtype == np.int64 and yte.dtype == np.int64
    np.testing.assert_array_equal(xtr, np.concatenate([batches[n][0] for n in CIFAR_NAMES[:5]]))
    np.testing.assert_array_equal(ytr, np.concatenate([batches[n][1] for n in CIFAR_NAMES[:5]]))
    np.testing.assert_array_equal(xte, batches["test_batch"][0])
    np.testing.assert_array_equal(yte, batches["test_batch"][1])


def test_cifar_batch_written_like_python2(tmp_path, rng):
    """The file uses the opcodes of the published batches: numpy.core's _reconstruct, Python 2 strings."""
    x, y = rng.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8), [3, 9]
    raw = cifar_batch_bytes(x, y)
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"_codecs" not in raw and b"U\x04data" in raw
    (tmp_path / "b").write_bytes(raw)
    xr, yr = datasets.read_cifar10_batch(tmp_path / "b")
    np.testing.assert_array_equal(xr, x)
    assert xr[1, 2, 31, 0] == x[1, 2, 31, 0] and yr.tolist() == y and yr.dtype == np.int64
    # channel planes: the first 1024 values of a row are red, rows first
    np.testing.assert_array_equal(xr[0, 0].ravel(), x.reshape(2, 3072)[0, :1024])


def test_cifar_batch_sizes_zero_and_one(tmp_path):
    for n in (0, 1):
        (tmp_path / "b").write_bytes(cifar_batch_bytes(np.zeros((n, 3, 32, 32), np.uint8), [7] * n))
        x, y = datasets.read_cifar10_batch(tmp_path / "b")
        assert x.shape == (n, 3, 32, 32) and y.shape == (n,)


def test_cifar_unpickler_refuses_other_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "b").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=4))
    with pytest.raises(ValueError, match=r"refusing to load global posix\.system") as err:
        datasets.read_cifar10_batch(tmp_path / "b")
    assert str(tmp_path / "b") in str(err.value) and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("problem, message", [
    ("not_pickle", "not a CIFAR-10 python batch"),
    ("truncated", "not a CIFAR-10 python batch"),
    ("not_dict", "expected a pickled dict, got list"),
    ("no_labels", "expected keys 'data' and 'labels'"),
    ("data_shape", r"data: expected a uint8 array of shape \(N, 3072\), got uint8 of shape \(2, 3071\)"),
    ("data_dtype", r"data: expected a uint8 array of shape \(N, 3072\), got int16"),
    ("count", "1 labels for 2 images"),
    ("label_range", r"labels must be in \[0, 9\], found 10"),
    ("label_type", "labels: expected a list of ints"),
])
def test_cifar_corrupt_batches_raise_naming_the_file(tmp_path, rng, problem, message):
    good = cifar_batch_bytes(np.zeros((2, 3, 32, 32), np.uint8), [1, 2])
    obj = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}
    if problem == "not_pickle":
        raw = b"hello world"
    elif problem == "truncated":
        raw = good[:len(good) // 2]
    else:
        if problem == "not_dict":
            obj = [1, 2]
        elif problem == "no_labels":
            del obj[b"labels"]
        elif problem == "data_shape":
            obj[b"data"] = np.zeros((2, 3071), np.uint8)
        elif problem == "data_dtype":
            obj[b"data"] = np.zeros((2, 3072), np.int16)
        elif problem == "count":
            obj[b"labels"] = [1]
        elif problem == "label_range":
            obj[b"labels"] = [1, 10]
        else:
            obj[b"labels"] = [1, "2"]
        buf = io.BytesIO()
        Py2Pickler(buf, protocol=2).dump(obj)
        raw = buf.getvalue()
    (tmp_path / "b").write_bytes(raw)
    with pytest.raises(ValueError, match=message) as err:
        datasets.read_cifar10_batch(tmp_path / "b")
    assert str(tmp_path / "b") in str(err.value)


def test_cifar_search_order_root_env_cache(isolated, rng, monkeypatch):
    sets = {name: make_cifar(rng) for name in ("root", "env", "cache")}
    write_cifar(isolated / "cache" / "gradkit" / "cifar-10" / "cifar-10-batches-py", sets["cache"])
    write_cifar(isolated / "env" / "cifar-10-batches-py", sets["env"])
    write_cifar(isolated / "root", sets["root"])
    check_root_env_cache(isolated, monkeypatch, gk.datasets.load_cifar10, check_cifar, sets)
    os.unlink(isolated / "cache" / "gradkit" / "cifar-10" / "cifar-10-batches-py" / "test_batch")
    with pytest.raises(FileNotFoundError) as err:  # an incomplete directory is skipped
        gk.datasets.load_cifar10(download=False)
    text = str(err.value)
    assert "CIFAR-10 not found" in text and "test_batch" in text and "GRADKIT_DATA" in text
    assert str(isolated / "cache" / "gradkit" / "cifar-10" / "cifar-10-batches-py") in text


def cifar_archive(directory, batches, extra=()):
    """cifar-10-python.tar.gz as published: cifar-10-batches-py/<batch> (+ extra (name, bytes) members)."""
    path = directory / "cifar-10-python.tar.gz"
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        members = [(f"cifar-10-batches-py/{n}", cifar_batch_bytes(x, y)) for n, (x, y) in batches.items()]
        for name, data in members + list(extra):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def cifar_mirror(isolated, rng, monkeypatch):
    """A file:// mirror serving a small archive, with the library's checksum pointed at it."""
    batches = make_cifar(rng)
    archive = cifar_archive(isolated / "mirror", batches)
    monkeypatch.setattr(datasets, "CIFAR10_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(datasets, "CIFAR10_MIRRORS", [(isolated / "mirror").as_uri() + "/"])
    return batches


def test_cifar_download_extract_then_reuse(isolated, cifar_mirror, capsys):
    check_cifar(gk.datasets.load_cifar10(), cifar_mirror)
    cache = isolated / "cache" / "gradkit" / "cifar-10"
    assert sorted(os.listdir(cache)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert sorted(os.listdir(cache / "cifar-10-batches-py")) == sorted(CIFAR_NAMES)
    assert "downloading" in capsys.readouterr().out
    os.unlink(isolated / "mirror" / "cifar-10-python.tar.gz")  # found in the cache: nothing fetched
    check_cifar(gk.datasets.load_cifar10(), cifar_mirror)
    # the batches gone, the checked archive is extracted again without a download
    for name in CIFAR_NAMES:
        os.unlink(cache / "cifar-10-batches-py" / name)
    os.rmdir(cache / "cifar-10-batches-py")
    check_cifar(gk.datasets.load_cifar10(verbose=False), cifar_mirror)


def test_cifar_corrupt_archive_in_cache_is_fetched_again(isolated, cifar_mirror):
    cache = isolated / "cache" / "gradkit" / "cifar-10"
    cache.mkdir(parents=True)
    (cache / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b truncated")
    check_cifar(gk.datasets.load_cifar10(verbose=False), cifar_mirror)
    served = (isolated / "mirror" / "cifar-10-python.tar.gz").read_bytes()
    assert (cache / "cifar-10-python.tar.gz").read_bytes() == served


def test_cifar_download_into_root(isolated, cifar_mirror):
    check_cifar(gk.datasets.load_cifar10(root=isolated / "mine", verbose=False), cifar_mirror)
    assert (isolated / "mine" / "cifar-10-batches-py" / "test_batch").is_file()


def test_cifar_checksum_mismatch_leaves_nothing(isolated, cifar_mirror, monkeypatch):
    monkeypatch.setattr(datasets, "CIFAR10_MD5", "0" * 32)
    with pytest.raises(FileNotFoundError, match="checksum mismatch") as err:
        gk.datasets.load_cifar10(verbose=False)
    assert "cifar-10-python.tar.gz" in str(err.value)
    assert os.listdir(isolated / "cache" / "gradkit" / "cifar-10") == []


def test_cifar_published_checksum_is_checked(isolated, rng, monkeypatch):
    """With the real MD5 (c58f3010...), a served archive that is not the published one is refused."""
    assert datasets.CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"
    cifar_archive(isolated / "mirror", make_cifar(rng))
    monkeypatch.setattr(datasets, "CIFAR10_MIRRORS", [(isolated / "mirror").as_uri() + "/"])
    with pytest.raises(FileNotFoundError, match="expected c58f30108f718f92721af3b95e74349a"):
        gk.datasets.load_cifar10(verbose=False)


def test_cifar_archive_with_foreign_members_extracts_only_batches(isolated, rng, monkeypatch):
    batches = make_cifar(rng)
    archive = cifar_archive(isolated / "mirror", batches,
                            extra=[("../escape", b"x"), ("cifar-10-batches-py/../../escape2", b"x"), ("other", b"x")])
    monkeypatch.setattr(datasets, "CIFAR10_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(datasets, "CIFAR10_MIRRORS", [(isolated / "mirror").as_uri() + "/"])
    check_cifar(gk.datasets.load_cifar10(root=isolated / "data", verbose=False), batches)
    assert sorted(os.listdir(isolated / "data")) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert not (isolated / "escape").exists() and not (isolated / "escape2").exists()


def test_cifar_archive_missing_a_batch(isolated, rng, monkeypatch):
    batches = make_cifar(rng)
    del batches["data_batch_3"]
    archive = cifar_archive(isolated / "mirror", batches)
    monkeypatch.setattr(datasets, "CIFAR10_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(datasets, "CIFAR10_MIRRORS", [(isolated / "mirror").as_uri() + "/"])
    with pytest.raises(FileNotFoundError, match="the archive lacks some of"):
        gk.datasets.load_cifar10(verbose=False)
    cache = isolated / "cache" / "gradkit" / "cifar-10"
    assert os.listdir(cache) == ["cifar-10-python.tar.gz"]  # no half-extracted batches directory


def test_cifar_offline_error_lists_places(isolated, monkeypatch):
    monkeypatch.setattr(datasets, "CIFAR10_MIRRORS", [(isolated / "no-such-mirror").as_uri() + "/"])
    with pytest.raises(FileNotFoundError) as err:
        gk.datasets.load_cifar10(root=isolated / "r", verbose=False)
    text = str(err.value)
    assert "download failed" in text and str(isolated / "r" / "cifar-10-batches-py") in text
