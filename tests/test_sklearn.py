"""flowclass.sklearn.RealNVPClassifier: scikit-learn's own estimator checks, and what users do with it."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, make_blobs, make_moons
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import check_classifiers_classes, parametrize_with_checks

from flowclass.sklearn import RealNVPClassifier

# Small and short, so that each of scikit-learn's ~50 checks fits in a second or two.
SMALL = dict(num_couplings=2, hidden=(16, 16), max_steps=150, random_state=0)

EXPECTED_FAILED_CHECKS = {
    "check_classifiers_classes": (
        "labels -1 and 1: an integer label -1 marks an unlabelled row (sklearn.semi_supervised's convention), "
        "so only one class is labelled and fit refuses; with unlabelled_label=None the check passes "
        "(test_minus_one_is_a_class_without_unlabelled_label)"),
}


@parametrize_with_checks([RealNVPClassifier(**SMALL)], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_minus_one_is_a_class_without_unlabelled_label():
    check_classifiers_classes("RealNVPClassifier", RealNVPClassifier(**SMALL, unlabelled_label=None))
    X, y = make_blobs(200, centers=[(-3, 0), (3, 0)], random_state=0)
    with pytest.raises(ValueError, match="unlabelled_label=None"):
        RealNVPClassifier(**SMALL).fit(X, 2 * y - 1)


@pytest.fixture(scope="module")
def moons():
    X, y = make_moons(1200, noise=0.15, random_state=0)
    return X[:900], y[:900], X[900:], y[900:]


@pytest.fixture(scope="module")
def fitted(moons):
    X, y, _, _ = moons
    return RealNVPClassifier(max_steps=600, random_state=0).fit(X, y)


def test_learns_moons_and_probabilities_are_consistent(fitted, moons):
    _, _, X_test, y_test = moons
    assert fitted.score(X_test, y_test) > 0.97
    proba = fitted.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(fitted.classes_[proba.argmax(1)], fitted.predict(X_test))
    np.testing.assert_allclose(np.exp(fitted.predict_log_proba(X_test)), proba, rtol=1e-10)
    log_odds = fitted.decision_function(X_test)
    np.testing.assert_allclose(log_odds, np.log(proba[:, 1]) - np.log(proba[:, 0]), rtol=1e-6, atol=1e-6)


def test_string_labels_map_through_classes(moons):
    X, y, X_test, _ = moons
    names = np.array(["left", "right"])
    clf = RealNVPClassifier(**SMALL).fit(X, names[y])
    assert clf.classes_.tolist() == ["left", "right"]
    assert set(clf.predict(X_test)) <= {"left", "right"}
    _, labels = clf.sample(5, y="right", random_state=0)
    assert labels.tolist() == ["right"] * 5


def test_score_samples_is_a_density_in_raw_units(moons):
    """Rescaling a feature by c shifts log p(x) by −log c: the density is in the raw features' units."""
    X, y, X_test, _ = moons
    clf = RealNVPClassifier(**SMALL).fit(X, y)
    scaled = RealNVPClassifier(**SMALL).fit(X * [1.0, 100.0], y)
    np.testing.assert_allclose(scaled.score_samples(X_test * [1.0, 100.0]), clf.score_samples(X_test) - np.log(100.0),
                               rtol=1e-4, atol=1e-3)
    far = np.array([[30.0, 30.0]])
    assert clf.score_samples(far)[0] < np.percentile(clf.score_samples(X_test), 1)


def test_sample_draws_the_requested_classes(fitted):
    X, labels = fitted.sample(400, random_state=1)
    assert X.shape == (400, 2) and set(labels) == {0, 1}
    assert np.mean(fitted.predict(X) == labels) > 0.95  # samples of class k are classified as k
    X1, _ = fitted.sample(200, y=1, random_state=2)
    assert np.mean(fitted.predict(X1) == 1) > 0.95
    with pytest.raises(ValueError, match="not in classes_"):
        fitted.sample(3, y=7)
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(0)


def test_pickle_and_joblib_round_trip_give_identical_predictions(fitted, moons, tmp_path):
    _, _, X_test, _ = moons
    expected = fitted.predict_proba(X_test)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict_proba(X_test), expected)
    joblib.dump(fitted, tmp_path / "clf.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "clf.joblib").predict_proba(X_test), expected)
    unfitted = clone(fitted)
    assert unfitted.get_params() == fitted.get_params() and not hasattr(unfitted, "classes_")


def test_predictions_do_not_depend_on_batch_size_and_compile_once(fitted, moons):
    _, _, X_test, _ = moons
    full = fitted.predict_proba(X_test)
    one_by_one = np.concatenate([fitted.predict_proba(X_test[i:i + 1]) for i in range(0, 40)])
    np.testing.assert_array_equal(one_by_one, full[:40])
    fn = fitted._compiled()
    sizes_before = fn._cache_size()
    for n in (1, 7, 300, 1500):
        fitted.predict_proba(np.resize(X_test, (n, 2)))
    assert fn._cache_size() == sizes_before == 1


@pytest.mark.slow
def test_pipeline_grid_search_and_cross_val_score():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(FunctionTransformer(np.log1p), RealNVPClassifier(**SMALL))
    grid = GridSearchCV(pipe, {"realnvpclassifier__cross_entropy_weight": [0.0, 1.0]}, cv=2)
    grid.fit(X, y)
    assert grid.best_params_["realnvpclassifier__cross_entropy_weight"] in (0.0, 1.0)
    assert len(grid.cv_results_["mean_test_score"]) == 2
    scores = cross_val_score(RealNVPClassifier(**SMALL), X, y, cv=StratifiedKFold(2, shuffle=True, random_state=0))
    assert scores.mean() > 0.85


def test_few_labels_with_minus_one_train_flowgmm():
    X, y = make_blobs(900, centers=[(-3, 0), (3, 0), (0, 4)], cluster_std=1.0, random_state=0)
    y_partial = np.full_like(y, -1)
    for k in range(3):  # two labels per class
        y_partial[np.flatnonzero(y == k)[:2]] = k
    clf = RealNVPClassifier(**SMALL).fit(X, y_partial)
    assert clf.classes_.tolist() == [0, 1, 2]
    assert "val_marginal_nll" in clf.history_  # epoch selected on unlabelled rows only
    assert clf.score(X, y) > 0.9


def test_raw_features_of_any_scale(moons):
    X, y, X_test, y_test = moons
    raw = RealNVPClassifier(**SMALL).fit(X * 1e4 + 5e5, y)
    plain = RealNVPClassifier(**SMALL).fit(X, y)  # the same after standardisation
    assert raw.score(X_test * 1e4 + 5e5, y_test) > 0.85
    assert np.mean(raw.predict(X_test * 1e4 + 5e5) == plain.predict(X_test)) > 0.99


def test_dataframe_columns_become_feature_names_in(moons):
    pd = pytest.importorskip("pandas")
    X, y, X_test, _ = moons
    frame = pd.DataFrame(X, columns=["width", "height"])
    clf = RealNVPClassifier(**SMALL).fit(frame, y)
    assert clf.feature_names_in_.tolist() == ["width", "height"]
    with pytest.warns(UserWarning, match="does not have valid feature names"):  # sklearn's convention
        plain = clf.predict(X_test)
    np.testing.assert_array_equal(clf.predict(pd.DataFrame(X_test, columns=["width", "height"])), plain)
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(pd.DataFrame(X_test, columns=["height", "width"]))


@pytest.mark.parametrize("params, match", [
    (dict(max_steps=0), "max_steps"),
    (dict(batch_size=2.5), "batch_size"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(hidden=()), "hidden"),
    (dict(means="simplex"), "means"),
    (dict(means=[[0.0, 0.0], [0.0, 0.0]]), "distinct"),
    (dict(means=[[0.0, 1.0]]), "means"),
    (dict(unlabelled_label="none"), "unlabelled_label"),
    (dict(validation_fraction=0.9), "validation_fraction"),
    (dict(labelled_share=1.0), "labelled_share"),
    (dict(priors=[1.0, 0.0]), "priors"),
])
def test_bad_hyper_parameters_are_named(moons, params, match):
    X, y, _, _ = moons
    with pytest.raises(ValueError, match=match):
        RealNVPClassifier(**{**SMALL, **params}).fit(X, y)


def test_one_feature_and_one_class_are_refused_with_the_reason(moons):
    X, y, _, _ = moons
    with pytest.raises(ValueError, match="at least 2 features"):
        RealNVPClassifier(**SMALL).fit(X[:, :1], y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        RealNVPClassifier(**SMALL).fit(X, np.zeros(len(X), int))
