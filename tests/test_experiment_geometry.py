"""The class-mean geometry experiment (experiments/geometry/) end to end on a tiny sweep."""

import json
import subprocess
import sys

import numpy as np
import pytest

from experiments.geometry import main as geometry_main
from experiments.geometry import train
from experiments.geometry.configs import GeometryConfig, default
from flowclass.config import from_dict, override
from flowclass.runs import RESULTS_FILE, RunExistsError

pytestmark = pytest.mark.slow  # end-to-end: CI runs it; `-m 'not slow'` skips it

TINY = ["run.train.epochs=2", "run.train.batch_size=100", "run.data.train_subset=600", "run.data.val_size=100",
        "run.data.test_subset=300", "distances=(1.0, 4.0)", "directions=('diagonal',)", "seeds=(0,)",
        "fresh_size=2000"]


def test_train_and_evaluate_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWCLASS_CACHE", str(tmp_path / "cache"))
    config, workdir = override(default.get_config(), TINY), tmp_path / "run"
    summary = train.train_and_evaluate(config, workdir, progress=False)

    assert json.loads((workdir / RESULTS_FILE).read_text()) == json.loads(json.dumps(summary))
    assert from_dict(GeometryConfig, json.loads((workdir / train.EXPERIMENT_FILE).read_text())) == config
    assert [(r["direction"], r["distance"], r["seed"]) for r in summary["runs"]] == [("diagonal", 1.0, 0),
                                                                                      ("diagonal", 4.0, 0)]
    assert [(m["direction"], m["distance"]) for m in summary["mean"]] == [("diagonal", 1.0), ("diagonal", 4.0)]
    for row in summary["runs"]:
        assert 0.5 < row["fresh_acc"] <= 1 and np.isfinite(row["test_nll"]) and np.isfinite(row["test_marginal_nll"])
    assert summary["true_test_nll"] < min(r["test_nll"] for r in summary["runs"])  # nothing beats the true density
    assert "| diagonal | 4 |" in (workdir / train.TABLE_FILE).read_text()
    assert (workdir / train.FIGURE).stat().st_size > 10_000

    # each run's means are its placement's, and it reloads in a fresh process predicting as it did
    script = f"""
import math, numpy as np, flowclass as fc
from flowclass import runs
for d in (1, 4):
    workdir = {str(workdir)!r} + f"/diagonal_d{{d}}/seed0"
    model, variables, config = fc.load_run(workdir)
    means = np.asarray(model.apply(variables, method="class_means"))
    assert np.allclose(means[1], [d / 2 * math.sqrt(0.5)] * 2, atol=1e-6) and np.allclose(means[0], -means[1]), means
    x_test, _ = runs.load_splits(config).test
    predictions = np.argmax(fc.predict_logits(model.apply, variables, x_test), -1)
    assert (predictions == np.load(workdir + "/test_predictions.npy")).all(), d
print("reloaded")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "reloaded" in done.stdout, done.stderr[-2000:]

    # a second invocation is refused before training; a resume reloads the finished runs
    with pytest.raises(RunExistsError, match="--resume.*--overwrite"):
        train.train_and_evaluate(config, workdir, progress=False)
    with pytest.raises(ValueError, match="distances="):
        train.train_and_evaluate(override(config, ["distances=(2.0,)"]), workdir, resume=True, progress=False)
    again = train.train_and_evaluate(config, workdir, resume=True, progress=False, figures=False)
    assert again["runs"] == summary["runs"]
    train.prepare_workdir(override(config, ["directions=('x',)"]), workdir, overwrite=True)
    assert sorted(p.name for p in workdir.glob("*_d*")) == ["x_d1", "x_d4"]


@pytest.mark.parametrize("override_, field", [
    ("distances=(0.0, 1.0)", "distances"),
    ("directions=('z',)", "directions"),
    ("seeds=(1, 1)", "seeds"),
    ("run.seed=1", "run.seed"),
    ("run.model.num_classes=3", "run.model.means must be one mean per class"),  # refused by ModelConfig first
    ("run.optim.learning_rate=0", "optim.learning_rate must be > 0"),
    ("fresh_size=0", "fresh_size"),
])
def test_main_refuses_bad_overrides_naming_the_field(override_, field, tmp_path, capsys):
    with pytest.raises(SystemExit):
        geometry_main.main(["--config", "default", "--workdir", str(tmp_path / "run"), override_])
    assert field in capsys.readouterr().err
    assert not (tmp_path / "run" / train.EXPERIMENT_FILE).exists()


def test_default_config_is_the_readme_sweep():
    config = default.get_config()
    assert (config.noise, config.run.train.epochs, config.seeds) == (0.25, 40, (0, 1, 2))
    assert len(train.placements(config)) == 54
    assert config.means("x", 8.0) == ((-4.0, -0.0), (4.0, 0.0))  # the slides' placement
