"""The robustness experiment end to end: a tiny MNIST-like flow and CNN trained as runs on IDX files,
then measured from their workdirs (robust accuracy, sanity checks, detection, calibration, OOD)."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import flowclass as fc
from experiments.robustness import main as entry
from experiments.robustness import report, train
from experiments.robustness.configs import RobustnessConfig, default, epochs12_cnn
from flowclass import runs
from flowclass.data import write_idx

pytestmark = pytest.mark.slow  # end-to-end: CI runs it; `-m 'not slow'` skips it

SIDE, CLASSES = 12, 3


def _write_images(directory, seed, bars):
    """Train 96 / test 32 images of SIDE × SIDE pixels: class c is a bright bar at column (or row) 4c."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    for split, n in (("train", 96), ("t10k", 32)):
        y = rng.integers(0, CLASSES, n)
        images = rng.integers(0, 60, (n, SIDE, SIDE))
        for i, c in enumerate(y):
            if bars == "columns":
                images[i, :, 4 * c : 4 * c + 4] += 180
            else:
                images[i, 4 * c : 4 * c + 4, :] += 180
        write_idx(directory / f"{split}-images-idx3-ubyte", np.clip(images, 0, 255).astype(np.uint8))
        write_idx(directory / f"{split}-labels-idx1-ubyte", y.astype(np.uint8))
    return directory


def _run_config(kind):
    flow = kind == "image_flow"
    return fc.RunConfig(
        model=fc.ModelConfig(kind=kind, preset="fast", input_shape=(SIDE, SIDE, 1), num_classes=CLASSES),
        loss=(fc.LossConfig(kind="flow", cross_entropy_weight=1.0, nll_unit="bits_per_dim", num_bins=256) if flow
              else fc.LossConfig(kind="cross_entropy")),
        data=fc.DataConfig(dataset="mnist", val_size=16, shift=1),
        train=fc.TrainConfig(epochs=1, batch_size=16, eval_batch_size=32, select="accuracy"))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("robustness")
    mnist = _write_images(root / "mnist", 0, "columns")
    fashion = _write_images(root / "fashion", 1, "rows")
    trained = {kind: runs.train(_run_config(kind), root / kind, data_dir=mnist, progress=False)
               for kind in ("image_flow", "cnn")}
    config = RobustnessConfig(runs=(str(root / "image_flow"), str(root / "cnn")), eps=(0.02, 0.3), num_attack=16,
                              steps=2, restarts=1, sanity_size=16, queries=4, batch_size=16,
                              fashion_data_dir=str(fashion))
    summary = train.train_and_evaluate(config, root / "eval", data_dir=mnist, progress=False)
    return root, mnist, trained, config, summary


def test_train_and_evaluate_measures_every_section(evaluated):
    root, _, trained, config, summary = evaluated
    saved = json.loads((root / "eval" / runs.RESULTS_FILE).read_text())
    assert saved["images_attacked"] == 16 and set(saved["robust_accuracy"]) == {"image_flow", "cnn"}
    for rows in saved["robust_accuracy"].values():
        assert set(rows) == {"clean", "fgsm 0.02", "pgd 0.02", "fgsm 0.3", "pgd 0.3"}
        assert all(0.0 <= v <= 1.0 for v in rows.values())
    assert set(saved["sanity_checks"]["cnn"]["checks"]) >= {"eps_1_breaks_all", "gradient_free_no_better"}
    detection = saved["detection"]
    assert {"image_flow ε=0.3", "cnn ε=0.3", "adaptive ε=0.02", "adaptive ε=0.3"} <= set(detection)
    assert 0.0 <= detection["adaptive ε=0.3"]["undetected_success"] <= 1.0
    assert saved["calibration"]["cnn"]["temperature"] > 0
    assert set(saved["ood"]) == {"MNIST → Fashion-MNIST"}
    assert "CNN 1 - max softmax" in saved["ood"]["MNIST → Fashion-MNIST"]
    assert "| cnn |" in (root / "eval" / train.TABLE_FILE).read_text()
    for figure in report.FIGURES:
        assert (root / "eval" / figure).stat().st_size > 5_000
    assert json.loads((root / "eval" / train.EXPERIMENT_FILE).read_text())["runs"] == list(config.runs)


def test_bits_per_dim_are_the_libraries(evaluated):
    """Class-conditional bits/dim from the model's method, the mixture's from the loss metric: both
    equal −log p / (D ln 2) + log2(256) of the 8-bit images."""
    root, mnist, trained, _, summary = evaluated
    run = trained["image_flow"]
    state, (x, y) = run.result.state, run.splits.test
    dims = SIDE * SIDE
    log_p = fc.predict_logits(state.apply_fn, state.variables, x, method="marginal_log_prob")
    flow = train.load(root / "image_flow", mnist)
    np.testing.assert_allclose(train.marginal_bits_per_dim(flow, x, batch_size=16),
                               -log_p / (dims * math.log(2)) + 8, rtol=1e-5)
    conditional = state.apply_fn(state.variables, x, y, method="log_prob")
    assert summary["runs"]["image_flow"]["test_bits_per_dim"] == pytest.approx(
        float(np.mean(-np.asarray(conditional) / (dims * math.log(2)) + 8)), rel=1e-5)
    assert summary["runs"]["cnn"]["test_acc"] == pytest.approx(
        float(np.mean(np.argmax(fc.predict_logits(trained["cnn"].result.state.apply_fn,
                                                  trained["cnn"].result.state.variables, trained["cnn"].splits.test[0]),
                                -1) == y)))


def test_the_runs_reload_in_a_fresh_process_with_their_own_predictions(evaluated, tmp_path):
    root, mnist, trained, _, _ = evaluated
    code = textwrap.dedent(f"""
        import numpy as np, flowclass as fc
        from flowclass import runs
        for kind in ("image_flow", "cnn"):
            model, variables, config = fc.load_run({str(root)!r} + "/" + kind)
            x = runs.load_splits(config, data_dir={str(mnist)!r}).test[0]
            np.save({str(tmp_path)!r} + f"/{{kind}}.npy", fc.predict_logits(model.apply, variables, x))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for kind, run in trained.items():
        state = run.result.state
        own = fc.predict_logits(state.apply_fn, state.variables, run.splits.test[0])
        np.testing.assert_array_equal(np.load(tmp_path / f"{kind}.npy"), own)


def test_a_second_evaluation_into_the_workdir_is_refused(evaluated):
    root, mnist, _, config, _ = evaluated
    before = {p: p.read_bytes() for p in (root / "eval").iterdir()}
    with pytest.raises(runs.RunExistsError, match="--resume.*--overwrite"):
        train.train_and_evaluate(config, root / "eval", data_dir=mnist, progress=False)
    with pytest.raises(ValueError, match="num_attack=16, this one num_attack=8"):
        train.train_and_evaluate(dataclasses.replace(config, num_attack=8), root / "eval", data_dir=mnist,
                                 resume=True, progress=False)
    assert {p: p.read_bytes() for p in (root / "eval").iterdir()} == before


def test_runs_the_experiment_cannot_measure_are_refused_naming_them(evaluated):
    root, *_ = evaluated
    flow, cnn = str(root / "image_flow"), str(root / "cnn")
    cases = [
        ((cnn,), r"runs must include an image_flow run on mnist"),
        ((flow, flow + "2"), r"runs\[1\] = .* holds no finished run"),
        ((flow, cnn, flow + "/.."), r"runs\[2\] = .* holds no finished run"),
    ]
    for paths, message in cases:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            train.check_runs(RobustnessConfig(runs=paths))


@pytest.mark.parametrize(("override", "message"), [
    ("eps=(0.0,)", "eps must be a non-empty tuple in (0, 1]"),
    ("runs=()", "runs must be a non-empty tuple of workdirs"),
    ("num_attack=0", "num_attack must be an integer >= 1"),
    ("sanity_eps=2.0", "sanity_eps must be in (0, 1] or None"),
    ("steps=two", "steps must be an integer"),
])
def test_bad_overrides_exit_naming_the_field(override, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))  # main sets the host devices
    with pytest.raises(SystemExit) as exit_info:
        entry.main(["--workdir", str(tmp_path / "w"), "--host-devices", "1", override])
    assert exit_info.value.code != 0
    assert message in capsys.readouterr().err


def test_a_config_whose_runs_are_missing_exits_naming_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"runs\[0\] = 'results/mnist/epochs12' holds no finished run"):
        entry.main(["--config", "epochs12_cnn", "--workdir", str(tmp_path / "w"), "--host-devices", "1"])
    assert not (tmp_path / "w" / train.EXPERIMENT_FILE).exists()


def test_the_reported_config_keeps_its_measured_settings():
    reported, base = epochs12_cnn.get_config(), default.get_config()
    assert reported.eps == (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
    assert (reported.num_attack, reported.steps, reported.restarts, reported.sanity_size, reported.queries) == (
        1000, 40, 3, 200, 1000)
    assert reported.runs[:2] == ("results/mnist/epochs12", "results/mnist/cnn")
    assert base.eps == (0.05, 0.1, 0.2, 0.3)
