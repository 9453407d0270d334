"""One end-to-end training step of each image model, and the MNIST experiment script."""

import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowclass as fc
from flowclass.data.pixels import bin_centres

from test_image_data import FASHION_DIR, _write_idx_dir


@pytest.fixture(scope="module")
def images():
    if FASHION_DIR.is_dir():  # a small real slice when Debian's package is installed
        x, y = fc.data.load_image_dataset("fashion_mnist", data_dir=FASHION_DIR)["train"]
        return np.asarray(bin_centres(x[:64])), y[:64]
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (64, 28, 28, 1)) + 0.5).astype(np.float32) / 256
    return x, rng.integers(0, 10, 64).astype(np.int32)


@pytest.mark.parametrize("name", ["flow-fast", "flow-multiscale", "cnn"])
def test_one_training_step(images, name):
    x, y = images
    if name == "cnn":
        model, loss_fn = fc.CNN(), fc.cross_entropy
    else:
        model = fc.image_realnvp(name.split("-")[1])
        loss_fn = fc.make_flow_loss(cross_entropy_weight=1.0, nll_unit="bits_per_dim", num_bins=256)
    state = fc.create_train_state(model, jax.random.key(0), x, optax.adam(1e-3), loss_fn)
    batch = (jnp.asarray(x[:32]), jnp.asarray(y[:32]))
    before = fc.eval_step(state, batch)
    for _ in range(3):
        state, aux = fc.train_step(state, batch)
    after = fc.eval_step(state, batch)
    assert np.isfinite(float(aux["loss"]))
    assert float(after["loss"]) < float(before["loss"])
    if name != "cnn":
        assert 0.5 < float(after["bits_per_dim"]) < 12
        z, log_det = model.apply(state.variables, batch[0], method="encode")
        assert z.shape[1:] == model.latent_shape and np.prod(model.latent_shape) == 784
        x_back, _ = model.apply(state.variables, z, method="decode")
        np.testing.assert_allclose(x_back, batch[0], atol=2e-4)
        assert model.apply(state.variables, jax.random.key(1), 3, 2, method="sample").shape == (2, 28, 28, 1)


def test_mnist_experiment_end_to_end_and_resume(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write_idx_dir(data_dir, n_train=300, n_test=64)
    module = _load_experiment("mnist")
    out = tmp_path / "out"
    common = ["--dataset", "fashion_mnist", "--data-dir", str(data_dir), "--val-size", "64", "--batch-size", "32",
              "--out", str(out), "--quiet", "--host-devices", "1"]
    first = module.main(common + ["--epochs", "1"])
    assert first["epochs_run"] == 1 and first["test_bits_per_dim"] > 0
    for figure in ("training_curves.png", "confusion_matrix.png", "samples.png"):
        assert (out / figure).stat().st_size > 5_000
    resumed = module.main(common + ["--epochs", "2", "--resume", "--no-figures"])
    assert resumed["epochs_run"] == 2 and len(resumed["history"]["val_loss"]) == 2
    assert resumed["history"]["val_loss"][0] == first["history"]["val_loss"][0]  # epoch 1 came from the checkpoint
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 2
    # the selected model restored from the checkpoints (fc.restore_best) scores what the run reported
    args = module.parse_args(common)
    _, _, (x_test, y_test) = module.load_splits(args, bin_centred=True)
    model, variables, summary = module.load_run(out, x_test[:2])
    predictions = np.asarray(model.apply(variables, x_test)).argmax(-1)
    assert float(np.mean(predictions == y_test)) == pytest.approx(summary["test_acc"], abs=1e-6)
    # the shift-marginal scorer's unshifted rule is the run's own
    scores = _load_experiment("shift_marginal").score_run(out, str(data_dir))
    assert scores["test"]["none"] == pytest.approx(summary["test_acc"], abs=1e-6)
    assert scores["val"]["none"] == pytest.approx(summary["val_acc"], abs=1e-6)
    assert set(scores["test"]) == {"none", "cross1", "grid3", "grid5"}


def test_mnist_experiment_selects_the_decision_rule_on_validation(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write_idx_dir(data_dir, n_train=300, n_test=64)
    module = _load_experiment("mnist")
    common = ["--dataset", "fashion_mnist", "--data-dir", str(data_dir), "--val-size", "64", "--batch-size", "32",
              "--out", str(tmp_path / "out"), "--quiet", "--host-devices", "1", "--no-figures", "--shift-marginal"]
    summary = module.main(common + ["--epochs", "4"])
    h = {k: np.asarray(v) for k, v in summary["history"].items()}
    assert np.isnan(h["val_shift_marginal_accuracy"][0])  # the first half of the schedule scores only the plain rule
    assert not np.any(np.isnan(h["val_shift_marginal_accuracy"][1:]))
    either = np.fmax(h["val_accuracy"], h["val_shift_marginal_accuracy"])
    np.testing.assert_allclose(h["val_best_rule_accuracy"], either, atol=1e-6)
    best = summary["best_epoch"] - 1
    assert summary["val_acc"] == pytest.approx(h["val_best_rule_accuracy"].max(), abs=1e-6)
    assert summary["val_acc"] == pytest.approx(h["val_best_rule_accuracy"][best], abs=1e-6)
    np.testing.assert_allclose(h["val_plain_rule_accuracy"], h["val_accuracy"], atol=1e-6)
    marginal_won = h["val_shift_marginal_accuracy"][best] > h["val_plain_rule_accuracy"][best]  # ties: plain
    assert summary["rule"] == ("shift_marginal" if marginal_won else "plain")
    assert set(summary["test_acc_by_rule"]) == {"plain", "shift_marginal"}
    assert summary["test_acc"] == summary["test_acc_by_rule"][summary["rule"]]
    with pytest.raises(SystemExit):
        module.parse_args(["--model", "cnn", "--shift-marginal"])


def _load_experiment(name: str):
    script = Path(__file__).parents[1] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_experiment", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_experiment_augmentation_order():
    module = _load_experiment("mnist")
    assert module.image_augment(0, dequantise=False) is None
    assert len(module.image_augment(2, dequantise=False).transforms) == 1  # the CNN's default: shifts
    augment = module.image_augment(0, dequantise=True, degrees=20.0)
    assert len(augment.transforms) == 2
    x = np.zeros((16, 28, 28, 1), np.float32)
    x[:, 4:24, 13:15] = 200.5 / 256  # a vertical bar, on its bin centres
    out = np.asarray(augment(jax.random.key(0), x))
    assert not np.allclose(out[:, :, :12], 0.0)  # rotated: the bar leaves its columns
    assert np.all((out > 0) & (out < 1))  # dequantised last: even the zero fill of the corners is noise
