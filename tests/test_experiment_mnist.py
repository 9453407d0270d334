"""experiments/mnist end to end on tiny IDX files: train, score, figures, reload in a fresh process."""

import json
import subprocess
import sys

import numpy as np
import pytest

from experiments.mnist import main, train
from experiments.mnist.configs import cnn, default, onehot_shift_marginal_seed2
from flowclass.config import override
from flowclass.data import write_idx
from flowclass.invariance import selected_rule
from flowclass.runs import RunExistsError

TINY = ["data.val_size=64", "train.batch_size=32", "train.eval_batch_size=64", "train.time_budget_s=None"]

pytestmark = pytest.mark.slow  # end-to-end: CI runs it; `-m 'not slow'` skips it

# In a fresh process: the stored run reloaded, its test split loaded again, the selected rule's
# predictions compared with the ones the run wrote.
RELOAD = """
import sys, json, numpy as np, flowclass as fc
from flowclass.invariance import rule_logits

workdir, data_dir = sys.argv[1:]
model, variables, config = fc.load_run(workdir)
x, y = fc.runs.load_splits(config, data_dir=data_dir).test
rule = json.load(open(workdir + "/results.json"))["rule"]
batch = config.train.eval_batch_size
if config.model.is_flow:
    logits = rule_logits(model.apply, variables, x, rules=(rule,), batch_size=batch)[rule]
else:
    logits = fc.predict_logits(model.apply, variables, x, batch_size=batch)
expected = np.load(workdir + "/test_predictions.npy")
assert np.array_equal(logits.argmax(-1), expected), (logits.argmax(-1), expected)
print("same predictions", len(expected))
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """200 training and 64 test images of random pixels and labels, as MNIST's IDX files."""
    directory = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 200), ("t10k", 64)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    return directory


def _reloads_with_the_same_predictions(workdir, data_dir):
    done = subprocess.run([sys.executable, "-c", RELOAD, str(workdir), str(data_dir)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "same predictions" in done.stdout


def test_fast_flow_end_to_end_reloads_in_a_fresh_process(tmp_path, data_dir):
    config = override(default.get_config(), [*TINY, "train.epochs=1"])
    workdir = tmp_path / "run"
    summary = train.train_and_evaluate(config, workdir, data_dir=data_dir, progress=False)
    assert summary["epochs_run"] == 1 and summary["rule"] == "plain" and summary["model"] == "image_flow"
    assert 8 < summary["test_bits_per_dim"] < 16  # random pixels: about 8 bits/dim plus what is left to learn
    stored = json.loads((workdir / "results.json").read_text())
    assert stored["test_acc"] == summary["test_acc"] and stored["test_bits_per_dim"] == summary["test_bits_per_dim"]
    predictions = np.load(workdir / train.PREDICTIONS_FILE)
    assert predictions.shape == (64,)
    for figure in train.FIGURES:
        assert (workdir / figure).stat().st_size > 5_000, figure
    assert "| `tiny` | mnist | image_flow fast |" in train.table(summary, "tiny")
    _reloads_with_the_same_predictions(workdir, data_dir)
    with pytest.raises(RunExistsError, match="holds another run"):  # refused before any training
        train.train_and_evaluate(config, workdir, data_dir=data_dir, progress=False)
    assert json.loads((workdir / "results.json").read_text()) == stored


def test_decision_rule_selected_on_validation_and_reloaded(tmp_path, data_dir):
    config = override(onehot_shift_marginal_seed2.get_config(), [*TINY, "train.epochs=4"])
    workdir = tmp_path / "run"
    summary = train.train_and_evaluate(config, workdir, data_dir=data_dir, progress=False, figures=False)
    h = {name: np.asarray(values) for name, values in summary["history"].items()}
    assert np.isnan(h["val_shift_marginal_accuracy"][0])  # the first half of the schedule: the plain rule only
    assert not np.any(np.isnan(h["val_shift_marginal_accuracy"][1:]))
    best = summary["best_epoch"] - 1
    assert h["val_best_rule_accuracy"][best] == h["val_best_rule_accuracy"].max()
    assert summary["rule"] == selected_rule({name: values[best] for name, values in h.items()})
    assert set(summary["test_acc_by_rule"]) == {"plain", "shift_marginal"}
    assert summary["test_acc"] == summary["test_acc_by_rule"][summary["rule"]]
    _reloads_with_the_same_predictions(workdir, data_dir)


def test_cnn_end_to_end_reloads_in_a_fresh_process(tmp_path, data_dir):
    config = override(cnn.get_config(), [*TINY, "train.epochs=1"])
    summary = train.train_and_evaluate(config, tmp_path, data_dir=data_dir, progress=False)
    assert summary["model"] == "cnn" and summary["test_bits_per_dim"] is None and summary["preset"] is None
    assert (tmp_path / "confusion_matrix.png").is_file() and not (tmp_path / "samples.png").exists()
    _reloads_with_the_same_predictions(tmp_path, data_dir)


@pytest.mark.parametrize("override_, field", [
    ("train.epochs=0", "train.epochs"),
    ("model.kind=fnn", "model.kind"),  # RunConfig: an fnn does not fit MNIST
    ("loss.cross_entropy_weight=-1", "loss.cross_entropy_weight"),
    ("decision_rules=('plain', 'shift_marginal')", "train.select"),  # the experiment's own check
])
def test_main_refuses_a_bad_override_before_training(tmp_path, monkeypatch, capsys, override_, field):
    monkeypatch.setenv("XLA_FLAGS", "")  # main sets XLA flags: keep them out of later tests' subprocesses
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--config", "default", "--workdir", str(tmp_path / "run"), "--host-devices", "1", override_])
    assert exit_info.value.code != 0
    assert field in capsys.readouterr().err + str(exit_info.value.code)
    assert not (tmp_path / "run" / "config.json").exists()
