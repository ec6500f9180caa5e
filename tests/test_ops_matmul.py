"""gk.ops.matmul (the GEMM) against float64 NumPy: sizes, transposes, strides,
out=, alpha/beta, bias + relu epilogue, every ISA, 1 and 2 threads (bit-identical)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import gradkit as gk

DTYPES = [np.float32, np.float64]

# Sampled (M, N, K) from {0, 1, 7, 17, 63, 65, 129, 1000}: edges of every
# micro-tile (MR 4/6/8, NR 8/16/32), empty and degenerate shapes, one long side.
SHAPES = [
    (0, 0, 0), (0, 7, 17), (7, 0, 17), (17, 7, 0), (1, 1, 1), (1, 17, 63), (63, 1, 7),
    (7, 17, 65), (17, 63, 7), (63, 65, 17), (65, 63, 129), (129, 7, 65), (129, 129, 129),
    (1000, 17, 7), (7, 1000, 17), (17, 7, 1000), (65, 129, 1000), (1000, 65, 63),
]


def operands(rng, m, n, k, trans_a, trans_b, dtype):
    a = rng.uniform(-1, 1, (k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.uniform(-1, 1, (n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


def op(x, trans):
    return x.T if trans else x


def check(got, a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c0=None, bias=None, bias_per_row=False,
          relu=False):
    """Compare with a float64 reference under the classical bound (K + 4) eps (|alpha| |A||B| + |beta C| + |bias|)."""
    A = op(a, trans_a).astype(np.float64)
    B = op(b, trans_b).astype(np.float64)
    k = A.shape[1]
    ref = alpha * (A @ B)
    scale = abs(alpha) * (np.abs(A) @ np.abs(B))
    if beta != 0.0:
        ref = ref + beta * c0.astype(np.float64)
        scale = scale + np.abs(beta * c0.astype(np.float64))
    if bias is not None:
        bb = bias.astype(np.float64)
        bb = bb[:, None] if bias_per_row else bb[None, :]
        ref = ref + bb
        scale = scale + np.abs(bb)
    if relu:
        ref = np.maximum(ref, 0.0)
    eps = np.finfo(got.dtype).eps
    bound = (k + 4) * eps * scale + np.finfo(got.dtype).tiny
    assert got.shape == ref.shape, f"shape {got.shape} != {ref.shape}"
    err = np.abs(got.astype(np.float64) - ref)
    assert np.all(err <= bound), f"max diff {err.max():.3g} (bound there {bound.flat[np.argmax(err - bound)]:.3g})"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_matmul_sizes_and_transposes(isa, threads, rng, m, n, k, trans_a, trans_b, dtype):
    a, b = operands(rng, m, n, k, trans_a, trans_b, dtype)
    c = gk.ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    assert c.dtype == dtype and c.flags.c_contiguous
    check(c, a, b, trans_a, trans_b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_fortran_and_negative_views(isa, threads, rng, dtype):
    base_a = rng.uniform(-1, 1, (260, 190)).astype(dtype)
    base_b = rng.uniform(-1, 1, (200, 310)).astype(dtype)
    cases = [
        (base_a[::2, ::3], base_b[:64, ::2], False, False),            # both strided
        (np.asfortranarray(base_a[:65, :129]), np.asfortranarray(base_b[:129, :70]), False, False),
        (base_a[::-1, 5:70], base_b[:65, ::-3], False, False),          # negative strides
        (base_a[:129, :17].T, base_b[:129, :65], False, False),         # a transposed view (column-major)
        (np.asfortranarray(base_a[:129, :40]), base_b[:33, :129], True, True),
        (base_a[1:130:2, 3:20], base_b[7:24, 1:300:3], False, False),  # odd offsets
    ]
    for a, b, ta, tb in cases:
        c = gk.ops.matmul(a, b, trans_a=ta, trans_b=tb)
        check(c, a, b, ta, tb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", [(17, 65, 63), (129, 1000, 7), (300, 257, 300)])
def test_alpha_beta_and_nan_in_out(isa, threads, rng, m, n, k, dtype):
    a, b = operands(rng, m, n, k, False, False, dtype)
    c0 = rng.uniform(-1, 1, (m, n)).astype(dtype)
    out = c0.copy()
    res = gk.ops.matmul(a, b, out=out, alpha=-0.75, beta=1.5)
    assert res is out
    check(out, a, b, alpha=-0.75, beta=1.5, c0=c0)
    # beta == 0: out is write-only, NaN (or Inf) there must not leak into the result.
    out = np.full((m, n), np.nan, dtype)
    out[0, 0] = np.inf
    gk.ops.matmul(a, b, out=out, alpha=2.0, beta=0.0)
    assert np.isfinite(out).all()
    check(out, a, b, alpha=2.0)
    # beta == 1 accumulates (the weight-gradient case).
    out = c0.copy()
    gk.ops.matmul(a, b, out=out, beta=1.0)
    check(out, a, b, beta=1.0, c0=c0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_alpha_zero_and_k_zero_read_no_operand(isa, threads, rng, dtype):
    a = np.full((33, 40), np.nan, dtype)
    b = np.full((40, 70), np.nan, dtype)
    c0 = rng.uniform(-1, 1, (33, 70)).astype(dtype)
    out = c0.copy()
    gk.ops.matmul(a, b, out=out, alpha=0.0, beta=0.5)  # BLAS: alpha == 0 reads neither a nor b
    np.testing.assert_array_equal(out, (0.5 * c0).astype(dtype))
    bias = rng.uniform(-1, 1, 70).astype(dtype)
    c = gk.ops.matmul(np.zeros((33, 0), dtype), np.zeros((0, 70), dtype), bias=bias, activation="relu")
    np.testing.assert_array_equal(c, np.broadcast_to(np.maximum(bias, 0), (33, 70)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 17, 65), (65, 63, 17), (129, 1000, 129), (300, 33, 600),
                                   (9, 33, 8193)])  # the last: K cut into fixed chunks
def test_bias_and_relu_epilogue(isa, threads, rng, m, n, k, per_row, dtype):
    a, b = operands(rng, m, n, k, False, True, dtype)
    bias = rng.uniform(-1, 1, m if per_row else n).astype(dtype)
    for act in ("none", "relu"):
        c = gk.ops.matmul(a, b, trans_b=True, bias=bias, bias_per_row=per_row, activation=act)
        check(c, a, b, False, True, bias=bias, bias_per_row=per_row, relu=act == "relu")
        if act == "relu":
            assert (c >= 0).all() and (c.size < 100 or (c == 0).any())
    c0 = rng.uniform(-1, 1, (m, n)).astype(dtype)
    out = c0.copy()
    gk.ops.matmul(a, b, trans_b=True, out=out, alpha=0.5, beta=-1.0, bias=bias, bias_per_row=per_row,
                  activation="relu")
    check(out, a, b, False, True, alpha=0.5, beta=-1.0, c0=c0, bias=bias, bias_per_row=per_row, relu=True)


@pytest.mark.parametrize("k", [3, 9000])  # 9000: K cut into fixed chunks
def test_relu_propagates_nan(isa, k):
    a = np.ones((9, k), np.float32)
    a[4, 1] = np.nan
    c = gk.ops.matmul(a, np.ones((k, 40), np.float32), activation="relu")
    assert np.isnan(c[4]).all() and not np.isnan(np.delete(c, 4, axis=0)).any()


# Shapes that take every path: in-place (small), packed split by rows, packed
# split by columns, K longer than one KC block, several NC blocks, K cut into fixed
# chunks (small C, K >= 8192; the last chunk partial).
THREAD_SHAPES = [(64, 64, 64), (100, 90, 130), (129, 1000, 65), (1000, 129, 300), (64, 64, 5000), (40, 9000, 70),
                 (300, 257, 300), (33, 65, 10000)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("m,n,k", THREAD_SHAPES)
def test_one_and_two_threads_bit_identical(isa, rng, m, n, k, trans_a, trans_b, dtype):
    a, b = operands(rng, m, n, k, trans_a, trans_b, dtype)
    bias = rng.uniform(-1, 1, n).astype(dtype)
    results = []
    for t in (1, 2):
        gk.set_num_threads(t)
        results.append(gk.ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, bias=bias, activation="relu"))
    check(results[0], a, b, trans_a, trans_b, bias=bias, relu=True)
    assert results[0].tobytes() == results[1].tobytes(), \
        f"1 and 2 threads differ: max diff {np.abs(results[0] - results[1]).max():.3g}"


def test_matmul_matches_numpy_for_a_row_vector_and_column_vector(isa, rng):
    a = rng.uniform(-1, 1, (1, 300)).astype(np.float32)
    b = rng.uniform(-1, 1, (300, 1)).astype(np.float32)
    check(gk.ops.matmul(a, b), a, b)
    check(gk.ops.matmul(b, a), b, a)


# ---- bad input: ValueError / TypeError naming the argument and both values ----

def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"a: expected 2-D array, got 1-D array of shape \(3,\)"):
        gk.ops.matmul(np.ones(3, np.float32), np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"b: expected 2-D array, got 3-D"):
        gk.ops.matmul(np.ones((2, 3), np.float32), np.ones((3, 2, 1), np.float32))


def test_rejects_mismatched_inner_dims():
    with pytest.raises(ValueError, match=r"b: expected op\(b\) with 3 rows .*\(2, 3\).*got op\(b\) of shape \(4, 5\)"):
        gk.ops.matmul(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"op\(b\) of shape \(5, 4\)"):
        gk.ops.matmul(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32), trans_b=True)


def test_rejects_dtypes():
    with pytest.raises(TypeError, match=r"b: expected dtype float32 \(the dtype of a\), got float64"):
        gk.ops.matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.float64))
    with pytest.raises(TypeError, match=r"a: expected a numpy.ndarray of float32 or float64, got int64"):
        gk.ops.matmul(np.ones((2, 3), np.int64), np.ones((3, 2), np.int64))
    with pytest.raises(TypeError, match=r"a: .*got non-array list"):
        gk.ops.matmul([[1.0]], np.ones((1, 1), np.float32))
    with pytest.raises(TypeError, match=r"b: expected a numpy.ndarray of float64, got non-array list"):
        gk.ops.matmul(np.ones((1, 1)), [[1.0]])
    with pytest.raises(TypeError, match=r"bias: expected dtype float32, got float64"):
        gk.ops.matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), bias=np.ones(2))


def test_rejects_bad_out():
    a, b = np.ones((4, 3), np.float32), np.ones((3, 5), np.float32)
    with pytest.raises(ValueError, match=r"out: expected shape \(4, 5\), got shape \(5, 4\)"):
        gk.ops.matmul(a, b, out=np.empty((5, 4), np.float32))
    with pytest.raises(TypeError, match=r"out: expected dtype float32, got float64"):
        gk.ops.matmul(a, b, out=np.empty((4, 5)))
    ro = np.empty((4, 5), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"out: expected a writeable array, got a read-only one"):
        gk.ops.matmul(a, b, out=ro)
    with pytest.raises(ValueError, match=r"out: expected a C-contiguous array, got a non-contiguous one"):
        gk.ops.matmul(a, b, out=np.empty((5, 4), np.float32).T)
    with pytest.raises(ValueError, match=r"beta: expected 0 when out is None, got 1"):
        gk.ops.matmul(a, b, beta=1.0)


def test_rejects_out_overlapping_an_input():
    buf = np.ones((8, 8), np.float32)
    with pytest.raises(ValueError, match=r"out: expected memory not shared with a, got an array overlapping a"):
        gk.ops.matmul(buf, np.ones((8, 8), np.float32), out=buf)
    with pytest.raises(ValueError, match=r"out: expected memory not shared with b"):
        flat = np.ones(64, np.float32)
        gk.ops.matmul(np.ones((4, 8), np.float32), flat[:32].reshape(8, 4), out=flat[16:32].reshape(4, 4))
    big = np.zeros(40, np.float32)
    with pytest.raises(ValueError, match=r"out: expected memory not shared with bias"):
        gk.ops.matmul(np.ones((4, 3), np.float32), np.ones((3, 5), np.float32), out=big[:20].reshape(4, 5),
                      bias=big[18:23])
    # Disjoint parts of one buffer are fine.
    a = buf[:4]
    out = buf[4:]
    gk.ops.matmul(a, np.eye(8, dtype=np.float32), out=out)
    np.testing.assert_array_equal(buf[4:], buf[:4])


def test_rejects_bad_bias_and_activation():
    a, b = np.ones((4, 3), np.float32), np.ones((3, 5), np.float32)
    with pytest.raises(ValueError, match=r"bias: expected shape \(5,\), got shape \(4,\)"):
        gk.ops.matmul(a, b, bias=np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"bias: expected shape \(4,\), got shape \(5,\)"):
        gk.ops.matmul(a, b, bias=np.ones(5, np.float32), bias_per_row=True)
    with pytest.raises(ValueError, match=r"activation: expected 'none' or 'relu', got 'gelu'"):
        gk.ops.matmul(a, b, activation="gelu")


def test_options_are_keyword_only():
    a = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError):
        gk.ops.matmul(a, a, True)
    c = gk.ops.matmul(a=a, b=a, trans_a=True, trans_b=False)
    np.testing.assert_array_equal(c, np.full((2, 2), 2, np.float32))


FORCED_CACHE_SCRIPT = """
import sys
import numpy as np
import gradkit as gk
from gradkit import _core
shapes = [(300, 1000, 600), (129, 700, 257), (64, 2100, 300), (7, 65, 1000), (97, 33, 2049)]
out = {}
for isa in _core.supported_isas():
    _core.set_isa(isa)
    for dtype in ('float32', 'float64'):
        b = _core.gemm_blocking(dtype=dtype)
        out[f'{isa} {dtype} blocks'] = np.array([b[k] for k in ('mr', 'nr', 'mc', 'kc', 'nc')])
        for i, (m, n, k) in enumerate(shapes):
            rng = np.random.default_rng(i)
            for trans_b in (False, True):
                a = rng.uniform(-1, 1, (m, k)).astype(dtype)
                bm = rng.uniform(-1, 1, (n, k) if trans_b else (k, n)).astype(dtype)
                for threads in (1, 2):
                    gk.set_num_threads(threads)
                    out[f'{isa} {dtype} {i} {trans_b} {threads}'] = gk.ops.matmul(a, bm, trans_b=trans_b)
                out[f'{isa} {dtype} {i} {trans_b} ref'] = a.astype(np.float64) @ (bm.T if trans_b else bm).astype(np.float64)
np.savez(sys.argv[1], **out)
"""

# Forced caches (GRADKIT_L*_CACHE_BYTES), and the blocks and loop order gemm_blocking_for derives for them
# (mc, kc, nc, order per ISA and dtype; micro-tiles generic 4x8/4x8, avx2 6x16/6x8, avx512 8x32/8x16).
# A_L1: the A panel stays in L1 (where repacking A every nc columns costs under 2.5%, nc >= 320);
# B_L1: BLIS's order, the B sliver in L1, nc from L3 (at least 1024 columns, at most a 4 MiB block).
A_L1, B_L1 = "a_panel_in_l1", "b_sliver_in_l1"
ZEN3 = {"GRADKIT_L1_CACHE_BYTES": 32768, "GRADKIT_L2_CACHE_BYTES": 524288, "GRADKIT_L3_CACHE_BYTES": 4 << 20}
XEON = {"GRADKIT_L1_CACHE_BYTES": 49152, "GRADKIT_L2_CACHE_BYTES": 2 << 20, "GRADKIT_L3_CACHE_BYTES": 1536 << 10}
TINY_L2 = dict(ZEN3, GRADKIT_L2_CACHE_BYTES=65536)  # Zen 3's L1 (so the same kc), a 64 KiB L2
SMALL_L1 = dict(ZEN3, GRADKIT_L1_CACHE_BYTES=16384)  # half the L1: kc halves, so do the K blocks
EXPECTED_BLOCKS = {
    # AVX2 f32: the A-panel order would keep a 336 x 192 block of B in L2 and pack A every 192 columns;
    # BLIS's: kc (6 + 16) * 4 bytes <= 7/8 of L1, mc x kc in half of L2, nc from half of the 4 MiB L3
    "zen3": {("generic", "float32"): (108, 592, 1024, B_L1), ("generic", "float64"): (108, 296, 1024, B_L1),
             ("avx2", "float32"): (204, 320, 1632, B_L1), ("avx2", "float64"): (126, 256, 1024, B_L1),
             ("avx512", "float32"): (192, 168, 384, A_L1), ("avx512", "float64"): (224, 144, 1808, B_L1)},
    # the AVX-512 table's former constants and order on the Xeon they were tuned on
    "xeon": {("avx512", "float32"): (512, 256, 1024, A_L1), ("avx512", "float64"): (256, 256, 512, A_L1),
             ("avx2", "float32"): (252, 512, 512, A_L1), ("avx2", "float64"): (192, 336, 384, A_L1)},
    "tiny_l2": {("avx2", "float32"): (24, 320, 1632, B_L1), ("avx2", "float64"): (12, 256, 1024, B_L1),
                ("avx512", "float32"): (40, 176, 2976, B_L1)},
    "small_l1": {("avx2", "float32"): (192, 168, 384, A_L1), ("avx2", "float64"): (252, 128, 2048, B_L1),
                 ("generic", "float32"): (220, 296, 1768, B_L1)},
}
CACHES = {"zen3": ZEN3, "xeon": XEON, "tiny_l2": TINY_L2, "small_l1": SMALL_L1}


def _env(caches):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADKIT_L")}
    env.update({k: str(v) for k, v in caches.items()})
    return env


def _blocks_for(caches, isa, dtype):
    script = ("from gradkit import _core; b = _core.gemm_blocking(%r, %r); "
              "print(b['mc'], b['kc'], b['nc'], b['order'], b['l1d_bytes'], b['l2_bytes'], b['l3_bytes'])"
              % (isa, dtype))
    res = subprocess.run([sys.executable, "-c", script], env=_env(caches), check=True, timeout=120,
                         capture_output=True, text=True)
    return tuple(int(v) if v.isdigit() else v for v in res.stdout.split())


@pytest.mark.parametrize("name", sorted(EXPECTED_BLOCKS))
def test_blocks_derived_from_forced_cache_sizes(name):
    """gemm_blocking_for's blocks and order for each table under forced cache sizes: kc from L1, mc from L2,
    nc from L2 or L3 by the order (the AVX-512 table's former constants on a 48 KiB L1d / 2 MiB L2 Xeon)."""
    caches = CACHES[name]
    for (isa, dtype), blocks in EXPECTED_BLOCKS[name].items():
        got = _blocks_for(caches, isa, dtype)
        assert got[:4] == blocks, (name, isa, dtype, got)
        assert got[4:] == (caches["GRADKIT_L1_CACHE_BYTES"], caches["GRADKIT_L2_CACHE_BYTES"],
                           caches["GRADKIT_L3_CACHE_BYTES"])


def test_detected_caches_are_plausible():
    """Without overrides the sizes come from cpuid (or sysconf): an L1d of 16-128 KiB and a larger L2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADKIT_L")}
    res = subprocess.run([sys.executable, "-c", "from gradkit import _core; b = _core.gemm_blocking(); "
                          "print(b['l1d_bytes'], b['l2_bytes'], b['l3_bytes'], b['kc'])"],
                         env=env, check=True, timeout=120, capture_output=True, text=True)
    l1, l2, l3, kc = (int(v) for v in res.stdout.split())
    if l1 == 0:
        pytest.skip("this CPU reports no cache sizes")
    assert 16 << 10 <= l1 <= 128 << 10 and l2 > l1 and l3 >= 0 and kc % 8 == 0


@pytest.mark.parametrize("value", ["abc", "12x", "-5", "100"])
def test_bad_cache_override_fails_the_import(value):
    env = _env({})
    env["GRADKIT_L2_CACHE_BYTES"] = value
    res = subprocess.run([sys.executable, "-c", "import gradkit"], env=env, timeout=120, capture_output=True, text=True)
    assert res.returncode != 0
    assert "GRADKIT_L2_CACHE_BYTES" in res.stderr and repr(value) in res.stderr.replace('"', "'")


def test_gemm_blocking_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dtype"):
        gk._core.gemm_blocking(dtype="float16")
    with pytest.raises(ValueError, match="unknown ISA"):
        gk._core.gemm_blocking("sse9")


def test_forced_cache_sizes_give_correct_and_bit_identical_results(tmp_path):
    """Every supported ISA and dtype under forced cache sizes, 1 and 2 threads, odd shapes: correct against
    float64, bit-identical across thread counts, and bit-identical between cache sizes that keep kc (L2 only
    changes mc and nc: each element's chain of FMAs depends on the K blocks alone)."""
    files = {}
    for name in ("zen3", "tiny_l2", "small_l1"):
        files[name] = tmp_path / f"{name}.npz"
        subprocess.run([sys.executable, "-c", FORCED_CACHE_SCRIPT, str(files[name])], env=_env(CACHES[name]),
                       check=True, timeout=600)
    res = {name: np.load(f) for name, f in files.items()}
    zen3, tiny, small = res["zen3"], res["tiny_l2"], res["small_l1"]
    for isa in gk._core.supported_isas():
        assert tuple(tiny[f"{isa} float32 blocks"][3:4]) == tuple(zen3[f"{isa} float32 blocks"][3:4])  # same kc
        assert small[f"{isa} float32 blocks"][3] < zen3[f"{isa} float32 blocks"][3]
    for key in zen3.files:
        if key.endswith(" 1"):
            base = key[:-2]
            ref = zen3[base + " ref"]
            k = {0: 600, 1: 257, 2: 300, 3: 1000, 4: 2049}[int(base.split()[2])]
            eps = np.finfo(zen3[key].dtype).eps
            for r in res.values():
                np.testing.assert_allclose(r[key], ref, rtol=0, atol=(k + 4) * eps * k, err_msg=key)
                assert r[key].tobytes() == r[base + " 2"].tobytes(), f"{key}: threads changed bits"
            assert zen3[key].tobytes() == tiny[key].tobytes(), f"{key}: a smaller L2 changed bits"
