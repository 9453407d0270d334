"""Configs of the tabular benchmark: every module's ``get_config()`` returns a :class:`TabularConfig`."""

from __future__ import annotations

import dataclasses

DATASETS = ("iris", "wine", "breast_cancer", "digits", "moons", "circles", "blobs")
"""scikit-learn's four bundled data sets and three made by its generators (all offline)."""

TASKS = ("classification", "novelty", "few_labels", "timing")


def _require(condition: bool, field: str, expected: str, got) -> None:
    if not condition:
        raise ValueError(f"{field} must be {expected}; got {got!r}.")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class TabularConfig:
    """The benchmark: the flow estimator against scikit-learn's models on small tables.

    Attributes:
      tasks: which of :data:`TASKS` to run.
      datasets: the classification task's data sets (names in :data:`DATASETS`).
      novelty_datasets: the novelty task's; each needs at least 3 classes (one is held out, the
        flow classifier needs two to train).
      few_label_datasets: the few-label task's.
      folds: outer stratified folds (the same folds for every model).
      inner_folds: folds of every model's grid search, inside each outer training fold.
      labels_per_class: the few-label task's label budgets.
      label_draws: label draws (seeds) per budget.
      flow_steps: the flow's optimiser steps (``RealNVPClassifier.max_steps``).
      timing_rows: rows scored by ``predict_proba`` in the timing task.
      seed: folds, splits, label draws and every model's ``random_state``.

    Raises:
      ValueError: naming the field, for a config the benchmark cannot run.
    """

    tasks: tuple[str, ...] = TASKS
    datasets: tuple[str, ...] = DATASETS
    novelty_datasets: tuple[str, ...] = ("iris", "wine", "digits", "blobs")
    few_label_datasets: tuple[str, ...] = ("digits", "moons")
    folds: int = 5
    inner_folds: int = 2
    labels_per_class: tuple[int, ...] = (1, 5, 10)
    label_draws: int = 5
    flow_steps: int = 1000
    timing_rows: int = 10_000
    seed: int = 0

    def __post_init__(self):
        _require(bool(self.tasks) and set(self.tasks) <= set(TASKS), "tasks", f"a non-empty subset of {TASKS}",
                 self.tasks)
        for name in ("datasets", "novelty_datasets", "few_label_datasets"):
            value = getattr(self, name)
            _require(set(value) <= set(DATASETS), name, f"a subset of {DATASETS}", value)
        _require(not {"moons", "circles", "breast_cancer"} & set(self.novelty_datasets), "novelty_datasets",
                 "data sets with at least 3 classes", self.novelty_datasets)
        for name in ("folds", "inner_folds"):
            _require(_is_int(getattr(self, name)) and getattr(self, name) >= 2, name, "an integer >= 2",
                     getattr(self, name))
        for name in ("label_draws", "flow_steps", "timing_rows"):
            _require(_is_int(getattr(self, name)) and getattr(self, name) >= 1, name, "an integer >= 1",
                     getattr(self, name))
        _require(all(_is_int(n) and n >= 1 for n in self.labels_per_class), "labels_per_class",
                 "integers >= 1", self.labels_per_class)
        _require(_is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0", self.seed)
