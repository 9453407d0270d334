"""A smoke run of every task: two data sets, 2 folds, one label budget, one draw, short training."""

from . import TabularConfig


def get_config() -> TabularConfig:
    return TabularConfig(datasets=("iris", "moons"), novelty_datasets=("iris",), few_label_datasets=("moons",),
                         folds=2, inner_folds=2, labels_per_class=(5,), label_draws=1, flow_steps=100,
                         timing_rows=2000)
