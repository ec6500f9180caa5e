"""Package basics: version, config, ISA selection, threads, seeding, no_grad."""
import os
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
    # the best one is chosen at import, unless GRADKIT_ISA names one (CI runs the suite under each)
    assert _core.get_isa() == (os.environ.get("GRADKIT_ISA") or isas[-1])


@pytest.mark.parametrize("isa", _core.supported_isas())
def test_gradkit_isa_env_selects(isa):
    code = "import gradkit as gk; from gradkit import _core; print(_core.get_isa())"
    env = dict(os.environ, GRADKIT_ISA=isa)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == isa


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
    with pytest.raises(ValueError, match="n: expected an integer >= 1, got 0"):
        gk.set_num_threads(0)
    with pytest.raises(TypeError, match="n: expected an int"):
        gk.set_num_threads(1.5)


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
