"""gk.save / gk.load: exact round trips, plain-NumPy readability, atomic writes, no pickle."""
import json
import os
import pickle
import re
import subprocess
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import gradkit as gk
from gradkit.nn import Linear, Parameter, Sequential
from nn_helpers import Scale


def checkpoint(rng):
    """A model's and an optimizer's state together, shaped like PyTorch's."""
    model = Sequential(Linear(3, 4), Scale(4))
    return {
        "model": model.state_dict(),
        "optimizer": {
            "state": {0: {"step": 3, "exp_avg": rng.standard_normal((4, 3)).astype(np.float32)},
                      1: {"step": 3, "exp_avg": rng.standard_normal(4)}},
            "param_groups": [{"params": [0, 1], "lr": 1e-3, "betas": (0.9, 0.999), "amsgrad": False,
                              "name": "all", "scheduler": None}],
        },
        "epoch": 7,
        "best": float("inf"),
        "np_scalar": np.float32(1.5),
        "np_int": np.int16(-3),
        "big": 2**70,
        "flags": np.array([True, False]),
        "labels": np.array(["cat", "dog"]),
        "empty": np.zeros((0, 5), dtype=np.float64),
        "nested_list": [[1, 2.5], ("a", None)],
    }


def assert_same(a, b, where="obj"):
    assert type(a) is type(b), f"{where}: type {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b), f"{where}: {a.dtype}{np.shape(a)} vs {b.dtype}{np.shape(b)}"
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_round_trip_exact(tmp_path, rng):
    obj = checkpoint(rng)
    path = tmp_path / "ckpt.npz"
    assert gk.save(obj, path) is None
    back = gk.load(path)
    assert_same(obj, back)
    assert isinstance(back["model"], OrderedDict)  # state_dict keeps its type and order
    assert list(back["optimizer"]["state"]) == [0, 1]  # int keys stay ints
    gk.save(obj, str(tmp_path / "as_str"))  # no suffix is added
    assert_same(obj, gk.load(str(tmp_path / "as_str")))


def test_plain_numpy_reads_the_arrays(tmp_path, rng):
    obj = checkpoint(rng)
    path = tmp_path / "ckpt.npz"
    gk.save(obj, path)
    with np.load(path, allow_pickle=False) as npz:
        files = set(npz.files)
        np.testing.assert_array_equal(npz["model/0.weight"], obj["model"]["0.weight"])
        np.testing.assert_array_equal(npz["optimizer/state/0/exp_avg"], obj["optimizer"]["state"][0]["exp_avg"])
        assert npz["epoch"] == 7 and npz["optimizer/param_groups/0/lr"] == 1e-3
    assert "%tree" in files


def test_model_state_survives_a_save_load_cycle(tmp_path, rng):
    src = Sequential(Linear(5, 3), Scale(3))
    for p in src.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    gk.save(src.state_dict(), tmp_path / "m.npz")
    dst = Sequential(Linear(5, 3), Scale(3))
    dst.load_state_dict(gk.load(tmp_path / "m.npz"))
    x = rng.standard_normal((2, 5)).astype(np.float32)
    np.testing.assert_array_equal(src.eval()(x), dst.eval()(x))


def test_awkward_keys_do_not_collide(tmp_path):
    obj = {"a/b": 1, "a": {"b": 2}, "%tree": 3, "%25": 4, "file": np.ones(2), "allow_pickle": 5,
           1: "int key", "1": "str key", "": 6, "x%1": 7}
    gk.save(obj, tmp_path / "k.npz")
    assert_same(obj, gk.load(tmp_path / "k.npz"))


def test_keys_with_nul_surrogates_or_any_length_round_trip_exactly(tmp_path):
    # Entry names once were the raw keys: cut at NUL on reading (keys collided), refused as
    # UTF-8 (surrogates), or too long for a zip name (70,000 characters).
    long = "k" * 70_000
    obj = {"layer\x00name": np.ones(2), "layer\x00other": np.zeros(2), "layer": 1, "\x00": 2, "\udc80": 3,
           "a\udcff\ud800b": {"\x00/\x00": "nested"}, long: 4, long + "!": np.arange(3), "k" * 200_000: 5,
           "\\": 6, "%5C": 7, "\x01\x1f\x7f": 8, "é\x00": 9, ("é" * 600) + "a": 10, ("é" * 600) + "b": 11}
    path = tmp_path / "keys.npz"
    gk.save({"old": 1}, path)
    gk.save(obj, path)  # over an existing file
    back = gk.load(path)
    assert_same(obj, back)
    with np.load(path, allow_pickle=False) as npz:  # still a plain npz, every name at most 1024 bytes
        names = npz.files
        np.testing.assert_array_equal(npz["layer%00name"], np.ones(2))
        np.testing.assert_array_equal(npz["layer%00other"], np.zeros(2))
        assert npz["%uDC80"] == 3 and npz["%5C"] == 6 and npz["%255C"] == 7
    assert len(names) == len(set(names)) == 15 + 1 and max(len(n.encode()) for n in names) <= 1024
    # a module attribute with NUL: its state_dict keys carry it, and load_state_dict takes them back
    src = Sequential(Linear(2, 2))
    setattr(src, "enc\x00", Linear(2, 3))
    gk.save(src.state_dict(), tmp_path / "m.npz")
    state = gk.load(tmp_path / "m.npz")
    assert list(state) == list(src.state_dict()) and any("\x00" in k for k in state)
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(state[k], v)


def test_strings_round_trip_exactly(tmp_path):
    # NumPy's fixed-width strings drop trailing NULs: "abc\x00" once loaded as "abc".
    obj = {"s": "abc\x00", "nul": "\x00", "inner": "a\x00b", "two": "x\x00\x00", "surrogate": "\udc80z",
           "empty": "", "list": ["\x00", ("q\x00",)]}
    gk.save(obj, tmp_path / "s.npz")
    assert_same(obj, gk.load(tmp_path / "s.npz"))
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:  # other strings stay plain entries
        assert str(npz["inner"]) == "a\x00b" and str(npz["surrogate"]) == "\udc80z" and "s" not in npz.files


def test_parameters_save_as_arrays(tmp_path):
    gk.save({"w": Parameter(np.ones(3))}, tmp_path / "p.npz")
    back = gk.load(tmp_path / "p.npz")
    assert type(back["w"]) is np.ndarray and back["w"].dtype == np.float64


def test_unsupported_values_raise_before_touching_the_file(tmp_path):
    path = tmp_path / "keep.npz"
    gk.save({"v": 1}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"obj\['a'\]\[0\]: expected a dict, list, .* got set"):
        gk.save({"a": [{1, 2}]}, path)
    with pytest.raises(TypeError, match=r"obj\['o'\]: expected an array of numbers, booleans or strings, got dtype object"):
        gk.save({"o": np.array([None, 1], dtype=object)}, path)
    with pytest.raises(TypeError, match=r"dict keys must be str or int, got tuple"):
        gk.save({(1, 2): 3}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.npz"]


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    gk.save({"w": np.arange(10.0)}, path)
    before = path.read_bytes()
    calls = []
    real = np.lib.format.write_array

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first member is already in the temporary file
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="disk full"):
        gk.save({"w": np.zeros(10), "x": np.ones(1000)}, path)
    assert len(calls) == 2
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # the temporary file is removed
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("fsync failed")))
    with pytest.raises(OSError, match="fsync failed"):
        gk.save({"w": np.zeros(10)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_write_is_flushed_and_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", os.path.dirname(a))), real_replace(a, b))[1])
    gk.save({"w": np.ones(3)}, tmp_path / "c.npz")
    assert events[0] == "fsync" and events[1] == ("replace", str(tmp_path))  # temp file in the same directory


def test_a_crash_mid_write_leaves_the_old_file_intact(tmp_path):
    """A process killed after writing the temporary file but before the rename."""
    path = tmp_path / "ckpt.npz"
    gk.save({"w": np.arange(5.0)}, path)
    before = path.read_bytes()
    code = (
        "import os, numpy as np, gradkit as gk\n"
        "os.replace = lambda a, b: os._exit(3)\n"
        f"gk.save({{'w': np.zeros(100000)}}, {str(path)!r})\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert out.returncode == 3, out.stderr.decode()
    assert path.read_bytes() == before
    np.testing.assert_array_equal(gk.load(path)["w"], np.arange(5.0))
    leftovers = [f for f in os.listdir(tmp_path) if f != "ckpt.npz"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".ckpt.npz.") and leftovers[0].endswith(".tmp")


def test_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        gk.save({"a": 1}, tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "m.npz").st_mode & 0o777) == 0o644


def test_load_never_unpickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        gk.load(path)


def test_load_plain_npz_and_corrupt_tree(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.arange(3), b=np.ones(2))
    back = gk.load(tmp_path / "plain.npz")
    assert sorted(back) == ["a", "b"]
    np.testing.assert_array_equal(back["a"], np.arange(3))
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as zf:
        with zf.open("%tree.npy", "w") as f:
            np.lib.format.write_array(f, np.asarray('{"format": "gradkit-npz-1", "tree": {"array": "missing"}}'))
    with pytest.raises(ValueError, match="corrupt %tree entry"):
        gk.load(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        gk.load(tmp_path / "nothing.npz")


def test_missing_directory_and_file_objects(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gk.save({"a": 1}, tmp_path / "no" / "such.npz")
    with open(tmp_path / "f.npz", "wb") as f:
        gk.save({"a": np.ones(2), "b": "text"}, f)
    assert_same(gk.load(tmp_path / "f.npz"), {"a": np.ones(2), "b": "text"})


def test_compressed(tmp_path):
    obj = {"z": np.zeros(100000, dtype=np.float32)}
    gk.save(obj, tmp_path / "z.npz", compress=True)
    assert os.path.getsize(tmp_path / "z.npz") < 10000
    assert_same(obj, gk.load(tmp_path / "z.npz"))


def test_top_level_leaf_and_list(tmp_path):
    for obj in (np.arange(4), 3.5, None, [np.ones(2), {"a": 1}]):
        gk.save(obj, tmp_path / "x.npz")
        assert_same(obj, gk.load(tmp_path / "x.npz"))


def test_resume_a_model_and_its_optimizer(tmp_path, rng):
    """Save a model's and an optimizer's state together; a fresh pair loaded from the file
    continues the run exactly as the original does."""
    if not hasattr(gk, "optim") or not hasattr(gk.optim, "Adam"):
        pytest.skip("gk.optim.Adam has not landed")

    def make():
        gk.manual_seed(0)
        model = Sequential(Linear(4, 5), Scale(5), Linear(5, 2))
        return model, gk.optim.Adam(model.parameters(), lr=1e-2)

    def train_step(model, opt, x, dy):
        opt.zero_grad()
        model(x)
        model.backward(dy)
        opt.step()

    x, dy = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 2)).astype(np.float32)
    model, opt = make()
    for _ in range(3):
        train_step(model, opt, x, dy)
    gk.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, tmp_path / "ckpt.npz")
    model2, opt2 = make()
    ckpt = gk.load(tmp_path / "ckpt.npz")
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["optimizer"])
    assert ckpt["epoch"] == 3
    for _ in range(2):
        train_step(model, opt, x, dy)
        train_step(model2, opt2, x, dy)
    for (k, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def _not_checkpoints(tmp_path):
    """(file, pattern its ValueError must match) for files that are not gradkit checkpoints."""
    good = tmp_path / "good.npz"
    gk.save({"w": np.arange(1000.0), "step": 3}, good)
    data = good.read_bytes()
    files = {}

    def put(name, content, pattern):
        (tmp_path / name).write_bytes(content)
        files[name] = pattern

    np.save(tmp_path / "single.npy", np.ones(3))
    files["single.npy"] = "single .npy array"
    put("notes.txt", b"epoch 1: loss 0.5\n", "text file starting with 'epoch 1")
    put("empty.npz", b"", "the file is empty")
    put("truncated.npz", data[: len(data) // 2], "truncated or corrupt archive")
    put("cut_header.npz", data[:10], "truncated or corrupt archive")
    put("model.pkl", pickle.dumps({"w": np.ones(2)}), "pickle")
    put("noise.bin", bytes(range(7, 255)), "unknown content")
    with zipfile.ZipFile(tmp_path / "raw_member.npz", "w") as zf:
        zf.writestr("w.npy", b"not an array at all")
    files["raw_member.npz"] = r"member 'w.npy' lacks the .npy header"
    with zipfile.ZipFile(tmp_path / "other_member.npz", "w") as zf:
        zf.writestr("readme.txt", b"hello")
    files["other_member.npz"] = r"member 'readme.txt' is not a .npy array"
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    files["objects.npz"] = "member 'x.npy': .*allow_pickle"
    npy = tmp_path / "w.npy"
    np.save(npy, np.arange(100.0))
    with zipfile.ZipFile(tmp_path / "short_member.npz", "w") as zf:
        zf.writestr("w.npy", npy.read_bytes()[:-8])  # a valid header, one element short
    files["short_member.npz"] = r"member 'w.npy': .*expected 800 bytes"
    put("bad_offsets.npz", data[:30] + data[60:], "truncated or corrupt archive")
    return files


def test_load_rejects_what_is_not_a_checkpoint(tmp_path):
    """Each file raises ValueError naming the path and what is wrong; nothing is unpickled."""
    for name, pattern in _not_checkpoints(tmp_path).items():
        path = tmp_path / name
        with pytest.raises(ValueError) as info:
            gk.load(path)
        message = str(info.value)
        assert repr(str(path)) in message, f"{name}: {message}"
        assert re.search(pattern, message), f"{name}: {message}"
        with open(path, "rb") as f:  # a file object too
            with pytest.raises(ValueError, match="gk.load"):
                gk.load(f)
    with pytest.raises(FileNotFoundError):
        gk.load(tmp_path / "missing.npz")


def test_save_rejects_cycles_and_deep_nesting(tmp_path):
    loop = [1, 2]
    loop.append(loop)
    with pytest.raises(ValueError, match=r"obj\['a'\]\[2\]: the object contains itself"):
        gk.save({"a": loop}, tmp_path / "x.npz")
    d = {}
    d["self"] = d
    with pytest.raises(ValueError, match="contains itself"):
        gk.save(d, tmp_path / "x.npz")
    deep = leaf = []
    for _ in range(150):
        leaf.append([])
        leaf = leaf[0]
    with pytest.raises(ValueError, match="at most 100 levels of nesting"):
        gk.save(deep, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
    # the same list twice side by side is not a cycle; 99 levels save and load
    shared = [np.ones(2)]
    ok = leaf = []
    for _ in range(98):
        leaf.append([])
        leaf = leaf[0]
    gk.save({"a": shared, "b": shared, "deep": ok}, tmp_path / "ok.npz")
    back = gk.load(tmp_path / "ok.npz")
    assert_same(back, {"a": shared, "b": shared, "deep": ok})


def test_load_rejects_a_too_deep_tree(tmp_path):
    """A crafted tree nested beyond the limit (or beyond the JSON parser's) is a ValueError."""
    for depth in (101, 5000):
        # built as text: json.dumps itself cannot write 5000 levels
        meta = '{"format": "gradkit-npz-1", "tree": ' + '{"list": [' * depth + '{"array": "x"}' + "]}" * depth + "}"
        with zipfile.ZipFile(tmp_path / "deep.npz", "w") as zf:
            for key, value in (("x", np.ones(1)), ("%tree", np.asarray(meta))):
                with zf.open(key + ".npy", "w") as f:
                    np.lib.format.write_array(f, value)
        with pytest.raises(ValueError, match=r"deep.npz.*nested deeper than 100 levels"):
            gk.load(tmp_path / "deep.npz")
