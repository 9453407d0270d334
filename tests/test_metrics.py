"""Metrics against scikit-learn (and a NumPy ECE written from the definition) on random inputs."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score, roc_curve

from flowclass import metrics


def _random_problem(seed, n=2000, k=5, sharpness=3.0):
    rng = np.random.default_rng(seed)
    logits = sharpness * rng.normal(size=(n, k)).astype(np.float32)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = np.array([rng.choice(k, p=p) for p in (0.7 * probs + 0.3 / k)])  # near-calibrated labels
    return logits, probs, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_and_nll_match_sklearn(seed):
    logits, probs, labels = _random_problem(seed, sharpness=1.5)  # sklearn clips probabilities below ~1e-7
    assert metrics.accuracy(logits, labels) == pytest.approx(accuracy_score(labels, probs.argmax(1)), abs=1e-7)
    assert metrics.negative_log_likelihood(logits, labels) == pytest.approx(
        log_loss(labels, probs, labels=np.arange(5)), rel=1e-5)


@pytest.mark.parametrize("binning, strategy", [("width", "uniform"), ("mass", "quantile")])
@pytest.mark.parametrize("seed", [0, 1])
def test_reliability_matches_sklearn_calibration_curve(seed, binning, strategy):
    """The top-class reliability diagram is sklearn's calibration curve of 'is the top class right'."""
    logits, probs, labels = _random_problem(seed)
    confidence, correct = probs.max(1), (probs.argmax(1) == labels).astype(int)
    r = metrics.reliability(logits, labels, num_bins=10, binning=binning)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10, strategy=strategy)
    filled = r.counts > 0
    np.testing.assert_allclose(r.accuracy[filled], prob_true, atol=1e-6)
    np.testing.assert_allclose(r.confidence[filled], prob_pred, atol=1e-6)
    assert r.counts.sum() == len(labels)
    if binning == "mass":  # equal-mass bins hold n/B examples each, up to ties at the edges
        assert np.all(np.abs(r.counts - len(labels) / 10) <= 1)


@pytest.mark.parametrize("binning", ["width", "mass"])
def test_ece_is_the_weighted_gap(binning):
    logits, probs, labels = _random_problem(3)
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    quantiles = np.linspace(0, 1, 16)
    edges = quantiles if binning == "width" else np.percentile(confidence, 100 * quantiles)
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    expected = sum(np.mean(bins == b) * abs(correct[bins == b].mean() - confidence[bins == b].mean())
                   for b in range(15) if np.any(bins == b))
    assert metrics.expected_calibration_error(logits, labels, binning=binning) == pytest.approx(expected, abs=1e-6)


def test_ece_separates_calibrated_from_overconfident():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 20000)
    labels = (rng.uniform(size=20000) > confidence).astype(int)  # class 0 is right with prob = confidence
    calibrated = np.log(np.stack([confidence, 1 - confidence], 1))
    assert metrics.expected_calibration_error(calibrated, labels) < 0.015
    assert metrics.expected_calibration_error(5 * calibrated, labels) > 0.1  # temperature 1/5: overconfident


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    positive = rng.uniform(size=3000) < 0.3
    scores = np.round(rng.normal(size=3000) + positive, 1)  # rounding makes many ties
    assert metrics.auroc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), abs=1e-6)


@pytest.mark.parametrize("fpr", [0.0, 0.01, 0.05, 0.2, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_tpr_at_fpr_is_the_best_roc_point_within_the_rate(seed, fpr):
    rng = np.random.default_rng(seed)
    positive = rng.uniform(size=1000) < 0.4
    scores = np.round(rng.normal(size=1000) + 1.5 * positive, 2)
    roc_fpr, roc_tpr, _ = roc_curve(positive, scores, drop_intermediate=False)
    expected = roc_tpr[roc_fpr <= fpr + 1e-12].max()
    assert metrics.tpr_at_fpr(scores, positive, fpr=fpr) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.accuracy(np.zeros(3), np.zeros(3, int)), "shape \\(n, num_classes\\)"),
        (lambda: metrics.accuracy(np.zeros((3, 2)), np.zeros(2, int)), "3 integers"),
        (lambda: metrics.accuracy(np.zeros((3, 2)), np.array([0, 1, 2])), "in \\[0, 1\\]"),
        (lambda: metrics.negative_log_likelihood(np.full((1, 2), np.nan), np.zeros(1, int)), "NaN"),
        (lambda: metrics.reliability(np.zeros((3, 2)), np.zeros(3, int), binning="equal"), "'width' or 'mass'"),
        (lambda: metrics.reliability(np.zeros((3, 2)), np.zeros(3, int), num_bins=0), "positive int"),
        (lambda: metrics.auroc(np.zeros(3), np.ones(3, bool)), "one positive and one negative"),
        (lambda: metrics.auroc(np.zeros(3), np.array([0, 2, 1])), "boolean"),
        (lambda: metrics.tpr_at_fpr(np.zeros(2), np.array([True, False]), fpr=1.5),
         r"fpr must be a finite number >= 0.0 and <= 1.0"),
    ],
)
def test_bad_inputs_say_what_was_expected(call, message):
    with pytest.raises(ValueError, match=message):
        call()
