"""Fuzzing the Trainer's and the diagnostics' arguments with hypothesis (fixed seed per run).

Each case draws arguments (some invalid) and calls the library. An invalid combination must raise a
TypeError/ValueError naming one of the invalid arguments and leave the model as it was; a valid one
must run and give what the arguments promise (epochs and steps recorded, finite losses, the metrics
asked for, a backup resumed only by the fit it belongs to, lr_find's range and restore). A draw the
test cannot check (verbose=1 needs tqdm) is filtered with ``assume``. ``CHECKED`` counts the cases
that reached every assertion (incremented after them); each test must reach its planned number.
"""
import collections
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import gradkit as gk
from fuzz_helpers import check_error, fuzz, planned

nn = gk.nn
CHECKED = collections.Counter()

INTS = [-1, 0, 1, 2, 3, 7, 2.0, True, "2", None, np.int64(2)]


def is_int(v, low):
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= low


def state_bytes(model):
    return {k: v.tobytes() for k, v in model.state_dict().items()}


def classifier(d, classes, batch_norm, seed):
    gk.manual_seed(seed)
    layers = [nn.Linear(d, 6)] + ([nn.BatchNorm1d(6)] if batch_norm else []) + [nn.ReLU(), nn.Linear(6, classes)]
    return nn.Sequential(*layers)


def data(seed, n, d=4, classes=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, classes, n)


# -- Trainer.fit ----------------------------------------------------------------------------------------
# Each of fit's arguments: (valid values, invalid values). A case breaks one argument (or none).
FIT_ARGS = {
    "epochs": ([0, 1, 2, 3, np.int64(2)], [-1, 2.0, True, "2", None]),
    "batch_size": ([1, 2, 3, 7, 64, np.int64(4)], [0, -1, 1.5, True, "8", None]),
    "validation_split": ([0.0, 0.0, 0.25, 0.5, 0.9], [1.0, -0.1, "0.2", math.nan, None]),
    "drop_last": ([False, True], ["yes", 1, None]),
    "verbose": ([0, 0, 2], [3, -1, "0", None, 1.0, True]),
}


@fuzz(300)
@given(n=st.sampled_from([1, 2, 5, 9, 17]), broken=st.sampled_from([None, None, None, *FIT_ARGS]),
       shuffle=st.booleans(), batch_norm=st.booleans(), seed=st.integers(0, 2**16), draw=st.data())
def test_fit_arguments(n, broken, shuffle, batch_norm, seed, draw, capsys):
    args = {name: draw.draw(st.sampled_from(bad if name == broken else good), label=name)
            for name, (good, bad) in FIT_ARGS.items()}
    epochs, batch_size, split, drop_last, verbose = (args[k] for k in FIT_ARGS)
    x, y = data(seed, n)
    model = classifier(4, 3, batch_norm, seed)
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.SGD(model.parameters(), lr=0.05))
    before = state_bytes(model)
    invalid = [] if broken is None else [broken]
    n_train = n
    if not invalid and split > 0:  # a split must leave both parts non-empty
        n_train = int(n * (1.0 - split))
        if n_train < 1 or n_train >= n:
            invalid.append("validation_split")
    if not invalid and drop_last and n_train < batch_size:
        invalid.append("drop_last")
    # Batch norm cannot train on a batch of one sample: the error names the layer and drop_last.
    full, rest = (n_train // batch_size, n_train % batch_size) if not invalid else (0, 0)
    one_sample = (not invalid and batch_norm and epochs > 0
                  and ((full > 0 and batch_size == 1) or (rest == 1 and not drop_last)))
    if invalid or one_sample:
        with pytest.raises((TypeError, ValueError)) as err:
            trainer.fit(x, y, shuffle=shuffle, **args)
        if one_sample:
            assert err.type is ValueError and "BatchNorm1d(6)" in str(err.value) and "in layer '1'" in str(err.value)
            assert "drop_last=True" in str(err.value), err.value
        else:
            check_error(err.value, invalid)
            assert state_bytes(model) == before  # refused before anything changed
    else:
        history = trainer.fit(x, y, shuffle=shuffle, **args)
        steps = n_train // batch_size if drop_last else -(-n_train // batch_size)
        assert history.params["steps"] == steps and history.params["samples"] == n_train
        assert history.epoch == list(range(epochs))
        assert set(history.history) == ({"loss", "accuracy", "lr"} | ({"val_loss", "val_accuracy"} if split > 0 else
                                                                         set()) if epochs else set())
        assert all(math.isfinite(v) for v in history.history.get("loss", []))
        assert all(0.0 <= v <= 1.0 for v in history.history.get("accuracy", []))
        assert (state_bytes(model) != before) == (epochs > 0)
        printed = capsys.readouterr().out
        assert printed.count("Epoch ") == (epochs if verbose == 2 else 0)
        CHECKED["test_fit_arguments: trained"] += 1
    CHECKED["test_fit_arguments"] += 1


# -- Trainer(...) -------------------------------------------------------------------------------------
def labels(target):
    return target.argmax(axis=1) if target.ndim == 2 else target


def mean_accuracy(out, target):
    return float(np.mean(out.argmax(axis=1) == labels(target)))


def per_sample(out, target):
    return out.argmax(axis=1) == labels(target)


METRICS = {"default": None, "None": None, "()": (), "'accuracy'": "accuracy", "('accuracy',)": ("accuracy",),
           "'f1'": "f1", "3": 3, "(mean_accuracy,)": (mean_accuracy,), "(per_sample,)": (per_sample,),
           "('loss',)": ("loss",), "('accuracy', 'accuracy')": ("accuracy", "accuracy")}
# Each argument: (valid choices, invalid choices); a case breaks one of them (or none).
TRAINER_ARGS = {
    "metrics": (["default", "None", "()", "'accuracy'", "('accuracy',)", "(mean_accuracy,)", "(per_sample,)"],
                ["'f1'", "3", "('loss',)", "('accuracy', 'accuracy')"]),
    "callbacks": (["default", "None", "[]", "cb", "[cb]", "[cb, cb2]"], ["3", "[class]", "'cb'"]),
    "loss": (["CrossEntropyLoss()", "MSELoss()"], ["CrossEntropyLoss", "'ce'"]),
    "optimizer": (["own", "part"], ["other", "class", "None"]),
    "clip_grad_norm": ([None, 1.0, 0.5], [0, -1.0, math.inf, math.nan, "1", True]),
}


@fuzz(300)
@given(broken=st.sampled_from([None, None, None, *TRAINER_ARGS]), seed=st.integers(0, 2**16), draw=st.data())
def test_trainer_arguments(broken, seed, draw):
    choice = {name: draw.draw(st.sampled_from(bad if name == broken else good), label=name)
              for name, (good, bad) in TRAINER_ARGS.items()}
    metrics, callbacks, loss, optimizer, clip = (choice[k] for k in TRAINER_ARGS)
    model, other = classifier(4, 3, False, seed), classifier(4, 3, False, seed + 1)
    classify = loss.startswith("CrossEntropy")
    x, labels = data(seed, 12)
    y = labels if classify else np.eye(3, dtype=np.float32)[labels]
    stopper, stopper2 = gk.callbacks.EarlyStopping(monitor="loss"), gk.callbacks.EarlyStopping(monitor="loss")
    kwargs = {}
    if metrics != "default":
        kwargs["metrics"] = METRICS[metrics]
    if callbacks != "default":
        kwargs["callbacks"] = {"None": None, "[]": [], "cb": stopper, "[cb]": [stopper], "3": 3,
                               "[class]": [gk.callbacks.EarlyStopping], "'cb'": "cb", "[cb, cb2]": [stopper, stopper2]
                               }[callbacks]
    loss_arg = {"CrossEntropyLoss()": nn.CrossEntropyLoss(), "MSELoss()": nn.MSELoss(),
                "CrossEntropyLoss": nn.CrossEntropyLoss, "'ce'": "ce"}[loss]
    opt = {"own": lambda: gk.optim.Adam(model.parameters(), lr=1e-2),
           "part": lambda: gk.optim.Adam(model[2].parameters(), lr=1e-2),
           "other": lambda: gk.optim.Adam(other.parameters(), lr=1e-2),
           "class": lambda: gk.optim.Adam, "None": lambda: None}[optimizer]()
    invalid = [] if broken is None else [broken]
    before = state_bytes(model)
    if invalid:
        with pytest.raises((TypeError, ValueError)) as err:
            gk.Trainer(model, loss_arg, opt, clip_grad_norm=clip, **kwargs)
        check_error(err.value, invalid)
        assert state_bytes(model) == before
    else:
        trainer = gk.Trainer(model, loss_arg, opt, clip_grad_norm=clip, **kwargs)
        names = {"default": ("accuracy",) if classify else (), "None": (), "()": (), "'accuracy'": ("accuracy",),
                 "('accuracy',)": ("accuracy",), "(mean_accuracy,)": ("mean_accuracy",),
                 "(per_sample,)": ("per_sample",)}[metrics]
        assert trainer.metrics == names
        assert trainer.callbacks == {"default": [], "None": [], "[]": [], "cb": [stopper], "[cb]": [stopper],
                                     "[cb, cb2]": [stopper, stopper2]}[callbacks]
        if metrics == "(per_sample,)":  # returns one value per sample, not the batch mean
            with pytest.raises(TypeError, match=r"metrics: the metric 'per_sample' must return the batch mean"):
                trainer.fit(x, y, epochs=1, batch_size=4, verbose=0)
        else:
            history = trainer.fit(x, y, epochs=2, batch_size=4, verbose=0)
            assert set(history.history) == {"loss", "lr", *names}
            assert all(math.isfinite(v) for v in history.history["loss"])
            CHECKED["test_trainer_arguments: trained"] += 1
            if "accuracy" in names and classify:
                out = trainer.predict(x)
                assert trainer.evaluate(x, y)["accuracy"] == np.mean(out.argmax(axis=1) == y)
    CHECKED["test_trainer_arguments"] += 1


# -- BackupAndRestore: a backup resumes only the fit it belongs to -----------------------------------------
SETTINGS = ["same", "epochs", "shuffle", "batch_size", "drop_last", "data", "one row", "samples"]


@fuzz(40)
@given(change=st.sampled_from(SETTINGS), stop=st.integers(2, 9), seed=st.integers(0, 2**16))
def test_backup_belongs_to_one_fit(tmp_path_factory, change, stop, seed):
    from backup_helpers import Interrupt, Interrupted

    backup_dir = tmp_path_factory.mktemp("bk") / "bk"
    x, y = data(seed, 24)
    fit_args = dict(epochs=3, batch_size=5, shuffle=True, drop_last=False, verbose=0)

    def run(at=None, **changes):
        model = classifier(4, 3, False, seed)
        interrupt = Interrupt(at)
        trainer = gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.Adam(model.parameters(), lr=1e-2),
                             callbacks=[gk.callbacks.BackupAndRestore(backup_dir, save_freq=2), interrupt])
        args = dict(fit_args, x=x, y=y)
        args.update(changes)
        return trainer, interrupt, args

    trainer, _, args = run(at=(stop // 5, stop % 5))
    with pytest.raises(Interrupted):
        trainer.fit(**args)
    files = {p.name: p.read_bytes() for p in backup_dir.iterdir()}
    assert list(files) == ["backup.npz"]
    x2 = x.copy()
    x2[0] += 1.0  # row 0 is in the fingerprint's sample
    changes = {"same": {}, "epochs": dict(epochs=4), "shuffle": dict(shuffle=False), "batch_size": dict(batch_size=6),
               "drop_last": dict(drop_last=True), "data": dict(x=data(seed + 1, 24)[0]), "one row": dict(x=x2),
               "samples": dict(x=x[:23], y=y[:23])}[change]
    trainer, interrupt, args = run(**changes)
    before = state_bytes(trainer.model)
    if change == "same":
        trainer.fit(**args)
        # A backup every 2 batches; the interrupted batch (number stop + 1) raised before its own backup.
        assert interrupt.batches == 3 * 5 - 2 * (stop // 2)  # resumed after the last backup, not from the start
        assert not backup_dir.exists()
    else:
        with pytest.raises(ValueError) as err:
            trainer.fit(**args)
        named = {"data": "training data differs", "one row": "training data differs", "samples": "samples was 24"}
        assert "belongs to another fit" in str(err.value) and named.get(change, change) in str(err.value), err.value
        assert {p.name: p.read_bytes() for p in backup_dir.iterdir()} == files  # kept, and no lock left
        assert state_bytes(trainer.model) == before and interrupt.batches == 0
    CHECKED["test_backup_belongs_to_one_fit"] += 1


# -- diagnostics -------------------------------------------------------------------------------------------
LR_FIND_ARGS = {
    "start_lr": ([1e-300, 1e-7, 1e-3, 1.0], [0.0, -1.0, math.inf, math.nan, "a", True, None]),
    "end_lr": ([10.0, 1e3, 1e300], [0.0, -1.0, math.inf, math.nan, "a", True, None]),
    "num_iter": ([2, 5, 13, np.int64(3)], [1, 0, 2.0, None, True]),
    "batch_size": ([1, 3, 64], [0, -2, 1.5, None]),
    "optimizer": (["own"], ["other"]),
}


@fuzz(200)
@given(broken=st.sampled_from([None, None, None, "start_lr > end_lr", *LR_FIND_ARGS]), seed=st.integers(0, 2**16),
       draw=st.data())
def test_lr_find_arguments(broken, seed, draw):
    args = {name: draw.draw(st.sampled_from(bad if name == broken else good), label=name)
            for name, (good, bad) in LR_FIND_ARGS.items()}
    own = args.pop("optimizer") == "own"
    if broken == "start_lr > end_lr":
        args["start_lr"], args["end_lr"] = args["end_lr"], args["start_lr"]
    start, end, num_iter = args["start_lr"], args["end_lr"], args["num_iter"]
    model, other = classifier(4, 3, False, seed), classifier(4, 3, False, seed + 1)
    opt = gk.optim.SGD((model if own else other).parameters(), lr=0.1)
    x, y = data(seed, 20)
    invalid = {None: [], "start_lr > end_lr": ["start_lr", "end_lr"]}.get(broken, [broken])
    before, opt_before = state_bytes(model), opt.state_dict()
    if invalid:
        with pytest.raises((TypeError, ValueError)) as err:
            gk.diagnostics.lr_find(model, nn.CrossEntropyLoss(), opt, x, y, **args)
        check_error(err.value, invalid)
    else:
        result = gk.diagnostics.lr_find(model, nn.CrossEntropyLoss(), opt, x, y, **args)
        lrs = np.asarray(result.lrs)
        assert 1 <= len(lrs) <= num_iter and len(result.losses) == len(lrs) == len(result.raw_losses)
        assert lrs[0] == start and np.all(np.isfinite(lrs)) and np.all(np.diff(lrs) > 0)
        assert np.all(lrs <= end * (1 + 1e-12))
        assert start <= result.suggestion <= end and math.isfinite(result.suggestion)
        assert all(math.isfinite(v) for v in result.raw_losses)
        CHECKED["test_lr_find_arguments: ran"] += 1
    assert state_bytes(model) == before and opt.state_dict()["param_groups"] == opt_before["param_groups"]
    CHECKED["test_lr_find_arguments"] += 1


@fuzz(150)
@given(n=st.sampled_from([0, 1, 2, 7]), classes=st.sampled_from([1, 2, 3]), special=st.sampled_from(["", "nan", "inf"]),
       with_loss=st.booleans(), own=st.booleans(), seed=st.integers(0, 2**16))
def test_propagation_and_sanity_check_arguments(n, classes, special, with_loss, own, seed):
    model, other = classifier(4, classes, False, seed), classifier(4, classes, False, seed + 1)
    x, y = data(seed, n, classes=classes)
    if special and n:
        x[n // 2, 1] = np.nan if special == "nan" else np.inf
    before = state_bytes(model)
    # propagation
    args = (y, nn.CrossEntropyLoss()) if with_loss else ()
    if n == 0 or special:
        with pytest.raises(ValueError, match=r"propagation: x: expected (a batch of at least one sample|finite values)"):
            gk.diagnostics.propagation(model, x, *args)
    else:
        report = gk.diagnostics.propagation(model, x, *args)
        assert [r["name"] for r in report.rows] == ["0", "1", "2"]
        assert all(math.isfinite(r["act_std"]) for r in report.rows)
        assert (report.rows[-1]["grad_std"] is not None) == with_loss
        assert isinstance(report.verdict, str) and report.verdict
        CHECKED["test_propagation_and_sanity_check_arguments: measured"] += 1
    assert state_bytes(model) == before
    # sanity_check: refuses another model's optimizer; fails one-class cross-entropy and non-finite data
    opt = gk.optim.Adam((model if own else other).parameters(), lr=1e-2)
    if n == 0:
        with pytest.raises(ValueError, match=r"sanity_check: x, y: expected the same number \(>= 1\) of samples"):
            gk.diagnostics.sanity_check(model, nn.CrossEntropyLoss(), x, y, opt)
    elif not own:
        with pytest.raises(ValueError, match=r"sanity_check: optimizer: expected an optimizer over the model's"):
            gk.diagnostics.sanity_check(model, nn.CrossEntropyLoss(), x, y, opt)
    else:
        report = gk.diagnostics.sanity_check(model, nn.CrossEntropyLoss(), x, y, opt)
        initial = report.checks[0]
        if classes == 1:
            assert not report.passed and not initial["passed"] and "1 class" in initial["detail"]
        if special:
            assert not report.passed and not initial["passed"]
    assert state_bytes(model) == before
    CHECKED["test_propagation_and_sanity_check_arguments"] += 1


NUMBERS = [1e-4, 1e-2, 0.5, 0, -1.0, math.inf, math.nan, "a", None, True, 3]


@fuzz(200)
@given(low=st.sampled_from(NUMBERS), high=st.sampled_from(NUMBERS), every=st.sampled_from([None, 1, 2, 0, -1, 1.5, True]),
       bins=st.sampled_from([1, 7, 40, 0, 2.0, None]), sample_every=st.sampled_from([1, 3, 0, "2"]),
       seed=st.integers(0, 2**16))
def test_diagnostic_callback_arguments(low, high, every, bins, sample_every, seed):
    def number(v):
        return not isinstance(v, (bool, str)) and v is not None

    ratio_invalid = [name for name, v in (("low", low), ("high", high)) if not number(v)]
    if not ratio_invalid and not (0 < low < high < math.inf):
        ratio_invalid = ["low", "high"]
    stats_invalid = []
    if every is not None and not is_int(every, 1):
        stats_invalid.append("every_n_batches")
    if not is_int(bins, 1):
        stats_invalid.append("bins")
    if not is_int(sample_every, 1):
        stats_invalid.append("sample_every")
    callbacks = []
    for invalid, make in ((ratio_invalid, lambda: gk.callbacks.UpdateRatio(low=low, high=high)),
                          (stats_invalid, lambda: gk.callbacks.ActivationStats(every_n_batches=every, bins=bins,
                                                                                sample_every=sample_every))):
        if invalid:
            with pytest.raises((TypeError, ValueError)) as err:
                make()
            check_error(err.value, invalid)
        else:
            callbacks.append(make())
    if callbacks:
        model = classifier(4, 3, False, seed)
        x, y = data(seed, 12)
        gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.SGD(model.parameters(), lr=0.1),
                   callbacks=callbacks).fit(x, y, epochs=2, batch_size=4, verbose=0)
        for cb in callbacks:
            if isinstance(cb, gk.callbacks.UpdateRatio):
                assert set(cb.ratios) == {name for name, _ in model.named_parameters()}
                assert all(len(v) == 2 and all(r > 0 for r in v) for v in cb.ratios.values())
                flagged = cb.flagged()
                assert all(flagged[k] == ("too small" if v[-1] < low else "too large")
                           for k, v in cb.ratios.items() if k in flagged)
            else:
                assert len(cb.stats) == (2 if every is None else 2 * 3 // every) and list(cb.stats[0]) == ["1"]
                assert len(cb.stats[0]["1"]["hist"]) == bins
        CHECKED["test_diagnostic_callback_arguments: trained"] += 1
    CHECKED["test_diagnostic_callback_arguments"] += 1


PLANNED = {"test_fit_arguments": 300, "test_trainer_arguments": 300, "test_backup_belongs_to_one_fit": 40,
           "test_lr_find_arguments": 200, "test_propagation_and_sanity_check_arguments": 150,
           "test_diagnostic_callback_arguments": 200}


@pytest.fixture(autouse=True)
def _each_test_checks_its_cases(request):
    before = CHECKED[request.node.name]
    yield
    name = request.node.name
    checked = CHECKED[name] - before
    parts = {k.split(": ")[1]: v for k, v in CHECKED.items() if k.startswith(name + ": ")}
    print(f"\n{name}: {checked} cases checked (planned {planned(PLANNED[name])}) {parts or ''}")
    assert checked >= planned(PLANNED[name]), f"{name}: {checked} cases checked, {planned(PLANNED[name])} planned"
