import json

import numpy as np
import pytest

from flowclass.data import bayes_predict, make_moons, moons_class_log_density, moons_log_density, seed_moons


def test_seed_split_matches_sklearn():
    from sklearn.datasets import make_moons as sk

    (xtr, ytr), (xte, yte) = seed_moons(0.25)
    x, y = sk(10000, noise=0.25, random_state=170)
    assert xtr.shape == (8500, 2) and xte.shape == (1500, 2)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int32
    np.testing.assert_allclose(xte, x[8500:], rtol=1e-6)
    np.testing.assert_array_equal(ytr, y[:8500])


@pytest.mark.parametrize("noise", [0.1, 0.5])
def test_true_density_integrates_to_one(noise):
    lo, hi, n = -1.0 - 6 * noise, 2.0 + 6 * noise, 400
    g = np.linspace(lo, hi, n)
    xx, yy = np.meshgrid(g, g)
    pts = np.stack([xx.ravel(), yy.ravel() - 0.25], -1)
    cell = (g[1] - g[0]) ** 2
    per_class = np.exp(moons_class_log_density(pts, noise))
    np.testing.assert_allclose(per_class.sum(0) * cell, [1.0, 1.0], atol=2e-3)


def test_quadrature_has_converged():
    x, _ = make_moons(500, 0.1, 3)
    np.testing.assert_allclose(
        moons_class_log_density(x, 0.1), moons_class_log_density(x, 0.1, num_nodes=16384), atol=1e-3
    )


def test_density_is_higher_on_data_than_off_it():
    x, _ = make_moons(1000, 0.1, 0)
    on = moons_log_density(x, 0.1)
    off = moons_log_density(np.array([[0.5, 2.0], [-1.5, -1.0]]), 0.1)
    assert np.median(on) > off.max() + 10


def test_bayes_classifier_beats_every_threshold_rule_on_fresh_data():
    x, y = make_moons(20000, 0.5, 11)
    bayes = np.mean(bayes_predict(x, 0.5) == y)
    # a simple competitor: the best linear boundary found by logistic regression
    from sklearn.linear_model import LogisticRegression

    linear = LogisticRegression().fit(x, y).score(x, y)
    assert 0.80 < bayes < 0.86 and bayes > linear


def test_bad_inputs():
    with pytest.raises(ValueError, match="noise > 0"):
        moons_class_log_density(np.zeros((2, 2)), 0.0)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        moons_class_log_density(np.zeros((2, 3)), 0.1)


def test_experiment_script_end_to_end(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("FLOWCLASS_CACHE", str(tmp_path / "cache"))
    path = Path(__file__).parents[1] / "experiments" / "moons.py"
    spec = importlib.util.spec_from_file_location("moons_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    module.main(["--noise", "0.1", "--epochs", "5", "--fresh-size", "5000", "--out", str(out), "--quiet"])
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
