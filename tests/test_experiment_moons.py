"""The two-moons experiment (experiments/moons/) end to end on a tiny config, and its legacy entry."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.moons import main as moons_main
from experiments.moons import train
from experiments.moons.configs import MoonsConfig, default, noise0p1, noise0p5
from flowclass.config import from_dict, override
from flowclass.runs import RESULTS_FILE, RunExistsError

pytestmark = pytest.mark.slow  # end-to-end: CI runs it; `-m 'not slow'` skips it

ROOT = Path(__file__).parents[1]
TINY = ["train.epochs=3", "train.batch_size=100", "data.train_subset=600", "data.val_size=100",
        "data.test_subset=300"]


def tiny_config(*extra: str) -> MoonsConfig:
    return override(default.get_config(), [f"{m}.{a}" for m in ("flow", "fnn") for a in TINY]
                    + ["seeds=(3,)", "fresh_size=2000", *extra])


def test_train_and_evaluate_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWCLASS_CACHE", str(tmp_path / "cache"))
    config, workdir = tiny_config(), tmp_path / "run"
    summary = train.train_and_evaluate(config, workdir, progress=False)

    assert json.loads((workdir / RESULTS_FILE).read_text()) == json.loads(json.dumps(summary))
    assert from_dict(MoonsConfig, json.loads((workdir / train.EXPERIMENT_FILE).read_text())) == config
    assert summary["seeds"] == [3] and (summary["n_train"], summary["n_val"], summary["n_test"]) == (500, 100, 300)
    assert summary["flow"]["slides_reported_test_acc"] is None  # the slides' numbers are for their full split
    for name in train.MODELS:
        m = summary[name]
        assert 0.5 < m["test_acc"] <= 1 and 0.5 < m["fresh_acc"] <= 1 and m["train_samples_per_s"] > 0
        assert m["gap_to_bayes_fresh_points"] == pytest.approx(100 * (summary["bayes"]["fresh_acc"] - m["fresh_acc"]))
        assert m["per_seed"][0]["seed"] == 3
        assert json.loads((workdir / "seed3" / name / RESULTS_FILE).read_text()) == m["per_seed"][0]
    assert 0.75 < summary["bayes"]["fresh_acc"] < 0.9
    for figure in train.FIGURES:
        assert (workdir / figure).stat().st_size > 10_000
    assert len(list((tmp_path / "cache").glob("moons_bayes_noise0.5_*.npy"))) == 2  # test and fresh points

    # each run reloads in a fresh process and predicts as it did
    script = f"""
import json, numpy as np, flowclass as fc
from flowclass import runs
for name in ("flow", "fnn"):
    workdir = {str(workdir)!r} + "/seed3/" + name
    model, variables, config = fc.load_run(workdir)
    x_test, _ = runs.load_splits(config).test
    predictions = np.argmax(fc.predict_logits(model.apply, variables, x_test), -1)
    assert config.seed == 3, config.seed
    assert (predictions == np.load(workdir + "/test_predictions.npy")).all(), name
print("reloaded")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "reloaded" in done.stdout, done.stderr[-2000:]

    # a second invocation is refused before training; nothing of the first is lost
    before = (workdir / RESULTS_FILE).read_text()
    with pytest.raises(RunExistsError, match="--resume.*--overwrite"):
        train.train_and_evaluate(config, workdir, progress=False)
    with pytest.raises(ValueError, match="flow.train.epochs=3, this one flow.train.epochs=4"):
        train.train_and_evaluate(tiny_config("flow.train.epochs=4"), workdir, resume=True, progress=False)
    assert (workdir / RESULTS_FILE).read_text() == before
    assert (workdir / "seed3" / "flow" / "checkpoints").is_dir()

    # resuming a finished experiment reloads its runs instead of training them again
    again = train.train_and_evaluate(config, workdir, resume=True, progress=False, figures=False)
    for name in train.MODELS:
        assert again[name]["per_seed"] == summary[name]["per_seed"]

    # overwriting deletes the stored experiment's runs (checked before training starts)
    workdirs = train.prepare_workdir(tiny_config("seeds=(4,)"), workdir, overwrite=True)
    assert sorted(p.name for p in workdir.glob("seed*")) == ["seed4"] and list(workdirs) == [("flow", 4), ("fnn", 4)]
    assert not (workdir / RESULTS_FILE).exists() and not (workdir / train.FIGURES[0]).exists()


@pytest.mark.parametrize("override_, field", [
    ("flow.train.epochs=0", "train.epochs must be"),
    ("fnn.data.noise=0.25", "fnn.data.noise"),
    ("flow.seed=2", "flow.seed"),
    ("seeds=()", "seeds"),
    ("fresh_size=0", "fresh_size"),
    ("flow.model.kind='fnn'", "loss.kind 'flow' does not fit model.kind 'fnn'"),
    ("train.epochs=3", "train"),
])
def test_main_refuses_bad_overrides_naming_the_field(override_, field, tmp_path, capsys):
    with pytest.raises(SystemExit):
        moons_main.main(["--config", "default", "--workdir", str(tmp_path / "run"), override_])
    assert field in capsys.readouterr().err
    assert not (tmp_path / "run" / train.EXPERIMENT_FILE).exists()


def test_configs_are_the_readme_rows():
    assert default.get_config().noise == 0.5 and default.get_config().seeds == (0,)
    assert noise0p1.get_config().noise == 0.1 and noise0p5.get_config().seeds == (0, 1, 2)
    assert noise0p5.get_config().flow.model.means == ((-4.0, 0.0), (4.0, 0.0))
    assert noise0p5.get_config().fnn.train == noise0p5.get_config().flow.train


def test_experiment_script_end_to_end(tmp_path):
    """The command users were given: python experiments/moons.py --noise N (a thin entry over the package)."""
    out = tmp_path / "out"
    env = {**os.environ, "FLOWCLASS_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, str(ROOT / "experiments" / "moons.py"), "--noise", "0.1", "--epochs", "5",
               "--fresh-size", "5000", "--out", str(out), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "moons, noise 0.1, 1 seed(s), 5 epochs" in done.stdout and "Bayes" in done.stdout
    result = json.loads((out / "results.json").read_text())
    for key in ("noise", "wall_s"):
        assert key in result
    for name in ("flow", "fnn"):
        assert result[name]["test_acc"] > 0.97 and result[name]["fresh_acc"] > 0.97
        assert result[name]["train_samples_per_s"] > 0
    assert result["bayes"]["fresh_acc"] > 0.99
    assert (out / "decision_boundaries.png").stat().st_size > 10_000
    assert (out / "latent_space.png").stat().st_size > 10_000
    assert list((tmp_path / "cache").glob("moons_bayes_*.npy"))
    assert np.load(out / "seed0" / "flow" / "test_predictions.npy").shape == (1500,)

    # a bad flag is refused, naming it
    bad = subprocess.run([*command, "--noise", "0"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=env)
    assert bad.returncode == 2 and "--noise must be > 0" in bad.stderr
