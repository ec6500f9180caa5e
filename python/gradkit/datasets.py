"""Datasets: Fashion-MNIST from IDX files, CIFAR-10 from its python-pickle batches
(local first, download as a last resort).

``load_fashion_mnist`` looks for the four standard files, gzip-compressed or
plain, in this order:

1. ``root`` (when given), and ``root/fashion-mnist``;
2. ``$GRADKIT_DATA`` and ``$GRADKIT_DATA/fashion-mnist``;
3. the user cache, ``$XDG_CACHE_HOME/gradkit/fashion-mnist`` (default ``~/.cache/...``);
4. ``/usr/share/datasets/fashion-mnist`` (Debian: ``apt-get install dataset-fashion-mnist``).

If no place holds all four files and ``download`` is true, they are fetched
into ``root`` (or ``$GRADKIT_DATA``, else the user cache), each checked against
its published MD5 before an atomic rename: an interrupted or corrupt download
never leaves a file behind under the final name.

``load_cifar10`` does the same with the directory ``cifar-10-batches-py`` (the six
batches of cifar-10-python.tar.gz) and the cache ``.../gradkit/cifar-10``; a download
fetches the archive (MD5-checked) and extracts it.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["load_fashion_mnist", "read_idx", "fashion_mnist_search_paths", "FASHION_MNIST_CLASSES",
           "load_cifar10", "read_cifar10_batch", "cifar10_search_paths", "CIFAR10_CLASSES"]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# The four files and the MD5 of their gzip form, as published by zalandoresearch/fashion-mnist.
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}

# Mirrors tried in order; the file name + ".gz" is appended.
FASHION_MNIST_MIRRORS = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
]

SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
_DOWNLOAD_TIMEOUT = 60.0

# IDX type codes -> big-endian dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read one IDX file (gzip-compressed or plain, detected from its first bytes).

    Returns:
        An array in native byte order with the shape stored in the header.

    Raises:
        ValueError naming the file when it is truncated, not gzip/IDX, or its size
        does not match its header.
    """
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"read_idx: {path}: corrupt gzip data ({e}); delete the file and fetch it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"read_idx: {path}: not an IDX file (expected magic 00 00 <type> <ndim>, "
                         f"got {raw[:4].hex(' ') or 'an empty file'})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"read_idx: {path}: truncated header (expected {header} bytes, got {len(raw)})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: huge dimensions cannot wrap
    if len(raw) != expected:
        raise ValueError(f"read_idx: {path}: expected {expected} bytes for shape {shape} of {dtype.name}, "
                         f"got {len(raw)} (truncated or corrupt file)")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def _cache_dir(name: str = "fashion-mnist") -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gradkit" / name


def _search_paths(root, subdir: str, cache: Path) -> list:
    """``root``, ``root/subdir``, ``$GRADKIT_DATA``, ``$GRADKIT_DATA/subdir``, then ``cache``."""
    places = []
    if root is not None:
        places += [Path(root), Path(root) / subdir]
    env = os.environ.get("GRADKIT_DATA")
    if env:
        places += [Path(env), Path(env) / subdir]
    return places + [cache]


def fashion_mnist_search_paths(root=None) -> list:
    """The directories ``load_fashion_mnist`` searches, in order."""
    return _search_paths(root, "fashion-mnist", _cache_dir()) + [Path(SYSTEM_DIR)]


def _find_file(directory: Path, name: str):
    for candidate in (directory / (name + ".gz"), directory / name):
        if candidate.is_file():
            return candidate
    return None


def _find_all(directory: Path):
    found = {name: _find_file(directory, name) for name in FASHION_MNIST_FILES}
    return found if all(found.values()) else None


def _download_dir(root, cache: Path) -> Path:
    if root is not None:
        return Path(root)
    env = os.environ.get("GRADKIT_DATA")
    return Path(env) if env else cache


def _fetch(url: str, target: Path, md5: str) -> None:
    """Stream url into a temporary file next to target, check the MD5, then rename atomically."""
    import urllib.request  # only when downloading: keeps `import gradkit` light

    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT) as response:
            while True:
                block = response.read(1 << 20)
                if not block:
                    break
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise ValueError(f"checksum mismatch: MD5 {digest.hexdigest()}, expected {md5}")
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _fetch_from_mirrors(mirrors, target: Path, md5: str, verbose: bool) -> None:
    """Fetch ``mirror + target.name`` from the first mirror that serves it with the right MD5;
    OSError listing every mirror's error when none does."""
    errors = []
    for mirror in mirrors:
        url = mirror + target.name
        if verbose:
            print(f"gradkit: downloading {url}")
        try:
            _fetch(url, target, md5)
            return
        except (OSError, ValueError) as e:  # URLError and timeouts are OSErrors
            errors.append(f"{url}: {e}")
    raise OSError("could not download " + target.name + ":\n  " + "\n  ".join(errors))


def _download(directory: Path, verbose: bool) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, md5 in FASHION_MNIST_FILES.items():
        target = directory / (name + ".gz")
        if not target.is_file():
            _fetch_from_mirrors(FASHION_MNIST_MIRRORS, target, md5, verbose)
        paths[name] = target
    return paths


def _not_found_message(what: str, places, download_error, how) -> str:
    lines = [f"{what} in:"] + [f"  {p}" for p in places]
    if download_error is not None:
        lines.append(f"and the download failed: {download_error}")
    return "\n".join(lines + ["To get the data, either:"] + [f"  - {h}" for h in how])


def _fashion_mnist_not_found(places, download_error=None) -> str:
    return _not_found_message(
        "Fashion-MNIST not found. Looked for the four files (train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz or plain)",
        places, download_error, [
            "on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist",
            "or download the four .gz files from https://github.com/zalandoresearch/fashion-mnist "
            "into a directory and set GRADKIT_DATA to it (or pass root=...)",
            "or call load_fashion_mnist(download=True) with network access",
        ])


def _load_set(images_path: Path, labels_path: Path):
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"load_fashion_mnist: {images_path}: expected uint8 images of shape (N, 28, 28), "
                         f"got {images.dtype} of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"load_fashion_mnist: {labels_path}: expected uint8 labels of shape (N,), "
                         f"got {labels.dtype} of shape {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"load_fashion_mnist: {labels_path}: {labels.shape[0]} labels for "
                         f"{images.shape[0]} images in {images_path}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"load_fashion_mnist: {labels_path}: labels must be in [0, 9], found {int(labels.max())}")
    return images, labels.astype(np.int64)


def load_fashion_mnist(root=None, download: bool = True, verbose: bool = True):
    """Load Fashion-MNIST (60000 training and 10000 test images of 10 clothing classes).

    Args:
        root (None): a directory to look in first (and to download into).
        download (True): fetch the files when no searched place has them.
        verbose (True): print the URLs while downloading.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 images (N, 28, 28) and
        int64 labels (N,) in [0, 9] (names in ``FASHION_MNIST_CLASSES``).

    Raises:
        FileNotFoundError listing the places searched (and the download error)
        when the data is neither present nor downloadable; ValueError naming the
        file when a file is corrupt.
    """
    places = fashion_mnist_search_paths(root)
    paths = None
    for place in places:
        paths = _find_all(place)
        if paths is not None:
            break
    if paths is None:
        if not download:
            raise FileNotFoundError(_fashion_mnist_not_found(places))
        try:
            paths = _download(_download_dir(root, _cache_dir()), verbose)
        except OSError as e:
            raise FileNotFoundError(_fashion_mnist_not_found(places, e)) from None
    train = _load_set(paths["train-images-idx3-ubyte"], paths["train-labels-idx1-ubyte"])
    test = _load_set(paths["t10k-images-idx3-ubyte"], paths["t10k-labels-idx1-ubyte"])
    return train, test


# -- CIFAR-10 --------------------------------------------------------------------------------------
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # as published on the CIFAR page
CIFAR10_MIRRORS = ["https://www.cs.toronto.edu/~kriz/"]
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)

# The only globals a CIFAR batch refers to: NumPy's array reconstruction (numpy 1.x and 2.x names).
_reconstruct = np.zeros(0).__reduce__()[0]
_BATCH_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, strings, numbers and NumPy arrays: any other
    global (a function or class a crafted file names to run code) raises UnpicklingError."""

    def find_class(self, module, name):
        try:
            return _BATCH_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (a CIFAR batch holds only "
                                         "a dict of lists and a uint8 array)") from None


def read_cifar10_batch(path):
    """Read one CIFAR-10 python batch (``data_batch_1``, ..., ``test_batch``).

    The file is the pickle of a dict with ``data`` (uint8 (N, 3072): 1024 red, 1024 green,
    then 1024 blue values of a 32x32 image, rows first) and ``labels`` (N ints in [0, 9]),
    written by Python 2 (keys and strings come back as bytes). It is read with a restricted
    unpickler that builds nothing but containers, numbers and NumPy arrays.

    Returns:
        ``(x, y)``: uint8 images (N, 3, 32, 32) and int64 labels (N,).

    Raises:
        ValueError naming the file when it is not such a pickle or its contents do not fit.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"read_cifar10_batch: {path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"read_cifar10_batch: {path}: expected a pickled dict, got {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"read_cifar10_batch: {path}: expected keys 'data' and 'labels', "
                         f"got {sorted(map(str, batch))}")
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"read_cifar10_batch: {path}: data: expected a uint8 array of shape (N, 3072), got {got}")
    if not isinstance(labels, (list, np.ndarray)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
        raise ValueError(f"read_cifar10_batch: {path}: labels: expected a list of ints")
    labels = np.array(labels, dtype=np.int64).reshape(-1)
    if labels.shape[0] != data.shape[0]:
        raise ValueError(f"read_cifar10_batch: {path}: {labels.shape[0]} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"read_cifar10_batch: {path}: labels must be in [0, 9], found "
                         f"{int(labels.min() if labels.min() < 0 else labels.max())}")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32)), labels


def cifar10_search_paths(root=None) -> list:
    """The directories ``load_cifar10`` searches for the batches, in order."""
    return _search_paths(root, CIFAR10_DIR, _cache_dir("cifar-10") / CIFAR10_DIR)


def _extract_cifar10(archive: Path, directory: Path) -> None:
    """Extract the batches of ``archive`` into ``directory/cifar-10-batches-py``: into a temporary
    directory first, then one rename, so an interrupted extraction leaves nothing under that name."""
    tmp = Path(tempfile.mkdtemp(prefix=".cifar-10.", dir=directory))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # Regular files with the known names only (no links, no paths outside tmp);
            # the "data" filter as well where Python has it (3.9.17, 3.10.12, 3.11.4 on).
            wanted = {f"{CIFAR10_DIR}/{n}" for n in CIFAR10_TRAIN + CIFAR10_TEST + ("batches.meta",)}
            members = [m for m in tar.getmembers() if m.isfile() and m.name in wanted]
            tar.extractall(tmp, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        if not all((tmp / CIFAR10_DIR / n).is_file() for n in CIFAR10_TRAIN + CIFAR10_TEST):
            raise OSError(f"{archive}: the archive lacks some of {', '.join(CIFAR10_TRAIN + CIFAR10_TEST)} "
                          f"under {CIFAR10_DIR}/")
        os.replace(tmp / CIFAR10_DIR, directory / CIFAR10_DIR)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise OSError(f"{archive}: corrupt archive ({e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download_cifar10(directory: Path, verbose: bool) -> Path:
    """Fetch (unless a checked copy is there) and extract the archive; the batches' directory."""
    directory.mkdir(parents=True, exist_ok=True)
    archive = directory / CIFAR10_ARCHIVE
    if archive.is_file():
        digest = hashlib.md5()
        with open(archive, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != CIFAR10_MD5:
            archive.unlink()
    if not archive.is_file():
        _fetch_from_mirrors(CIFAR10_MIRRORS, archive, CIFAR10_MD5, verbose)
    _extract_cifar10(archive, directory)
    return directory / CIFAR10_DIR


def _cifar10_not_found(places, download_error=None) -> str:
    return _not_found_message(
        f"CIFAR-10 not found. Looked for the python batches ({', '.join(CIFAR10_TRAIN + CIFAR10_TEST)})",
        places, download_error, [
            f"download {CIFAR10_MIRRORS[0]}{CIFAR10_ARCHIVE}, extract it into a directory and set "
            "GRADKIT_DATA to it (or pass root=...)",
            "or call load_cifar10(download=True) with network access",
        ])


def load_cifar10(root=None, download: bool = True, verbose: bool = True):
    """Load CIFAR-10 (50000 training and 10000 test 32x32 colour images of 10 classes).

    Looks for the directory of the python batches (``data_batch_1`` ... ``data_batch_5``,
    ``test_batch``) in ``root`` and ``root/cifar-10-batches-py``, ``$GRADKIT_DATA`` and
    ``$GRADKIT_DATA/cifar-10-batches-py``, then the user cache
    (``$XDG_CACHE_HOME/gradkit/cifar-10/cifar-10-batches-py``). Otherwise, when ``download``,
    fetches cifar-10-python.tar.gz (checked against its published MD5) into ``root`` (or
    ``$GRADKIT_DATA``, else the user cache) and extracts it there.

    Args:
        root (None): a directory to look in first (and to download into).
        download (True): fetch the archive when no searched place has the batches.
        verbose (True): print the URL while downloading.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 images (N, 3, 32, 32) and int64
        labels (N,) in [0, 9] (names in ``CIFAR10_CLASSES``).

    Raises:
        FileNotFoundError listing the places searched (and the download error) when the data
        is neither present nor downloadable; ValueError naming the file when a batch is corrupt.
    """
    names = CIFAR10_TRAIN + CIFAR10_TEST
    places = cifar10_search_paths(root)
    found = next((p for p in places if all((p / n).is_file() for n in names)), None)
    if found is None:
        if not download:
            raise FileNotFoundError(_cifar10_not_found(places))
        try:
            found = _download_cifar10(_download_dir(root, _cache_dir("cifar-10")), verbose)
        except OSError as e:
            raise FileNotFoundError(_cifar10_not_found(places, e)) from None
    train = [read_cifar10_batch(found / n) for n in CIFAR10_TRAIN]
    x_test, y_test = read_cifar10_batch(found / CIFAR10_TEST[0])
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])), (x_test, y_test)
