"""Runs the tabular benchmark: one function per task, each writing ``results/<task>.json``.

:func:`train_and_evaluate` is the whole benchmark. Every model sees the same outer folds
(``StratifiedKFold(folds, shuffle=True, random_state=seed)``); every model chooses its
hyper-parameters by ``GridSearchCV`` (``inner_folds``, log-loss) inside each outer training fold,
the flow with its own small grid; the outer test fold is touched once, after selection.

* classification — accuracy, log-loss and ECE (15 equal-width bins) per data set, mean ± std over folds;
* novelty — each class of a data set held out of training in turn (one stratified 80/20 split);
  AUROC of ``−score_samples`` for "held-out class" among the test rows, mean over held-out classes;
* few_labels — 1, 5, 10 labels per class (the rest ``-1``), ``label_draws`` draws, scored on a
  stratified 20 % test split; no hyper-parameter search (there are no labels to search with);
* timing — ``fit`` on the digits data and ``predict_proba`` on ``timing_rows`` rows, per model.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sklearn import datasets as skdata
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import LocalOutlierFactor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import LabelPropagation, LabelSpreading, SelfTrainingClassifier
from sklearn.svm import SVC, OneClassSVM
from tqdm.auto import tqdm

from flowclass import metrics, runs
from flowclass.data import balanced_label_subset
from flowclass.sklearn import RealNVPClassifier

from . import report
from .configs import TabularConfig

EXPERIMENT_FILE = "experiment.json"
TASK_DIR = "results"
TABLE_FILE = report.TABLE_FILE
FIGURE_FILE = report.FIGURE_FILE
FLOW = "RealNVPClassifier (flowclass)"


Save = Callable[[dict], None]


def _each(keys, desc: str, progress: bool, done: dict, save: Save, work: Callable[[Any], Any]) -> dict:
    """``{key: work(key)}`` in the order of ``keys``; keys already in ``done`` are kept, not rerun,
    and after each key the results so far go to ``save`` (a killed run loses one key at most)."""
    out = {key: done[key] for key in keys if key in done}
    for key in tqdm([k for k in keys if k not in out], desc=desc, disable=not progress):
        out[key] = work(key)
        save(out)
    return {key: out[key] for key in keys}


def load_dataset(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: scikit-learn's bundled tables, or 1,000 points from its generators."""
    bundled = {"iris": skdata.load_iris, "wine": skdata.load_wine, "breast_cancer": skdata.load_breast_cancer,
               "digits": skdata.load_digits}
    if name in bundled:
        return bundled[name](return_X_y=True)
    if name == "moons":
        return skdata.make_moons(1000, noise=0.25, random_state=seed)
    if name == "circles":
        return skdata.make_circles(1000, noise=0.1, factor=0.5, random_state=seed)
    if name == "blobs":
        return skdata.make_blobs(1000, centers=3, cluster_std=2.5, random_state=seed)
    raise ValueError(f"dataset must be one of {sorted([*bundled, 'moons', 'circles', 'blobs'])}; got {name!r}.")


def classifiers(config: TabularConfig) -> dict[str, tuple[Any, dict]]:
    """Every classifier with the grid its hyper-parameters are searched over."""
    seed = config.seed
    scaled = lambda model: make_pipeline(StandardScaler(), model)  # noqa: E731
    return {
        FLOW: (RealNVPClassifier(max_steps=config.flow_steps, random_state=seed),
               {"input_noise": [0.1, 0.3]}),
        "LogisticRegression": (scaled(LogisticRegression(max_iter=2000)),
                               {"logisticregression__C": [0.1, 1.0, 10.0]}),
        # reg_param 0.1 outside the grid search (timing): with 0, digits' covariances are singular
        "QuadraticDiscriminantAnalysis": (QuadraticDiscriminantAnalysis(reg_param=0.1), {"reg_param": [0.0, 0.1, 0.5]}),
        "GaussianNB": (GaussianNB(), {"var_smoothing": [1e-9, 1e-6, 1e-3]}),
        # Platt's sigmoid on 5-fold cross-validated decision values, then one SVC refitted on all rows:
        # what SVC(probability=True), deprecated since scikit-learn 1.9, did
        "SVC": (scaled(CalibratedClassifierCV(SVC(), method="sigmoid", ensemble=False)),
                {"calibratedclassifiercv__estimator__C": [1.0, 10.0]}),
        "MLPClassifier": (scaled(MLPClassifier((100,), max_iter=1000, random_state=seed)),
                          {"mlpclassifier__alpha": [1e-4, 1e-2]}),
        "RandomForestClassifier": (RandomForestClassifier(200, random_state=seed), {"max_depth": [None, 8]}),
        "HistGradientBoostingClassifier": (HistGradientBoostingClassifier(random_state=seed),
                                           {"learning_rate": [0.05, 0.1]}),
    }


def _ece(proba: np.ndarray, y: np.ndarray) -> float:
    return float(metrics.expected_calibration_error(np.log(np.clip(proba, 1e-300, None)), y))


def classification(config: TabularConfig, progress: bool, done: dict, save: Save) -> dict:
    """``{dataset: {model: {metric: [per fold]}}}``."""
    return _each(config.datasets, "classification", progress, done, save,
                 lambda name: _classification(config, name))


def _classification(config: TabularConfig, name: str) -> dict:
    X, y = load_dataset(name, config.seed)
    y = np.unique(y, return_inverse=True)[1]
    folds = StratifiedKFold(config.folds, shuffle=True, random_state=config.seed)
    inner = StratifiedKFold(config.inner_folds, shuffle=True, random_state=config.seed)
    out = {}
    for model, (estimator, grid) in classifiers(config).items():
        rows: dict[str, list] = {"accuracy": [], "log_loss": [], "ece": [], "fit_s": [], "best_params": []}
        for train, test in folds.split(X, y):
            search = GridSearchCV(clone(estimator), grid, cv=inner, scoring="neg_log_loss", error_score=np.nan)
            start = time.perf_counter()
            search.fit(X[train], y[train])
            rows["fit_s"].append(time.perf_counter() - start)
            proba = search.predict_proba(X[test])
            rows["accuracy"].append(accuracy_score(y[test], proba.argmax(1)))
            rows["log_loss"].append(log_loss(y[test], proba, labels=np.arange(proba.shape[1])))
            rows["ece"].append(_ece(proba, y[test]))
            rows["best_params"].append(dict(search.best_params_))
        out[model] = rows
    return out


def detectors(config: TabularConfig, num_known: int) -> dict[str, Any]:
    """Novelty scorers: higher ``score_samples`` = more normal."""
    return {
        FLOW: RealNVPClassifier(max_steps=config.flow_steps, random_state=config.seed),
        "IsolationForest": IsolationForest(random_state=config.seed),
        "LocalOutlierFactor(novelty=True)": make_pipeline(StandardScaler(), LocalOutlierFactor(novelty=True)),
        "OneClassSVM": make_pipeline(StandardScaler(), OneClassSVM(gamma="scale", nu=0.1)),
        "GaussianMixture": make_pipeline(StandardScaler(),
                                         GaussianMixture(num_known, covariance_type="full", reg_covar=1e-3,
                                                         random_state=config.seed)),
    }


def novelty(config: TabularConfig, progress: bool, done: dict, save: Save) -> dict:
    """``{dataset: {model: [AUROC per held-out class]}}``."""
    return _each(config.novelty_datasets, "novelty", progress, done, save, lambda name: _novelty(config, name))


def _novelty(config: TabularConfig, name: str) -> dict:
    X, y = load_dataset(name, config.seed)
    y = np.unique(y, return_inverse=True)[1]
    train, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=config.seed)
    classes = np.unique(y)
    out: dict[str, list] = {model: [] for model in detectors(config, len(classes) - 1)}
    for held_out in classes:
        known = train[y[train] != held_out]
        novel = y[test] == held_out
        for model, detector in detectors(config, len(classes) - 1).items():
            if model == FLOW:
                detector.fit(X[known], y[known])
            else:
                detector.fit(X[known])
            out[model].append(float(roc_auc_score(novel, -detector.score_samples(X[test]))))
    return out


def few_label_models(config: TabularConfig) -> dict[str, Callable[[], Any]]:
    seed = config.seed
    return {
        f"{FLOW}, FlowGMM (labels + unlabelled)": lambda: RealNVPClassifier(max_steps=config.flow_steps,
                                                                           random_state=seed),
        f"{FLOW}, labels only": lambda: RealNVPClassifier(max_steps=config.flow_steps, random_state=seed),
        "LabelSpreading(knn)": lambda: make_pipeline(StandardScaler(), LabelSpreading(kernel="knn", n_neighbors=7)),
        "LabelPropagation(knn)": lambda: make_pipeline(StandardScaler(),
                                                       LabelPropagation(kernel="knn", n_neighbors=7, max_iter=2000)),
        # logistic regression as the base: a Platt-scaled SVC needs 5 labelled rows per class for its
        # cross-validation, and SVC(probability=True) is deprecated since scikit-learn 1.9
        "SelfTrainingClassifier(LogisticRegression)": lambda: make_pipeline(
            StandardScaler(), SelfTrainingClassifier(LogisticRegression(max_iter=2000))),
    }


def few_labels(config: TabularConfig, progress: bool, done: dict, save: Save) -> dict:
    """``{dataset: {labels_per_class: {model: [accuracy per draw]}}}``."""
    return _each(config.few_label_datasets, "few labels", progress, done, save,
                 lambda name: _few_labels(config, name))


def _few_labels(config: TabularConfig, name: str) -> dict:
    X, y = load_dataset(name, config.seed)
    y = np.unique(y, return_inverse=True)[1]
    train, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=config.seed)
    k = len(np.unique(y))
    out: dict = {}
    for per_class in config.labels_per_class:
        result = out[str(per_class)] = {m: [] for m in few_label_models(config)}
        for draw in range(config.label_draws):
            keep = balanced_label_subset(y[train], per_class * k, seed=config.seed + draw, num_classes=k)
            partial = np.full(len(train), -1)
            partial[keep] = y[train][keep]
            for model, make in few_label_models(config).items():
                estimator = make()
                if model.endswith("labels only"):
                    estimator.fit(X[train][keep], y[train][keep])
                else:
                    estimator.fit(X[train], partial)
                result[model].append(float(accuracy_score(y[test], estimator.predict(X[test]))))
    return out


def timing(config: TabularConfig, progress: bool, done: dict, save: Save) -> dict:
    """``{model: {fit_s, predict_proba_s, rows}}``: default hyper-parameters, fit on digits."""
    X, y = load_dataset("digits", config.seed)
    rows = np.random.default_rng(config.seed).choice(len(X), config.timing_rows)
    models = classifiers(config)

    def measure(model: str) -> dict:
        estimator = clone(models[model][0])
        start = time.perf_counter()
        estimator.fit(X, y)
        fit_s = time.perf_counter() - start
        estimator.predict_proba(X[:10])  # compiled / warmed once, as a user's second call
        start = time.perf_counter()
        estimator.predict_proba(X[rows])
        return {"fit_s": fit_s, "predict_proba_s": time.perf_counter() - start, "rows": config.timing_rows}

    return _each(list(models), "timing", progress, done, save, measure)


TASKS: dict[str, Callable[[TabularConfig, bool, dict, Save], dict]] = {
    "classification": classification, "novelty": novelty, "few_labels": few_labels, "timing": timing}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    tmp.replace(path)  # atomic


def train_and_evaluate(
    config: TabularConfig,
    workdir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    data_dir: str | Path | None = None,
    progress: bool = True,
    figures: bool = True,
) -> dict:
    """Runs the benchmark ``config`` in ``workdir``; returns the summary written to ``results.json``.

    Args:
      resume: continue the benchmark stored in ``workdir``: tasks whose ``results/<task>.json``
        exists are read, not rerun, and a task cut short continues after the last data set (or
        model) it saved in ``results/<task>.partial.json``; refused if ``config`` differs.
      overwrite: delete the benchmark stored in ``workdir`` first.
      data_dir: unused (scikit-learn's data sets are bundled or generated); accepted as every
        experiment's entry point does.
      figures: write ``tabular.png``.

    Raises:
      flowclass.runs.RunExistsError: ``workdir`` holds another benchmark or run, and neither
        ``resume`` nor ``overwrite``; before any model is fitted.
      ValueError: ``resume`` with another config (the first difference named), or both flags.
    """
    del data_dir
    start = time.perf_counter()
    workdir = runs.prepare_workdir(config, workdir, resume=resume, overwrite=overwrite, config_file=EXPERIMENT_FILE,
                                   owned=(TASK_DIR, TABLE_FILE, FIGURE_FILE))
    (workdir / TASK_DIR).mkdir(exist_ok=True)
    results = {}
    for task in config.tasks:
        path = workdir / TASK_DIR / f"{task}.json"
        if resume and path.exists():
            results[task] = json.loads(path.read_text())
            continue
        partial = workdir / TASK_DIR / f"{task}.partial.json"
        done = json.loads(partial.read_text()) if resume and partial.exists() else {}
        results[task] = TASKS[task](config, progress, done, functools.partial(_write_json, partial))
        _write_json(path, results[task])  # a listed task is complete
        partial.unlink(missing_ok=True)
    (workdir / TABLE_FILE).write_text(report.tables(results, config))
    if figures:
        report.figure(results, workdir / FIGURE_FILE)
    summary = {"summary": report.summary(results), "wall_s": time.perf_counter() - start}
    runs.write_results(workdir, summary)
    return summary
