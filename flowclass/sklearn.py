"""A scikit-learn estimator over the tabular flow classifier: ``fit(X, y)``, ``predict_proba(X)``.

:class:`RealNVPClassifier` follows scikit-learn's estimator conventions (hyper-parameters only in
``__init__``, learned state in attributes ending in ``_``, ``get_params``/``set_params``/``clone``,
pickling), so a flow classifier drops into a ``Pipeline``, ``GridSearchCV`` or
``cross_val_score``. It passes ``sklearn.utils.estimator_checks.check_estimator``
(``tests/test_sklearn.py``; the one declared exception is listed in its docstring).

The model (Dinh et al. 2017, "Density estimation using Real NVP"; Izmailov et al. 2020, FlowGMM):
features are standardised, ``x̃ = (x − m) / s``, then a RealNVP flow ``z = f_θ(x̃)`` of affine
couplings maps them to a latent space with one unit Gaussian per class, and

    log p(x | k) = log N(f_θ(x̃); μ_k, I) + log|det ∂f_θ/∂x̃| − Σ_d log s_d     (nats)
    p(k | x)     = softmax_k( (log p(x | k) + log π_k) / T )                 (Bayes' rule)

with class priors ``π_k`` (the training frequencies unless ``priors`` is given) and a temperature
``T`` fitted on the validation split (Guo et al. 2017; ``calibrate=True``). ``score_samples(X)``
is the density ``log p(x) = logsumexp_k (log p(x | k) + log π_k)``, in nats, in the units of the
raw features, for novelty detection.

Few labels, in :mod:`sklearn.semi_supervised`'s convention: an integer label ``-1`` marks an
unlabelled row. The estimator then trains FlowGMM's loss
(:func:`flowclass.make_semi_supervised_loss`): labelled rows by ``log p(x, y)``, unlabelled
rows by the mixture marginal ``log p(x)``, and selects the epoch by the validation mixture
likelihood of unlabelled rows only, so no label is spent on model selection.

Example:
  >>> from sklearn.datasets import load_iris
  >>> from sklearn.model_selection import train_test_split
  >>> from flowclass.sklearn import RealNVPClassifier
  >>> X, y = load_iris(return_X_y=True)
  >>> X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
  >>> clf = RealNVPClassifier(max_steps=300, random_state=0).fit(X_train, y_train)
  >>> clf.predict_proba(X_test[:2]).shape, clf.score(X_test, y_test) > 0.85
  ((2, 3), True)
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from flowclass._validation import check_int, check_probability, check_real, check_widths
from flowclass.calibration import fit_temperature
from flowclass.config import TrainConfig
from flowclass.data.labels import UNLABELLED
from flowclass.distributions import as_means
from flowclass.flows import tabular_realnvp
from flowclass.losses import make_flow_loss, make_semi_supervised_loss
from flowclass.training import create_train_state, fit

__all__ = ["RealNVPClassifier", "auto_means", "centroid_means"]

CHUNK = 1024
"""Rows per compiled prediction call: every call pads to a multiple of it, so one compiled
function serves every batch size and a row's numbers do not depend on its neighbours."""

EVALUATIONS = 50
"""Validation passes per fit at most (an epoch has at least ``max_steps / EVALUATIONS`` steps)."""

TEMPERATURE_BOUNDS = (0.5, 10.0)
"""The range of the fitted temperature: a small validation split that the model classifies
without error would otherwise drive ``T`` towards 0 (ever sharper posteriors)."""

MIN_CALIBRATION_ROWS = 30
"""Labelled validation rows below which no temperature is fitted (``temperature_ = 1``)."""


@functools.lru_cache(maxsize=32)
def _class_log_likelihoods(num_couplings: int, hidden: tuple[int, ...], means: tuple) -> Any:
    num_classes, num_features = len(means), len(means[0])
    model = tabular_realnvp(num_features, num_classes, num_couplings=num_couplings, hidden=hidden, means=means)
    return jax.jit(lambda variables, x: model.apply(variables, x, method="class_log_likelihoods"))


def centroid_means(x: np.ndarray, targets: np.ndarray, num_classes: int, distance: float) -> np.ndarray:
    """Class means ``(K, D)`` along the classes' centroids in ``x``: the centred centroids, scaled
    so that the two nearest are ``distance`` apart. A flow near the identity then starts as a
    nearest-centroid classifier. Falls back to :func:`auto_means` when two centroids coincide
    (e.g. concentric rings). Rows with target ``-1`` are ignored.

    >>> x = np.array([[0.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 2.0]])
    >>> centroid_means(x, np.array([0, 0, 1, 1]), 2, 4.0).tolist()
    [[-2.0, 0.0], [2.0, 0.0]]
    """
    centroids = np.stack([x[targets == k].mean(axis=0) for k in range(num_classes)])
    centroids -= centroids.mean(axis=0)
    gaps = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)[np.triu_indices(num_classes, 1)]
    spread = float(np.sqrt(np.mean(np.sum(x[targets >= 0] ** 2, axis=1))))
    if gaps.min() < 1e-3 * max(spread, 1e-12):
        return auto_means(num_classes, x.shape[1], distance)
    return centroids * (distance / gaps.min())


def auto_means(num_classes: int, num_features: int, distance: float) -> np.ndarray:
    """Class means ``(K, D)`` with nearest neighbours ``distance`` apart: orthogonal
    ``(distance/√2)·e_k`` when ``K ≤ D``, else ``K`` points evenly spaced on a circle in the first
    two latent coordinates (a triangle for ``K = 3``, ``D = 2``).

    >>> auto_means(2, 2, 4.0).round(3).tolist()
    [[2.828, 0.0], [0.0, 2.828]]
    >>> means = auto_means(3, 2, 4.0)
    >>> float(np.linalg.norm(means[0] - means[1]).round(6)), float(np.linalg.norm(means[1] - means[2]).round(6))
    (4.0, 4.0)
    """
    if num_classes <= num_features:
        return distance / math.sqrt(2.0) * np.eye(num_classes, num_features)
    angles = 2.0 * math.pi * np.arange(num_classes) / num_classes
    radius = distance / (2.0 * math.sin(math.pi / num_classes))
    means = np.zeros((num_classes, num_features))
    means[:, 0], means[:, 1] = radius * np.cos(angles), radius * np.sin(angles)
    return means


class RealNVPClassifier(ClassifierMixin, BaseEstimator):
    """A RealNVP flow with one Gaussian per class, as a scikit-learn classifier.

    Inputs ``X`` of shape ``(n_samples, n_features)`` (any real dtype, ``n_features ≥ 2``: a
    coupling needs two features), labels ``y`` of shape ``(n_samples,)`` with any values (strings
    too); integer label ``-1`` marks an unlabelled row (few-label training, FlowGMM).

    Args:
      num_couplings: affine coupling layers (alternating masks).
      hidden: hidden widths of each coupling's MLP conditioner.
      means: the fixed class means in latent space: ``'auto'`` (:func:`centroid_means` of the
        standardised labelled rows) or an array ``(n_classes, n_features)`` in the order of ``classes_``.
      mean_distance: with ``'auto'``, the distance between the two nearest class means (latent units).
      max_steps: optimiser steps (rounded up to whole epochs).
      time_budget_s: optional wall-clock limit on training, in seconds.
      batch_size: examples per step (capped at the number of training rows).
      learning_rate: Adam's step size.
      cross_entropy_weight: ``β`` of the hybrid loss ``NLL + β · cross-entropy`` (the likelihood
        alone, ``β = 0``, overfits the density of small tables before the classes separate).
      unlabelled_weight: ``λ``, the weight of an unlabelled row's ``−log p(x)`` (few labels).
      labelled_share: with unlabelled rows, labelled rows are repeated to about this share of
        the training rows, so that every batch sees labels.
      input_noise: standard deviation of Gaussian noise added to the standardised features at
        every step (a smoothing dequantisation; keeps the density finite on discrete features).
      validation_fraction: share of rows held out to select the epoch (lowest validation
        cross-entropy; with unlabelled rows, lowest ``−log p(x)`` of held-out unlabelled rows) and to
        fit the temperature; ``0`` trains on everything and keeps the last epoch.
      calibrate: fit the temperature ``T`` in ``TEMPERATURE_BOUNDS`` on the validation split (needs at least
        ``MIN_CALIBRATION_ROWS`` labelled rows there; otherwise ``T = 1``).
      priors: class priors ``π_k`` in the order of ``classes_``; ``None``: training frequencies.
      unlabelled_label: the integer label of unlabelled rows (``-1``, as in
        :mod:`sklearn.semi_supervised`); ``None`` when every row is labelled and ``-1`` is a class.
      random_state: ``None``, an int or a ``numpy.random.RandomState``: initialisation, splits,
        batches and noise.
      verbose: show a progress bar while training.

    Attributes:
      classes_: the labels, sorted, shape ``(K,)``.
      n_features_in_: ``D``; ``feature_names_in_`` too when fitted on a DataFrame.
      scaler_: the fitted :class:`sklearn.preprocessing.StandardScaler`.
      variables_: the flow's trained variables (a pytree of NumPy arrays).
      class_means_: the latent class means ``(K, D)`` (with ``means='auto'``).
      class_prior_: ``π``, shape ``(K,)``.
      temperature_: ``T`` (``1.0`` without calibration).
      n_iter_: epochs run.
      n_steps_: optimiser steps run.
      best_epoch_: the epoch kept.
      history_: per-epoch training and validation metrics (``flowclass.fit``'s history).

    Raises:
      ValueError: bad hyper-parameters (named), fewer than 2 features or 2 labelled classes,
        non-finite ``X``, continuous ``y``; ``NotFittedError`` before ``fit``.

    Example:
      >>> from sklearn.datasets import make_moons
      >>> X, y = make_moons(600, noise=0.1, random_state=0)
      >>> clf = RealNVPClassifier(max_steps=400, random_state=0).fit(X, y)
      >>> clf.score(X, y) > 0.95, clf.score_samples(X[:3]).shape
      (True, (3,))
    """

    def __init__(
        self,
        *,
        num_couplings: int = 5,
        hidden: Sequence[int] = (64, 64),
        means: str | Any = "auto",
        mean_distance: float = 4.0,
        max_steps: int = 2000,
        time_budget_s: float | None = None,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        cross_entropy_weight: float = 1.0,
        unlabelled_weight: float = 1.0,
        labelled_share: float = 0.25,
        input_noise: float = 0.1,
        validation_fraction: float = 0.1,
        calibrate: bool = True,
        priors: Sequence[float] | None = None,
        unlabelled_label: int | None = UNLABELLED,
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
    ) -> None:
        self.num_couplings = num_couplings
        self.hidden = hidden
        self.means = means
        self.mean_distance = mean_distance
        self.max_steps = max_steps
        self.time_budget_s = time_budget_s
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.cross_entropy_weight = cross_entropy_weight
        self.unlabelled_weight = unlabelled_weight
        self.labelled_share = labelled_share
        self.input_noise = input_noise
        self.validation_fraction = validation_fraction
        self.calibrate = calibrate
        self.priors = priors
        self.unlabelled_label = unlabelled_label
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------------------- fitting

    def _check_params(self) -> None:
        check_int(self.num_couplings, "num_couplings", minimum=1)
        if not check_widths(self.hidden, "hidden"):
            raise ValueError(f"hidden must hold at least one width; got {self.hidden!r}.")
        if isinstance(self.means, str) and self.means != "auto":
            raise ValueError(f"means must be 'auto' or an array of class means; got {self.means!r}.")
        check_real(self.mean_distance, "mean_distance", minimum=0.0, open_min=True)
        check_int(self.max_steps, "max_steps", minimum=1)
        if self.time_budget_s is not None:
            check_real(self.time_budget_s, "time_budget_s", minimum=0.0, open_min=True)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_real(self.learning_rate, "learning_rate", minimum=0.0, open_min=True)
        check_real(self.cross_entropy_weight, "cross_entropy_weight", minimum=0.0)
        check_real(self.unlabelled_weight, "unlabelled_weight", minimum=0.0)
        check_probability(self.labelled_share, "labelled_share")
        check_real(self.input_noise, "input_noise", minimum=0.0)
        check_real(self.validation_fraction, "validation_fraction", minimum=0.0, maximum=0.5)
        if self.unlabelled_label is not None:
            check_int(self.unlabelled_label, "unlabelled_label")
        if not isinstance(self.calibrate, (bool, np.bool_)):
            raise ValueError(f"calibrate must be True or False; got {self.calibrate!r}.")

    def _encode_labels(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``classes_`` from the labelled rows and the targets as indices, ``-1`` where unlabelled."""
        unlabelled = np.zeros(len(y), bool)
        numeric = np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
        if self.unlabelled_label is not None and numeric:
            unlabelled = y == self.unlabelled_label
        check_classification_targets(y[~unlabelled] if (~unlabelled).any() else y)
        classes, codes = np.unique(y[~unlabelled], return_inverse=True)
        if len(classes) < 2:
            hint = (f" Rows labelled {self.unlabelled_label} are unlabelled; if {self.unlabelled_label} is a class, "
                    "set unlabelled_label=None." if unlabelled.any() else "")
            raise ValueError(
                f"RealNVPClassifier needs labelled samples of at least 2 classes; got {len(classes)} class"
                f"{'' if len(classes) == 1 else 'es'} ({classes.tolist()}) among {int((~unlabelled).sum())} "
                f"labelled rows.{hint}")
        targets = np.full(len(y), UNLABELLED, np.int32)
        targets[~unlabelled] = codes
        return classes, targets

    def _priors(self, targets: np.ndarray, k: int) -> np.ndarray:
        if self.priors is None:
            counts = np.bincount(targets[targets >= 0], minlength=k).astype(np.float64)
            return counts / counts.sum()
        priors = np.asarray(self.priors, dtype=np.float64)
        if priors.shape != (k,) or not np.all(np.isfinite(priors)) or np.any(priors <= 0):
            raise ValueError(f"priors must be {k} positive numbers (one per class in classes_); got {self.priors!r}.")
        return priors / priors.sum()

    def _split(self, X: np.ndarray, t: np.ndarray, seed: int):
        """(train, val): stratified by class; with unlabelled rows, only those are held out."""
        n_val = int(round(self.validation_fraction * len(X)))
        if self.validation_fraction == 0 or n_val < 1 or len(X) - n_val < 2:
            return (X, t), None
        semi = bool(np.any(t == UNLABELLED))
        pool = np.flatnonzero(t == UNLABELLED) if semi else np.arange(len(X))
        n_val = min(n_val, len(pool) - 1) if semi else n_val
        if n_val < 1:
            return (X, t), None
        counts = np.bincount(t[pool] + 1)
        present = counts[counts > 0]
        stratify = t[pool] if not semi and np.all(present >= 2) and n_val >= len(present) else None
        rest, val = train_test_split(pool, test_size=n_val, random_state=seed, stratify=stratify)
        train = np.setdiff1d(np.arange(len(X)), val) if semi else rest
        return (X[train], t[train]), (X[val], t[val])

    def fit(self, X: Any, y: Any) -> RealNVPClassifier:
        """Trains the flow on ``X`` (``(n_samples, n_features)``) and labels ``y`` (``-1``: unlabelled).

        Returns:
          ``self``, fitted.
        """
        self._check_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=False)
        y = column_or_1d(y, warn=True)
        if X.shape[1] < 2:
            raise ValueError(f"RealNVPClassifier needs at least 2 features (a coupling splits them); got "
                             f"{X.shape[1]} feature(s). Append a feature, e.g. a noise column.")
        self.classes_, targets = self._encode_labels(y)
        k = len(self.classes_)
        self.class_prior_ = self._priors(targets, k)
        self.scaler_ = StandardScaler().fit(X)
        x = self.scaler_.transform(X).astype(np.float32)
        if isinstance(self.means, str):  # 'auto': along the labelled class centroids
            self.class_means_ = centroid_means(x, targets, k, self.mean_distance)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        train, val = self._split(x, targets, seed)
        semi = bool(np.any(train[1] == UNLABELLED))
        if semi:
            train = self._repeat_labelled(*train)
        loss = (make_semi_supervised_loss(unlabelled_weight=self.unlabelled_weight,
                                          cross_entropy_weight=self.cross_entropy_weight)
                if semi else make_flow_loss(cross_entropy_weight=self.cross_entropy_weight))
        batch = min(self.batch_size, len(train[0]))
        # At most EVALUATIONS validation passes: small data sets are tiled into longer epochs.
        tiles = math.ceil(math.ceil(self.max_steps / EVALUATIONS) * batch / len(train[0]))
        rows = train  # without a validation split, fit's history reports these rows, each once
        train = (np.tile(train[0], (tiles, 1)), np.tile(train[1], tiles)) if tiles > 1 else train
        epochs = math.ceil(self.max_steps / (len(train[0]) // batch))
        model = self._model(x.shape[1], k)
        init_key, fit_key = jax.random.split(jax.random.key(seed))
        state = create_train_state(model, init_key, jnp.asarray(train[0][:batch]), optax.adam(self.learning_rate), loss)
        config = TrainConfig(epochs=epochs, batch_size=batch, eval_batch_size=max(batch, 256),
                             time_budget_s=self.time_budget_s,
                             select="marginal_nll" if semi else "cross_entropy")
        noise = float(self.input_noise)
        augment = (lambda key, xb: xb + noise * jax.random.normal(key, xb.shape, xb.dtype)) if noise else None
        result = fit(state, train, val if val is not None else rows, key=fit_key, config=config, augment=augment,
                     progress=bool(self.verbose), desc="RealNVPClassifier")
        if val is None:  # nothing held out: keep the last epoch, not the one that fits the training rows best
            result_state, self.best_epoch_ = result.last_state, result.epochs_run
        else:
            result_state, self.best_epoch_ = result.state, result.best_epoch
        self.variables_ = jax.tree.map(np.asarray, result_state.variables)
        self.n_iter_ = int(result.epochs_run)
        self.n_steps_ = int(result.last_state.step)
        self.history_ = {name: np.asarray(values) for name, values in result.history.items()}
        self.temperature_ = 1.0
        labelled = val[1] >= 0 if val is not None else None
        if self.calibrate and labelled is not None and labelled.sum() >= MIN_CALIBRATION_ROWS:
            logits = self._joint_log_likelihood_scaled(val[0][labelled])
            self.temperature_ = float(fit_temperature(logits, val[1][labelled], bounds=TEMPERATURE_BOUNDS))
        return self

    def _repeat_labelled(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labelled, unlabelled = np.flatnonzero(t >= 0), np.flatnonzero(t < 0)
        share = self.labelled_share
        repeats = max(1, round(share * len(unlabelled) / ((1.0 - share) * max(len(labelled), 1))))
        rows = np.concatenate([np.repeat(labelled, repeats), unlabelled])
        return x[rows], t[rows]

    def _class_means(self, num_features: int, num_classes: int) -> np.ndarray:
        if isinstance(self.means, str):
            return self.class_means_
        means = np.asarray(self.means, dtype=np.float64)
        if means.shape != (num_classes, num_features) or not np.all(np.isfinite(means)):
            raise ValueError(f"means must be 'auto' or finite class means of shape (n_classes, n_features) = "
                             f"({num_classes}, {num_features}); got {self.means!r}.")
        if len(np.unique(means, axis=0)) < num_classes:
            raise ValueError(f"means must be distinct class means; got duplicates in {means.tolist()}.")
        return means

    def _model(self, num_features: int, num_classes: int):
        return tabular_realnvp(num_features, num_classes, num_couplings=self.num_couplings, hidden=tuple(self.hidden),
                               means=self._class_means(num_features, num_classes))

    # --------------------------------------------------------------------------- prediction

    def _compiled(self):
        """The jitted ``log p(x̃ | k)`` of this architecture, shared by every estimator that has it."""
        means = self._class_means(self.n_features_in_, len(self.classes_))
        return _class_log_likelihoods(self.num_couplings, tuple(self.hidden), as_means(means))

    def _joint_log_likelihood_scaled(self, x: np.ndarray) -> np.ndarray:
        """``log p(x̃ | k) + log π_k`` for standardised rows ``x̃``, float64, ``(n, K)``, in chunks."""
        fn, n = self._compiled(), len(x)
        padded = np.zeros((-(-n // CHUNK) * CHUNK, x.shape[1]), np.float32)
        padded[:n] = x
        parts = [np.asarray(fn(self.variables_, padded[i:i + CHUNK])) for i in range(0, len(padded), CHUNK)]
        return np.concatenate(parts)[:n].astype(np.float64) + np.log(self.class_prior_)

    def _joint_log_likelihood(self, X: Any) -> np.ndarray:
        """``log p(x | k) + log π_k`` in the units of the raw features, float64, ``(n_samples, K)``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        x = self.scaler_.transform(X)
        return self._joint_log_likelihood_scaled(x) - np.sum(np.log(self.scaler_.scale_))

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log p(k | x)`` with the fitted temperature, float64, shape ``(n_samples, K)``."""
        logits = self._joint_log_likelihood(X) / self.temperature_
        return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)

    def predict_proba(self, X: Any) -> np.ndarray:
        """``p(k | x)``, float64, shape ``(n_samples, K)``, columns in the order of ``classes_``."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The Bayes-optimal label ``classes_[argmax_k p(k | x)]``, shape ``(n_samples,)``."""
        codes = np.argmax(self._joint_log_likelihood(X), axis=1)
        return self.classes_[codes]

    def decision_function(self, X: Any) -> np.ndarray:
        """Log-posterior scores: ``(n_samples,)`` log-odds ``log p(k₁|x) − log p(k₀|x)`` for two
        classes, else ``(n_samples, K)`` ``log p(k | x)``."""
        log_proba = self.predict_log_proba(X)
        return log_proba[:, 1] - log_proba[:, 0] if len(self.classes_) == 2 else log_proba

    def score_samples(self, X: Any) -> np.ndarray:
        """``log p(x) = logsumexp_k (log p(x | k) + log π_k)``: the flow's density of each row, in
        nats, in the units of the raw features; shape ``(n_samples,)``. Low values flag novelties."""
        return np.logaddexp.reduce(self._joint_log_likelihood(X), axis=1)

    def sample(self, n_samples: int = 1, *, y: Any = None, random_state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Draws ``n_samples`` rows ``x = f⁻¹(μ_k + ε)`` in the units of the raw features.

        Args:
          y: a label (every row of that class), ``n_samples`` labels, or ``None`` (classes drawn
            from ``class_prior_``).
          random_state: ``None``, an int or a ``RandomState``.

        Returns:
          ``(X, y)``: float64 ``(n_samples, n_features_in_)`` and the labels ``(n_samples,)``.
        """
        check_is_fitted(self)
        check_int(n_samples, "n_samples", minimum=1)
        rng = check_random_state(random_state)
        if y is None:
            codes = rng.choice(len(self.classes_), size=n_samples, p=self.class_prior_)
        else:
            labels = np.broadcast_to(np.asarray(y), (n_samples,)) if np.ndim(y) == 0 else column_or_1d(y)
            if len(labels) != n_samples:
                raise ValueError(f"y must be one label or {n_samples} labels; got {len(labels)}.")
            unknown = np.setdiff1d(labels, self.classes_)
            if len(unknown):
                raise ValueError(f"y has labels {unknown.tolist()} not in classes_ {self.classes_.tolist()}.")
            codes = np.searchsorted(self.classes_, labels)
        model = self._model(self.n_features_in_, len(self.classes_))
        key = jax.random.key(int(rng.randint(np.iinfo(np.int32).max)))
        out = np.empty((n_samples, self.n_features_in_))
        for code in np.unique(codes):
            rows = np.flatnonzero(codes == code)
            key, sub = jax.random.split(key)
            x = model.apply(self.variables_, sub, int(code), len(rows), method="sample")
            out[rows] = self.scaler_.inverse_transform(np.asarray(x, np.float64))
        return out, self.classes_[codes]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
