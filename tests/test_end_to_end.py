"""End to end on the real Fashion-MNIST files (CI installs Debian's dataset-fashion-mnist).

One epoch on a 6000-image subset through the example's own code path; skipped,
with the reason, when the data is not installed (an error instead when
GRADKIT_REQUIRE_DATASET=1, as .ci/run sets once it has installed the package).
Never downloads.
"""
import os

import numpy as np
import pytest

import gradkit as gk
from gradkit.examples import fashion_mnist as example

pytestmark = pytest.mark.dataset


@pytest.fixture(scope="module")
def fashion():
    try:
        (x_train, y_train), (x_test, y_test) = gk.datasets.load_fashion_mnist(download=False)
    except FileNotFoundError as e:
        if os.environ.get("GRADKIT_REQUIRE_DATASET") == "1":
            raise
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, or set "
                    f"GRADKIT_DATA): {str(e).splitlines()[0]}")
    return (x_train, y_train), (x_test, y_test)


def test_real_files_look_right(fashion):
    (x_train, y_train), (x_test, y_test) = fashion
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert np.array_equal(np.bincount(y_train), np.full(10, 6000))
    assert np.array_equal(np.bincount(y_test), np.full(10, 1000))


@pytest.mark.parametrize("kind, threshold", [("cnn", 0.70), ("mlp", 0.70)])
def test_one_epoch_on_a_subset_is_far_above_chance(fashion, kind, threshold):
    (x_train, y_train), (x_test, y_test) = fashion
    gk.manual_seed(0)
    x_tr, x_te = example.prepare(x_train[:6000], x_test[:2000])
    model = example.MODELS[kind]()
    trainer = gk.Trainer(model, gk.nn.CrossEntropyLoss(), gk.optim.Adam(model.parameters(), lr=1e-3))
    history = trainer.fit(x_tr, y_train[:6000], epochs=1, batch_size=128, verbose=0)
    result = trainer.evaluate(x_te, y_test[:2000])
    # Chance is 0.10; one epoch on a tenth of the data reaches about 0.8.
    assert result["accuracy"] >= threshold, (result, history.history)
    assert history.history["loss"][0] < 1.0, history.history


def test_example_main_writes_model_and_curves(fashion, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = example.main(["--model", "mlp", "--epochs", "1", "--subset", "2000", "--verbose", "0",
                        "--out", str(tmp_path)])
    assert out["test_accuracy"] > 0.5
    # validation on the last 200 training images (held out), not on the test set
    assert len(out["history"].history["val_accuracy"]) == 1 and out["history"].params["samples"] == 1800
    printed = capsys.readouterr().out
    assert "test accuracy" in printed
    model = example.build_mlp()
    model.load_state_dict(gk.load(str(tmp_path / "mlp.npz")))
    assert (tmp_path / "mlp_curves.png").read_bytes()[:4] == b"\x89PNG"
