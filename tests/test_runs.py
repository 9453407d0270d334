"""Runs: a config and a workdir in, a model reloadable in a fresh process out; occupied,
mismatched and unusable workdirs refused before any training, with nothing of the earlier run lost."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import flowclass as fc
from flowclass import runs
from flowclass.config import override

MEANS = ((-4.0, 0.0), (4.0, 0.0))


def _tabular_splits(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    return runs.Splits((x[: n * 3 // 4], y[: n * 3 // 4]), (x[n * 3 // 4 :], y[n * 3 // 4 :]), (x[:32], y[:32]))


def _image_splits(shape, n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = ((rng.integers(0, 256, (n, *shape)) + 0.5) / 256).astype(np.float32)
    y = rng.integers(0, 3, n).astype(np.int32)
    return runs.Splits((x[:48], y[:48]), (x[48:], y[48:]), (x[:16], y[:16]))


def _tiny(**sections) -> fc.RunConfig:
    parts = {"model": fc.ModelConfig(num_couplings=2, hidden=(16,), means=MEANS),
             "data": fc.DataConfig(noise=0.1, val_size=64),
             "train": fc.TrainConfig(epochs=2, batch_size=64, checkpoint_every_s=0.0)}
    return fc.RunConfig(**{**parts, **sections})


FAMILIES = {
    "tabular_flow": (_tiny(), _tabular_splits),
    "fnn": (_tiny(model=fc.ModelConfig(kind="fnn", hidden=(16,)), loss=fc.LossConfig(kind="cross_entropy")),
            _tabular_splits),
    "image_flow_fast": (fc.RunConfig(
        model=fc.ModelConfig(kind="image_flow", preset="fast", input_shape=(8, 8, 1), num_classes=3),
        loss=fc.LossConfig(nll_unit="bits_per_dim", num_bins=256, cross_entropy_weight=1.0),
        data=fc.DataConfig(dataset="mnist", val_size=16, shift=1),
        train=fc.TrainConfig(epochs=1, batch_size=16)), lambda: _image_splits((8, 8, 1))),
    "image_flow_multiscale": (fc.RunConfig(
        model=fc.ModelConfig(kind="image_flow", preset="multiscale", input_shape=(8, 8, 1), num_classes=3),
        loss=fc.LossConfig(nll_unit="bits_per_dim", num_bins=256),
        data=fc.DataConfig(dataset="mnist", val_size=16),
        optim=fc.OptimConfig(schedule="warmup_cosine", clip_norm=10.0, ema_decay=0.9),
        train=fc.TrainConfig(epochs=1, batch_size=16)), lambda: _image_splits((8, 8, 1))),
    "cnn": (fc.RunConfig(
        model=fc.ModelConfig(kind="cnn", input_shape=(28, 28, 1), num_classes=3),
        loss=fc.LossConfig(kind="cross_entropy"), data=fc.DataConfig(dataset="mnist", val_size=16),
        train=fc.TrainConfig(epochs=1, batch_size=16)), lambda: _image_splits((28, 28, 1))),
}


def _predict_in_fresh_process(workdir, x_path):
    code = textwrap.dedent(f"""
        import numpy as np, flowclass as fc
        model, variables, config = fc.load_run({str(workdir)!r})
        x = np.load({str(x_path)!r})
        np.save({str(x_path)!r} + ".logits.npy", fc.predict_logits(model.apply, variables, x))
        print(config.model.kind)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(str(x_path) + ".logits.npy"), done.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_load_run_in_a_fresh_process_predicts_as_the_run(family, tmp_path):
    config, make_splits = FAMILIES[family]
    splits = make_splits()
    run = runs.train(config, tmp_path / "run", splits=splits, progress=False)
    x = splits.test[0]
    np.save(tmp_path / "x.npy", x)
    logits, kind = _predict_in_fresh_process(tmp_path / "run", tmp_path / "x.npy")
    own = np.asarray(fc.predict_logits(run.result.state.apply_fn, run.result.state.variables, x))
    assert kind == config.model.kind
    np.testing.assert_array_equal(logits, own)
    assert runs.read_config(tmp_path / "run") == config


def _snapshot(workdir):
    """Every file under ``workdir`` with its bytes: what a refused call must leave untouched."""
    return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tabular run (2 epochs) and its files."""
    workdir = tmp_path_factory.mktemp("runs") / "run"
    runs.train(_tiny(), workdir, splits=_tabular_splits(), progress=False)
    return workdir


def _refused_before_training(monkeypatch):
    """Makes any training attempt fail loudly, so a refusal is shown to come first."""
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(runs, "fit", no_training)


def test_another_run_in_the_workdir_is_refused_and_kept(trained, monkeypatch):
    before = _snapshot(trained)
    _refused_before_training(monkeypatch)
    other = override(_tiny(), ["train.epochs=5", "optim.learning_rate=3e-3"])
    with pytest.raises(runs.RunExistsError, match=r"holds another run \(a tabular_flow model, checkpoints of epochs "
                                                  r"\[1, 2\]\).*resume=True.*new workdir.*overwrite=True"):
        runs.train(other, trained, splits=_tabular_splits(), progress=False)
    with pytest.raises(ValueError, match=r"cannot resume.*optim.learning_rate=0.001, this one "
                                         r"optim.learning_rate=0.003 \(2 difference"):
        runs.train(other, trained, splits=_tabular_splits(), resume=True, progress=False)
    with pytest.raises(ValueError, match="exclude each other"):
        runs.train(_tiny(), trained, resume=True, overwrite=True, progress=False)
    assert _snapshot(trained) == before
    fc.load_run(trained)  # still the earlier run


def test_overwrite_replaces_the_run(trained, tmp_path):
    workdir = tmp_path / "copy"
    import shutil

    shutil.copytree(trained, workdir)
    other = override(_tiny(), ["train.epochs=1"])
    runs.train(other, workdir, splits=_tabular_splits(), overwrite=True, progress=False)
    assert runs.read_config(workdir) == other
    with fc.Checkpointer(workdir / "checkpoints", create=False) as checkpointer:
        assert checkpointer.steps == [1]


def test_time_budget_may_differ_on_resume(trained, tmp_path):
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(trained, workdir)
    resumed = override(_tiny(), ["train.time_budget_s=60.0"])
    run = runs.train(resumed, workdir, splits=_tabular_splits(), resume=True, progress=False)
    assert run.result.epochs_run == 2 and runs.read_config(workdir) == resumed


def test_unusable_workdirs_are_refused_before_training(tmp_path, monkeypatch):
    _refused_before_training(monkeypatch)
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        runs.train(_tiny(), a_file, splits=_tabular_splits(), progress=False)
    with pytest.raises(OSError, match="cannot be written"):
        runs.train(_tiny(), "/proc/flowclass-test-run", splits=_tabular_splits(), progress=False)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "checkpoints").mkdir()  # checkpoints without a config: not ours to resume
    for resume in (False, True):
        with pytest.raises(runs.RunExistsError, match="checkpoints without a readable config.json"):
            runs.train(_tiny(), tmp_path / "foreign", splits=_tabular_splits(), resume=resume, progress=False)


def test_a_full_disk_is_reported_before_training(tmp_path, monkeypatch):
    import collections
    import shutil

    def no_epoch(*args, **kwargs):
        raise AssertionError("an epoch started")

    monkeypatch.setattr(fc.EpochRunner, "run", no_epoch)  # the check is fit's own, before its first epoch
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 100, 100))
    with pytest.raises(OSError, match=r"has 0.0 MiB free; a checkpoint needs about"):
        runs.train(_tiny(), tmp_path / "run", splits=_tabular_splits(), progress=False)


def test_a_failed_save_names_the_last_complete_checkpoint(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    original = ocp.CheckpointManager.save

    def save(self, step, *args, **kwargs):
        if step == 2:
            raise OSError(28, "No space left on device")
        return original(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    with pytest.raises(OSError, match=r"could not write checkpoint step 2.*last complete checkpoint is step 1"):
        runs.train(_tiny(), tmp_path / "run", splits=_tabular_splits(), progress=False)


def test_loading_never_creates_a_missing_path(tmp_path):
    missing = tmp_path / "typo"
    with pytest.raises(FileNotFoundError, match="holds no run"):
        fc.load_run(missing)
    with pytest.raises(FileNotFoundError):
        fc.restore_selected(missing / "checkpoints", {"params": {}, "collections": {}})
    assert not missing.exists()


def test_stored_config_is_json_and_round_trips(trained):
    stored = json.loads((trained / "config.json").read_text())
    assert stored["model"]["kind"] == "tabular_flow" and stored["train"]["epochs"] == 2
    assert fc.RunConfig.from_dict(stored) == _tiny()


@pytest.mark.parametrize("assignment, message", [
    ("optim.learning_rate=0", r"optim.learning_rate must be > 0; got 0"),
    ("train.batch_size=64.0", r"train.batch_size must be an integer"),
    ("model.mean_scale=-1", r"model.mean_scale must be > 0"),
    ("loss.cross_entropy_weight=-0.5", r"loss.cross_entropy_weight must be >= 0"),
    ("loss.posterior_temperature=0", r"loss.posterior_temperature must be > 0"),
    ("data.shift=-1", r"data.shift must be >= 0"),
    ("data.scale=1.0", r"data.scale must be in \[0, 1\)"),
    ("data.train_subset=0", r"data.train_subset must be >= 1 or None"),
    ("train.epoch=3", r"unknown config field 'train.epoch'"),
    ("modle.kind=fnn", r"unknown config section 'modle'"),
    ("model.kind=fnn", r"loss.kind 'flow' does not fit model.kind 'fnn'"),
    ("decision_rules=('plain', 'shift_marginal')", r"needs model.kind='image_flow'"),
    ("loss.consistency_weight=1.0", r"loss.consistency_weight, loss.labelled_weight and loss.unlabelled_rampup_steps "
                                    r"must be 0, 1 and 0 unless"),
    ("loss.unlabelled_rampup_steps=100", r"must be 0, 1 and 0 unless loss.kind='semi_supervised'"),
    ("loss.unlabelled_rampup_steps=-1", r"loss.unlabelled_rampup_steps must be >= 0"),
    ("loss.consistency_rampup_steps=-1", r"loss.consistency_rampup_steps must be >= 0"),
    ("loss.consistency_start_step=-1", r"loss.consistency_start_step must be >= 0"),
    ("loss.consistency_target='both'", r"loss.consistency_target must be one of \('perturbed', 'input'\)"),
])
def test_config_values_are_validated_with_the_field_named(assignment, message):
    with pytest.raises((ValueError, TypeError), match=message):
        override(_tiny(), [assignment])


def test_the_consistency_term_is_built_from_the_runs_augmentation_or_noise():
    semi = override(_tiny(), ["loss.kind=semi_supervised", "loss.labelled_weight=3.0"])
    assert not runs.build_loss(semi).needs_key and runs.build_loss(semi).labelled_weight == 3.0
    with pytest.raises(ValueError, match="needs loss.consistency_noise > 0"):
        override(semi, ["loss.consistency_weight=1.0"])
    tabular = runs.build_loss(override(semi, ["loss.consistency_weight=1.0", "loss.consistency_noise=0.2"]))
    assert tabular.needs_key and tabular.perturb == fc.data.GaussianNoise(0.2)
    image = fc.RunConfig(model=fc.ModelConfig(kind="image_flow", input_shape=(28, 28, 1), num_classes=10),
                         loss=fc.LossConfig(kind="semi_supervised", consistency_weight=2.0,
                                            consistency_rampup_steps=100, consistency_start_step=300,
                                            consistency_target="input"),
                         data=fc.DataConfig(dataset="mnist", shift=2, num_labels=100), train=fc.TrainConfig(
                             select="marginal_nll"))
    loss = runs.build_loss(image)
    assert loss.perturb == runs.pipeline(image).augment and loss.consistency_rampup_steps == 100
    assert loss.consistency_start_step == 300 and loss.consistency_target == "input"
    with pytest.raises(ValueError, match="loss.consistency_noise must be 0 for images"):
        override(image, ["loss.consistency_noise=0.1"])
    warm = runs.build_loss(override(semi, ["loss.unlabelled_rampup_steps=200"]))
    assert warm.unlabelled_rampup_steps == 200 and warm.needs_key and warm.perturb is None


@pytest.mark.parametrize("change, error, message", [
    (dict(config={"seed": 0}), TypeError, r"config must be a flowclass.RunConfig; got dict"),
    (dict(config=fc.TrainConfig()), TypeError, r"config must be a flowclass.RunConfig; got TrainConfig"),
    (dict(workdir=None), TypeError, r"workdir must be a path"),
    (dict(resume="no"), TypeError, r"resume must be True or False"),
    (dict(overwrite=1), TypeError, r"overwrite must be True or False"),
    (dict(extra_val_metrics=3), TypeError, r"extra_val_metrics must be a function"),
    (dict(splits="moons"), TypeError, r"splits must be Splits\(train, val, test\)"),
    (dict(splits=_tabular_splits()[:2]), TypeError, r"splits must be Splits\(train, val, test\), .* of length 2"),
    (dict(splits=runs.Splits((np.zeros((192, 3), np.float32), np.zeros(192, np.int32)), *_tabular_splits()[1:])),
     ValueError, r"splits.train x has examples of shape \(3,\); config.model.input_shape is \(2,\)"),
    (dict(splits=runs.Splits((_tabular_splits()[0][0], _tabular_splits()[0][1][:100]), *_tabular_splits()[1:])),
     ValueError, r"splits.train y must hold one label per example: shape \(192,\); got shape \(100,\)"),
    (dict(splits=runs.Splits((_tabular_splits()[0][0], _tabular_splits()[0][1] + 1), *_tabular_splits()[1:])),
     ValueError, r"splits.train y must hold labels in \[0, 2\); got values in \[1, 2\]"),
    (dict(splits=runs.Splits(_tabular_splits()[0], (_tabular_splits()[1][0] * np.nan, _tabular_splits()[1][1]),
                             _tabular_splits()[2])), ValueError, r"splits.val x must be finite"),
    (dict(config=_tiny(train=fc.TrainConfig(epochs=1, batch_size=500))), ValueError,
     r"train.batch_size must be at most the 192 training examples; got 500"),
])
def test_bad_train_arguments_are_refused_before_the_workdir_is_touched(tmp_path, change, error, message):
    args = dict(config=_tiny(), workdir=tmp_path / "run", splits=_tabular_splits(), progress=False)
    args.update(change)
    with pytest.raises(error, match=message):
        runs.train(**args)
    assert not (tmp_path / "run").exists()  # nothing was written: a corrected call starts cleanly


def test_bad_pixels_are_refused_for_image_flows_before_the_workdir_is_touched(tmp_path):
    config, make = FAMILIES["image_flow_fast"]
    (x, y), val, test = make()
    with pytest.raises(ValueError, match=r"splits.train x must hold pixels in \[0, 1\] for an image flow; got "
                                         r"values in \[.*, 25[0-9.]*\]"):
        runs.train(config, tmp_path / "run", splits=runs.Splits((x * 256, y), val, test), progress=False)
    assert not (tmp_path / "run").exists()


def test_config_fields_are_type_checked_and_stored_in_their_json_form():
    with pytest.raises(TypeError, match=r"model.num_classes must be an integer; got 2.5"):
        fc.ModelConfig(num_classes=2.5)
    with pytest.raises(TypeError, match=r"optim.learning_rate must be a number; got '1e-3'"):
        fc.OptimConfig(learning_rate="1e-3")
    with pytest.raises(TypeError, match=r"optim.warmup_steps must be int \| None; got 1.5"):
        fc.OptimConfig(warmup_steps=1.5)
    with pytest.raises(ValueError, match=r"model.means must be finite"):
        fc.ModelConfig(means=((float("nan"), 0.0), (1.0, 0.0)))
    with pytest.raises(ValueError, match=r"model.means must be one mean per class \(2 rows of equal length\)"):
        fc.ModelConfig(means=((0.0, 0.0), (1.0,)))
    with pytest.raises(TypeError, match=r"model must be a ModelConfig; got dict"):
        fc.RunConfig(model={"kind": "fnn"})
    # NumPy numbers and lists are stored as the JSON round trip gives them back
    model = fc.ModelConfig(input_shape=[2], hidden=[16], num_couplings=np.int64(2), means=[[-4, 0], [4, 0]])
    config = _tiny(model=model,
                   train=fc.TrainConfig(epochs=np.int32(2), batch_size=64, checkpoint_every_s=0))
    assert config.model.input_shape == (2,) and type(config.train.epochs) is int
    assert fc.RunConfig.from_dict(json.loads(config.to_json())) == config
    hash(config)
