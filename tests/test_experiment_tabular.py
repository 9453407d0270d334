"""The tabular benchmark end to end on a tiny config: every task, the tables and figure, resume
skipping finished tasks, occupied workdirs refused."""

import dataclasses
import json

import pytest

from experiments.tabular import main as entry
from experiments.tabular import train
from experiments.tabular.configs import TabularConfig, quick
from flowclass import runs

pytestmark = pytest.mark.slow  # end-to-end: CI runs it; `-m 'not slow'` skips it


def _tiny() -> TabularConfig:
    return dataclasses.replace(quick.get_config(), datasets=("iris",), flow_steps=40, timing_rows=300)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tabular") / "tiny"
    config = _tiny()
    return config, workdir, train.train_and_evaluate(config, workdir, progress=False)


def test_every_task_writes_its_results_table_and_figure(finished):
    config, workdir, summary = finished
    saved = json.loads((workdir / runs.RESULTS_FILE).read_text())["summary"]
    iris = saved["classification"]["iris"]
    assert set(iris) == set(train.classifiers(config))
    for model, row in iris.items():
        assert 0.5 < row["accuracy"] <= 1.0, model  # every model learns iris, even this briefly
        assert row["log_loss"] > 0 and 0 <= row["ece"] <= 1
    per_fold = json.loads((workdir / "results" / "classification.json").read_text())
    assert len(per_fold["iris"][train.FLOW]["accuracy"]) == config.folds
    assert all(p["input_noise"] in (0.1, 0.3) for p in per_fold["iris"][train.FLOW]["best_params"])
    assert set(saved["novelty_auroc"]["iris"]) == set(train.detectors(config, 2))
    assert all(0 <= v <= 1 for v in saved["novelty_auroc"]["iris"].values())
    assert set(saved["few_labels_accuracy"]["moons"]["5"]) == set(train.few_label_models(config))
    assert saved["timing"][train.FLOW]["rows"] == 300
    table = (workdir / train.TABLE_FILE).read_text()
    for title in ("Classification — accuracy", "Novelty detection", "Few labels", "Wall time"):
        assert title in table
    assert (workdir / train.FIGURE_FILE).stat().st_size > 10_000


def test_resume_reads_finished_tasks_and_a_new_config_is_refused(finished, capsys):
    config, workdir, _ = finished
    mtime = (workdir / "results" / "novelty.json").stat().st_mtime_ns
    train.train_and_evaluate(config, workdir, resume=True, progress=False, figures=False)
    assert (workdir / "results" / "novelty.json").stat().st_mtime_ns == mtime  # read, not rerun
    with pytest.raises(runs.RunExistsError):
        train.train_and_evaluate(dataclasses.replace(config, seed=1), workdir, progress=False)
    with pytest.raises(SystemExit, match="cannot resume"):
        entry.main(["--config", "quick", "--workdir", str(workdir), "--resume", "seed=1"])


def test_bad_config_fields_are_named():
    with pytest.raises(ValueError, match="novelty_datasets"):
        TabularConfig(novelty_datasets=("moons",))
    with pytest.raises(ValueError, match="folds"):
        TabularConfig(folds=1)


def test_a_task_cut_short_continues_after_the_last_saved_key():
    saved, ran = [], []

    def work(key):
        ran.append(key)
        if key == "c":
            raise KeyboardInterrupt  # killed while working on "c"
        return key.upper()

    with pytest.raises(KeyboardInterrupt):
        train._each(["a", "b", "c"], "t", False, {}, lambda out: saved.append(dict(out)), work)
    assert saved[-1] == {"a": "A", "b": "B"}  # what a killed run leaves in <task>.partial.json
    ran.clear()
    out = train._each(["a", "b", "c"], "t", False, saved[-1], lambda out: None, lambda key: key * 2)
    assert out == {"a": "A", "b": "B", "c": "cc"} and list(out) == ["a", "b", "c"]
