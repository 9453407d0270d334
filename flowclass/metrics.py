"""Classification, calibration and detection metrics, in JAX, on whole arrays.

For ``n`` examples with predicted class probabilities ``p_i ∈ Δ^K`` and labels ``y_i``:

    accuracy = (1/n) Σ_i [argmax_k p_ik = y_i]
    NLL      = −(1/n) Σ_i log p_{i, y_i}
    ECE      = Σ_b (n_b / n) |acc_b − conf_b|,   conf_i = max_k p_ik

where bin ``b`` holds the ``n_b`` examples whose confidence falls in ``(e_b, e_{b+1}]``
(``e_0`` is open below): equal-width edges ``e_b = b/B`` or equal-mass edges at the
confidences' quantiles; ``acc_b`` and ``conf_b`` are the bin's accuracy and mean confidence.

For detection, a score ``s`` should be larger on positives (e.g. ``−log p(x)`` with
adversarial or out-of-distribution inputs as positives):

    AUROC      = P(s⁺ > s⁻) + ½ P(s⁺ = s⁻)            (the Mann–Whitney statistic)
    TPR@FPR=α  = the share of positives flagged by the lowest threshold that flags at most
                 a share α of negatives (flagged: ``s > t``)

Functions take logits or probabilities as ``(n, K)`` float arrays with integer labels
``(n,)`` in ``[0, K)`` and return Python floats (or NumPy arrays for the reliability
diagram); they are jitted inside and computed in ``float32``. Lists and any real dtype
(``bfloat16`` included) are accepted. Bad inputs raise :class:`ValueError` (``TypeError`` for
``None`` or a string where an array belongs) naming the argument and what was expected
(``flowclass._validation.check_scores``); every check runs eagerly on the whole array before
the jitted computation, which checks nothing.
Sources: ECE and reliability diagrams as in Naeini et al. (2015) and Guo et al. (2017);
AUROC as the Mann–Whitney statistic (Hanley & McNeil 1982).

Example:
  >>> import numpy as np
  >>> logits = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
  >>> accuracy(logits, np.array([0, 1, 1]))
  0.6666666865348816
  >>> round(auroc(np.array([3.0, 2.0, 0.5]), np.array([True, True, False])), 3)
  1.0
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from flowclass._validation import as_array, check_positive_int, check_real, check_scores, is_real_number_dtype

Binning = Literal["width", "mass"]


def accuracy(logits: ArrayLike, labels: ArrayLike) -> float:
    """Share of rows whose largest logit (or probability) is at the label, in ``[0, 1]``.

    Raises:
      ValueError: ``logits`` not ``(n, K)`` and finite, or ``labels`` not ``n`` integers in ``[0, K)``.

    >>> accuracy(np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([0, 0]))
    0.5
    """
    logits, labels = check_scores(logits, labels)
    return float(jnp.mean(jnp.argmax(logits, -1) == labels))


def negative_log_likelihood(logits: ArrayLike, labels: ArrayLike) -> float:
    """Mean ``−log softmax(logits)_y`` in nats (``sklearn.metrics.log_loss`` on the probabilities).

    Raises:
      ValueError: as :func:`accuracy`.

    >>> round(negative_log_likelihood(np.log(np.array([[0.5, 0.5], [0.25, 0.75]])), np.array([0, 1])), 4)
    0.4904
    """
    logits, labels = check_scores(logits, labels)
    return float(_nll(logits, labels))


@jax.jit
def _nll(logits, labels):
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


class Reliability(NamedTuple):
    """Per-bin data of a reliability diagram; empty bins have no examples and NaN accuracy/confidence.

    Attributes:
      edges: bin edges ``e_0 .. e_B``, shape ``(B + 1,)``.
      confidence: mean confidence ``conf_b`` per bin, shape ``(B,)``.
      accuracy: accuracy ``acc_b`` per bin, shape ``(B,)``.
      counts: examples per bin ``n_b``, shape ``(B,)``.

    Example:
      >>> r = reliability(np.log(np.array([[0.9, 0.1], [0.3, 0.7]])), np.array([0, 0]), num_bins=2)
      >>> r.counts.tolist(), r.accuracy.tolist()
      ([0, 2], [nan, 0.5])
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray

    @property
    def ece(self) -> float:
        """``Σ_b (n_b / n) |acc_b − conf_b|`` over the non-empty bins."""
        filled = self.counts > 0
        weights = self.counts[filled] / self.counts.sum()
        return float(np.sum(weights * np.abs(self.accuracy[filled] - self.confidence[filled])))


def reliability(logits: ArrayLike, labels: ArrayLike, *, num_bins: int = 15, binning: Binning = "width") -> Reliability:
    """Bins the top-class confidence ``max_k softmax(logits)_k`` and compares it with accuracy per bin.

    ``binning='width'``: edges ``0, 1/B, ..., 1``; ``'mass'``: edges at the confidences'
    ``0, 1/B, ..., 1`` quantiles (linear interpolation, as ``numpy.percentile``), so that
    bins hold about ``n/B`` examples each. A bin is ``(e_b, e_{b+1}]``; the first also holds
    confidences at or below ``e_0``.

    Raises:
      ValueError: as :func:`accuracy`; ``num_bins`` not a positive int; ``binning`` not
        ``'width'`` or ``'mass'``.

    >>> r = reliability(np.log(np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])), np.array([0, 1, 1]), num_bins=2,
    ...                 binning="mass")
    >>> r.counts.tolist()
    [2, 1]
    """
    logits, labels = check_scores(logits, labels)
    check_positive_int(num_bins, "num_bins")
    num_bins = int(num_bins)
    if binning not in ("width", "mass"):
        raise ValueError(f"binning must be 'width' or 'mass'; got {binning!r}.")
    edges, conf_sum, correct_sum, count = _reliability(logits, labels, num_bins=num_bins, binning=binning)
    count = np.asarray(count)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(count > 0, np.asarray(conf_sum) / count, np.nan)
        acc = np.where(count > 0, np.asarray(correct_sum) / count, np.nan)
    return Reliability(np.asarray(edges, np.float64), confidence, acc, count.astype(np.int64))


def expected_calibration_error(
    logits: ArrayLike, labels: ArrayLike, *, num_bins: int = 15, binning: Binning = "width"
) -> float:
    """ECE ``Σ_b (n_b / n) |acc_b − conf_b|`` of the top-class confidence (see :func:`reliability`), in ``[0, 1]``.

    Naeini et al. (2015); Guo et al. (2017) with equal-width bins (``B = 15`` there).

    Raises:
      ValueError: as :func:`reliability`.

    >>> round(expected_calibration_error(np.log(np.array([[0.9, 0.1], [0.2, 0.8]])), np.array([0, 0])), 3)
    0.45
    """
    return reliability(logits, labels, num_bins=num_bins, binning=binning).ece


@functools.partial(jax.jit, static_argnames=("num_bins", "binning"))
def _reliability(logits, labels, *, num_bins, binning):
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    confidence = jnp.max(probs, -1)
    correct = (jnp.argmax(probs, -1) == labels).astype(jnp.float32)
    quantiles = jnp.linspace(0.0, 1.0, num_bins + 1)
    edges = quantiles if binning == "width" else jnp.percentile(confidence, 100 * quantiles)
    # bin b holds (e_b, e_{b+1}]: count the inner edges strictly below each confidence
    bins = jnp.searchsorted(edges[1:-1], confidence, side="left")
    sums = jax.ops.segment_sum(jnp.stack([confidence, correct, jnp.ones_like(correct)], -1), bins, num_bins)
    return edges, sums[:, 0], sums[:, 1], sums[:, 2]


def auroc(scores: ArrayLike, is_positive: ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` for telling positives from negatives; ties count ½.

    ``scores`` ``(n,)`` real numbers, ``is_positive`` ``(n,)`` booleans (or 0/1 integers) with
    both classes present; lists are accepted.

    Raises:
      TypeError: ``scores`` or ``is_positive`` is not an array (``None``, a string).
      ValueError: shapes differ or are not 1-D, ``scores`` not real numbers or not finite,
        ``is_positive`` not boolean (or 0/1) or one-class; the message names the argument.

    >>> auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
    0.75
    """
    scores, positive = _check_detection(scores, is_positive)
    return float(_auroc(scores, positive))


@jax.jit
def _auroc(scores, positive):
    sorted_scores = jnp.sort(scores)
    # mid-rank of every score (1-based): average of the ranks its ties occupy
    ranks = 0.5 * (jnp.searchsorted(sorted_scores, scores, side="left")
                   + jnp.searchsorted(sorted_scores, scores, side="right") + 1)
    n_pos = jnp.sum(positive)
    n_neg = scores.shape[0] - n_pos
    # (Σ_pos rank − n⁺(n⁺+1)/2) / (n⁺ n⁻), summed as a mean of O(1) terms to keep float32 exact enough
    return jnp.sum(jnp.where(positive, ranks / n_neg, 0.0)) / n_pos - (n_pos + 1) / (2 * n_neg)


def tpr_at_fpr(scores: ArrayLike, is_positive: ArrayLike, fpr: float = 0.05) -> float:
    """Share of positives with ``s > t`` for the lowest ``t`` that flags at most ``⌊fpr · n⁻⌋`` negatives.

    That threshold is the ``(m+1)``-th largest negative score, ``m = ⌊fpr · n⁻⌋``: the best
    point of the ROC curve with false-positive rate at most ``fpr``.

    Raises:
      TypeError, ValueError: as :func:`auroc`; ``ValueError`` for ``fpr`` not a number in ``[0, 1]``.

    >>> tpr_at_fpr(np.array([5.0, 1.0, 3.0, 2.0, 0.0]), np.array([True, True, False, False, False]), fpr=0.34)
    0.5
    """
    scores, positive = _check_detection(scores, is_positive)
    fpr = check_real(fpr, "fpr", minimum=0.0, maximum=1.0)
    return float(_tpr_at_fpr(scores, positive, jnp.float32(fpr)))


@jax.jit
def _tpr_at_fpr(scores, positive, fpr):
    n_neg = jnp.sum(~positive)
    negatives_descending = -jnp.sort(jnp.where(positive, jnp.inf, -scores))  # positives sort last
    allowed = jnp.floor(fpr * n_neg + 1e-6).astype(jnp.int32)
    threshold = jnp.where(allowed < n_neg, negatives_descending[jnp.minimum(allowed, n_neg - 1)], -jnp.inf)
    return jnp.sum(positive & (scores > threshold)) / jnp.sum(positive)


def _check_detection(scores, is_positive) -> tuple[jax.Array, jax.Array]:
    scores = as_array(scores, "scores")
    positive = np.asarray(as_array(is_positive, "is_positive"))
    if np.ndim(scores) != 1 or np.shape(scores)[0] == 0 or positive.shape != np.shape(scores):
        raise ValueError(f"scores and is_positive must be 1-D of the same length n >= 1; got shapes "
                         f"{np.shape(scores)} and {positive.shape}.")
    if not is_real_number_dtype(scores.dtype):
        raise ValueError(f"scores must hold real numbers; got dtype {scores.dtype}.")
    if positive.dtype != np.bool_:
        if not (np.issubdtype(positive.dtype, np.integer) and np.isin(positive, (0, 1)).all()):
            raise ValueError(f"is_positive must be boolean (or 0/1 integers); got dtype {positive.dtype}.")
        positive = positive.astype(bool)
    if positive.all() or not positive.any():
        raise ValueError("is_positive must mark at least one positive and one negative example (detection metrics "
                         f"compare the two); got {int(positive.sum())} positive(s) of {positive.size}.")
    scores = jnp.asarray(scores, jnp.float32)
    if not bool(jnp.all(jnp.isfinite(scores))):
        raise ValueError("scores contain NaN or inf.")
    return scores, jnp.asarray(positive)
