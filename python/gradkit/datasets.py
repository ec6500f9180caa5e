"""Datasets: Fashion-MNIST from IDX files (local first, download as a last resort).

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
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["load_fashion_mnist", "read_idx", "fashion_mnist_search_paths", "FASHION_MNIST_CLASSES"]

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


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gradkit" / "fashion-mnist"


def fashion_mnist_search_paths(root=None) -> list:
    """The directories ``load_fashion_mnist`` searches, in order."""
    places = []
    if root is not None:
        places += [Path(root), Path(root) / "fashion-mnist"]
    env = os.environ.get("GRADKIT_DATA")
    if env:
        places += [Path(env), Path(env) / "fashion-mnist"]
    places += [_cache_dir(), Path(SYSTEM_DIR)]
    return places


def _find_file(directory: Path, name: str):
    for candidate in (directory / (name + ".gz"), directory / name):
        if candidate.is_file():
            return candidate
    return None


def _find_all(directory: Path):
    found = {name: _find_file(directory, name) for name in FASHION_MNIST_FILES}
    return found if all(found.values()) else None


def _download_dir(root) -> Path:
    if root is not None:
        return Path(root)
    env = os.environ.get("GRADKIT_DATA")
    return Path(env) if env else _cache_dir()


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


def _download(directory: Path, verbose: bool) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, md5 in FASHION_MNIST_FILES.items():
        target = directory / (name + ".gz")
        if target.is_file():
            paths[name] = target
            continue
        errors = []
        for mirror in FASHION_MNIST_MIRRORS:
            url = mirror + name + ".gz"
            if verbose:
                print(f"gradkit: downloading {url}")
            try:
                _fetch(url, target, md5)
                break
            except (OSError, ValueError) as e:  # URLError and timeouts are OSErrors
                errors.append(f"{url}: {e}")
        else:
            raise OSError("could not download " + name + ".gz:\n  " + "\n  ".join(errors))
        paths[name] = target
    return paths


def _not_found_message(places, download_error=None) -> str:
    lines = ["Fashion-MNIST not found. Looked for the four files (train-images-idx3-ubyte, "
             "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz or plain) in:"]
    lines += [f"  {p}" for p in places]
    if download_error is not None:
        lines.append(f"and the download failed: {download_error}")
    lines += [
        "To get the data, either:",
        "  - on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist",
        "  - or download the four .gz files from https://github.com/zalandoresearch/fashion-mnist "
        "into a directory and set GRADKIT_DATA to it (or pass root=...)",
        "  - or call load_fashion_mnist(download=True) with network access",
    ]
    return "\n".join(lines)


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
            raise FileNotFoundError(_not_found_message(places))
        try:
            paths = _download(_download_dir(root), verbose)
        except OSError as e:
            raise FileNotFoundError(_not_found_message(places, e)) from None
    train = _load_set(paths["train-images-idx3-ubyte"], paths["train-labels-idx1-ubyte"])
    test = _load_set(paths["t10k-images-idx3-ubyte"], paths["t10k-labels-idx1-ubyte"])
    return train, test
