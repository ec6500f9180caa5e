"""``gk.save`` / ``gk.load``: nested dicts of arrays and scalars in one ``.npz`` file.

Layout: every array and every scalar (except None) is one npz entry whose key is its
path, components joined by ``/`` (``model/0.weight``, ``optim/state/0/exp_avg``), so
``numpy.load(path)`` reads the numbers with no gradkit around. One more entry,
``%tree``, holds a JSON description of the structure (dict keys and their types,
lists, tuples, Python scalar types, None) so ``gk.load`` rebuilds the exact object.
The tree holds every key exactly (any str: NUL, lone surrogates, any length); the
entry names only point into it. In them ``%``, ``/``, ``\\``, control characters and
lone surrogates are escaped (``%25``, ``%2F``, ``%00``, ``%uDC80``), a name longer
than 1000 bytes is cut, and a name already taken gets a ``%1``, ``%2``... suffix: no
user key can collide with ``%tree`` or with another path. A str ending in NUL, which
NumPy's fixed-width strings would drop, is kept in the tree only.

The write is atomic: the file is written to a temporary name in the same directory,
flushed, fsync'ed and renamed over ``path`` (``os.replace``), so a crash or an error
mid-write leaves the previous file intact. Loading never unpickles (``allow_pickle=False``),
and any file that is not such an archive raises ``ValueError`` naming the file and the problem.
"""
from __future__ import annotations

import errno
import json
import os
import re
import uuid
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from .nn.parameter import Parameter

__all__ = ["save", "load"]

_TREE_KEY = "%tree"
_FORMAT = "gradkit-npz-1"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a member, or an empty archive
# Deepest nesting saved or loaded: far beyond any state dict, and its JSON tree (4 levels
# per container) stays clear of Python's recursion limit.
_MAX_DEPTH = 100
# Longest entry name (UTF-8 bytes) before it is cut; a zip member name holds at most 65535.
_MAX_NAME_BYTES = 1000
# What an entry name cannot hold as is: the escape character, path separators, control
# characters (a zip reader cuts a name at NUL) and lone surrogates (not UTF-8).
_UNSAFE = re.compile(r"[%/\\\x00-\x1f\x7f\ud800-\udfff]")


def _escape_char(match) -> str:
    code = ord(match.group())
    return f"%{code:02X}" if code < 0x100 else f"%u{code:04X}"


def _escape(component: str) -> str:
    return _UNSAFE.sub(_escape_char, component)


def _where(path) -> str:
    return "obj" + "".join(f"[{p!r}]" for p in path)


class _Writer:
    def __init__(self):
        self.arrays = {}
        self.open_containers = set()  # ids of the dicts and lists being encoded (a cycle check)

    def _key(self, path) -> str:
        key = "/".join(_escape(str(p)) for p in path) if path else "%root"
        if len(key.encode("utf-8")) > _MAX_NAME_BYTES:
            key = key.encode("utf-8")[:_MAX_NAME_BYTES].decode("utf-8", "ignore")
        if key in self.arrays:  # e.g. dict keys 1 and "1" side by side
            n = 1
            while f"{key}%{n}" in self.arrays:
                n += 1
            key = f"{key}%{n}"
        return key

    def _leaf(self, path, array, kind: str) -> dict:
        key = self._key(path)
        self.arrays[key] = array
        return {kind: key}

    def encode(self, obj, path=()):
        if obj is None:
            return {"none": True}
        if isinstance(obj, Parameter):
            obj = obj.data
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject or obj.dtype.kind == "V":
                raise TypeError(f"gk.save: {_where(path)}: expected an array of numbers, booleans or strings, "
                                f"got dtype {obj.dtype}")
            return self._leaf(path, obj, "array")
        if isinstance(obj, np.generic):
            if obj.dtype.hasobject or obj.dtype.kind == "V":
                raise TypeError(f"gk.save: {_where(path)}: expected a numeric NumPy scalar, got {obj.dtype}")
            return self._leaf(path, np.asarray(obj), "npscalar")
        if isinstance(obj, bool):
            return self._leaf(path, np.asarray(obj), "bool")
        if isinstance(obj, int):
            if -(2**63) <= obj < 2**63:
                return self._leaf(path, np.asarray(obj, dtype=np.int64), "int")
            return {"bigint": str(obj)}  # beyond int64: kept in the tree only
        if isinstance(obj, float):
            return self._leaf(path, np.asarray(obj, dtype=np.float64), "float")
        if isinstance(obj, str):
            if obj.endswith("\x00"):  # NumPy would drop the trailing NULs
                return {"text": obj}
            return self._leaf(path, np.asarray(obj), "str")
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in self.open_containers:
                raise ValueError(f"gk.save: {_where(path)}: the object contains itself (a reference cycle)")
            if len(path) >= _MAX_DEPTH:
                raise ValueError(f"gk.save: obj: expected at most {_MAX_DEPTH} levels of nesting, got more "
                                 f"(below {_where(path[:3])}...)")
            self.open_containers.add(id(obj))
            try:
                return self._container(obj, path)
            finally:
                self.open_containers.discard(id(obj))
        raise TypeError(f"gk.save: {_where(path)}: expected a dict, list, tuple, array, number, str, bool or None, "
                        f"got {type(obj).__name__}")

    def _container(self, obj, path):
        if isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"gk.save: {_where(path)}: dict keys must be str or int, "
                                    f"got {type(k).__name__} {k!r}")
                items.append(["i" if isinstance(k, int) else "s", k, self.encode(v, path + (k,))])
            return {"odict" if isinstance(obj, OrderedDict) else "dict": items}
        kind = "tuple" if isinstance(obj, tuple) else "list"
        return {kind: [self.encode(v, path + (i,)) for i, v in enumerate(obj)]}


def _decode(node, arrays, depth=0):
    if depth > _MAX_DEPTH:
        raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
    (kind, value), = node.items()
    if kind == "none":
        return None
    if kind == "array":
        return arrays[value]
    if kind == "npscalar":
        return arrays[value][()]
    if kind == "bool":
        return bool(arrays[value])
    if kind == "int":
        return int(arrays[value])
    if kind == "bigint":
        return int(value)
    if kind == "float":
        return float(arrays[value])
    if kind == "str":
        return str(arrays[value])
    if kind == "text":
        if not isinstance(value, str):
            raise ValueError(f"text node holds {type(value).__name__}")
        return value
    if kind in ("dict", "odict"):
        out = OrderedDict() if kind == "odict" else {}
        for key_type, key, child in value:
            out[int(key) if key_type == "i" else key] = _decode(child, arrays, depth + 1)
        return out
    if kind == "list":
        return [_decode(child, arrays, depth + 1) for child in value]
    if kind == "tuple":
        return tuple(_decode(child, arrays, depth + 1) for child in value)
    raise ValueError(f"gk.load: unknown node kind {kind!r} in the file's {_TREE_KEY} entry")


def _write_npz(f, arrays: dict, compress: bool) -> None:
    """What numpy.savez writes (one ``<key>.npy`` member per entry), without its keyword-argument
    interface, where a key such as ``file`` or ``allow_pickle`` would clash with a parameter."""
    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(f, mode="w", compression=compression, allowZip64=True) as zf:
        for key, value in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def _fsync_dir(directory: str) -> None:
    """Make the rename durable (best effort: not every platform opens directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(obj, path, *, compress: bool = False) -> None:
    """Save a (nested) dict of arrays and scalars, e.g. ``{"model": m.state_dict(), "optim": opt.state_dict()}``.

    Args:
        obj: dicts (str or int keys), lists, tuples, NumPy arrays and scalars, Parameters
            (saved as their data), int, float, bool, str and None, nested freely.
        path: the file name (str or os.PathLike), used as given (no suffix is added).
        compress: deflate the entries (default False).

    The file is a valid ``.npz``; it is written to a temporary file in the same directory,
    fsync'ed, then renamed over ``path``, so an existing file is replaced only by a complete one.
    """
    writer = _Writer()
    tree = writer.encode(obj)  # every TypeError is raised here, before the file system is touched
    payload = dict(writer.arrays)
    payload[_TREE_KEY] = np.asarray(json.dumps({"format": _FORMAT, "tree": tree}, allow_nan=True))
    if hasattr(path, "write") and not isinstance(path, (str, bytes, os.PathLike)):
        _write_npz(path, payload, compress)
        return
    _atomic_write(path, lambda f: _write_npz(f, payload, compress), "gk.save")


def _atomic_write(path, write, owner: str) -> None:
    """Call ``write(f)`` on a temporary file in ``path``'s directory, fsync it and rename it over
    ``path`` (``os.replace``): an existing file is replaced only by a complete one. ``owner``
    names the caller in the error for a missing directory (gk.save, gk.onnx.export)."""
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{owner}: path: directory {directory!r} does not exist")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    # O_EXCL: never clobber another writer's temp file; mode 0o666 lets the umask decide, as open() does
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def _content(head: bytes) -> str:
    """What a file that is not a zip archive seems to hold, from its first bytes."""
    if not head:
        return "the file is empty"
    if head.startswith(_NPY_MAGIC):
        return "it holds a single .npy array (read it with numpy.load)"
    if head[:1] == b"\x80":
        return "it looks like a pickle (never unpickled)"
    text = head.decode("utf-8", errors="replace")
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        return f"it looks like a text file starting with {text!r}"
    return f"unknown content starting with {head[:8]!r}"


def _read_arrays(f, name: str) -> dict:
    """The arrays of an .npz archive by key; ValueError naming the file for anything else."""
    head = f.read(16)
    f.seek(0)
    if head[:4] not in _ZIP_MAGICS:
        raise ValueError(f"gk.load: {name}: expected a gradkit checkpoint (.npz archive), but {_content(head)}")
    arrays = {}
    try:
        with zipfile.ZipFile(f) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not a .npy array")
                with zf.open(info) as member:
                    if member.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
                        raise ValueError(f"member {info.filename!r} lacks the .npy header")
                with zf.open(info) as member:
                    try:
                        arrays[info.filename[:-4]] = np.lib.format.read_array(member, allow_pickle=False)
                    except ValueError as e:  # object arrays (pickles), bad headers, short data
                        raise ValueError(f"member {info.filename!r}: {e}") from None
    except ValueError as e:
        raise ValueError(f"gk.load: {name}: not a gradkit checkpoint: {e}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError, OSError) as e:
        if isinstance(e, OSError) and e.errno != errno.EINVAL:  # a real I/O error; EINVAL: a seek to a bad offset
            raise
        raise ValueError(f"gk.load: {name}: truncated or corrupt archive ({type(e).__name__}: {e})") from None
    return arrays


def load(path):
    """Load what ``gk.save`` wrote: the same nesting, key types, arrays and Python scalar types.

    A plain ``.npz`` written by NumPy (no gradkit tree) loads as a dict of its arrays.
    Nothing is unpickled. Any other file (a ``.npy``, a pickle, text, an empty or truncated
    file, an archive member that is not an array) raises ``ValueError`` naming the file.
    """
    if hasattr(path, "read") and not isinstance(path, (str, bytes, os.PathLike)):
        name = repr(getattr(path, "name", path))
        arrays = _read_arrays(path, name)
    else:
        name = repr(os.fsdecode(path))
        with open(path, "rb") as f:
            arrays = _read_arrays(f, name)
    if _TREE_KEY not in arrays:
        return arrays
    try:
        meta = json.loads(str(arrays.pop(_TREE_KEY)))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"unsupported format {meta.get('format')!r}")
        return _decode(meta["tree"], arrays)
    except RecursionError:
        raise ValueError(f"gk.load: {name}: corrupt {_TREE_KEY} entry (nested deeper than {_MAX_DEPTH} levels)") \
            from None
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"gk.load: {name}: corrupt {_TREE_KEY} entry ({e})") from None
