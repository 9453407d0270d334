from pathlib import Path

import numpy as np
import pytest

from flowclass.data import (
    bayes_labels,
    bayes_predict,
    default_cache_dir,
    make_moons,
    moons_class_log_density,
    moons_log_density,
    moons_splits,
)
from flowclass.data import moons as moons_module


def test_seed_split_matches_sklearn():
    from sklearn.datasets import make_moons as sk

    (xtr, ytr), (xte, yte) = moons_splits(0.25)
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



# --- bayes_labels: the exact Bayes labels and their on-disk cache ---------------------------

NODES = 64  # a coarse quadrature: these tests are about the cache, not the integral


@pytest.fixture
def counted(monkeypatch):
    """Counts the integrations bayes_labels runs (calls of the module's bayes_predict)."""
    calls = []

    def counting(x, noise, **kwargs):
        calls.append(len(x))
        return bayes_predict(x, noise, **kwargs)

    monkeypatch.setattr(moons_module, "bayes_predict", counting)
    return calls


def _cache_files(directory):
    return sorted(p.name for p in directory.iterdir())


def test_bayes_labels_equal_bayes_predict_without_a_cache(counted):
    x, _ = make_moons(300, 0.3, 1)
    labels = bayes_labels(x, 0.3, num_nodes=NODES)
    assert labels.dtype == np.int32 and labels.shape == (300,)
    np.testing.assert_array_equal(labels, bayes_predict(x, 0.3, num_nodes=NODES))
    assert counted == [300]


def test_cache_hit_returns_the_same_labels_without_integrating(tmp_path, counted):
    x, _ = make_moons(300, 0.3, 1)
    first = bayes_labels(x, 0.3, cache_dir=tmp_path / "cache", num_nodes=NODES)  # creates the directory
    assert len(counted) == 1
    [name] = _cache_files(tmp_path / "cache")
    assert name.startswith("moons_bayes_noise0.3_n300_") and name.endswith(".npy")
    again = bayes_labels(x, 0.3, cache_dir=tmp_path / "cache", num_nodes=NODES)
    assert len(counted) == 1  # read, not integrated
    assert again.dtype == np.int32 and again.shape == (300,)
    np.testing.assert_array_equal(again, first)


@pytest.mark.parametrize("change", ["points", "noise", "num_nodes", "dtype", "count"])
def test_cache_key_covers_points_noise_quadrature_and_dtype(tmp_path, counted, change):
    x, _ = make_moons(300, 0.3, 1)
    bayes_labels(x, 0.3, cache_dir=tmp_path, num_nodes=NODES)
    other = {
        "points": dict(x=np.concatenate([x[:1] + 0.5, x[1:]])),
        "noise": dict(noise=0.31),
        "num_nodes": dict(num_nodes=NODES + 1),
        "dtype": dict(x=x.astype(np.float64)),
        "count": dict(x=x[:299]),
    }[change]
    kwargs = {"x": x, "noise": 0.3, "num_nodes": NODES, **other}
    labels = bayes_labels(kwargs.pop("x"), kwargs.pop("noise"), cache_dir=tmp_path, **kwargs)
    assert len(counted) == 2 and len(_cache_files(tmp_path)) == 2  # a new entry, the old one kept
    x_used = other.get("x", x)
    np.testing.assert_array_equal(labels, bayes_predict(x_used, other.get("noise", 0.3),
                                                        num_nodes=other.get("num_nodes", NODES)))


def _corrupt(path, how):
    good = path.read_bytes()
    if how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "header_only":
        path.write_bytes(good[:128])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(good)))
    elif how == "wrong_dtype":
        np.save(path, np.load(path).astype(np.int64))
    elif how == "wrong_shape":
        np.save(path, np.load(path)[:-1])
    elif how == "not_labels":
        np.save(path, np.full(np.load(path).shape, 7, np.int32))
    elif how == "pickled_object":
        np.save(path, np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    elif how == "directory":
        path.unlink()
        path.mkdir()


@pytest.mark.parametrize(
    "how", ["truncated", "header_only", "empty", "garbage", "wrong_dtype", "wrong_shape", "not_labels",
            "pickled_object"]
)
def test_a_corrupt_or_mismatching_cache_file_is_recomputed_and_replaced(tmp_path, counted, how):
    x, _ = make_moons(300, 0.3, 1)
    expected = bayes_labels(x, 0.3, cache_dir=tmp_path, num_nodes=NODES)
    [name] = _cache_files(tmp_path)
    _corrupt(tmp_path / name, how)
    labels = bayes_labels(x, 0.3, cache_dir=tmp_path, num_nodes=NODES)
    assert len(counted) == 2  # never trusted: integrated again
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == np.int32
    assert _cache_files(tmp_path) == [name]  # replaced in place, no temporary file left
    np.testing.assert_array_equal(np.load(tmp_path / name), expected)
    bayes_labels(x, 0.3, cache_dir=tmp_path, num_nodes=NODES)
    assert len(counted) == 2  # and the replacement is read


def test_an_unwritable_cache_warns_and_still_returns_the_labels(tmp_path, counted):
    x, _ = make_moons(50, 0.3, 1)
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("a file where the cache directory should be")
    with pytest.warns(RuntimeWarning, match="could not cache"):
        labels = bayes_labels(x, 0.3, cache_dir=blocker, num_nodes=NODES)
    np.testing.assert_array_equal(labels, bayes_predict(x, 0.3, num_nodes=NODES))
    assert blocker.read_text().startswith("a file")


def test_a_cache_entry_that_is_a_directory_is_left_alone_with_a_warning(tmp_path, counted):
    x, _ = make_moons(50, 0.3, 1)
    bayes_labels(x, 0.3, cache_dir=tmp_path, num_nodes=NODES)
    [name] = _cache_files(tmp_path)
    _corrupt(tmp_path / name, "directory")
    with pytest.warns(RuntimeWarning, match="could not cache"):
        labels = bayes_labels(x, 0.3, cache_dir=tmp_path, num_nodes=NODES)
    np.testing.assert_array_equal(labels, bayes_predict(x, 0.3, num_nodes=NODES))
    assert _cache_files(tmp_path) == [name]  # no temporary file left next to it


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_leaves_no_temporary_file_and_no_entry(tmp_path, counted, monkeypatch, failure):
    x, _ = make_moons(50, 0.3, 1)

    def failing_replace(src, dst):
        raise failure

    monkeypatch.setattr(moons_module.os, "replace", failing_replace)
    if isinstance(failure, OSError):
        with pytest.warns(RuntimeWarning, match="disk full"):
            labels = bayes_labels(x, 0.3, cache_dir=tmp_path, num_nodes=NODES)
        np.testing.assert_array_equal(labels, bayes_predict(x, 0.3, num_nodes=NODES))
    else:
        with pytest.raises(KeyboardInterrupt):
            bayes_labels(x, 0.3, cache_dir=tmp_path, num_nodes=NODES)
    assert _cache_files(tmp_path) == []


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWCLASS_CACHE", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.setenv("FLOWCLASS_CACHE", "")
    assert default_cache_dir() == Path.home() / ".cache" / "flowclass"
    monkeypatch.delenv("FLOWCLASS_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "flowclass"
    assert not (tmp_path / "here").exists()  # nothing created


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((np.zeros((3, 3)), 0.3), {}, r"shape \(N, 2\)"),
        ((np.zeros((0, 2)), 0.3), {}, r"shape \(N, 2\)"),
        ((np.full((3, 2), np.nan), 0.3), {}, "finite"),
        ((np.zeros((3, 2)), 0.0), {}, "noise"),
        ((np.zeros((3, 2)), 0.3), {"num_nodes": 0}, "num_nodes"),
    ],
)
def test_bayes_labels_bad_inputs(tmp_path, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        bayes_labels(*args, cache_dir=tmp_path, **kwargs)
    assert _cache_files(tmp_path) == []
