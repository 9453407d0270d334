"""The moons attack experiment end to end on a tiny config: three runs, four attacks, the table and
figures; every run reloadable in a fresh process; occupied workdirs and bad overrides refused."""

import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from experiments.moons_attack import main as entry
from experiments.moons_attack import report, train
from experiments.moons_attack.configs import MODELS, MoonsAttackConfig, quick
from flowclass import runs
from flowclass.config import TrainConfig

pytestmark = pytest.mark.slow  # end-to-end: CI runs it; `-m 'not slow'` skips it


def _tiny(config: MoonsAttackConfig) -> MoonsAttackConfig:
    """Two epochs of small models, a 3 × 3 grid, 10 test start points, a few steps."""
    def small(run):
        return dataclasses.replace(run, model=dataclasses.replace(run.model, hidden=(16,), num_couplings=2),
                                   train=TrainConfig(epochs=2, batch_size=256))

    return dataclasses.replace(config, **{name: small(getattr(config, name)) for name in MODELS}, grid=3,
                               test_starts=10, max_steps=5, likelihood_steps=3)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("moons_attack") / "tiny"
    config = _tiny(quick.get_config())
    return config, workdir, train.train_and_evaluate(config, workdir, progress=False)


def test_train_and_evaluate_writes_the_summary_table_and_figures(finished):
    config, workdir, summary = finished
    saved = json.loads((workdir / runs.RESULTS_FILE).read_text())
    assert saved["tau"] == pytest.approx(summary["tau"])
    assert set(saved["models"]) == set(MODELS)
    for name in train.ATTACKS:
        for population in train.POPULATIONS:
            row = saved["attacks"][name][population]
            assert row["n"] == 0 or 0.0 <= row["success_rate"] <= 1.0  # a tiny grid may start nowhere on the manifold
        assert saved["attacks"][name]["test"]["n"] == config.test_starts
        assert len(saved["slides_points"][name]) == 8  # the slides' four points, towards each class
    assert saved["timing"]["confidence"]["trajectories"] == 8 + 2 * config.grid**2 + config.test_starts
    assert "| latent (unconditional flow + FNN) |" in (workdir / train.TABLE_FILE).read_text()
    for figure in report.FIGURES:
        assert (workdir / figure).stat().st_size > 10_000
    stored = json.loads((workdir / train.EXPERIMENT_FILE).read_text())
    assert stored["grid"] == config.grid and stored["fnn"]["train"]["epochs"] == 2


def test_every_run_reloads_in_a_fresh_process_with_its_own_predictions(finished):
    config, workdir, _ = finished
    code = textwrap.dedent(f"""
        import numpy as np, flowclass as fc
        from flowclass import runs
        for name in {list(MODELS)!r}:
            model, variables, config = fc.load_run({str(workdir)!r} + "/" + name)
            x = runs.load_splits(config).test[0]
            np.save({str(workdir)!r} + f"/{{name}}/fresh.npy", fc.predict_logits(model.apply, variables, x))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in MODELS:
        own = np.load(workdir / name / train.LOGITS_FILE)
        np.testing.assert_array_equal(np.load(workdir / name / "fresh.npy"), own)
        assert runs.read_config(workdir / name) == config.run(name)


def _no_training(*args, **kwargs):
    raise AssertionError("training started")


def test_a_second_invocation_is_refused_before_training(finished, monkeypatch):
    config, workdir, _ = finished
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    monkeypatch.setattr(runs, "fit", _no_training)
    with pytest.raises(runs.RunExistsError, match="--resume.*--overwrite"):
        train.train_and_evaluate(config, workdir, progress=False)
    with pytest.raises(ValueError, match="grid=3, this one grid=4"):
        train.train_and_evaluate(dataclasses.replace(config, grid=4), workdir, resume=True, progress=False)
    assert {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()} == before


def test_resume_reloads_the_finished_runs_and_measures_the_same(finished):
    config, workdir, summary = finished
    checkpoints = {p: p.stat().st_mtime_ns for p in workdir.rglob("checkpoints/*/*")}
    again = train.train_and_evaluate(config, workdir, resume=True, progress=False, figures=False)
    assert again["attacks"] == summary["attacks"] and again["tau"] == summary["tau"]
    assert {name: again["models"][name]["best_epoch"] for name in MODELS} == {
        name: summary["models"][name]["best_epoch"] for name in MODELS}
    assert {p: p.stat().st_mtime_ns for p in workdir.rglob("checkpoints/*/*")} == checkpoints  # nothing retrained


def test_a_run_left_in_a_new_workdir_is_refused_too(finished, tmp_path, monkeypatch):
    config, _, _ = finished
    (tmp_path / "fnn" / runs.CHECKPOINT_DIR).mkdir(parents=True)
    monkeypatch.setattr(runs, "fit", _no_training)
    with pytest.raises(runs.RunExistsError, match=r"holds another run \(fnn\)"):
        train.train_and_evaluate(config, tmp_path, progress=False)
    assert not (tmp_path / train.EXPERIMENT_FILE).exists()


@pytest.mark.parametrize(("override", "field"), [
    ("grid=1", "grid must be an integer >= 2"),
    ("fnn.train.epochs=0", "train.epochs"),
    ("unconditional_flow.model.num_classes=2", "unconditional_flow.model.means must be one mean per class"),
    ("flow_classifier.data.noise=0.2", "flow_classifier.data.noise must equal fnn.data.noise"),
    ("threshold=1.5", "threshold must be in (0, 1)"),
])
def test_bad_overrides_exit_naming_the_field(override, field, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runs, "fit", _no_training)
    with pytest.raises(SystemExit) as exit_info:
        entry.main(["--config", "quick", "--workdir", str(tmp_path / "w"), "--quiet", override])
    assert exit_info.value.code != 0
    assert field in capsys.readouterr().err


def test_configs_load_and_name_their_settings():
    from experiments.moons_attack.configs import default

    full, smoke = default.get_config(), quick.get_config()
    assert full.noise == smoke.noise == 0.1
    assert (full.grid, full.test_starts, full.max_steps, full.likelihood_steps) == (40, 1500, 500, 20)
    assert all(full.run(name).train.epochs == 100 for name in MODELS)
    assert smoke.unconditional_flow.model == full.unconditional_flow.model
    assert full.unconditional_flow.model.num_classes == 1
    assert full.flow_classifier.model.means == ((-4.0, 0.0), (4.0, 0.0))
