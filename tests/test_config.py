"""Package basics: version, config, ISA selection, threads, seeding, no_grad."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import gradkit as gk
from gradkit import _core, _random


def test_version_and_config():
    assert isinstance(gk.__version__, str) and gk.__version__[0].isdigit()
    text = gk.show_config()
    assert gk.__version__ in text
    assert f"isa: {_core.get_isa()}" in text
    assert f"threads: {gk.get_num_threads()}" in text


def test_isa_list_starts_with_generic():
    isas = _core.supported_isas()
    assert isas[0] == "generic"
    # The best one is chosen at import, unless GRADKIT_ISA asks for another.
    assert _core.get_isa() == (os.environ.get("GRADKIT_ISA") or isas[-1])


@pytest.mark.parametrize("isa", _core.supported_isas())
def test_gradkit_isa_env_selects(isa):
    code = "import gradkit as gk; from gradkit import _core; print(_core.get_isa())"
    env = dict(os.environ, GRADKIT_ISA=isa)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == isa


@pytest.mark.parametrize("isa", _core.supported_isas())
def test_every_kernel_area_follows_the_isa(isa):
    previous = _core.get_isa()
    try:
        _core.set_isa(isa)
        areas = _core.kernel_isas()
        assert list(areas) == ["gemm", "conv", "pool", "eltwise", "norm", "optim"]
        assert set(areas.values()) == {isa}, areas
        assert f"kernels: gemm {isa}, conv {isa}, pool {isa}" in gk.show_config()
    finally:
        _core.set_isa(previous)


# Under an emulated CPU (qemu-user): the ISA chosen, the error for an ISA the CPU
# lacks, and a few kernels (no SIGILL, and the same numbers as native code of that ISA).
QEMU = shutil.which("qemu-x86_64")
SMOKE = """
import sys
import numpy as np
import gradkit as gk
from gradkit import _core, nn
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
a = rng.standard_normal((13, 37)).astype(np.float32)
b = rng.standard_normal((37, 19)).astype(np.float32)
w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
lin = nn.Linear(37, 7)
lin.weight.data[...] = rng.standard_normal((7, 37)).astype(np.float32)
opt = gk.optim.Adam(lin.parameters(), lr=0.1, weight_decay=0.01)
lin.backward(np.ones((13, 7), np.float32) - lin(a))
opt.step()
np.savez(sys.argv[1], isa=_core.get_isa(), areas=sorted(set(_core.kernel_isas().values())),
         relu=gk.ops.relu(x), matmul=gk.ops.matmul(a, b), conv=gk.ops.conv2d_forward(x, w, padding=1),
         weight=lin.weight.data)
"""


def run_python(args, env_isa=None, cpu=None):
    env = dict(os.environ)
    env.pop("GRADKIT_ISA", None)
    if env_isa is not None:
        env["GRADKIT_ISA"] = env_isa
    cmd = [sys.executable, *args] if cpu is None else [QEMU, "-cpu", cpu, sys.executable, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 (qemu-user) is not installed")
@pytest.mark.skipif("avx2" not in _core.supported_isas(), reason="compares with native avx2 kernels")
@pytest.mark.parametrize("cpu, isa", [("Haswell", "avx2"), ("Nehalem", "generic")])
def test_emulated_cpu_runs_its_isa(tmp_path, cpu, isa):
    script = tmp_path / "smoke.py"
    script.write_text(SMOKE)
    emulated = run_python([str(script), str(tmp_path / "emulated.npz")], cpu=cpu)
    assert emulated.returncode == 0, emulated.stderr[-2000:]
    native = run_python([str(script), str(tmp_path / "native.npz")], env_isa=isa)
    assert native.returncode == 0, native.stderr[-2000:]
    got, want = np.load(tmp_path / "emulated.npz"), np.load(tmp_path / "native.npz")
    assert str(got["isa"]) == isa and list(got["areas"]) == [isa]
    for key in ("relu", "matmul", "conv", "weight"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-6, err_msg=key)


@pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 (qemu-user) is not installed")
def test_emulated_haswell_rejects_gradkit_isa_avx512():
    out = run_python(["-c", "import gradkit"], env_isa="avx512", cpu="Haswell")
    assert out.returncode == 1, out.stderr[-2000:]
    assert "GRADKIT_ISA=avx512 but this CPU or build does not support it (best: avx2)" in out.stderr


def test_gradkit_isa_env_rejects_unknown():
    env = dict(os.environ, GRADKIT_ISA="sse9")
    out = subprocess.run([sys.executable, "-c", "import gradkit"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "GRADKIT_ISA" in out.stderr and "sse9" in out.stderr


def test_set_isa_rejects_unknown():
    with pytest.raises(ValueError, match="unknown ISA"):
        _core.set_isa("avx1024")


def test_threads_roundtrip_and_validation():
    gk.set_num_threads(1)
    assert gk.get_num_threads() == 1
    gk.set_num_threads(2)
    assert gk.get_num_threads() == 2
    with pytest.raises(ValueError, match=r"n: expected an integer in \[1, 1024\], got 0"):
        gk.set_num_threads(0)
    with pytest.raises(TypeError, match="n: expected an int"):
        gk.set_num_threads(1.5)


def test_thread_count_and_seed_refuse_bools_and_out_of_range_counts():
    gk.set_num_threads(2)
    for bad in (True, False, np.bool_(True)):
        with pytest.raises(TypeError, match=r"set_num_threads: n: expected an int, got bool"):
            gk.set_num_threads(bad)
        with pytest.raises(TypeError, match=r"manual_seed: seed: expected an int, got bool"):
            gk.manual_seed(bad)
    for bad in (2**31, 2**64, 1025):  # beyond C int, and beyond any CPU's hardware threads
        with pytest.raises(ValueError, match=rf"set_num_threads: n: expected an integer in \[1, 1024\], got {bad}"):
            gk.set_num_threads(bad)
    assert gk.get_num_threads() == 2  # nothing refused changed the setting
    gk.set_num_threads(np.int64(1))  # NumPy integers are ints
    assert gk.get_num_threads() == 1


def test_default_threads_from_env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    code = "import gradkit as gk; print(gk.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_manual_seed_reproducible_and_thread_independent():
    draws = []
    for n in (1, 2, 1):
        gk.set_num_threads(n)
        gk.manual_seed(42)
        draws.append((_random.normal((100_003,)), _random.uniform((70_001,), dtype=np.float64), _random.permutation(50)))
    for other in draws[1:]:
        for a, b in zip(draws[0], other):
            np.testing.assert_array_equal(a, b)
    gk.manual_seed(43)
    assert not np.array_equal(_random.normal((100,)), draws[0][0][:100])


def test_seed_validation():
    with pytest.raises(TypeError, match="seed"):
        gk.manual_seed("1")
    with pytest.raises(ValueError, match="seed"):
        gk.manual_seed(2**64)
    gk.manual_seed(-1)  # accepted as in PyTorch (taken modulo 2**64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_distributions(dtype):
    gk.manual_seed(0)
    u = _random.uniform((200_000,), -2.0, 3.0, dtype=dtype)
    assert u.dtype == dtype and u.min() >= -2.0 and u.max() < 3.0
    assert abs(u.mean() - 0.5) < 0.02 and abs(u.var() - 25 / 12) < 0.03
    z = _random.normal((200_000,), 1.0, 2.0, dtype=dtype)
    assert abs(z.mean() - 1.0) < 0.02 and abs(z.std() - 2.0) < 0.02
    p = _random.permutation(1000)
    np.testing.assert_array_equal(np.sort(p), np.arange(1000))


def test_rng_bits_sizes():
    assert _core.rng_bits(0).shape == (0,)
    assert _core.rng_bits(1).shape == (1,)
    with pytest.raises(ValueError, match="n >= 0"):
        _core.rng_bits(-1)


def test_no_grad_is_scoped():
    assert gk.is_grad_enabled()
    with gk.no_grad():
        assert not gk.is_grad_enabled()
        with gk.no_grad():
            assert not gk.is_grad_enabled()
        assert not gk.is_grad_enabled()
    assert gk.is_grad_enabled()
    with pytest.raises(KeyError):
        with gk.no_grad():
            raise KeyError("x")
    assert gk.is_grad_enabled()


def test_ops_all_lists_every_public_function():
    import inspect

    from gradkit import ops

    public = {name for name, obj in vars(ops).items()
              if inspect.isfunction(obj) and obj.__module__ == ops.__name__ and not name.startswith("_")}
    assert len(set(ops.__all__)) == len(ops.__all__), "duplicates in gk.ops.__all__"
    assert public == set(ops.__all__), (f"missing from gk.ops.__all__: {sorted(public - set(ops.__all__))}; "
                                        f"not functions of gk.ops: {sorted(set(ops.__all__) - public)}")


def test_unpickled_arrays_are_accepted_everywhere():
    """An array that went through pickle (multiprocessing workers) has its own, equal dtype
    descriptor: every kernel accepts it (it was a TypeError "expected float32, got float32")."""
    import pickle

    def thaw(a):
        b = pickle.loads(pickle.dumps(a))
        assert b.dtype is not a.dtype and b.dtype == a.dtype  # what this test is about
        return b

    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 7)).astype(np.float32)
    b = rng.standard_normal((7, 3))
    np.testing.assert_array_equal(gk.ops.matmul(thaw(a), a.T), gk.ops.matmul(a, a.T))
    np.testing.assert_array_equal(gk.ops.matmul(thaw(b).T, b), gk.ops.matmul(b.T, b))
    np.testing.assert_array_equal(gk.ops.relu(thaw(a)), gk.ops.relu(a))
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(gk.ops.conv2d_forward(thaw(x), thaw(w)), gk.ops.conv2d_forward(x, w))
    y, idx = gk.ops.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(gk.ops.max_pool2d_backward(thaw(y), thaw(idx), x.shape, 2),
                                  gk.ops.max_pool2d_backward(y, idx, x.shape, 2))
    labels = np.array([0, 6, 3, 2, 1])
    assert gk.ops.cross_entropy(thaw(a), thaw(labels))[0] == gk.ops.cross_entropy(a, labels)[0]
    np.testing.assert_array_equal(gk.ops.batch_norm_forward(thaw(x))[0], gk.ops.batch_norm_forward(x)[0])
    p = gk.nn.Parameter(thaw(a))
    p.grad = thaw(a)
    gk.optim.SGD([p], lr=0.5).step()
    np.testing.assert_array_equal(p.data, a - 0.5 * a)
