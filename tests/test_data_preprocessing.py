"""gk.data: ZeroCenter, Standardize, PCAWhiten fitted on training data only."""
import numpy as np
import pytest

import gradkit as gk
from gradkit.data import preprocessing as gkdata


def _assert_close(actual, expected, atol, rtol=0.0, what="value"):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = np.abs(actual - expected)
    tol = atol + rtol * np.abs(expected)
    assert np.all(err <= tol), f"{what}: max abs difference {err.max():.3e} (tolerance atol={atol}, rtol={rtol})"


@pytest.fixture(params=[None, 7], ids=["chunk4096", "chunk7"])
def chunks(request, monkeypatch):
    """Run with the default chunk and with a tiny one, so chunk boundaries and tails are covered."""
    if request.param is not None:
        monkeypatch.setattr(gkdata, "_CHUNK_ROWS", request.param)
    return request.param


@pytest.fixture
def split(rng):
    """Train and test sets from different distributions, so leaking test statistics would show."""
    x_train = rng.normal(3.0, 2.0, size=(53, 3, 4, 5)).astype(np.float32)
    x_test = rng.normal(-1.0, 0.5, size=(11, 3, 4, 5)).astype(np.float32)
    return x_train, x_test


@pytest.mark.parametrize("per_channel", [False, True])
def test_zero_center_uses_training_mean(split, chunks, per_channel):
    x_train, x_test = split
    t = gk.data.ZeroCenter(per_channel=per_channel).fit(x_train)
    axes = (0, 2, 3) if per_channel else (0,)
    mean = x_train.astype(np.float64).mean(axis=axes, keepdims=True)
    out = t.transform(x_test)
    assert out.dtype == np.float32 and out.shape == x_test.shape
    _assert_close(out, x_test.astype(np.float64) - mean, atol=1e-5, what="transform(test)")
    _assert_close(t.transform(x_train).astype(np.float64).mean(axis=axes), 0.0 * mean.squeeze(), atol=1e-5,
                  what="mean of transformed train")
    _assert_close(t.inverse_transform(out), x_test, atol=1e-5, what="inverse_transform")


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardize_uses_training_statistics(split, chunks, per_channel, dtype):
    x_train, x_test = (a.astype(dtype) for a in split)
    t = gk.data.Standardize(per_channel=per_channel).fit(x_train)
    axes = (0, 2, 3) if per_channel else (0,)
    ref = x_train.astype(np.float64)
    mean, std = ref.mean(axis=axes, keepdims=True), ref.std(axis=axes, keepdims=True)
    out = t.transform(x_test)
    assert out.dtype == dtype
    atol = 1e-5 if dtype == np.float32 else 1e-12
    _assert_close(out, (x_test.astype(np.float64) - mean) / std, atol=atol, rtol=atol, what="transform(test)")
    z = t.fit_transform(x_train).astype(np.float64)
    _assert_close(z.mean(axis=axes), np.zeros(mean.squeeze().shape), atol=atol * 10, what="train mean")
    _assert_close(z.std(axis=axes), np.ones(std.squeeze().shape), atol=atol * 10, what="train std")
    _assert_close(t.inverse_transform(out), x_test, atol=atol * 10, rtol=atol, what="inverse_transform")


def test_standardize_constant_feature_is_only_centred():
    x = np.zeros((10, 4), np.float32)
    x[:, 1] = np.arange(10)
    x[:, 2] = 5.0
    out = gk.data.Standardize().fit_transform(x)
    assert np.all(np.isfinite(out)), out
    _assert_close(out[:, 2], np.zeros(10), atol=0, what="constant column")
    _assert_close(out[:, 1].std(), 1.0, atol=1e-6, what="varying column std")


def test_integer_images_become_float32():
    x = (np.arange(5 * 28 * 28) % 256).astype(np.uint8).reshape(5, 1, 28, 28)
    out = gk.data.Standardize(per_channel=True).fit_transform(x)
    assert out.dtype == np.float32
    ref = x.astype(np.float64)
    _assert_close(out, (ref - ref.mean()) / ref.std(), atol=1e-5, what="uint8 standardize")


def test_pca_whiten_decorrelates(rng, chunks):
    mix = rng.normal(size=(6, 6))
    x_train = (rng.normal(size=(400, 6)) @ mix + 4.0).astype(np.float64)
    t = gk.data.PCAWhiten(eps=0.0).fit(x_train)
    z = t.transform(x_train)
    assert z.shape == (400, 6) and z.dtype == np.float64
    cov = np.cov(z, rowvar=False, bias=True)
    _assert_close(cov, np.eye(6), atol=1e-8, what="whitened covariance")
    assert np.all(np.diff(t.explained_variance_) <= 0), "components must come by decreasing variance"
    _assert_close(t.inverse_transform(z), x_train, atol=1e-9, what="inverse_transform")
    # Test data goes through the training statistics.
    x_test = rng.normal(size=(5, 6))
    expected = (x_test - x_train.mean(0)) @ t.components_.T / np.sqrt(t.explained_variance_)
    _assert_close(t.transform(x_test), expected, atol=1e-9, what="transform(test)")


def test_pca_whiten_components_and_images(rng):
    x = rng.normal(size=(50, 2, 3, 3)).astype(np.float32)
    t = gk.data.PCAWhiten(n_components=4)
    z = t.fit_transform(x)
    assert z.shape == (50, 4) and z.dtype == np.float32
    assert t.components_.shape == (4, 18)
    back = t.inverse_transform(z)
    assert back.shape == x.shape and back.dtype == np.float32
    # The top-4 reconstruction is the projection of the centred data on the components.
    flat = x.reshape(50, -1).astype(np.float64) - t.mean_
    proj = flat @ t.components_.T @ t.components_ + t.mean_
    _assert_close(back.reshape(50, -1), proj, atol=1e-4, what="projection")


def test_errors_name_the_problem(rng):
    x = rng.normal(size=(10, 4)).astype(np.float32)
    with pytest.raises(RuntimeError, match="fit"):
        gk.data.Standardize().transform(x)
    t = gk.data.ZeroCenter().fit(x)
    with pytest.raises(ValueError, match=r"expected shape \(N, 4\).*got \(10, 5\)"):
        t.transform(np.zeros((10, 5), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        gk.data.ZeroCenter().fit(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        gk.data.ZeroCenter().fit(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="at least one sample"):
        gk.data.ZeroCenter().fit(np.zeros((0, 3), np.float32))
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gk.data.Standardize().fit(bad)
    with pytest.raises(ValueError, match="n_components"):
        gk.data.PCAWhiten(n_components=0)
    with pytest.raises(ValueError, match="n_components"):
        gk.data.PCAWhiten(n_components=5).fit(x)
    with pytest.raises(ValueError, match="eps"):
        gk.data.PCAWhiten(eps=-1.0)
    p = gk.data.PCAWhiten(n_components=2).fit(x)
    with pytest.raises(ValueError, match=r"expected shape \(N, 2\)"):
        p.inverse_transform(np.zeros((3, 3), np.float32))
