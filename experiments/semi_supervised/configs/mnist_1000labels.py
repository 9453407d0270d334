"""MNIST with 1,000 balanced labels, one seed, 9 minutes per model (6 epochs scheduled);
otherwise as ``mnist_100labels.py``.

Formerly ``python experiments/semi_supervised.py --dataset mnist --labels 1000 --epochs 6
--time-budget 9 --data-dir DIR``.
"""

from flowclass.config import override

from ..train import ExperimentConfig
from . import mnist_100labels


def get_config() -> ExperimentConfig:
    return override(mnist_100labels.get_config(), [
        "run.data.num_labels=1000",
        "run.train.epochs=6",
        "run.train.time_budget_s=540.0",
    ])
