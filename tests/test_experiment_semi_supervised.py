"""experiments/semi_supervised end to end on a tiny moons config with a consistency term: the
three runs, scores, figure, reload in a fresh process, and the workdir refusals."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.semi_supervised import main, train
from experiments.semi_supervised.configs import default
from flowclass.config import override
from flowclass.runs import RunExistsError, read_config

TINY = ["run.data.train_subset=1200", "run.data.val_size=200", "run.data.labelled_share=0.3",
        "run.train.batch_size=32", "run.train.epochs=1", "run.model.hidden=(16, 16)", "run.model.num_couplings=2",
        "fresh_size=2000"]
CONSISTENCY = ["run.loss.consistency_weight=1.0", "run.loss.consistency_noise=0.1",
               "run.loss.consistency_rampup_steps=20", "run.loss.consistency_start_step=5"]

pytestmark = pytest.mark.slow  # end-to-end: CI runs it; `-m 'not slow'` skips it

# In a fresh process: every stored run reloaded, its test split loaded again, its predictions
# compared with the ones the run wrote.
RELOAD = """
import sys, numpy as np, flowclass as fc

for workdir in sys.argv[1:]:
    model, variables, config = fc.load_run(workdir)
    x, y = fc.runs.load_splits(config).test
    predictions = fc.predict_logits(model.apply, variables, x, batch_size=config.train.eval_batch_size).argmax(-1)
    assert np.array_equal(predictions, np.load(workdir + "/test_predictions.npy")), workdir
print("same predictions")
"""


def test_moons_end_to_end_reloads_in_a_fresh_process(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWCLASS_CACHE", str(tmp_path / "cache"))  # the Bayes labels of the fresh points
    config = override(default.get_config(), [*TINY, *CONSISTENCY])
    workdir = tmp_path / "experiment"
    summary = train.train_and_evaluate(config, workdir, progress=False)
    cons, ssl, lab = (summary["models"][name] for name in ("consistency", "semi_supervised", "labelled_only"))
    # 10 labels x 42 + 990 unlabelled
    assert summary["rows"] == {"consistency": 1410, "semi_supervised": 1410, "labelled_only": 420}
    # the consistency run is the config's run; the other two have no consistency term
    assert read_config(workdir / "seed0" / "consistency") == config.run
    for name in ("semi_supervised", "labelled_only"):
        sub = read_config(workdir / "seed0" / name)
        assert sub.loss.consistency_weight == 0 and sub.loss.consistency_rampup_steps == 0, name
        assert sub.loss.consistency_start_step == 0, name
    assert read_config(workdir / "seed0" / "semi_supervised") == override(
        config.run, ["loss.consistency_weight=0.0", "loss.consistency_rampup_steps=0", "loss.consistency_start_step=0"])
    history = json.loads((workdir / "seed0" / "consistency" / "results.json").read_text())
    assert history["steps"] == cons["steps"] == ssl["steps"]
    # the baseline: the repeated labelled rows alone, at least as many steps on a schedule as long
    ssl_steps, lab_config = ssl["steps"], read_config(workdir / "seed0" / "labelled_only")
    assert ssl_steps == 1410 // 32 and lab_config.data.labelled_only and lab_config.optim.schedule_steps == ssl_steps
    assert ssl_steps <= lab["steps"] < ssl_steps + 420 // 32 and lab_config.train.epochs == lab["epochs_run"]
    for model in (cons, ssl, lab):
        assert 0.5 < model["fresh_acc"] <= 1 and model["fresh_acc_std"] == 0.0 and len(model["per_seed"]) == 1
        assert "val_marginal_nll" in model["per_seed"][0]
    assert summary["gain_points"] == pytest.approx({"consistency": 100 * (cons["fresh_acc"] - lab["fresh_acc"]),
                                                    "semi_supervised": 100 * (ssl["fresh_acc"] - lab["fresh_acc"])})
    assert 0.9 < summary["bayes_fresh_acc"] < 0.97
    assert json.loads((workdir / "results.json").read_text())["gain_points"] == summary["gain_points"]
    assert train.read_experiment(workdir) == config
    table = (workdir / train.TABLE_FILE).read_text()
    assert "| 0.25 |" in table and "| consistency | semi supervised | labelled only |" in table
    assert (workdir / "decision_boundaries.png").stat().st_size > 20_000

    runs = [str(workdir / "seed0" / name) for name in config.models]
    done = subprocess.run([sys.executable, "-c", RELOAD, *runs], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "same predictions" in done.stdout, done.stderr[-3000:]

    # a second invocation is refused before any training, and the first experiment is intact
    with pytest.raises(RunExistsError, match=r"holds another run \(experiment.json, seed0"):
        train.train_and_evaluate(config, workdir, progress=False)
    with pytest.raises(ValueError, match="fresh_size=2000, this one fresh_size=3000"):
        train.train_and_evaluate(override(config, ["fresh_size=3000"]), workdir, resume=True, progress=False)
    assert json.loads((workdir / "results.json").read_text())["gain_points"] == summary["gain_points"]
    assert train.read_experiment(workdir) == config


@pytest.mark.parametrize("override_, field", [
    ("num_seeds=0", "num_seeds"),
    ("run.data.labelled_only=True", "run.data.labelled_only"),
    ("run.train.select=accuracy", "train.select"),  # the validation labels are hidden
    ("run.data.num_labels=0", "data.num_labels"),
])
def test_main_refuses_a_bad_override_before_training(tmp_path, capsys, monkeypatch, override_, field):
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))  # main sets XLA flags: undone after the test
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--config", "default", "--workdir", str(tmp_path / "experiment"), override_])
    assert exit_info.value.code != 0
    assert field in capsys.readouterr().err
    assert not (tmp_path / "experiment" / train.EXPERIMENT_FILE).exists()


def test_a_batch_larger_than_the_labelled_rows_is_refused_before_training(tmp_path):
    config = override(default.get_config(), [*TINY, "run.train.batch_size=512"])
    with pytest.raises(ValueError, match="run.train.batch_size=512"):
        train.train_and_evaluate(config, tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_assignment_figure_is_drawn_over_optimiser_steps(tmp_path):
    from experiments.semi_supervised.configs import mnist_1000labels

    config = mnist_1000labels.get_config()
    assert config.models == ("consistency", "semi_supervised", "labelled_only")
    assert train.assignment_diagnostic(default.get_config().run) is None  # moons: no hidden-label diagnostic

    def history(epochs):
        shares = {f"val_assigned_share_{c}": [0.1] * epochs for c in range(10)}
        return {"val_hidden_accuracy": list(np.linspace(0.9, 0.95, epochs)), **shares}

    histories = {"consistency": (history(2), 843), "semi_supervised": (history(2), 843),
                 "labelled_only": (history(5), 421)}
    train.plot_assignment(config, histories, tmp_path / "assignment.png")
    assert (tmp_path / "assignment.png").stat().st_size > 20_000
